"""Source converters (Nexar Kaggle/HF, BDD-X, LingoQA, private mp4 + CSV, synthetic) -> manifest."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import sys
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from sce.data.schema import ClipRecord, load_manifest, write_manifest
from sce.prepare.sources import (
    SOURCES,
    ConversionReport,
    SourceError,
    add_prepare_arguments,
    convert_bddx,
    convert_lingoqa,
    convert_nexar,
    convert_nexar_hf,
    convert_private,
    convert_synthetic,
    prepare,
    prepare_command,
)
from sce.prepare.sources.base import fill_splits
from sce.prepare.sources.bddx import bddx_records, make_caption, video_id_of
from sce.prepare.splits import assign_splits

# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 1 s, 64x36, 10 fps H.264 clip, copied into every layout."""
    path = tmp_path_factory.mktemp("mp4") / "tiny.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(10):
            img = np.full((36, 64, 3), 20 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def put(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def by_id(manifest: Path, check_files: bool = True) -> dict[str, ClipRecord]:
    return {r.id: r for r in load_manifest(manifest, check_files=check_files)}


def raw_lines(manifest: Path) -> dict[str, dict]:
    return {d["id"]: d for d in map(json.loads, manifest.read_text().splitlines())}


# ------------------------------------------------------------------------------ Nexar Kaggle

KAGGLE_HEADER = ["id", "time_of_event", "time_of_alert", "target"]


def kaggle_root(tmp_path: Path, tiny_mp4: Path, rows: list[list[object]], videos=None) -> Path:
    root = tmp_path / "nexar"
    write_csv(root / "train.csv", KAGGLE_HEADER, rows)
    for vid in videos if videos is not None else [int(r[0]) for r in rows]:
        put(tiny_mp4, root / "train" / f"{vid:05d}.mp4")
    return root


def test_nexar_kaggle_records(tmp_path: Path, tiny_mp4: Path) -> None:
    rows = [[822, 19.5, 18.0, 1], [1924, "", "", 0], [3, 7.25, 6.5, 1]]
    root = kaggle_root(tmp_path, tiny_mp4, rows)
    out = tmp_path / "out" / "manifest.jsonl"
    report = convert_nexar(root, out, split="test")
    assert (report.n_records, report.n_skipped, report.manifest) == (3, 0, out)
    assert report.counts == Counter({("test", "event"): 2, ("test", "normal"): 1})
    recs = by_id(out)  # check_files=True: every relative path resolves
    assert list(recs) == ["nexar_00822", "nexar_01924", "nexar_00003"]
    a, b, c = recs.values()
    # target 1 is a collision *or* a near-collision: a binary "event", never a 3-class label
    assert (a.label, a.label_scope, a.event_time, a.split) == ("event", "binary", 19.5, "test")
    assert a.metadata == {"nexar_target": 1, "time_of_alert": 18.0}
    assert (b.label, b.label_scope, b.event_time) == ("normal", "binary", None)
    assert b.metadata == {"nexar_target": 0, "time_of_alert": None}
    assert {r["label_scope"] for r in raw_lines(out).values()} == {"binary"}
    assert (c.event_time, c.metadata["time_of_alert"]) == (7.25, 6.5)
    assert raw_lines(out)["nexar_00822"]["video"] == "../nexar/train/00822.mp4"
    assert a.path("video").resolve() == (root / "train" / "00822.mp4").resolve()
    with av.open(str(a.path("video"))) as container:  # the resolved path is the real clip
        assert sum(1 for _ in container.decode(video=0)) == 10


def test_nexar_assigned_splits(tmp_path: Path, tiny_mp4: Path) -> None:
    rows = [[i, 10.0, 9.0, 1] for i in range(10)] + [[i, "", "", 0] for i in range(10, 30)]
    root = kaggle_root(tmp_path, tiny_mp4, rows)
    out = root / "manifest.jsonl"
    report = convert_nexar(root, out, val_fraction=0.1, test_fraction=0.2)
    # per label: 10 positives -> 2 test, 1 val, 7 train; 20 negatives -> 4 test, 2 val, 14 train
    assert report.counts == Counter(
        {
            ("train", "event"): 7,
            ("val", "event"): 1,
            ("test", "event"): 2,
            ("train", "normal"): 14,
            ("val", "normal"): 2,
            ("test", "normal"): 4,
        }
    )
    assert raw_lines(out)["nexar_00000"]["video"] == "train/00000.mp4"
    first = {r.id: r.split for r in load_manifest(out)}
    convert_nexar(root, out, val_fraction=0.1, test_fraction=0.2)
    assert {r.id: r.split for r in load_manifest(out)} == first  # same seed, same splits
    convert_nexar(root, out, seed=1, val_fraction=0.1, test_fraction=0.2)
    assert {r.id: r.split for r in load_manifest(out)} != first


def test_nexar_missing_video_skip_or_raise(tmp_path: Path, tiny_mp4: Path) -> None:
    rows = [[1, 5.0, 4.0, 1], [2, "", "", 0], [3, "", "", 0]]
    root = kaggle_root(tmp_path, tiny_mp4, rows, videos=[1, 3])
    out = tmp_path / "m.jsonl"
    with pytest.raises(SourceError, match=r"train\.csv line 3: video not found: .*00002\.mp4"):
        convert_nexar(root, out)
    report = convert_nexar(root, out, skip_missing=True, split="train")
    assert (report.n_records, report.n_skipped) == (2, 1)
    assert report.reasons == Counter({"missing_video": 1})
    assert list(by_id(out)) == ["nexar_00001", "nexar_00003"]


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ([[1, "abc", "", 1]], r"line 2: column 'time_of_event': not a number: 'abc'"),
        (
            [[1, 5, "", 1], [2, "", "-1", 0]],
            r"line 3: column 'time_of_alert': expected seconds >= 0",
        ),
        ([[1, "", "", 2]], r"line 2: column 'target': expected 0 or 1, got '2'"),
        ([[1, "", "", "yes"]], r"line 2: column 'target': not a number"),
        ([["x7", "", "", 0]], r"line 2: column 'id': not a non-negative integer: 'x7'"),
        (
            [[4, "", "", 0], [4, "", "", 0]],
            r"line 3, id 'nexar_00004': duplicate record id \(first at .*line 2\)",
        ),
    ],
)
def test_nexar_malformed_rows_name_line_and_column(
    tmp_path: Path, tiny_mp4: Path, rows: list, pattern: str
) -> None:
    root = kaggle_root(tmp_path, tiny_mp4, rows, videos=[1, 2, 4])
    with pytest.raises(SourceError, match=pattern):
        convert_nexar(root, tmp_path / "m.jsonl")


def test_nexar_missing_column_and_bad_option(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", ["id", "time_of_event", "time_of_alert"], [[1, "", ""]])
    with pytest.raises(SourceError, match=r"train\.csv: missing column 'target'"):
        convert_nexar(tmp_path, tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match="no option 'positive_label'"):  # no 3-class label
        convert_nexar(tmp_path, tmp_path / "m.jsonl", positive_label="collision")


# --------------------------------------------------------------------------------- Nexar HF

HF_HEADER = ["file_name", "time_of_event", "time_of_alert", "light_conditions", "weather", "scene"]


def hf_root(tmp_path: Path, tiny_mp4: Path, subset: str = "train") -> Path:
    root = tmp_path / "nexar_hf"
    pos = write_csv(
        root / subset / "positive" / "metadata.csv",
        HF_HEADER,
        [["00822.mp4", 19.5, 18.0, "Normal", "Rain", "Urban"], ["00005.mp4", 3.0, 2.5, "", "", ""]],
    )
    neg = write_csv(
        root / subset / "negative" / "metadata.csv",
        HF_HEADER,
        [["01924.mp4", "", "", "Night", "Clear", "Highway"]],
    )
    for name in ("00822.mp4", "00005.mp4"):
        put(tiny_mp4, pos.parent / name)
    put(tiny_mp4, neg.parent / "01924.mp4")
    return root


def test_nexar_hf_records(tmp_path: Path, tiny_mp4: Path) -> None:
    root = hf_root(tmp_path, tiny_mp4)
    out = tmp_path / "manifests" / "nexar.jsonl"
    report = convert_nexar_hf(root, out, split="val")
    assert report.n_records == 3
    recs = by_id(out)
    assert sorted(recs) == ["nexar_00005", "nexar_00822", "nexar_01924"]
    a = recs["nexar_00822"]
    assert (a.label, a.label_scope, a.event_time, a.split) == ("event", "binary", 19.5, "val")
    assert a.metadata == {
        "nexar_target": 1,
        "time_of_alert": 18.0,
        "light_conditions": "Normal",
        "weather": "Rain",
        "scene": "Urban",
        "nexar_subset": "train",
    }
    assert "weather" not in recs["nexar_00005"].metadata  # empty cells are left out
    neg = recs["nexar_01924"]
    assert (neg.label, neg.event_time, neg.metadata["scene"]) == ("normal", None, "Highway")
    assert raw_lines(out)["nexar_01924"]["video"] == "../nexar_hf/train/negative/01924.mp4"


def test_nexar_hf_subset_ids_and_missing_layout(tmp_path: Path, tiny_mp4: Path) -> None:
    root = hf_root(tmp_path, tiny_mp4, subset="test-public")
    report = convert_nexar_hf(
        root,
        tmp_path / "m.jsonl",
        subset="test-public",
        split="test",
    )
    recs = by_id(report.manifest)
    assert recs["nexar_test-public_00822"].label == "event"
    with pytest.raises(SourceError, match="no metadata.csv"):
        convert_nexar_hf(root, tmp_path / "m.jsonl")  # no train/ subset
    (root / "test-public" / "negative" / "01924.mp4").unlink()
    with pytest.raises(SourceError, match=r"negative/metadata\.csv line 2: video not found"):
        convert_nexar_hf(root, tmp_path / "m.jsonl", subset="test-public")


# ------------------------------------------------------------------------------------ BDD-X

BDDX_HEADER = ["Input.Video"] + [
    f"Answer.{k}{part}"
    for k in range(1, 16)
    for part in ("start", "end", "action", "justification")
]


def bddx_row(video: str, *actions: tuple[object, object, str, str]) -> list[object]:
    cells: list[object] = [video]
    for action in actions:
        cells.extend(action)
    return cells + [""] * (len(BDDX_HEADER) - len(cells))


def bddx_root(
    tmp_path: Path, tiny_mp4: Path, rows: list[list[object]], videos: dict[str, str]
) -> Path:
    root = tmp_path / "bddx"
    write_csv(root / "BDD-X-Annotations_v1.csv", BDDX_HEADER, rows)
    for name, ext in videos.items():
        put(tiny_mp4, root / "videos" / f"{name}{ext}")
    return root


URL = "https://s3-us-west-2.amazonaws.com/sq8geewpqu/samples-1k/06d501fd-a9ffc960.mov"
STANDARD_ROWS = [
    bddx_row(
        URL,
        (0, 11, "The car is driving forward", "because the road is clear."),
        (11, 20, "The car slows down.", "the light turned red"),
    ),
    bddx_row("1a2b3c4d-00000001.mov", ("", "", "The car stops", "")),
    bddx_row("", (0, 1, "The car waits", "x")),  # annotator row without a video
    bddx_row("ffff0000-11112222.mov"),  # no actions
    bddx_row(""),  # blank row (commas only)
]
STANDARD_VIDEOS = {"06d501fd-a9ffc960": ".mov", "1a2b3c4d-00000001": ".mp4"}


def test_bddx_helpers() -> None:
    assert video_id_of(URL) == "06d501fd-a9ffc960"
    assert video_id_of("abc.mov") == "abc"
    assert make_caption("The car slows down.", "Because traffic stops") == (
        "The car slows down because traffic stops"
    )
    assert make_caption("The car stops", "") == "The car stops"


def test_bddx_records_with_split_files(tmp_path: Path, tiny_mp4: Path) -> None:
    root = bddx_root(tmp_path, tiny_mp4, STANDARD_ROWS, STANDARD_VIDEOS)
    (root / "train.txt").write_text("1_06d501fd-a9ffc960\n")
    (root / "test.txt").write_text("2_1a2b3c4d-00000001\n\n")
    out = root / "manifest.jsonl"
    report = convert_bddx(root, out)
    assert report.reasons == Counter({"no_video_name": 1, "no_actions": 1, "empty_row": 1})
    assert (report.n_records, report.n_skipped) == (3, 3)
    recs = by_id(out)
    assert list(recs) == [
        "bddx_1_06d501fd-a9ffc960_1",
        "bddx_1_06d501fd-a9ffc960_2",
        "bddx_2_1a2b3c4d-00000001_1",
    ]
    a1, a2, b1 = recs.values()
    assert (a1.label, a1.source, a1.split, a1.event_time) == ("normal", "bddx", "train", 5.5)
    assert a1.annotations == {
        "caption": "The car is driving forward because the road is clear.",
        "action": "The car is driving forward",
        "justification": "because the road is clear.",
    }
    assert a1.metadata == {
        "video_id": "06d501fd-a9ffc960",
        "bddx_row": 1,
        "action_index": 1,
        "start": 0.0,
        "end": 11.0,
    }
    assert (a2.event_time, a2.annotations["caption"]) == (
        15.5,
        "The car slows down because the light turned red",
    )
    assert (b1.split, b1.event_time, b1.annotations["caption"]) == ("test", None, "The car stops")
    lines = raw_lines(out)
    assert lines[a1.id]["video"] == "videos/06d501fd-a9ffc960.mov"
    assert lines[b1.id]["video"] == "videos/1a2b3c4d-00000001.mp4"  # .mov tried first, then .mp4


def test_bddx_split_fallback_by_video_and_not_listed(tmp_path: Path, tiny_mp4: Path) -> None:
    rows = STANDARD_ROWS[:2] + [bddx_row("c0ffee00-00000002", (1, 3, "The car turns left", "x"))]
    root = bddx_root(tmp_path, tiny_mp4, rows, {**STANDARD_VIDEOS, "c0ffee00-00000002": ".mov"})
    # row prefixes that do not match the CSV rows: matched by video id; listed in two files
    (root / "train.txt").write_text("7_06d501fd-a9ffc960\n9_1a2b3c4d-00000001\n")
    (root / "val.txt").write_text("8_1a2b3c4d-00000001\n")
    report = convert_bddx(root, root / "m.jsonl")
    splits = {r.id: r.split for r in load_manifest(report.manifest)}
    assert splits == {
        "bddx_1_06d501fd-a9ffc960_1": "train",
        "bddx_1_06d501fd-a9ffc960_2": "train",
        "bddx_2_1a2b3c4d-00000001_1": "val",  # the more held-out split wins
    }
    assert report.notes == Counter({"ambiguous_split": 1})
    assert report.reasons == Counter({"not_in_split": 1})
    # an explicit split ignores the split files
    report = convert_bddx(root, root / "m.jsonl", split="test")
    assert report.counts == Counter({("test", "normal"): 4})


def test_bddx_assigned_splits_keep_a_video_together(tmp_path: Path, tiny_mp4: Path) -> None:
    vids = [f"v{i}" for i in range(4)]
    rows = [bddx_row(v, (0, 2, "a", "b"), (2, 4, "c", "d")) for v in vids for _ in range(2)]
    root = bddx_root(tmp_path, tiny_mp4, rows, dict.fromkeys(vids, ".mov"))
    report = convert_bddx(root, root / "m.jsonl", val_fraction=0.25, test_fraction=0.25)
    recs = load_manifest(report.manifest)
    by_video: dict[str, set[str]] = {}
    for r in recs:
        by_video.setdefault(r.metadata["video_id"], set()).add(r.split)
    assert all(len(s) == 1 for s in by_video.values())  # 4 records of a video, one split
    assert sorted(s.pop() for s in by_video.values()) == ["test", "train", "train", "val"]
    assert report.counts == Counter(
        {("train", "normal"): 8, ("val", "normal"): 4, ("test", "normal"): 4}
    )


def test_bddx_missing_video_and_malformed(tmp_path: Path, tiny_mp4: Path) -> None:
    root = bddx_root(tmp_path, tiny_mp4, STANDARD_ROWS, {"06d501fd-a9ffc960": ".mov"})
    out = root / "m.jsonl"
    with pytest.raises(SourceError, match=r"line 3 \(row 2\): video not found .*00000001\.mov"):
        convert_bddx(root, out, split="train")
    report = convert_bddx(root, out, split="train", skip_missing=True)
    assert report.reasons == Counter(
        {"missing_video": 1, "no_video_name": 1, "no_actions": 1, "empty_row": 1}
    )
    assert report.n_records == 2

    bad = [bddx_row("06d501fd-a9ffc960", (1, 2, "a", "b"), ("abc", 5, "c", "d"))]
    root = bddx_root(tmp_path / "bad", tiny_mp4, bad, {"06d501fd-a9ffc960": ".mov"})
    with pytest.raises(
        SourceError, match=r"line 2 \(row 1\): column 'Answer.2start': not a number: 'abc'"
    ):
        convert_bddx(root, out, split="train")
    write_csv(
        root / "BDD-X-Annotations_v1.csv",
        BDDX_HEADER,
        [bddx_row("06d501fd-a9ffc960", (9, 4, "a", "b"))],
    )
    with pytest.raises(SourceError, match=r"column 'Answer.1end': end 4 s is before start 9 s"):
        convert_bddx(root, out, split="train")
    write_csv(root / "BDD-X-Annotations_v1.csv", ["Video"], [["x"]])
    with pytest.raises(SourceError, match=r"missing column 'Input.Video'"):
        convert_bddx(root, out)


# ---------------------------------------------------------------------------------- LingoQA


def lingoqa_root(tmp_path: Path, rows: list[dict], images: list[str]) -> Path:
    root = tmp_path / "lingoqa"
    root.mkdir(parents=True)
    for name in images:  # the converter only checks the images exist
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    pd.DataFrame(rows).to_parquet(root / "val.parquet")
    return root


A_IMAGES = ["images/val/segA/0.jpg", "images/val/segA/1.jpg"]
B_IMAGES = ["images/val/segB/0.jpg"]
LINGO_ROWS = [
    {
        "question_id": "q1",
        "segment_id": "segA",
        "images": A_IMAGES,
        "question": "What is the ego doing?",
        "answer": "Driving straight.",
    },
    {
        "question_id": "q2",
        "segment_id": "segA",
        "images": A_IMAGES,
        "question": "Any pedestrians?",
        "answer": "No.",
    },
    {
        "question_id": "q3",
        "segment_id": "segB",
        "images": B_IMAGES,
        "question": "Why stop?",
        "answer": "Red light.",
    },
    {
        "question_id": "q3",
        "segment_id": "segB",
        "images": B_IMAGES,
        "question": "Why stop?",
        "answer": "The light is red.",
    },
]


def test_lingoqa_records(tmp_path: Path) -> None:
    root = lingoqa_root(tmp_path, LINGO_ROWS, A_IMAGES + B_IMAGES)
    out = tmp_path / "out" / "lingo.jsonl"
    report = convert_lingoqa(root, out, split="test")
    assert (report.n_records, report.n_skipped) == (2, 0)
    lines = raw_lines(out)
    assert lines["lingoqa_segA"]["video"] == "../lingoqa/images/val/segA"
    assert lines["lingoqa_segA"]["metadata"]["frames"] == [
        "../lingoqa/images/val/segA/0.jpg",
        "../lingoqa/images/val/segA/1.jpg",
    ]
    recs = by_id(out, check_files=True)  # `video` is the frames' folder; each frame is checked
    a, b = recs["lingoqa_segA"], recs["lingoqa_segB"]
    assert (a.label, a.source, a.split, a.event_time) == ("normal", "lingoqa", "test", None)
    assert a.path("video").resolve() == (root / "images/val/segA").resolve()
    from PIL import Image

    from sce.data.clip import WindowSpec, load_clip

    for shade, name in zip((40, 200), A_IMAGES, strict=True):  # real pictures for the reader
        Image.new("RGB", (64, 48), (shade, shade, shade)).save(root / name, format="JPEG")
    clip = load_clip(a, WindowSpec(width=32, height=24))  # the dataset reads the image sequence
    assert clip.frames.shape == (2, 24, 32, 3) and clip.telemetry is None
    assert abs(clip.frames[0].mean() - 40) < 3 and abs(clip.frames[1].mean() - 200) < 3
    assert all(
        (out.parent / p).resolve() == (root / q).resolve()
        for p, q in zip(a.metadata["frames"], A_IMAGES, strict=True)
    )
    # free-text pairs: open questions (open_qa, scored by ROUGE-L and BERTScore), not vqa
    assert a.annotations == {
        "qa": [
            {
                "type": "open",
                "question_id": "q1",
                "question": "What is the ego doing?",
                "answer": "Driving straight.",
            },
            {"type": "open", "question_id": "q2", "question": "Any pedestrians?", "answer": "No."},
        ]
    }
    from sce.tasks import available_tasks, item_parts

    assert available_tasks(a.label, a.annotations) == ["mcq", "probability", "open_qa"]
    assert item_parts("open_qa", a.label, a.annotations) == [0, 1]
    assert b.annotations["qa"] == [
        {
            "type": "open",
            "question_id": "q3",
            "question": "Why stop?",
            "answer": "Red light.",
            "answers": ["Red light.", "The light is red."],
        }
    ]


def test_lingoqa_missing_images_and_malformed(tmp_path: Path) -> None:
    root = lingoqa_root(tmp_path, LINGO_ROWS, A_IMAGES)  # segB's image missing
    out = tmp_path / "m.jsonl"
    with pytest.raises(
        SourceError, match=r"row 2 \(0-based\): segment 'segB': image not found: .*segB/0\.jpg"
    ):
        convert_lingoqa(root / "val.parquet", out)
    report = convert_lingoqa(root, out, skip_missing=True, split="train")
    assert (report.n_records, report.reasons) == (1, Counter({"missing_frames": 1}))

    pd.DataFrame([{k: v for k, v in LINGO_ROWS[0].items() if k != "answer"}]).to_parquet(
        root / "val.parquet"
    )
    with pytest.raises(SourceError, match=r"val\.parquet: missing column 'answer'"):
        convert_lingoqa(root, out)
    pd.DataFrame([{**LINGO_ROWS[0], "images": "images/val/segA/0.jpg"}]).to_parquet(
        root / "val.parquet"
    )
    with pytest.raises(
        SourceError, match=r"row 0 \(0-based\): column 'images': expected a non-empty list"
    ):
        convert_lingoqa(root, out)
    pd.DataFrame([{**LINGO_ROWS[1], "question": " "}]).to_parquet(root / "val.parquet")
    with pytest.raises(SourceError, match=r"row 0 \(0-based\): column 'question'"):
        convert_lingoqa(root, out)


# ---------------------------------------------------------------------------------- private

IMU_HEADER = ["t", "ax", "ay", "az", "gx", "gy", "gz"]


def private_root(tmp_path: Path, tiny_mp4: Path, rows: list[list[object]]) -> Path:
    root = tmp_path / "fleet"
    write_csv(root / "labels.csv", ["id", "label", "event_time", "split"], rows)
    for name in ("clip_a", "clip_b", "clip_c", "clip_d"):
        put(tiny_mp4, root / "videos" / f"{name}.mp4")
    for name in ("clip_a", "clip_b"):
        write_csv(root / "imu" / f"{name}.csv", IMU_HEADER, [[0.0, 0, 0, 9.81, 0, 0, 0]])
    write_csv(root / "gps" / "clip_a.csv", ["t", "speed"], [[0.0, 10.0]])
    return root


PRIVATE_ROWS = [
    ["clip_a", "collision", 4.5, ""],
    ["clip_b", "Near-Collision", "", "val"],
    ["clip_c", "normal", "", ""],
]


def test_private_records(tmp_path: Path, tiny_mp4: Path) -> None:
    root = private_root(tmp_path, tiny_mp4, PRIVATE_ROWS)
    out = tmp_path / "m" / "private.jsonl"
    report = convert_private(root, out, val_fraction=0.0, test_fraction=0.0)
    assert report.notes == Counter({"no_imu": 1, "no_gps": 2, "unlabeled_video": 1})
    recs = by_id(out)
    assert list(recs) == ["clip_a", "clip_b", "clip_c"]
    a, b, c = recs.values()
    assert (a.label, a.event_time, a.split, a.source) == ("collision", 4.5, "train", "private")
    assert (b.label, b.event_time, b.split) == ("near_collision", None, "val")
    assert (c.label, c.imu, c.gps) == ("normal", None, None)
    lines = raw_lines(out)
    assert (lines["clip_a"]["video"], lines["clip_a"]["imu"], lines["clip_a"]["gps"]) == (
        "../fleet/videos/clip_a.mp4",
        "../fleet/imu/clip_a.csv",
        "../fleet/gps/clip_a.csv",
    )
    assert (lines["clip_b"]["imu"], lines["clip_b"]["gps"]) == ("../fleet/imu/clip_b.csv", None)


def test_private_required_telemetry_and_malformed(tmp_path: Path, tiny_mp4: Path) -> None:
    root = private_root(tmp_path, tiny_mp4, PRIVATE_ROWS)
    out = tmp_path / "m.jsonl"
    with pytest.raises(SourceError, match=r"labels\.csv line 4: imu not found: .*clip_c\.csv"):
        convert_private(root, out, require_imu=True)
    report = convert_private(root, out, require_imu=True, skip_missing=True)
    assert (report.n_records, report.reasons) == (2, Counter({"missing_imu": 1}))

    write_csv(root / "imu" / "clip_b.csv", IMU_HEADER[:-1], [[0.0, 0, 0, 9.81, 0, 0]])
    with pytest.raises(SourceError, match=r"clip_b\.csv: missing column 'gz'"):
        convert_private(root, out)


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        (["clip_a", "crash", "", ""], r"line 2: column 'label': unknown label 'crash'"),
        (["clip_a", "normal", "-1", ""], r"line 2: column 'event_time': expected seconds >= 0"),
        (["clip_a", "normal", "", "dev"], r"line 2: column 'split': unknown split 'dev'"),
        (["clip_x", "normal", "", ""], r"line 2: video not found: .*clip_x\.mp4"),
    ],
)
def test_private_malformed_rows(tmp_path: Path, tiny_mp4: Path, row: list, pattern: str) -> None:
    root = private_root(tmp_path, tiny_mp4, [row])
    with pytest.raises(SourceError, match=pattern):
        convert_private(root, tmp_path / "m.jsonl")


# ------------------------------------------------------------------------- splits and report


def seeded_splits(groups: dict[str, str], seed: int, val: float, test: float) -> dict[str, str]:
    """The converters' assignment: one split per group, seeded (`sce.prepare.splits.assign_splits`)."""
    names = assign_splits(list(groups.values()), (1 - val - test, val, test), seed, list(groups))
    return dict(zip(groups, names, strict=True))


def test_assign_splits_counts_largest_remainder_and_independence() -> None:
    groups = {f"c{i:02d}": "collision" for i in range(20)} | {f"n{i}": "normal" for i in range(10)}
    splits = seeded_splits(groups, seed=0, val=0.05, test=0.2)
    counts = Counter((groups[g], s) for g, s in splits.items())
    # collision: 20 * 0.2 = 4 test, 20 * 0.05 = 1 val; normal: 7.5 / 0.5 / 2 -> 8 / 0 / 2 by
    # largest remainder, then val takes one clip (every asked split gets each class of >= 3)
    assert counts == Counter(
        {
            ("collision", "test"): 4,
            ("collision", "val"): 1,
            ("collision", "train"): 15,
            ("normal", "test"): 2,
            ("normal", "val"): 1,
            ("normal", "train"): 7,
        }
    )
    only_collision = {g: lab for g, lab in groups.items() if lab == "collision"}
    again = seeded_splits(only_collision, seed=0, val=0.05, test=0.2)
    assert again == {g: splits[g] for g in only_collision}  # other labels do not move these
    assert seeded_splits(groups, seed=1, val=0.05, test=0.2) != splits  # the seed draws
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction must be < 1"):
        fill_splits([], seed=0, val_fraction=0.5, test_fraction=0.5)


@pytest.mark.parametrize(
    ("sizes", "fractions", "expected"),
    [
        # 30 clips at 90/5/5: 27 / 1.5 / 1.5 -> 27 / 2 / 1 (rounding each split half up on its
        # own, the converters' old rule, gave 26 / 2 / 2: train lost a clip to rounding)
        ({"collision": 30}, (0.9, 0.05, 0.05), {"collision": (27, 2, 1)}),
        # a class with one clip per asked split gets one in each; two clips cannot
        (
            {"collision": 3, "normal": 2},
            (0.9, 0.05, 0.05),
            {"collision": (1, 1, 1), "normal": (2, 0, 0)},
        ),
        # 10 per class at 60/20/20 (the synthetic default): exactly 6 / 2 / 2 each
        (
            {"collision": 10, "near_collision": 10, "normal": 10},
            (0.6, 0.2, 0.2),
            {"collision": (6, 2, 2), "near_collision": (6, 2, 2), "normal": (6, 2, 2)},
        ),
        # a zero fraction asks for no split: nothing goes there, even on a tiny set
        ({"normal": 4}, (0.8, 0.2, 0.0), {"normal": (3, 1, 0)}),
    ],
)
def test_one_split_assigner_counts_per_split_per_class(
    sizes: dict[str, int], fractions: tuple, expected: dict[str, tuple]
) -> None:
    labels = [label for label, n in sizes.items() for _ in range(n)]
    for seed in (None, 0, 7):  # the synthetic generator's order, the converters' seeded shuffle
        keys = [f"k{i:03d}" for i in range(len(labels))]
        splits = assign_splits(labels, fractions, seed, keys)
        counts = Counter(zip(labels, splits, strict=True))
        got = {lab: tuple(counts[(lab, s)] for s in ("train", "val", "test")) for lab in sizes}
        assert got == expected


def test_prepare_names_both_records_of_a_duplicate_id(tmp_path: Path, tiny_mp4: Path) -> None:
    # ids 7 and 7.0 are one Nexar clip (pandas writes "7.0"): two rows, one record id
    root = kaggle_root(
        tmp_path, tiny_mp4, [[7, 2.0, 1.0, 1], [8, "", "", 0], ["7.0", "", "", 0]], [7, 8]
    )
    csv_path = root / "train.csv"
    with pytest.raises(SourceError) as err:
        prepare("nexar", root, tmp_path / "m.jsonl", split="train")
    assert str(err.value) == (
        f"nexar: {csv_path} line 4, id 'nexar_00007': duplicate record id "
        f"(first at {csv_path} line 2)"
    )
    assert not (tmp_path / "m.jsonl").exists()  # nothing written


def test_report_summary_table() -> None:
    report = ConversionReport("nexar", Path("m.jsonl"), n_records=4)
    report.counts.update({("train", "collision"): 2, ("train", "normal"): 1, ("val", "normal"): 1})
    report.skip("missing_video")
    report.notes["ambiguous_split"] += 2
    assert report.summary().splitlines() == [
        "nexar: wrote 4 records to m.jsonl",
        "split  collision  near_collision  normal  total",
        "train          2               0       1      3",
        "val            0               0       1      1",
        "test           0               0       0      0",
        "total          2               0       2      4",
        "skipped 1: missing_video=1",
        "notes: ambiguous_split=2",
    ]


# ------------------------------------------------------------------------ registry and CLI


def test_registry_and_prepare(tmp_path: Path, tiny_mp4: Path) -> None:
    assert set(SOURCES) == {
        "nexar",
        "nexar_hf",
        "bddx",
        "lingoqa",
        "private",
        "synthetic",
        "comma2k19",
        "gopro",
    }
    assert SOURCES["bddx"] is bddx_records
    assert convert_bddx.func is prepare and convert_bddx.args == ("bddx",)
    root = kaggle_root(tmp_path, tiny_mp4, [[1, 2.0, 1.0, 1]])
    report = prepare("nexar", root, tmp_path / "m.jsonl", split="train")
    assert report.counts == Counter({("train", "event"): 1})
    with pytest.raises(ValueError, match="unknown source 'kitti'"):
        prepare("kitti", root, tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match="source 'nexar' has no option 'positive_label'"):
        prepare("nexar", root, tmp_path / "m.jsonl", positive_label="collision")


def test_prepare_command(
    tmp_path: Path, tiny_mp4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = kaggle_root(tmp_path, tiny_mp4, [[1, 2.0, 1.0, 1], [2, "", "", 0]], videos=[1])
    parser = add_prepare_arguments(argparse.ArgumentParser())
    out = tmp_path / "m.jsonl"
    argv = ["--source", "nexar", "--root", str(root), "--out", str(out), "--split", "val"]
    args = parser.parse_args([*argv, "--skip-missing", "-o", "video_dir=train"])
    assert prepare_command(args) == 0
    text = capsys.readouterr().out
    assert "split  collision  near_collision  event  normal  total" in text
    assert "val            0               0      1       0      1" in text
    assert "skipped 1: missing_video=1" in text
    assert list(by_id(out)) == ["nexar_00001"]
    assert prepare_command(parser.parse_args(argv)) == 2  # missing video without --skip-missing
    assert "line 3: video not found" in capsys.readouterr().err
    assert prepare_command(parser.parse_args([*argv, "-o", "colour=red"])) == 2
    assert "no option 'colour'" in capsys.readouterr().err


def test_synthetic_wrapper_rewrites_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    def fake_generate(out_dir: Path, clips: int = 60, seed: int = 0, **kwargs: object) -> Path:
        calls.append({"clips": clips, "seed": seed, **kwargs})
        (out_dir / "videos").mkdir(parents=True)
        (out_dir / "imu").mkdir()
        (out_dir / "videos" / "s0.mp4").write_bytes(b"")
        (out_dir / "imu" / "s0.csv").write_text("t,ax,ay,az,gx,gy,gz\n")
        rec = ClipRecord(
            "s0", "videos/s0.mp4", "collision", "synthetic", "val", imu="imu/s0.csv", event_time=8.0
        )
        return write_manifest([rec], out_dir / "manifest.jsonl")

    monkeypatch.setitem(
        sys.modules,
        "sce.prepare.synthetic",
        types.SimpleNamespace(generate_synthetic_dataset=fake_generate),
    )
    out = tmp_path / "manifests" / "syn.jsonl"
    report = prepare(
        "synthetic", tmp_path / "data", out, clips=3, seed=5, val_fraction=0.2, test_fraction=0.1
    )
    assert calls == [{"clips": 3, "seed": 5, "split_fractions": (0.7, 0.2, 0.1)}]
    assert report.counts == Counter({("val", "collision"): 1})
    line = raw_lines(out)["s0"]
    assert (line["video"], line["imu"], line["event_time"]) == (
        "../data/videos/s0.mp4",
        "../data/imu/s0.csv",
        8.0,
    )
    convert_synthetic(tmp_path / "data2", out, split="test")
    assert raw_lines(out)["s0"]["split"] == "test"


def test_synthetic_with_the_real_generator(tmp_path: Path) -> None:
    pytest.importorskip("sce.prepare.synthetic")
    out = tmp_path / "manifests" / "syn.jsonl"
    report = prepare(
        "synthetic",
        tmp_path / "data",
        out,
        clips=3,
        duration=6.0,
        fps=5,
        width=64,
        height=36,
        progress=False,
    )
    recs = load_manifest(out)  # check_files=True: the rewritten paths resolve
    assert report.n_records == 3
    assert sorted(r.label for r in recs) == ["collision", "near_collision", "normal"]
    assert all(raw_lines(out)[r.id]["video"].startswith("../data/") for r in recs)


# ------------------------------------------------------------- manifests unchanged by prepare()


def _placeholder(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")  # converters only check that a video exists


def _nexar_layout(root: Path, n: int) -> None:
    rows = [[i, *([3.0, 2.0, 1] if i % 3 == 0 else ["", "", 0])] for i in range(n)]
    write_csv(root / "train.csv", KAGGLE_HEADER, rows)
    for i in range(n):
        _placeholder(root / "train" / f"{i:05d}.mp4")


def _private_layout(root: Path, n: int) -> None:
    rows = []
    for i in range(n):
        label = "collision" if i % 10 == 0 else "near_collision" if i % 4 == 0 else "normal"
        event_time = 4.0 if label != "normal" else ""
        rows.append([f"c{i:04d}", label, event_time, "test" if i % 17 == 0 else ""])
        _placeholder(root / "videos" / f"c{i:04d}.mp4")
    write_csv(root / "labels.csv", ["id", "label", "event_time", "split"], rows)


def _bddx_layout(root: Path, n: int) -> None:
    header = ["Input.Video"] + [
        f"Answer.{k}{c}" for k in (1, 2) for c in ("start", "end", "action", "justification")
    ]
    row = [1, 3, "The car slows", "because a light", 4, 6, "It stops", "red light"]
    write_csv(
        root / "BDD-X-Annotations_v1.csv",
        header,
        [[f"https://x/v{i:03d}.mov", *row] for i in range(n)],
    )
    for i in range(n):
        _placeholder(root / "videos" / f"v{i:03d}.mov")


@pytest.mark.parametrize(
    ("source", "layout", "n", "fractions", "sha256"),
    [
        ("nexar", _nexar_layout, 100, {}, "2f4c721b114d070e2c02c4d06d5eed7c"),
        ("bddx", _bddx_layout, 60, {}, "24cfea695279d3a9872ed64900b7db24"),
        (
            "private",
            _private_layout,
            300,
            {"val_fraction": 0.05, "test_fraction": 0.2},
            "f65cb276739b4036ab508e3a2e2a6105",
        ),
    ],
)
def test_prepare_writes_the_manifests_the_converters_wrote(
    tmp_path: Path,
    source: str,
    layout: Callable[[Path, int], None],
    n: int,
    fractions: dict,
    sha256: str,
) -> None:
    """Byte-identical to the manifests of the per-converter code before `prepare` (hashes taken
    from it): assigned splits, groups (BDD-X videos) and a split column. Sizes where the old
    half-up rounding and the one assigner's largest remainder agree."""
    root = tmp_path / "d" / f"{source}{n}"
    layout(root, n)
    out = tmp_path / "o" / "manifest.jsonl"
    prepare(source, root, out, seed=0, **fractions)
    assert hashlib.sha256(out.read_bytes()).hexdigest()[:32] == sha256


def test_synthetic_with_only_a_val_fraction_asks_for_no_test_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generator splits with (0.5, 0.5, 0): prepare's empty-split warning must not ask for
    test clips it was never going to get (the missing fraction is 0 for the generator)."""
    calls: list[tuple] = []

    def fake_generate(out_dir: Path, clips: int, seed: int, split_fractions: tuple) -> Path:
        calls.append(split_fractions)
        (out_dir / "videos").mkdir(parents=True)
        records = []
        for name, split in (("a", "train"), ("b", "val")):
            (out_dir / "videos" / f"{name}.mp4").write_bytes(b"")
            records.append(ClipRecord(name, f"videos/{name}.mp4", "normal", "synthetic", split))
        return write_manifest(records, out_dir / "manifest.jsonl")

    fake = types.SimpleNamespace(generate_synthetic_dataset=fake_generate)
    monkeypatch.setitem(sys.modules, "sce.prepare.synthetic", fake)
    report = prepare("synthetic", tmp_path / "data", tmp_path / "m.jsonl", val_fraction=0.5)
    assert calls == [(0.5, 0.5, 0.0)]
    assert report.counts == Counter({("train", "normal"): 1, ("val", "normal"): 1})
    assert report.warnings == []
