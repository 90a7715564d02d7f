"""TensorBoard as a dashboard (issue 27 point 5): scalar sections, the custom-scalars layout read
back from the event file, the exact PR curve, a confusion matrix readable at card size, and a
checkpoint monitor that names a moved tag refused."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.tensorboard import charted, dashboard_layout
from pytest import approx
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from sce.common.labels import LABELS
from sce.evaluate.callback import check_monitor
from sce.evaluate.dashboard import DASHBOARD, metric_key, scalar_tag, write_dashboard
from sce.evaluate.figures import CELL_FONT_PT, confusion_matrix_figure, figure_to_array
from sce.evaluate.media import MediaLogger, pr_counts
from sce.evaluate.summary import summarize

ANSWERS = [  # (label, answer, option probabilities)
    ("collision", "A. collision", [0.8, 0.1, 0.1]),
    ("near_collision", "A. collision", [0.5, 0.3, 0.2]),
    ("normal", "C. normal", [0.1, 0.2, 0.7]),
    ("normal", "B. near-collision", [0.3, 0.4, 0.3]),
]


def _items(sources: tuple[str, ...] = ("synthetic",)) -> list[dict]:
    """Event-question items of every answer, with IMU and video only, per source."""
    return [
        {
            "id": f"{source}-{i}-{imu}",
            "task": "mcq",
            "label": label,
            "source": source,
            "imu_on": imu,
            "prediction": answer,
            "option_probs": probs,
        }
        for source in sources
        for i, (label, answer, probs) in enumerate(ANSWERS)
        for imu in (True, False)
    ]


def test_evaluation_scalars_sit_in_sections_not_one_group():
    """The issue's probe: the demo's test evaluation logged 147 scalars under `test_gen/` (148
    since evaluations count their clips). The same keys now split into five sections, none above
    36 tags, each key logged once."""
    keys = list(summarize(_items()).scalars)
    assert len(keys) == 148
    tags = [scalar_tag("test", key) for key in keys]
    sections = Counter(tag.split("/")[0] for tag in tags)
    assert sections == {
        "test_gen": 16,  # items, clips, n, acc, macro P/R/F1, invalid, binary x 6, alarm x 2
        "test_gen_imu": 24,  # the 12 non-class keys per IMU setting
        "test_gen_class": 36,  # P/R/F1/support x 3 classes, overall and per IMU setting
        "test_gen_ll": 36,
        "test_gen_ll_class": 36,
    }
    assert [metric_key(tag) for tag in tags] == keys  # the metrics.json key after the section
    assert scalar_tag("val", "acc") == "val_gen/acc"  # the shipped configs' monitors stay
    assert scalar_tag("val", "calibration/brier") == "val_gen/calibration/brier"
    assert scalar_tag("val", "imu_off/f1/normal") == "val_gen_class/imu_off/f1/normal"
    assert scalar_tag("val", "ll/imu_on/acc") == "val_gen_ll/ll/imu_on/acc"


def test_two_sources_get_a_source_section():
    keys = summarize(_items(("synthetic", "own"))).scalars
    source_tags = [scalar_tag("val", k) for k in keys if k.startswith("source_")]
    assert source_tags and {t.split("/")[0] for t in source_tags} == {"val_gen_source"}
    assert "val_gen_source/source_own/acc" in source_tags


def test_dashboard_layout_read_back_from_the_event_file(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    write_dashboard(writer)
    writer.close()
    layout = dashboard_layout(tmp_path)
    assert layout == {
        c: {t: chart[1] for t, chart in charts.items()} for c, charts in DASHBOARD.items()
    }
    keys = list(summarize(_items()).scalars)
    tags = [scalar_tag(split, k) for split in ("val", "test") for k in keys]
    tags += ["train/loss_step", "train/loss_epoch", "val/loss", "lr-AdamW", "train/grad_norm"]
    answers, training = layout["generated answers"], layout["training"]
    assert charted(answers["accuracy: with IMU vs video only"], tags) == {
        f"{split}_gen{section}/{key}"
        for split in ("val", "test")
        for section, key in (("", "acc"), ("_imu", "imu_on/acc"), ("_imu", "imu_off/acc"))
    }
    assert charted(answers["F1 per class"], tags) == {
        f"{split}_gen_class/f1/{label}" for split in ("val", "test") for label in LABELS
    }
    assert charted(answers["invalid answer rate"], tags) == {
        "val_gen/invalid_rate", "val_gen_imu/imu_on/invalid_rate",
        "val_gen_imu/imu_off/invalid_rate", "test_gen/invalid_rate",
        "test_gen_imu/imu_on/invalid_rate", "test_gen_imu/imu_off/invalid_rate",
    }  # fmt: skip
    assert charted(training["loss (train step, train epoch, validation)"], tags) == {
        "train/loss_step", "train/loss_epoch", "val/loss"
    }  # fmt: skip
    assert charted(training["learning rate"], tags) == {"lr-AdamW"}
    assert charted(training["gradient norm (before clipping)"], tags) == {"train/grad_norm"}


# ---------------------------------------------------------------- precision-recall curve

# a young model: alarm scores within 0.002 of each other (targets 1, 0, 1, 0, 0)
YOUNG = ([1, 0, 1, 0, 0], [0.6048, 0.6045, 0.6040, 0.6035, 0.6035])


def _pr_points(logdir, tag: str) -> np.ndarray:
    events = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    events.Reload()
    (event,) = events.Tensors(tag)
    proto = event.tensor_proto
    shape = [d.size for d in proto.tensor_shape.dim]
    return np.asarray(proto.float_val).reshape(shape)  # rows tp, fp, tn, fn, precision, recall


def _visible_points(data: np.ndarray) -> set[tuple[float, float]]:
    """The (recall, precision) points the PR CURVES tab draws: it drops the tail where
    nothing alarms (tp + fp = 0)."""
    alarmed = data[0] + data[1] > 0
    return {
        (round(r, 4), round(p, 4)) for p, r in zip(data[4][alarmed], data[5][alarmed], strict=True)
    }


def test_pr_curve_has_a_point_per_distinct_score(tmp_path):
    """The issue's PR CURVES tab showed one point: 127 fixed buckets put close scores into one.
    The exact curve has one point per distinct score: (recall, precision) at thresholds
    0.6035, 0.6040, 0.6045, 0.6048 = (1, 2/5), (1, 2/3), (1/2, 1/2), (1/2, 1)."""
    labels, scores = YOUNG
    bucketed = SummaryWriter(str(tmp_path / "bucketed"))
    bucketed.add_pr_curve("alarm", np.asarray(labels), np.asarray(scores), 0)
    bucketed.close()
    assert len(_visible_points(_pr_points(tmp_path / "bucketed", "alarm"))) == 1  # before

    trainer = SimpleNamespace(global_step=0, loggers=[])
    media = MediaLogger(trainer)
    media.writer = SummaryWriter(str(tmp_path / "exact"))
    media.pr_curve("val_gen/alarm/pr_curve", labels, scores)
    media.writer.close()
    data = _pr_points(tmp_path / "exact", "val_gen/alarm/pr_curve")
    assert data.shape == (6, 4)
    assert data[0].tolist() == [2, 2, 1, 1] and data[1].tolist() == [3, 1, 1, 0]  # tp, fp
    assert data[4] == approx([2 / 5, 2 / 3, 1 / 2, 1.0]) and data[5] == approx([1, 1, 0.5, 0.5])
    assert len(_visible_points(data)) == 4


def test_pr_counts_keep_at_most_127_points():
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 500), rng.random(500)
    counts = pr_counts(labels, scores)
    assert len(counts["tp"]) == 127
    assert counts["tp"][0] == labels.sum() and counts["fp"][0] + counts["tp"][0] == 500
    assert (counts["tp"] + counts["fn"] == labels.sum()).all()


# ---------------------------------------------------------------- confusion matrix


def test_confusion_matrix_is_readable_at_card_size():
    """TensorBoard shows an image card about 400 px wide. The old figure was 760 px wide with
    9 pt (12.5 px) cell text: 6.6 px once scaled into the card. Now it is drawn at 400 px with
    16.7 px text, each cell its count and its share of the true class."""
    cm = np.array([[3, 1, 0, 1], [0, 2, 2, 0], [1, 0, 4, 0]])
    fig = confusion_matrix_figure(cm)
    height, width, _ = figure_to_array(fig).shape
    assert (width, height) == (400, 300)
    texts = fig.axes[0].texts
    assert [t.get_text() for t in texts[:4]] == ["3\n60%", "1\n20%", "0\n0%", "1\n20%"]
    assert texts[10].get_text() == "4\n80%"
    pixels = min(t.get_fontsize() for t in texts) * fig.dpi / 72
    assert pixels * 400 / width >= 16  # text height in the card, px
    assert CELL_FONT_PT * fig.dpi / 72 == approx(16.67, abs=0.01)


# ---------------------------------------------------------------- checkpoint monitor


def _trainer_monitoring(monitor: str) -> SimpleNamespace:
    return SimpleNamespace(checkpoint_callback=SimpleNamespace(monitor=monitor))


def test_a_monitor_naming_a_moved_tag_is_refused_with_the_tag():
    with pytest.raises(ValueError, match=r"'val_gen/f1/collision'.*'val_gen_class/f1/collision'"):
        check_monitor(_trainer_monitoring("val_gen/f1/collision"))
    for monitor in ("val_gen/acc", "val_gen/calibration/brier", "val_gen_class/f1/normal"):
        check_monitor(_trainer_monitoring(monitor))
    check_monitor(_trainer_monitoring("val/loss"))
