"""`sce predict` writes predictions.jsonl (issue 15 point 5)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from helpers.paths import REPO
from pytest import approx

from sce.evaluate.predictions import PREDICTIONS_FILE, PredictionFileWriter, labelled_metrics
from sce.evaluate.summary import summarize
from sce.metrics.parsing import parse_event_class


def test_prediction_writer_writes_one_line_per_item_with_parsed_class(tmp_path):
    batches = [
        [
            {
                "id": "a",
                "label": "collision",
                "task": "mcq",
                "source": "synthetic",
                "imu_on": True,
                "prediction": "A. collision",
                "option_probs": [0.7, 0.2, 0.1],
                "event_time": 4.5,
                "event_time_source": "manifest",
            },
            {
                "id": "b",
                "label": "normal",
                "task": "mcq",
                "source": "synthetic",
                "imu_on": False,
                "prediction": "gibberish",
                "option_probs": [0.3, 0.3, 0.4],
                "event_time": 2.25,
                "event_time_source": "imu",
            },
        ],
        [
            {
                "id": "c",
                "label": "near_collision",
                "task": "mcq",
                "source": "synthetic",
                "imu_on": True,
                "prediction": "B. near-collision",
                "option_probs": [0.1, 0.8, 0.1],
            },
        ],
    ]
    writer = PredictionFileWriter()
    trainer = SimpleNamespace(log_dir=str(tmp_path), default_root_dir=str(tmp_path))
    writer.write_on_epoch_end(trainer, None, batches, [])
    lines = [json.loads(x) for x in (tmp_path / PREDICTIONS_FILE).read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a", "b", "c"]
    items = [i for b in batches for i in b]
    assert [x["parsed"] for x in lines] == [parse_event_class(i["prediction"]).label for i in items]
    assert [x["valid"] for x in lines] == [True, False, True]
    assert lines[0]["option_probs"] == [0.7, 0.2, 0.1] and lines[1]["imu_on"] is False
    assert [x["event_time_s"] for x in lines] == [4.5, 2.25, None]
    assert [x["event_time_source"] for x in lines] == ["manifest", "imu", "none"]
    assert all("event_time" not in x for x in lines)  # one name for it: event_time_s
    # scored against the labels: 2 of 3 right, one invalid answer (issue 27)
    scalars = summarize(lines).scalars
    assert (scalars["acc"], scalars["invalid_rate"]) == approx((2 / 3, 1 / 3))
    table = labelled_metrics(lines, "test")
    assert table.startswith("split 'test': metrics of 3 answered items with labels\n")
    assert [line.split()[:3] for line in table.splitlines()[3:5]] == [
        ["acc", "1.000", "0.000"],  # with IMU: a and c right; video only: b invalid
        ["ll/acc", "1.000", "1.000"],
    ]


def test_event_time_fields_reject_an_unknown_source():
    import pytest

    from sce.evaluate.predictions import event_time_fields

    assert event_time_fields(3.0, "center") == {"event_time_s": 3.0, "event_time_source": "center"}
    with pytest.raises(ValueError, match="event_time_source"):
        event_time_fields(3.0, "peak")


def test_sce_predict_writes_predictions_jsonl(
    tmp_path, tiny_kit, synthetic_manifest, monkeypatch, capsys
):
    """`sce predict --run DIR` writes one parsed line per predicted item into the run, and
    prints the split it answered and the compact metrics table of the labelled items."""

    from sce.cli import main

    experiments = REPO / "experiments"
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "exp1"
    fast = [
        f"--model.model_path={tiny_kit}", f"--data.manifest={synthetic_manifest}",
        '--data.eval_imu=["on"]', "--data.window.width=56", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=1",
    ]  # fmt: skip
    assert main(["fit", "--config", str(experiments / "demo.yaml"), "--run", str(run), *fast]) == 0
    _check_tensorboard(run)
    predict = ["predict", "--run", str(run), "--ckpt", "last", "--trainer.limit_predict_batches=1"]
    capsys.readouterr()
    assert main(predict) == 0
    printed = capsys.readouterr().out
    written = list(run.rglob(PREDICTIONS_FILE))
    assert len(written) == 1
    lines = [json.loads(x) for x in written[0].read_text().splitlines()]
    assert f"predictions: {len(lines)} items of split 'test' written to" in printed
    assert f"split 'test': metrics of {len(lines)} answered items with labels" in printed
    mcq_rows = [x for x in lines if x["task"] == "mcq"]
    acc = sum(x["parsed"] == x["label"] for x in mcq_rows) / len(mcq_rows)
    (acc_line,) = [x for x in printed.splitlines() if x.split()[:1] == ["acc"]]
    assert acc_line.split()[1] == f"{acc:.3f}"
    assert lines and all(
        {"id", "label", "task", "imu_on", "prediction", "parsed", "valid", "option_probs"} <= set(x)
        for x in lines
    )
    mcq = [x for x in lines if x["task"] == "mcq"]
    assert [x["parsed"] for x in mcq] == [parse_event_class(x["prediction"]).label for x in mcq]
    # every synthetic record carries an annotated event time: the rows say so, with its value
    annotated = {
        r["id"]: r["event_time"]
        for r in map(json.loads, synthetic_manifest.read_text().splitlines())
    }
    assert [x["event_time_source"] for x in lines] == ["manifest"] * len(lines)
    assert [x["event_time_s"] for x in lines] == [annotated[x["id"]] for x in lines]


def _check_tensorboard(run):
    """The fit's TensorBoard (issue 15 point 6): images and text at their scalars' step (the
    validation after the only optimizer step: global_step 1, scalars at step 0), gradient norm
    and clips/s logged (demo.yaml has no gradient clipping), no per-source copies (one source)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = {p.parent for p in run.rglob("events.out.tfevents.*")}
    tb = EventAccumulator(str(events), size_guidance={"images": 0, "tensors": 0})
    tb.Reload()
    tags = tb.Tags()
    (acc,) = tb.Scalars("val_gen/acc")
    image_steps = {tag: [e.step for e in tb.Images(tag)] for tag in tags["images"]}
    assert image_steps and all(steps == [acc.step] for steps in image_steps.values())
    assert [e.step for e in tb.Tensors("val_gen/samples/text_summary")] == [acc.step]
    # the binary alarm's precision-recall curve: image, PR CURVES tab, PNG beside the JSON
    assert "val_gen/alarm_pr_curve" in image_steps
    assert [e.step for e in tb.Tensors("val_gen/alarm/pr_curve")] == [acc.step]
    assert len(list(run.rglob("evaluations/val_step1_alarm_pr_curve.png"))) == 1
    (norm,) = tb.Scalars("train/grad_norm")
    (rate,) = tb.Scalars("train/clips_per_sec")
    assert norm.value > 0 and rate.value > 0
    assert not [t for t in tags["scalars"] if "source_" in t]
    _check_dashboard(events, tags["scalars"])


def _check_dashboard(events, scalars):
    """The CUSTOM SCALARS layout is in the run's events and each of its charts draws at least
    one of the run's scalars (demo.yaml: LearningRateMonitor, no gradient accumulation, no
    probability task, IMU on only); the duplicate cards and hp_metric are gone (issue 27)."""
    from helpers.tensorboard import charted, dashboard_layout

    layout = dashboard_layout(events)
    empty = [
        (category, title)
        for category, charts in layout.items()
        for title, regexes in charts.items()
        if not charted(regexes, scalars)
    ]
    assert layout and not empty, empty
    assert not {"hp_metric", "train/ce_step", "val/ce", "train/micro_batch_loss_step"} & set(
        scalars
    )
