"""sce infer: the training prompt on a new clip, three answers, invalid answers reported as such."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from sce.cli import main
from sce.data.clip import ClipSpec, WindowSpec, load_clip
from sce.data.collate import Collator
from sce.data.dataset import SceDataset
from sce.data.schema import BINARY_LABELS, LABELS, load_manifest
from sce.deploy.infer import (
    PROBABILITY_FROM_OPTIONS,
    EventAnswer,
    InferenceResult,
    ProbabilityAnswer,
    build_record,
    prompt_samples,
    summarize,
)
from sce.metrics.parsing import parse_binary_event, parse_event_class, parse_probability
from sce.tasks.events import BINARY_EVENT_QUESTION
from sce.train.record import read_training_record, training_record, write_training_record

SPEC = WindowSpec(fps=1, before=2, after=2, width=112, height=56)
WINDOW_ARGS = ["--fps", "1", "--before", "2", "--after", "2", "--width", "112", "--height", "56"]


@pytest.fixture(scope="module")
def record(synthetic_manifest: Path):
    return load_manifest(synthetic_manifest)[0]


def clip_args(record) -> list[str]:
    return [
        "--video", str(record.path("video")),
        "--imu", str(record.path("imu")),
        "--gps", str(record.path("gps")),
    ]  # fmt: skip


def test_cli_json_has_the_three_fields_with_consistent_parsing(tiny_kit, record, capsys):
    code = main(
        ["infer", "--model", str(tiny_kit), *clip_args(record), *WINDOW_ARGS]
        + ["--max-new-tokens", "6", "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["imu_used"] is True and out["imu_reason"] == ""
    assert out["event_time_source"] == "imu" and 0 <= out["event_time"] <= 7.0

    event = out["event"]
    assert isinstance(event["answer"], str) and isinstance(event["valid"], bool)
    parsed = parse_event_class(event["answer"])
    assert (event["label"], event["valid"], event["reason"]) == (
        parsed.label,
        parsed.valid,
        parsed.reason,
    )
    assert (event["label"] in LABELS) if event["valid"] else event["label"] is None
    assert list(event["option_probs"]) == list(LABELS)
    assert sum(event["option_probs"].values()) == pytest.approx(1.0, abs=1e-5)

    # the tiny kit has no training record: it was not trained on the probability question, so
    # P(collision) is the event options' probability, and the question is not asked
    prob = out["collision_probability"]
    assert prob["source"] == PROBABILITY_FROM_OPTIONS and prob["answer"] == ""
    assert prob["value"] == event["option_probs"]["collision"] and prob["valid"]
    assert isinstance(out["description"], str)
    assert (out["window"]["fps"], out["window"]["before"], out["window"]["after"]) == (1, 2, 2)
    assert (out["window"]["width"], out["window"]["height"]) == (112, 56)


def test_prompt_is_the_training_evaluation_prompt(tiny_processor, record):
    """Same window, telemetry and question text as the dataset's evaluation item."""
    built = build_record(record.path("video"), record.path("imu"), record.path("gps"))
    built.event_time = record.event_time
    samples = prompt_samples(load_clip(built, SPEC), built)
    collator = Collator(tiny_processor, mode="generate")
    for sample, task in zip(samples, ("mcq", "probability", "caption"), strict=True):
        dataset = SceDataset([record], SPEC, train=False, eval_tasks=(task,))
        reference = dataset[0]
        assert collator.texts([sample]) == collator.texts([reference])
        assert len(sample.videos) == len(reference.videos) == 2  # 4 s at 1 fps: 2 pairs
        for mine, theirs in zip(sample.videos, reference.videos, strict=True):
            assert (mine == theirs).all()


def test_binary_scope_prompt_is_the_binary_training_prompt(tiny_processor, record):
    """--label-scope binary: the event question is the one a binary (Nexar) record trains on."""
    import dataclasses

    binary = dataclasses.replace(record, label="event", label_scope="binary")
    built = build_record(
        record.path("video"), record.path("imu"), record.path("gps"), label_scope="binary"
    )
    built.event_time = record.event_time
    event = prompt_samples(load_clip(built, SPEC), built)[0]
    reference = SceDataset([binary], SPEC, train=False, eval_tasks=("mcq",))[0]
    collator = Collator(tiny_processor, mode="generate")
    assert collator.texts([event]) == collator.texts([reference])
    assert BINARY_EVENT_QUESTION in collator.texts([event])[0]
    assert "C. normal driving" not in collator.texts([event])[0]  # not the 3-way question
    assert event.meta["label_scope"] == reference.meta["label_scope"] == "binary"
    with pytest.raises(ValueError, match="--label-scope must be one of"):
        build_record(record.path("video"), label_scope="ternary")


def test_binary_scope_answers_use_the_binary_parser():
    texts = ["A. yes", "Collision Probability: 0.9", "A car brakes hard."]
    fields = summarize(texts, [[0.6, 0.2, 0.2]], label_scope="binary")
    event = fields["event"]
    assert (
        (event.label, event.valid)
        == ("event", True)
        == (
            parse_binary_event("A. yes").label,
            parse_binary_event("A. yes").valid,
        )
    )
    assert event.option_probs == pytest.approx({"event": 0.75, "normal": 0.25})  # A, B only
    # the 3-way parser would read "A" as a collision, a label binary training never taught
    assert summarize(texts)["event"].label == "collision"
    no = summarize(["B. no", "0.1", ""], label_scope="binary")["event"]
    assert (no.label, no.valid) == ("normal", True)


def test_cli_binary_scope(tiny_kit, record, capsys):
    args = ["infer", "--model", str(tiny_kit), *clip_args(record), *WINDOW_ARGS]
    code = main([*args, "--label-scope", "binary", "--max-new-tokens", "4", "--json"])
    assert code == 0
    event = json.loads(capsys.readouterr().out)["event"]
    parsed = parse_binary_event(event["answer"])
    assert (event["label"], event["valid"]) == (parsed.label, parsed.valid)
    assert (event["label"] in BINARY_LABELS) if event["valid"] else event["label"] is None
    assert list(event["option_probs"]) == list(BINARY_LABELS)
    assert sum(event["option_probs"].values()) == pytest.approx(1.0, abs=1e-5)


def test_keyframe_prompt_is_the_training_keyframe_item(tiny_processor, record):
    """--window-scale: the 3 keyframes as 3 images, exactly the dataset's paper-002 item."""
    import dataclasses

    spec = ClipSpec.of(SPEC, scale=3.0)
    built = build_record(record.path("video"), record.path("imu"), record.path("gps"))
    built.event_time = record.event_time
    clip = load_clip(built, spec)
    window = dataclasses.replace(SPEC, layout="table", scales=[3])
    samples = prompt_samples(clip, built, window)
    collator = Collator(tiny_processor, mode="generate")
    dataset = SceDataset(
        [record],
        window,
        train=False,
        eval_tasks=("probability",),
    )
    reference = dataset[0]
    assert collator.texts([samples[1]]) == collator.texts([reference])
    assert len(samples[1].images) == len(reference.images) == 3 and samples[1].videos == []
    for mine, theirs in zip(samples[1].images, reference.images, strict=True):
        assert (mine == theirs).all()


def test_video_only_paper002_model_is_asked_its_training_prompt(tiny_processor, record):
    """A model trained with data.window.channels [] and paper 002's prompt (its recorded
    window) is asked without telemetry, in paper 002's words, exactly as in training."""
    import dataclasses

    window = dataclasses.replace(SPEC, layout="table", scales=[3], channels=[], prompt="paper002")
    built = build_record(record.path("video"), record.path("imu"), record.path("gps"))
    built.event_time = record.event_time
    clip = load_clip(built, ClipSpec.of(window, scale=3.0))
    assert clip.telemetry is not None  # the clip has telemetry the model must not see
    samples = prompt_samples(clip, built, window)
    reference = SceDataset([record], window, train=False, eval_tasks=("probability",))[0]
    collator = Collator(tiny_processor, mode="generate")
    (text,) = collator.texts([samples[1]])
    assert text == collator.texts([reference])[0]
    assert "Task:\nOutput only a single floating-point number" in text
    assert "Telemetry" not in text and "m/s" not in text and "driving safety analyst" not in text
    assert not any(sample.imu_on for sample in samples)


def test_cli_window_scale_answers_from_images(tiny_kit, record, capsys):
    args = ["infer", "--model", str(tiny_kit), *clip_args(record), *WINDOW_ARGS]
    code = main([*args, "--window-scale", "3", "--layout", "table", "--max-new-tokens", "4"])
    assert code == 0
    assert "collision probability:" in capsys.readouterr().out
    assert main([*args, "--window-scale", "0"]) == 2
    assert "--window-scale must be positive seconds, got 0.0" in capsys.readouterr().out


def test_invalid_answers_are_reported_invalid_not_mapped():
    fields = summarize(
        ["I am not sure", "Collision Probability: 1.7", "rur rur"], [[0.2, 0.3, 0.5]]
    )
    event, prob = fields["event"], fields["collision_probability"]
    assert event.valid is False and event.label is None and event.reason
    assert event.answer == "I am not sure"
    assert event.option_probs == {"collision": 0.2, "near_collision": 0.3, "normal": 0.5}
    assert prob.valid is False and prob.value is None  # out of [0, 1]: not clamped
    assert fields["description"] == "rur rur"

    fields = summarize(["B. near-collision", "Collision Probability: 0.87", "A car cuts in."])
    assert (fields["event"].label, fields["event"].valid) == ("near_collision", True)
    assert fields["collision_probability"].value == pytest.approx(0.87)


def test_text_output_marks_invalid_answers():
    result = InferenceResult(
        video="v.mp4",
        event_time=4.0,
        event_time_source="manifest",
        imu_used=False,
        imu_reason="no imu file in manifest",
        event=EventAnswer(None, False, "no event class found", "rur"),
        collision_probability=ProbabilityAnswer(0.25, True, "Collision Probability: 0.25"),
        description="nothing happens",
    )
    text = result.to_text()
    assert "event: INVALID ANSWER (no event class found): 'rur'" in text
    assert "collision probability: 0.250" in text  # the answers' 3 decimals (paper 002)
    assert "telemetry: off (no imu file in manifest)" in text


def test_bad_inputs_give_clear_errors(tiny_kit, record, tmp_path, capsys):
    missing = tmp_path / "none.csv"
    args = ["infer", "--model", str(tiny_kit), "--video", str(record.path("video")), *WINDOW_ARGS]
    assert main([*args, "--imu", str(missing)]) == 2
    assert f"--imu: file not found: {missing}" in capsys.readouterr().out
    assert main([*args, "--event-time", "99"]) == 2
    assert "field 'event_time' = 99.000 s is outside the clip" in capsys.readouterr().out
    assert main([*args, "--adapter", str(tmp_path)]) == 2
    assert "not a PEFT adapter folder" in capsys.readouterr().out


@pytest.fixture(scope="module")
def recorded_kit(tiny_kit: Path, tmp_path_factory) -> Path:
    """The tiny kit with a training record: trained at 1 fps, [-2 s, +2 s], 112x56, on the event
    and probability questions."""
    folder = tmp_path_factory.mktemp("recorded") / "model"
    shutil.copytree(tiny_kit, folder)
    window = {"fps": 1.0, "before": 2.0, "after": 2.0, "width": 112, "height": 56}
    write_training_record(folder, {"window": window, "tasks": ["mcq", "probability"]})
    return folder


def test_infer_uses_the_recorded_window_and_warns_on_overrides(recorded_kit, record, capsys):
    args = ["infer", "--model", str(recorded_kit), *clip_args(record), "--max-new-tokens", "4"]
    assert main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    window = json.loads(captured.out)["window"]
    assert (window["fps"], window["before"], window["after"]) == (1.0, 2.0, 2.0)
    assert (window["width"], window["height"]) == (112, 56)
    assert "warning" not in captured.err
    # a flag that differs from the record wins, with a warning naming both values
    assert main([*args, "--fps", "2", "--width", "112", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["window"]["fps"] == 2.0
    assert "--fps 2.0 overrides the model's training value 1.0" in captured.err
    assert "--width" not in captured.err  # equal to the record: no warning


def test_probability_question_is_asked_only_of_models_trained_on_it(recorded_kit, record, capsys):
    args = ["infer", "--model", str(recorded_kit), *clip_args(record), "--max-new-tokens", "4"]
    assert main([*args, "--json"]) == 0
    prob = json.loads(capsys.readouterr().out)["collision_probability"]
    assert prob["source"] == "answer" and prob["answer"] != ""
    assert prob["value"] == parse_probability(prob["answer"])


def test_video_only_takes_no_event_time_from_the_imu(tiny_kit, record, capsys):
    args = ["infer", "--model", str(tiny_kit), *clip_args(record), *WINDOW_ARGS, "--json"]
    assert main([*args, "--max-new-tokens", "2"]) == 0
    with_imu = json.loads(capsys.readouterr().out)
    assert with_imu["event_time_source"] == "imu"
    assert main([*args, "--max-new-tokens", "2", "--no-imu"]) == 0
    video_only = json.loads(capsys.readouterr().out)
    assert (video_only["event_time_source"], video_only["imu_used"]) == ("center", False)
    assert video_only["event_time"] == pytest.approx(3.5, abs=0.05)  # the 7 s clip's centre
    assert video_only["imu_reason"] == "--no-imu"


PAPER003_WINDOW = WindowSpec(
    fps=2.0, before=0.0, after=0.0, width=448, height=252, layout="table", mode="whole",
    max_frames=128, max_pixels=16384,
)  # fmt: skip


def test_training_record_holds_the_window_whole_and_the_trained_tasks():
    hparams = {"window": PAPER003_WINDOW.settings(), "batch_size": 8,
               "task_weights": {"instruction": 1.0, "caption": 0.0, "mcq": 0.5}}  # fmt: skip
    record = training_record(hparams)
    assert record.tasks == ("instruction", "mcq")  # weight 0 trains nothing
    assert record.window == PAPER003_WINDOW
    assert set(record.to_json()["window"]) == {f.name for f in dataclasses.fields(WindowSpec)}
    assert training_record({}).tasks == ("mcq",)  # SceDataset's default mix
    assert training_record({}).window == WindowSpec()


def test_records_written_before_the_window_was_one_value_read_the_same(tmp_path):
    """A checkpoint's flat data.* hparams and an sce_training.json of the old flat form (mode
    under `window`, scales under `window_scales`) give the same window as the new form."""
    flat = {"fps": 2.0, "before": 0.0, "after": 0.0, "width": 448, "height": 252,
            "layout": "table", "window": "whole", "max_frames": 128, "max_pixels": 16384,
            "window_scales": None, "telemetry_anchor": "auto", "batch_size": 8,
            "decoder": "pyav", "task_weights": {"instruction": 1.0}}  # fmt: skip
    assert training_record(flat).window == PAPER003_WINDOW
    old = {k: v for k, v in flat.items() if k not in ("batch_size", "decoder", "task_weights")}
    write_training_record(tmp_path, {"window": old, "tasks": ["instruction"]})
    record = read_training_record(tmp_path)
    assert (record.window, record.tasks) == (PAPER003_WINDOW, ("instruction",))
    scales = {"fps": 3.0, "before": 6.0, "after": 0.0, "window_scales": [6.0, 3.0, 1.5]}
    write_training_record(tmp_path, {"window": scales, "tasks": ["probability"]})
    assert read_training_record(tmp_path).window.scales == (6.0, 3.0, 1.5)
    # the new form round-trips; a setting no window has is refused, naming the file
    write_training_record(tmp_path, training_record({"window": PAPER003_WINDOW}))
    assert read_training_record(tmp_path).window == PAPER003_WINDOW
    write_training_record(tmp_path, {"window": {"fps": 3.0, "zoom": 2}, "tasks": []})
    with pytest.raises(ValueError, match=r"sce_training.json: field 'window'.*'zoom'"):
        read_training_record(tmp_path)


def table_value(printed: str, metric: str, column: int = 0) -> str:
    """A value of the compact metrics table (sce.evaluate.figures.compact_table) as printed."""
    line = next(x for x in printed.splitlines() if x.split()[:1] == [metric])
    return line.split()[1 + column]


def test_manifest_batch_writes_one_row_per_record_of_the_split(
    tiny_kit, synthetic_manifest, tmp_path, capsys
):
    """`sce infer --manifest M --split S --out F`: one predictions.jsonl-style line per record
    of S, through the one-clip path (window from the model's sce_training.json)."""
    model = tmp_path / "model"
    shutil.copytree(tiny_kit, model)
    window = {"fps": 1, "before": 2, "after": 2, "width": 112, "height": 56}
    write_training_record(model, training_record({**window, "tasks": {"mcq": 1.0}}))
    out = tmp_path / "answers" / "val.jsonl"
    args = ["infer", "--model", str(model), "--manifest", str(synthetic_manifest)]
    assert main([*args, "--split", "val", "--out", str(out), "--max-new-tokens", "4"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed
    records = load_manifest(synthetic_manifest, splits=["val"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) > 0 and len(rows) == len(records)
    # the records have labels: the compact metrics table, naming the split (issue 27)
    assert f"split 'val': metrics of {len(rows)} answered items with labels" in printed
    acc = sum(r["parsed"] == r["label"] for r in rows) / len(rows)
    assert table_value(printed, "acc") == f"{acc:.3f}"
    assert [r["id"] for r in rows] == [r.id for r in records]
    assert [r["label"] for r in rows] == [r.label for r in records]
    for row, rec in zip(rows, records, strict=True):
        assert (row["task"], row["split"], row["imu_on"]) == ("mcq", "val", True)
        # the synthetic records are annotated: the manifest's event time, not the IMU peak
        assert (row["event_time_s"], row["event_time_source"]) == (rec.event_time, "manifest")
        parsed = parse_event_class(row["prediction"])
        assert (row["parsed"], row["valid"]) == (parsed.label, parsed.valid)
        assert len(row["option_probs"]) == 3 and sum(row["option_probs"]) == pytest.approx(1.0)
        # no probability question in the recorded tasks: P(collision) is option A's probability
        assert row["collision_probability"] == pytest.approx(row["option_probs"][0])
        assert row["collision_probability_source"] == PROBABILITY_FROM_OPTIONS


def test_manifest_batch_refuses_one_clip_flags_and_a_missing_split(
    tiny_kit, synthetic_manifest, tmp_path, capsys
):
    args = ["infer", "--model", str(tiny_kit), "--manifest", str(synthetic_manifest)]
    out = ["--out", str(tmp_path / "a.jsonl")]
    assert main([*args, *out, "--event-time", "3"]) == 2
    assert "drop --event-time" in capsys.readouterr().out
    assert main([*args, *out, "--split", "holdout"]) == 2
    assert "--split 'holdout'" in capsys.readouterr().out
    assert main([*args]) == 2
    assert "--out" in capsys.readouterr().out
    assert not (tmp_path / "a.jsonl").exists()


# ------------------------------------- issue 26.9: one bad record does not stop or lose a batch
def _manifest_with_unreadable_video(manifest: Path, folder: Path) -> tuple[Path, str]:
    """The synthetic manifest with absolute paths, the first val record's video replaced by
    bytes no decoder reads; returns (manifest, that record's id)."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        for key in ("video", "imu", "gps"):
            row[key] = str(manifest.parent / row[key])
    bad = next(row for row in rows if row["split"] == "val")
    bad["video"] = str(folder / "broken.mp4")
    (folder / "broken.mp4").write_bytes(b"not a video" * 100)
    out = folder / "manifest.jsonl"
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return out, bad["id"]


def test_manifest_batch_records_an_unreadable_video_and_goes_on(
    tiny_kit, synthetic_manifest, tmp_path, capsys
):
    """The issue's probe: an unreadable first video stopped the run (rc 2, 0 of 3 rows) after
    the previous --out had been emptied. Now its row holds the error, the other rows are
    answered, and the file is whole."""
    manifest, bad_id = _manifest_with_unreadable_video(synthetic_manifest, tmp_path)
    out = tmp_path / "answers.jsonl"
    out.write_text('{"previous": "run"}\n')
    args = ["infer", "--model", str(tiny_kit), "--manifest", str(manifest), "--split", "val"]
    assert main([*args, "--out", str(out), "--max-new-tokens", "4", *WINDOW_ARGS]) == 0
    err = capsys.readouterr().err
    assert f"1 of 3 records could not be answered (their rows hold the error): ['{bad_id}']" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r.id for r in load_manifest(manifest, splits=["val"], check_files=False)]
    assert [row["id"] for row in rows] == ids and len(rows) == 3
    bad, good = rows[0], rows[1:]
    assert (bad["valid"], bad["prediction"], bad["parsed"]) == (False, None, None)
    assert bad["error"].startswith("ClipError: ") and str(tmp_path / "broken.mp4") in bad["error"]
    assert all("error" not in row and len(row["option_probs"]) == 3 for row in good)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_manifest_batch_that_stops_midway_keeps_the_previous_out(
    tiny_kit, synthetic_manifest, tmp_path, monkeypatch
):
    """A failure that is not a record's (a broken model, Ctrl-C) stops the run; the previous
    --out is left as it was and no temporary remains."""
    import sce.deploy.infer as infer

    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA error: device-side assert")
        return real(*args, **kwargs)

    real = infer.infer_record
    monkeypatch.setattr(infer, "infer_record", fail_on_second)
    out = tmp_path / "answers.jsonl"
    out.write_text('{"previous": "run"}\n')
    args = ["infer", "--model", str(tiny_kit), "--manifest", str(synthetic_manifest)]
    with pytest.raises(RuntimeError, match="device-side assert"):
        main([*args, "--split", "val", "--out", str(out), "--max-new-tokens", "4", *WINDOW_ARGS])
    assert len(calls) == 2 and out.read_text() == '{"previous": "run"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl"]


def test_a_paper001_model_is_asked_and_read_in_its_wording(tmp_path, record):
    """Issue 25, point 6: the model folder records data.event_wording; sce infer asks that
    question and reads its letters with it (C = near-collision in paper 001's wording), the
    option probabilities put in label order."""
    hparams = {"window": WindowSpec().settings(), "task_weights": {"mcq": 1.0}}
    folder = tmp_path / "model"
    folder.mkdir()
    write_training_record(folder, training_record(hparams | {"event_wording": "paper001"}))
    assert json.loads((folder / "sce_training.json").read_text())["event_wording"] == "paper001"
    assert read_training_record(folder).event_wording == "paper001"
    assert training_record(hparams).event_wording == "sce"  # runs before the setting
    texts = ["C", "A short description."]
    said = summarize(texts, [[0.1, 0.2, 0.7]], "three_class", "paper001")["event"]
    assert (said.label, said.option_probs["near_collision"]) == ("near_collision", 0.7)
    assert said.letter_probs == [0.1, 0.7, 0.2]  # collision, near-collision, normal
    assert summarize(texts, [[0.1, 0.2, 0.7]])["event"].label == "normal"  # sce's C
    clip = load_clip(record, ClipSpec(fps=1.0, before=2.0, after=2.0, width=56, height=28))
    event, *_ = prompt_samples(clip, record, event_wording="paper001")
    question = event.user_content[-1]["text"]
    assert question.startswith("In this video, the ego vehicle's dashcam captures a driving event.")
    bad = folder / "sce_training.json"
    bad.write_text(json.dumps({"window": {}, "tasks": [], "event_wording": "paper9"}))
    with pytest.raises(ValueError, match="field 'event_wording': unknown 'paper9'"):
        read_training_record(folder)
