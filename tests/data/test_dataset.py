"""SceDataset: IMU dropout, evaluation settings, task weights, real clips, bad samples."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers.paths import REPO
from helpers.stub_clip import SPEC

from sce.data.clip import ClipError, ClipSpec, WindowSpec, load_clip
from sce.data.dataset import SceDataset
from sce.data.prompts import NO_TELEMETRY
from sce.data.schema import ClipRecord, load_manifest
from sce.tasks import REASONING
from sce.tasks.events import BINARY_EVENT_QUESTION, event_question, mcq_answer
from sce.tasks.probability import probability_answer


def _records(n: int = 4, annotations: dict | None = None) -> list[ClipRecord]:
    labels = ("collision", "near_collision", "normal")
    return [
        ClipRecord(
            f"r{i}", "v.mp4", labels[i % 3], "private", "train", annotations=annotations or {}
        )
        for i in range(n)
    ]


def _has_telemetry(sample) -> bool:
    return any("ax " in c.get("text", "") for c in sample.user_content)


def test_imu_dropout_rate_in_training(stub_loader: list[str]) -> None:
    torch.manual_seed(0)
    ds = SceDataset(_records(4), SPEC, train=True, imu_dropout=0.5)
    assert len(ds) == 4
    samples = [ds[i % 4] for i in range(2000)]
    off = sum(not s.imu_on for s in samples)
    assert 0.45 * 2000 <= off <= 0.55 * 2000
    # imu_on agrees with the prompt text, and dropped prompts say so
    assert all(s.imu_on == _has_telemetry(s) for s in samples)
    assert all(
        s.imu_on or any(c.get("text") == NO_TELEMETRY + "\n" for c in s.user_content)
        for s in samples
    )
    assert all(s.meta["imu_setting"] == "train" for s in samples)
    assert len(stub_loader) == 2000


@pytest.mark.parametrize(("dropout", "expected_off"), [(0.0, 0), (1.0, 200)])
def test_imu_dropout_extremes(stub_loader: list[str], dropout: float, expected_off: int) -> None:
    ds = SceDataset(_records(2), SPEC, train=True, imu_dropout=dropout)
    assert sum(not ds[i % 2].imu_on for i in range(200)) == expected_off


def test_no_dropout_at_eval(stub_loader: list[str]) -> None:
    torch.manual_seed(0)
    ds = SceDataset(_records(4), SPEC, train=False, imu_dropout=0.5, imu_settings=("on",))
    assert len(ds) == 4
    samples = [ds[i % 4] for i in range(400)]
    assert all(s.imu_on and _has_telemetry(s) for s in samples)
    assert all(s.task == "mcq" and s.meta["imu_setting"] == "on" for s in samples)


def test_eval_on_and_off_settings(stub_loader: list[str]) -> None:
    records = _records(3)
    ds = SceDataset(
        records, SPEC, train=False, imu_settings=("on", "off"), eval_tasks=("mcq", "probability")
    )
    assert len(ds) == 3 * 2 * 2
    items = [ds[i] for i in range(len(ds))]
    keys = [(s.id, s.meta["imu_setting"], s.task) for s in items]
    assert keys == [
        (r.id, setting, task)
        for r in records
        for setting in ("on", "off")
        for task in ("mcq", "probability")
    ]
    for s in items:
        assert s.imu_on == (s.meta["imu_setting"] == "on") == _has_telemetry(s)
        expected = (
            mcq_answer(s.label)
            if s.task == "mcq"
            # paper 002: collisions and near-misses are the positives
            else probability_answer(0.0 if s.label == "normal" else 1.0)
        )
        assert s.answer == expected
    assert ds.labels == [r.label for r in records for _ in range(4)]


def test_training_items_one_per_record_and_task(stub_loader: list[str]) -> None:
    """Each record trains every task it can serve with weight > 0 (its mcq item whatever else it
    carries, paper 001 Table 1); the weights are multiplicities left to the sampler."""
    annotated = _records(2, {"caption": "A crash."})
    plain = [dataclasses.replace(r, id=f"p{i}") for i, r in enumerate(_records(2))]
    weights = {"mcq": 1.0, "caption": 3.0, "probability": 0.0}
    ds = SceDataset(annotated + plain, SPEC, train=True, task_weights=weights)
    keys = [(ds.records[item.record].id, item.task) for item in ds.items]
    assert keys == [
        ("r0", "mcq"), ("r0", "caption"), ("r1", "mcq"), ("r1", "caption"), ("p0", "mcq"), ("p1", "mcq")
    ]  # fmt: skip
    assert ds.tasks == [task for _, task in keys]
    assert ds.labels == ["collision"] * 2 + ["near_collision"] * 2 + ["collision", "near_collision"]
    samples = [ds[i] for i in range(len(ds))]
    assert [(s.id, s.task) for s in samples] == keys
    assert [s.answer for s in samples[:2]] == ["A. collision", "A crash."]


def test_binary_record_trains_the_binary_question(stub_loader: list[str]) -> None:
    """A binary-scope record (Nexar: event / no event) is asked the yes/no event question, never
    the 3-way one, and its scope travels with the sample for the metrics."""
    records = [
        ClipRecord("n1", "v.mp4", "event", "nexar", "train", label_scope="binary"),
        ClipRecord("n0", "v.mp4", "normal", "nexar", "train", label_scope="binary"),
    ]
    weights = {"mcq": 1.0, "probability": 1.0}
    ds = SceDataset(records, SPEC, train=True, task_weights=weights)
    samples = {(s.id, s.task): s for s in (ds[i] for i in range(len(ds)))}
    assert len(samples) == 4
    for rid, answer in (("n1", "A. yes"), ("n0", "B. no")):
        mcq = samples[(rid, "mcq")]
        assert mcq.answer == answer and mcq.meta["label_scope"] == "binary"
        assert mcq.user_content[-1]["text"] == BINARY_EVENT_QUESTION
        assert "near-collision" not in mcq.answer and "C." not in mcq.user_content[-1]["text"]
    assert samples[("n1", "probability")].probability_target == 1.0  # paper 002: label 1
    assert samples[("n0", "probability")].probability_target == 0.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="imu_dropout"):
        SceDataset([], SPEC, train=True, imu_dropout=1.5)
    with pytest.raises(ValueError, match="on_bad_sample"):
        SceDataset([], SPEC, train=True, on_bad_sample="ignore")
    with pytest.raises(ValueError, match="data.eval_imu"):
        SceDataset([], SPEC, train=False, imu_settings=("on", "maybe"))


# --------------------------------------------------------------------------- real clip loader


@pytest.fixture(scope="module")
def records(synthetic_manifest: Path) -> list[ClipRecord]:
    return load_manifest(synthetic_manifest)


def test_real_sample_from_synthetic_clip(records: list[ClipRecord]) -> None:
    record = records[0]  # event at 4.5 s of a 7 s clip: window [0.5, 6.5] s
    ds = SceDataset([record], SPEC, train=False, eval_tasks=("mcq",))
    sample = ds[0]
    assert sample.id == record.id and sample.fps == 3.0
    assert len(sample.videos) == 9
    assert all(v.shape == (2, 56, 112, 3) and v.dtype == np.uint8 for v in sample.videos)
    assert sample.imu_on and sample.meta["imu_reason"] == ""
    assert sample.answer == mcq_answer(record.label)
    texts = [c["text"] for c in sample.user_content if c["type"] == "text"]
    assert texts[0].startswith("t=0.7s: ax ") and "\nt=1.0s: ax " in texts[0]
    assert texts[-2].startswith("t=6.0s: ax ") and "\nt=6.3s: ax " in texts[-2]
    assert all(" m/s², heading " in t and t.count(" m/s\n") == 2 for t in texts[:-1])
    assert sum(c["type"] == "video" for c in sample.user_content) == 9


def test_answers_match_labels(records: list[ClipRecord]) -> None:
    ds = SceDataset(records[:3], SPEC, train=False, eval_tasks=("mcq", "caption"))
    for sample in (ds[i] for i in range(len(ds))):
        record = next(r for r in records if r.id == sample.id)
        assert sample.label == record.label and sample.source == "synthetic"
        if sample.task == "mcq":
            assert sample.answer == mcq_answer(record.label)
        else:
            assert sample.answer == record.annotations["caption"]


def test_event_time_outside_clip(records: list[ClipRecord]) -> None:
    bad = dataclasses.replace(records[1], event_time=30.0)
    with pytest.raises(ClipError, match=rf"sample '{bad.id}': field 'event_time' = 30.000"):
        SceDataset([bad], SPEC, train=False)[0]
    skipping = SceDataset([bad, records[2]], SPEC, train=False, on_bad_sample="skip")
    assert skipping[0] is None
    assert skipping[1].id == records[2].id


def test_missing_imu_file_gives_no_telemetry_with_reason(records: list[ClipRecord]) -> None:
    record = dataclasses.replace(records[2], imu="imu/missing.csv")
    sample = SceDataset([record], SPEC, train=False, imu_settings=("on",))[0]
    assert sample is not None and not sample.imu_on
    assert "imu unreadable" in sample.meta["imu_reason"]
    assert "missing.csv" in sample.meta["imu_reason"]
    assert sample.user_content[-2]["text"] == NO_TELEMETRY + "\n"
    assert len(sample.videos) == 9


def test_unusable_imu_files_do_not_fail_the_clip(records: list[ClipRecord], tmp_path: Path) -> None:
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    lines = records[0].path("imu").read_text().splitlines()
    nan_ax = tmp_path / "nan_ax.csv"
    nan_ax.write_text(
        "\n".join(
            [lines[0]] + [f"{ln.split(',', 1)[0]},nan,{ln.split(',', 2)[2]}" for ln in lines[1:]]
        )
    )
    for path, reason in ((binary, "imu unreadable"), (nan_ax, "'ax' has fewer than 2 finite")):
        record = dataclasses.replace(records[0], imu=str(path), event_time=None)
        sample = SceDataset([record], SPEC, train=False)[0]
        assert not sample.imu_on and reason in sample.meta["imu_reason"], path.name
        assert len(sample.videos) == 9
        # no manifest event time and no finite a_x: the event is placed at the clip centre
        clip = load_clip(record, SPEC)
        assert (clip.event_time, clip.event_time_source) == (3.5, "center")


def test_eval_asks_only_answerable_tasks(stub_loader: list[str]) -> None:
    records = [
        *_records(1, {"caption": "A crash."}),
        dataclasses.replace(_records(1)[0], id="bare"),
    ]
    ds = SceDataset(records, SPEC, train=False, eval_tasks=("mcq", "caption"))
    assert [(s.id, s.task) for s in (ds[i] for i in range(len(ds)))] == [
        ("r0", "mcq"),
        ("r0", "caption"),
        ("bare", "mcq"),
    ]


def test_dual_view_stacks_road_on_top_of_driver(synthetic_manifest):
    """Paper 003: metadata.driver_video adds the cabin view below the road view."""
    import dataclasses

    from sce.data import video as video_lib
    from sce.data.clip import WindowSpec, load_clip
    from sce.data.schema import load_manifest

    road, cabin = load_manifest(synthetic_manifest)[:2]
    dual = dataclasses.replace(road, metadata={**road.metadata, "driver_video": cabin.video})
    spec = WindowSpec(width=112, height=112)
    clip = load_clip(dual, spec)
    assert clip.frames.shape == (18, 112, 112, 3)
    top = video_lib.read_frames(road.path("video"), clip.frame_times, size=(112, 56))
    bottom = video_lib.read_frames(cabin.path("video"), clip.frame_times, size=(112, 56))
    top_err = np.abs(clip.frames[:, :56].astype(int) - top.astype(int)).mean()
    bottom_err = np.abs(clip.frames[:, 56:].astype(int) - bottom.astype(int)).mean()
    swapped_err = np.abs(clip.frames[:, :56].astype(int) - bottom.astype(int)).mean()
    assert top_err < 3 and bottom_err < 3 and swapped_err > 3 * max(top_err, 1)


def test_multiscale_keyframe_windows(synthetic_manifest, tiny_processor):
    """Paper 002: one item per scale, exactly 3 keyframes (e - scale, e - scale / 2, e), each
    a separate image in the prompt (no video, nothing repeated), through the processor's image
    path: pixel_values + image_grid_thw of 3 images at the configured size."""
    from sce.data.collate import Collator

    records = [r for r in load_manifest(synthetic_manifest) if r.split == "test"][:1]
    spec = WindowSpec(width=112, height=56)
    data = SceDataset(
        records, dataclasses.replace(spec, layout="table", scales=(6.0, 3.0, 1.5)), train=False
    )
    assert [item.scale for item in data.items] == [6.0, 3.0, 1.5]
    event = records[0].event_time
    for index, scale in enumerate((6.0, 3.0, 1.5)):
        sample = data[index]
        kinds = [c["type"] for c in sample.user_content]
        assert kinds.count("image") == 3 and "video" not in kinds
        assert sample.videos == [] and len(sample.images) == 3
        assert all(im.shape == (56, 112, 3) and im.dtype == np.uint8 for im in sample.images)
        clip = load_clip(records[0], ClipSpec.of(spec, scale=scale))
        assert clip.keyframes and len(clip.frame_times) == 3
        expected = [event - scale, event - scale / 2, event]
        # a window that starts before the clip is padded with its first frame
        np.testing.assert_allclose(clip.frame_times, np.clip(expected, 0, None), atol=1e-6)
        assert len(set(clip.frame_times.round(6))) == 3
        for image, frame in zip(sample.images, clip.frames, strict=True):
            np.testing.assert_array_equal(image, frame)
    batch = Collator(tiny_processor, 2048)([data[0], data[1]])
    assert "pixel_values_videos" not in batch and "video_grid_thw" not in batch
    # 112x56 -> 8 x 4 patches of 14 px, one temporal patch per image, 3 images per item
    assert batch["image_grid_thw"].tolist() == [[1, 4, 8]] * 6
    assert tuple(batch["pixel_values"].shape) == (6 * 4 * 8, 3 * 2 * 14 * 14)
    image_pad = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert ((batch["input_ids"] == image_pad).sum(dim=1) == 3 * 8).all()  # 2x2 merge: 8 each
    assert (batch["mm_token_type_ids"][batch["input_ids"] == image_pad] == 1).all()


def test_sample_records_the_event_time_source_and_window_shift(records: list[ClipRecord]) -> None:
    import pandas as pd

    # event at 1.0 s of a 7 s clip: [-3, 3] s is shifted 3 s right to [0, 6] s, nothing padded
    early = dataclasses.replace(records[0], event_time=1.0)
    meta = SceDataset([early], SPEC, train=False)[0].meta
    assert (meta["event_time"], meta["event_time_source"]) == (1.0, "manifest")
    assert (meta["window_shifted"], meta["window_padded"]) == (3.0, 0.0)
    # no manifest time: t_e = argmax |a_x| of the IMU (paper 000), from the file by hand
    imu = pd.read_csv(records[0].path("imu"))
    peak = float(imu["t"].iloc[int(np.argmax(np.abs(imu["ax"].to_numpy())))])
    unknown = dataclasses.replace(records[0], event_time=None)
    meta = SceDataset([unknown], SPEC, train=False)[0].meta
    assert meta["event_time_source"] == "imu"
    assert meta["event_time"] == pytest.approx(peak, abs=1e-9)
    assert abs(peak - records[0].event_time) < 0.5  # the synthetic event's IMU signature


def test_paper001_recipe_asks_its_wording_beside_every_reasoning_vqa_pair(stub_loader) -> None:
    """Paper 001's recipe as its config writes it (Table 9's best row of task weights, the
    paper's event wording, appendix A.3): mcq and reasoning are asked in the paper's words (a
    near-collision is C), each annotated reasoning VQA pair is its own item with its own
    question, and evaluation asks every clip the reasoning question in the same wording."""
    config = yaml.safe_load((REPO / "experiments" / "paper001_sft.yaml").read_text())["data"]
    pair = {
        "question": "What does the van do?",
        "options": ["stop", "turn"],
        "reasons": ["Brakes."],
    }
    notes = {
        "structured_caption": "A near-collision happens.",
        "reasoning": "The van brakes hard.",
        "reasoning_vqa": [pair | {"answer": "A"}, pair | {"answer": "B"}],
    }
    (record,) = _records(2, notes)[1:]  # the near-collision
    wording = config["event_wording"]
    train = SceDataset([record], SPEC, train=True, task_weights=config["task_weights"],
                       event_wording=wording)  # fmt: skip
    samples = {(s.task, s.answer): s for s in (train[i] for i in range(len(train)))}
    paper = "C. The vehicle nearly collides but avoids an accident."
    assert sorted(samples) == sorted([
        ("mcq", paper), ("reasoning", f"<think>The van brakes hard.</think>{paper}"),
        ("structured_caption", "A near-collision happens."),
        ("reasoning_vqa", "<think>Brakes.</think>A"), ("reasoning_vqa", "<think>Brakes.</think>B"),
    ])  # fmt: skip
    question = event_question(wording="paper001")
    assert samples[("mcq", paper)].user_content[-1]["text"] == question
    pair_text = samples[("reasoning_vqa", "<think>Brakes.</think>A")].user_content[-1]["text"]
    assert "What does the van do?" in pair_text and "driving event" not in pair_text
    assert {s.meta["event_wording"] for s in samples.values()} == {"paper001"}
    bare = dataclasses.replace(record, annotations={"reasoning_vqa": notes["reasoning_vqa"]})
    evaluation = SceDataset([bare], SPEC, train=False, event_wording=wording,
                            eval_tasks=["mcq", "reasoning", "reasoning_vqa"])  # fmt: skip
    asked = [evaluation[i] for i in range(len(evaluation))]
    assert [s.task for s in asked] == ["mcq", "reasoning", "reasoning_vqa", "reasoning_vqa"]
    assert asked[1].user_content[-1]["text"].startswith(question) and asked[1].answer == paper
    assert REASONING.parse("<think>x</think>C", "three_class", wording) == "near_collision"
