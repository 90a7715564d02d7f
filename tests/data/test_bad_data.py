"""Bad input never reaches a batch unnamed (issue 14): each test builds the bad input the issue
describes and asserts the error naming file, line, record id and field, or the counted skip."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sce.data.clip import WindowSpec
from sce.data.collate import Collator
from sce.data.dataset import SceDataset
from sce.data.imu import FrameTelemetry
from sce.data.schema import ClipRecord, ManifestError, load_manifest
from sce.prepare.validate import validate_manifest


def _row(i: int, **annotations) -> dict:
    return {
        "id": f"clip{i}",
        "video": "clip.mp4",
        "label": "collision",
        "source": "private",
        "split": "train",
        "annotations": annotations,
    }


def _manifest(folder: Path, lines: list[str]) -> Path:
    """manifest.jsonl in `folder` (with the clip.mp4 every row points to)."""
    (folder / "clip.mp4").write_bytes(b"x")
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------ point 2: probability in [0, 1]
PROBABILITIES = [  # the values, as raw JSON text (Python's json reads NaN)
    ("NaN", "must be finite, got nan"),
    ("1e20", "must be within [0, 1], got 1e+20"),
    ("87", "must be within [0, 1] (a percentage?), got 87"),
]


@pytest.mark.parametrize(("value", "detail"), PROBABILITIES)
def test_probability_outside_unit_interval_is_named_at_load(tmp_path, value, detail) -> None:
    line = json.dumps(_row(1, probability=0.5)).replace(
        '"probability": 0.5', f'"probability": {value}'
    )
    path = _manifest(tmp_path, [json.dumps(_row(0, probability=0.25)), line])
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(err.value) == (
        f"{path} line 2, id 'clip1': field 'annotations.probability': {detail}"
    )


def test_validate_reports_every_bad_probability(tmp_path) -> None:
    lines = [json.dumps(_row(0, probability=0.25))]
    for i, (value, _) in enumerate(PROBABILITIES, start=1):
        row = json.dumps(_row(i, probability=0.5))
        lines.append(row.replace('"probability": 0.5', f'"probability": {value}'))
    report = validate_manifest(_manifest(tmp_path, lines), decode=False)
    assert report.problems["schema: annotations.probability"] == 3
    assert report.examples["schema: annotations.probability"] == [
        f"line {i + 2}, id 'clip{i + 1}': {detail}" for i, (_, detail) in enumerate(PROBABILITIES)
    ]


# ------------------------------------------------------------------ point 1: annotation fields
BAD_ANNOTATIONS = [  # (annotations, field, detail): the cases and their neighbours
    ({"vqa": "x"}, "vqa", "expected a list of {question, answer} objects, got a string 'x'"),
    ({"vqa": [{"question": "Wet road?"}]}, "vqa", "item 0: missing 'answer'"),
    (
        {"vqa": [{"question": "Q?", "answer": "A"}, {"question": "Q?", "answer": 2}]},
        "vqa",
        "item 1: 'answer': expected a string, got int 2",
    ),
    (
        {"vqa": [{"question": "Q?", "answer": "A", "options": "A or B"}]},
        "vqa",
        "item 0: 'options': expected a list of strings or an object of strings, "
        "got a string 'A or B'",
    ),
    ({"vqa": ["Q?"]}, "vqa", "item 0: expected an object, got a string 'Q?'"),
    ({"probability": "high"}, "probability", "expected a number, got a string 'high'"),
    ({"caption": 5}, "caption", "expected a string, got int 5"),
    ({"caption": ["a", "b"]}, "caption", "expected a string, got a list ['a', 'b']"),
    ({"reasoning": {"answer": "A"}}, "reasoning", "an object without 'think'"),
    ({"reasoning": {"think": 1}}, "reasoning", "'think': expected a string, got int 1"),
    ({"reasoning": ["step"]}, "reasoning", "expected a string, got a list ['step']"),
    ({"instruction": {"text": "Brake."}}, "instruction", "expected a string, got an object"),
    # issue 25: the teacher's QA pairs and paper 001's reasoning VQA are now trained
    (
        {"qa": [{"type": "multiple", "question": "Q?", "answer": "A"}]},
        "qa",
        "item 0: 'type': expected one of ['open', 'closed'], got 'multiple'",
    ),
    ({"qa": [{"type": "closed", "question": "Wet road?"}]}, "qa", "item 0: missing 'answer'"),
    (
        {
            "reasoning_vqa": {
                "question": "Q?",
                "options": ["a", "b"],
                "answer": "C",
                "reasons": ["r"],
            }
        },
        "reasoning_vqa",
        "item 0: 'answer': expected one of ['A', 'B'], got 'C'",
    ),
    (
        {"reasoning_vqa": {"question": "Q?", "options": ["a", "b"], "answer": "A", "reasons": []}},
        "reasoning_vqa",
        "item 0: 'reasons': expected a non-empty list, got a list []",
    ),
    ({"structured_caption": 3}, "structured_caption", "expected a string, got int 3"),
]


@pytest.mark.parametrize(("annotations", "field", "detail"), BAD_ANNOTATIONS)
def test_malformed_annotation_is_named_at_load(tmp_path, annotations, field, detail) -> None:
    good = _row(0, caption="A car brakes.", vqa=[{"question": "Q?", "answer": "B"}])
    path = _manifest(tmp_path, [json.dumps(good), json.dumps(_row(1, **annotations))])
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(err.value).startswith(
        f"{path} line 2, id 'clip1': field 'annotations.{field}': {detail}"
    )
    assert (err.value.field, err.value.where) == (
        f"annotations.{field}",
        f"{path} line 2, id 'clip1'",
    )


def test_well_formed_annotations_load(tmp_path) -> None:
    rows = [
        _row(0, caption="A car brakes.", instruction="Keep distance.", probability=0.75),
        _row(1, vqa=[{"question": "Q?", "answer": "B", "options": ["x", "y"]}]),
        _row(2, vqa=[{"question": "Q?", "answer": "A", "options": {"A": "x", "B": "y"}}]),
        _row(3, reasoning="The car ahead brakes.", caption=None),
        _row(4, reasoning={"think": "It brakes.", "answer": "A"}, provenance={"vqa": {}}),
        _row(
            5,
            qa=[{"type": "closed", "question": "Wet?", "answer": "no", "question_id": "q1"}],
            reasoning_vqa=[
                {"question": "Q?", "options": ["a", "b"], "answer": "b", "reasons": ["r"]}
            ],
            structured_caption="Clear day.",
        ),
    ]
    records = load_manifest(_manifest(tmp_path, [json.dumps(r) for r in rows]))
    assert [r.problem for r in records] == [""] * 6


def test_validate_reports_malformed_annotations(tmp_path) -> None:
    lines = [json.dumps(_row(i + 1, **a)) for i, (a, _, _) in enumerate(BAD_ANNOTATIONS)]
    report = validate_manifest(_manifest(tmp_path, [json.dumps(_row(0))] + lines), decode=False)
    schema = {k: v for k, v in report.problems.items() if k.startswith("schema")}
    assert schema == {
        "schema: annotations.vqa": 5,
        "schema: annotations.probability": 1,
        "schema: annotations.caption": 2,
        "schema: annotations.reasoning": 3,
        "schema: annotations.instruction": 1,
        "schema: annotations.qa": 2,
        "schema: annotations.reasoning_vqa": 2,
        "schema: annotations.structured_caption": 1,
    }
    assert report.examples["schema: annotations.vqa"][:2] == [
        "line 2, id 'clip1': expected a list of {question, answer} objects, got a string 'x'",
        "line 3, id 'clip2': item 0: missing 'answer'",
    ]
    assert "no problems" not in report.table()


def test_malformed_annotations_are_skipped_and_counted(
    synthetic_manifest, tmp_path, tiny_processor
) -> None:
    """Under data.on_bad_sample=skip the record loads with its problem, and every one of its
    samples is skipped: the collator counts them as data/train_skipped."""
    from sce.data.datamodule import SceDataModule

    rows = [
        r.to_json() | {"video": str(r.path("video")), "imu": None, "gps": None}
        for r in load_manifest(synthetic_manifest, splits=["train"])
    ][:3]
    rows[1]["annotations"] = {"vqa": [{"question": "Wet road?"}], "caption": "A crash."}
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ManifestError, match="line 2, id '.*': field 'annotations.vqa'"):
        load_manifest(path)
    data = SceDataModule(
        str(path),
        processor_path="unused",
        on_bad_sample="skip",
        task_weights={"mcq": 1.0, "caption": 1.0},
    )
    data.processor = object()  # the samples below are never batched
    with pytest.warns(
        UserWarning, match=r"1 train record\(s\) with malformed annotations or metadata"
    ):
        records = data.split_records("train")
    assert [bool(r.problem) for r in records] == [False, True, False]
    assert "field 'annotations.vqa': item 0: missing 'answer'" in records[1].problem
    spec = WindowSpec(fps=3.0, before=4.0, after=2.0, width=112, height=56)
    weights = {"mcq": 1.0, "caption": 1.0}
    skipping = SceDataset(records, spec, train=True, task_weights=weights, on_bad_sample="skip")
    assert [(i.record, i.task) for i in skipping.items][2:4] == [(1, "mcq"), (1, "caption")]
    samples = [skipping[i] for i in (0, 2, 3)]
    assert samples[1] is None and samples[2] is None and samples[0].id == records[0].id
    assert Collator(tiny_processor)(samples)["skipped"] == 2  # logged as data/train_skipped
    strict = SceDataset(records, spec, train=True, task_weights=weights)
    with pytest.raises(ManifestError, match="field 'annotations.vqa': item 0: missing 'answer'"):
        strict[2]


# ------------------------------------------------------------------ point 6: non-UTF-8 lines
def _latin1_manifest(folder: Path) -> Path:
    """12 good lines, then line 13 with a Latin-1 "é" (byte 0xE9) in its caption."""
    path = _manifest(folder, [json.dumps(_row(i)) for i in range(12)])
    caption = json.dumps(_row(12, caption="Caf\u00e9 corner"), ensure_ascii=False)
    with path.open("ab") as handle:
        handle.write(caption.encode("latin-1") + b"\n")
    return path


def test_invalid_utf8_line_is_named_at_load(tmp_path) -> None:
    path = _latin1_manifest(tmp_path)
    byte = path.read_bytes().splitlines()[12].index(b"\xe9")
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(err.value) == f"{path} line 13: not valid UTF-8 at byte {byte}"


def test_invalid_utf8_line_is_reported_by_validate(tmp_path) -> None:
    path = _latin1_manifest(tmp_path)
    byte = path.read_bytes().splitlines()[12].index(b"\xe9")
    report = validate_manifest(path, decode=False)
    assert report.records == 13
    assert report.problems["not valid UTF-8"] == 1
    assert report.examples["not valid UTF-8"] == [f"line 13: not valid UTF-8 at byte {byte}"]


def test_invalid_utf8_line_is_named_in_fit(tmp_path) -> None:
    """The datamodule loads its split through load_manifest: same error, before any batch."""
    from sce.data.datamodule import SceDataModule

    path = _latin1_manifest(tmp_path)
    data = SceDataModule(str(path), processor_path="unused")
    with pytest.raises(ManifestError, match=r"manifest.jsonl line 13: not valid UTF-8 at byte"):
        data.split_records("train")


# ------------------------------------------------------------------ point 4: physical telemetry
SPEC = WindowSpec(fps=3.0, before=4.0, after=2.0, width=112, height=56)
NON_FINITE_TEXT = re.compile(r"\b(nan|inf|infinity)\b", re.IGNORECASE)


def _with_telemetry(record, folder: Path, imu=None, gps=None):
    """A copy of `record` (absolute paths) whose IMU / GPS tables are changed by `imu(df)` /
    `gps(df)` and written to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, change in (("imu", imu), ("gps", gps)):
        table = pd.read_csv(record.path(name))
        if change is not None:
            change(table)
        table.to_csv(folder / f"{name}.csv", index=False)
        paths[name] = str(folder / f"{name}.csv")
    return dataclasses.replace(record, video=str(record.path("video")), **paths)


def _prompt_text(sample) -> str:
    return "".join(c.get("text", "") for c in sample.user_content)


def _at_event(table: pd.DataFrame, record, column: str, value: float) -> None:
    table.loc[(table["t"] - record.event_time).abs().idxmin(), column] = value


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("ax", 1e308, "column 'ax': 1e+308 m/s² is beyond the physical bound 200 m/s²"),
        ("ay", float("inf"), "column 'ay': inf m/s² is beyond the physical bound 200 m/s²"),
        ("gz", -900.0, "column 'gz': -900 rad/s is beyond the physical bound 50 rad/s"),
    ],
)
def test_unphysical_imu_never_reaches_a_prompt(
    synthetic_manifest, tmp_path, tiny_processor, column, value, reason
) -> None:
    """The issue's 1e308 overflowed the block mean into `ax +inf`: now the IMU is unavailable,
    with the reason, and counted as data/*_imu_unavailable."""
    record = load_manifest(synthetic_manifest)[0]
    bad = _with_telemetry(record, tmp_path, imu=lambda t: _at_event(t, record, column, value))
    sample = SceDataset([bad], SPEC, train=False)[0]
    assert not sample.imu_on and reason in sample.meta["imu_reason"]
    assert sample.meta["imu_reason"].startswith(f"imu unreadable: {tmp_path / 'imu.csv'}: line ")
    assert NON_FINITE_TEXT.search(_prompt_text(sample)) is None
    assert Collator(tiny_processor)([sample])["imu_unavailable"] == 1


def test_prompts_of_messy_telemetry_never_show_nan_or_inf(synthetic_manifest, tmp_path) -> None:
    """NaN gaps (bridged or not), 1e308 and inf: every evaluation prompt of every record reads
    finite numbers or 'unavailable'; and a FrameTelemetry holding NaN cannot be built."""
    records = load_manifest(synthetic_manifest)
    changes = [
        None,  # untouched
        lambda t: t.loc.__setitem__((slice(300, 302), "ax"), float("nan")),  # bridged gap
        lambda t: t.loc.__setitem__((slice(None), "ay"), float("nan")),  # all NaN
        lambda t: t.loc.__setitem__((450, "az"), 1e308),
    ]
    messy = [
        _with_telemetry(r, tmp_path / r.id, imu=change)
        for r, change in zip(records, changes, strict=False)
    ]
    dataset = SceDataset(messy, SPEC, train=False, eval_tasks=("mcq",))
    samples = [dataset[i] for i in range(len(dataset))]
    assert [s.imu_on for s in samples] == [True, True, False, False]
    assert all(NON_FINITE_TEXT.search(_prompt_text(s)) is None for s in samples)
    frames = np.zeros(3)
    with pytest.raises(ValueError, match="telemetry field 'yaw_delta' holds non-finite"):
        FrameTelemetry(frames, np.zeros((3, 3)), np.array([0.0, np.nan, 0.0]), None)


# ------------------------------------------------------------------ point 5: GPS counted
def _speed_shown(sample) -> bool:
    return " m/s\n" in _prompt_text(sample) or " m/s," in _prompt_text(sample)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda t: t.drop(t.index[1:], inplace=True), "column 't': needs at least 2 samples"),
        (lambda t: t.loc.__setitem__((3, "speed"), 150.0), "150 m/s is beyond the physical"),
        (lambda t: t.loc.__setitem__((slice(1, 6), "speed"), np.nan), "gps unusable: "),
    ],
    ids=["one_row", "beyond_bound", "long_gap"],
)
def test_gps_problems_are_named_and_counted(
    synthetic_manifest, tmp_path, tiny_processor, change, reason
) -> None:
    """The issue's one-row GPS file silently removed speed from the prompt: now the reason is
    in the sample's meta and the batch counts it (logged as data/<stage>_gps_unavailable)."""
    from sce.data.collate import DATA_PROBLEM_COUNTS

    record = load_manifest(synthetic_manifest)[0]
    clean = SceDataset([_with_telemetry(record, tmp_path / "clean")], SPEC, train=False)[0]
    bad = _with_telemetry(record, tmp_path / "bad", gps=change)
    sample = SceDataset([bad], SPEC, train=False)[0]
    assert clean.meta["gps_reason"] == "" and _speed_shown(clean)
    assert (
        reason in sample.meta["gps_reason"]
        and str(tmp_path / "bad" / "gps.csv") in (sample.meta["gps_reason"])
    )
    assert sample.imu_on and not _speed_shown(sample)  # the IMU stays, without speed
    batch = Collator(tiny_processor)([clean, sample])
    assert (batch["gps_unavailable"], batch["imu_unavailable"]) == (1, 0)
    assert "gps_unavailable" in DATA_PROBLEM_COUNTS  # SceModule logs every one of these


# ------------------------------------------------------------------ point 10: paths from manifests
def test_unreadable_telemetry_reasons_quote_no_file_content(tmp_path) -> None:
    """The issue pointed `imu` at /etc/passwd: its first line showed up in the reason (and the
    frame cache). Reasons now name file, line and column, never the content."""
    from sce.data.clip import load_record_imu

    secret = "root:x:0:0:root:/root:/bin/bash"
    cases = {
        "passwd.csv": f"{secret}\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n",
        "cell.csv": f"t,ax,ay,az,gx,gy,gz\n0,0,0,9.8,0,0,0\n0.01,{secret},0,9.8,0,0,0\n",
        "binary.csv": "",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "binary.csv").write_bytes(b"t,ax\n" + secret.encode() + b"\xff\xfe" * 50)
    reasons = {}
    for name in cases:
        record = ClipRecord(
            "clip0", "clip.mp4", "normal", "private", "train", imu=name, root=str(tmp_path)
        )
        reasons[name] = load_record_imu(record)[1]
    assert reasons == {
        "passwd.csv": f"imu unreadable: {tmp_path / 'passwd.csv'}: the header lacks "
        "column(s) ['t', 'ax', 'ay', 'az', 'gx', 'gy', 'gz']; expected "
        "['t', 'ax', 'ay', 'az', 'gx', 'gy', 'gz']",
        "cell.csv": f"imu unreadable: {tmp_path / 'cell.csv'}: line 3, column 'ax': not a number",
        "binary.csv": f"imu unreadable: {tmp_path / 'binary.csv'}: not a UTF-8 text (CSV) file",
    }
    assert not any("root" in r.replace(str(tmp_path), "") for r in reasons.values())


def test_allowed_roots_refuse_files_outside(tmp_path) -> None:
    data_root = tmp_path / "datasets"
    data_root.mkdir()
    (data_root / "clip.mp4").write_bytes(b"x")
    (data_root / "clip.csv").write_text("t,ax\n")
    (data_root / "escape.csv").symlink_to(tmp_path / "outside.csv")
    (tmp_path / "outside.csv").write_text("t,ax\n")
    rows = [
        {**_row(0), "video": str(data_root / "clip.mp4"), "imu": "datasets/clip.csv"},
        {**_row(1), "video": "datasets/clip.mp4", "imu": "datasets/../outside.csv"},
        {**_row(2), "video": "datasets/clip.mp4", "imu": "datasets/escape.csv"},
        {**_row(3), "video": "datasets/clip.mp4", "gps": "/etc/passwd"},
    ]
    roots = [str(data_root)]
    for k, (field, shown) in enumerate(
        [
            ("imu", "datasets/../outside.csv"),
            ("imu", "datasets/escape.csv"),
            ("gps", "/etc/passwd"),
        ],
        start=1,
    ):
        path = _manifest(tmp_path, [json.dumps(rows[0]), json.dumps(rows[k])])
        assert len(load_manifest(path, check_files=False)) == 2  # no roots: anywhere (by design)
        with pytest.raises(ManifestError) as err:
            load_manifest(path, allowed_roots=roots)
        shown_path = shown if shown.startswith("/") else str(tmp_path / shown)
        assert str(err.value) == (
            f"{path} line 2, id 'clip{k}': field '{field}': {shown_path} is outside "
            f"data.allowed_roots ['{data_root}']"
        )
    assert [
        r.id for r in load_manifest(_manifest(tmp_path, [json.dumps(rows[0])]), allowed_roots=roots)
    ] == ["clip0"]


# ------------------------------------------------------------- issue 26 point 12: metadata
BAD_METADATA = [  # (metadata, field, detail)
    ({"clip_start": "abc"}, "metadata.clip_start", "expected a number, got 'abc'"),
    ({"clip_end": -1}, "metadata.clip_end", "expected a finite number >= 0, got -1"),
    ({"clip_start": 4.0, "clip_end": 2.0}, "metadata.clip_end", "2.0 is not after clip_start 4.0"),
    ({"driver_video": ["a.mp4"]}, "metadata.driver_video", "expected a path string, got ['a.mp4']"),
    ({"frames_fps": 0}, "metadata.frames_fps", "expected a positive number, got 0"),
    ({"imu_rotation": [1, 0, 0]}, "metadata.imu_rotation", "expected a 3 x 3 matrix of numbers"),
    (
        {"nominal_rate_hz": {"imu": "x"}},
        "metadata.nominal_rate_hz",
        "expected an object of positive",
    ),
]


@pytest.mark.parametrize(("metadata", "field", "detail"), BAD_METADATA)
def test_malformed_metadata_is_named_at_load(tmp_path, metadata, field, detail) -> None:
    path = _manifest(tmp_path, [json.dumps(_row(0)), json.dumps(_row(1) | {"metadata": metadata})])
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(err.value).startswith(f"{path} line 2, id 'clip1': field '{field}': {detail}")


def test_validate_files_malformed_metadata_under_its_field(tmp_path) -> None:
    """Before: both records were filed as "video does not decode" (float('abc') and
    Path([...]) raised inside the decode check)."""
    rows = [_row(0), _row(1) | {"metadata": {"clip_start": "abc"}}]
    rows.append(_row(2) | {"metadata": {"driver_video": ["cabin.mp4"]}})
    report = validate_manifest(_manifest(tmp_path, [json.dumps(r) for r in rows]), decode=False)
    assert report.problems["schema: metadata.clip_start"] == 1
    assert report.problems["schema: metadata.driver_video"] == 1
    assert report.examples["schema: metadata.clip_start"] == [
        "line 2, id 'clip1': expected a number, got 'abc'"
    ]
    assert report.problems["video does not decode"] == 1  # clip0 only (a stand-in file)
    assert report.examples["video does not decode"][0].startswith("line 1, id 'clip0'")


def test_malformed_metadata_is_skipped_and_counted(synthetic_manifest, tmp_path, tiny_processor):
    """The issue's probe: `clip_start: "abc"` and a list-valued `driver_video` under
    on_bad_sample=skip crashed training naming no sample (ValueError, TypeError); now both
    records load with their problem and their samples are skipped and counted."""
    from sce.data.datamodule import SceDataModule

    rows = [
        r.to_json() | {"video": str(r.path("video")), "imu": None, "gps": None}
        for r in load_manifest(synthetic_manifest, splits=["train"])
    ][:3]
    rows[0]["metadata"]["clip_start"] = "abc"
    rows[2]["metadata"]["driver_video"] = ["cabin.mp4"]
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = SceDataModule(str(path), processor_path="unused", on_bad_sample="skip")
    with pytest.warns(UserWarning, match=r"2 train record\(s\) with malformed annotations or"):
        records = data.split_records("train")
    assert [bool(r.problem) for r in records] == [True, False, True]
    assert f"id '{rows[0]['id']}': field 'metadata.clip_start'" in records[0].problem
    assert f"id '{rows[2]['id']}': field 'metadata.driver_video'" in records[2].problem
    dataset = SceDataset(records, SPEC, train=True, task_weights={"mcq": 1.0}, on_bad_sample="skip")
    samples = [dataset[i] for i in range(len(dataset))]
    assert [s is None for s in samples] == [True, False, True]
    assert Collator(tiny_processor)(samples)["skipped"] == 2


# ------------------------------------------ issue 26 point 13: allowed_roots when a file opens
def _linked_record(synthetic_manifest, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A record whose video and IMU are symlinks inside `root` to copies inside it; returns
    (manifest, root, outside) where `outside` holds the same files outside the root."""
    import shutil

    record = load_manifest(synthetic_manifest, splits=["train"])[0]
    root, outside = tmp_path / "root", tmp_path / "outside"
    for folder in (root, outside):
        folder.mkdir()
        shutil.copy(record.path("video"), folder / "clip.mp4")
        shutil.copy(record.path("imu"), folder / "imu.csv")
    (root / "video_link.mp4").symlink_to(root / "clip.mp4")
    (root / "imu_link.csv").symlink_to(root / "imu.csv")
    row = record.to_json() | {"video": "root/video_link.mp4", "imu": "root/imu_link.csv"}
    row["gps"] = None
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    return tmp_path / "m.jsonl", root, outside


@pytest.mark.parametrize(("link", "field"), [("imu_link.csv", "imu"), ("video_link.mp4", "video")])
def test_allowed_roots_are_checked_when_a_file_opens(synthetic_manifest, tmp_path, link, field):
    """The issue's probe: a symlink inside the root passes the load-time check, is then
    retargeted outside, and was read (the clip loaded with the outside file). Now the clip
    loader refuses it when it opens the file, naming the sample and the field."""
    from sce.data.clip import load_clip
    from sce.data.schema import OutsideRootsError

    manifest, root, outside = _linked_record(synthetic_manifest, tmp_path)
    (record,) = load_manifest(manifest, allowed_roots=[str(root)])
    assert load_clip(record, SPEC).frames.shape == (18, 56, 112, 3)  # inside: reads
    (root / link).unlink()
    (root / link).symlink_to(outside / link.replace("_link", "").replace("video", "clip"))
    with pytest.raises(OutsideRootsError) as err:
        load_clip(record, SPEC)
    assert str(err.value) == (
        f"sample {record.id!r}: field '{field}': {root / link} is outside "
        f"data.allowed_roots ['{root}']"
    )
    dataset = SceDataset([record], SPEC, train=False, on_bad_sample="skip")
    with pytest.raises(OutsideRootsError):  # a refusal, never a counted skip
        dataset[0]


def test_offline_commands_take_allowed_roots(synthetic_manifest, tmp_path, capsys) -> None:
    """`sce data mine-events`, `sce data chunk`, `sce label` and `sce infer --manifest` take
    `--allowed-root` (before: unknown option): a record whose IMU link leads outside is
    refused naming its field, and nothing is written."""
    from sce.cli import main

    manifest, root, outside = _linked_record(synthetic_manifest, tmp_path)
    (root / "imu_link.csv").unlink()
    (root / "imu_link.csv").symlink_to(outside / "imu.csv")
    roots = ["--allowed-root", str(root)]
    out = tmp_path / "out.jsonl"
    commands = {
        "mine-events": ["data", "mine-events", str(manifest), "--out", str(out)],
        "chunk": ["data", "chunk", str(manifest), "--out", str(out)],
        "label": ["label", "--manifest", str(manifest), "--out", str(out)],
        "infer": ["infer", "--model", "tiny:0", "--manifest", str(manifest), "--split", "train"],
    }
    commands["label"] += ["--tasks", "structured_caption"]
    commands["infer"] += ["--out", str(out)]
    for name, args in commands.items():
        assert main(args + roots) != 0, name
        text = capsys.readouterr()
        assert "field 'imu': " in text.out + text.err, name
        assert f"is outside data.allowed_roots ['{root}']" in text.out + text.err, name
        assert not out.exists(), name
    assert main(commands["mine-events"]) == 0  # without the option: anywhere (by design)
