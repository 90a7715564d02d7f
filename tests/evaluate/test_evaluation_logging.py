"""TensorBoard a researcher can read (issue 15 point 6): no duplicate per-source scalars, images
at their scalars' step, a precision-recall curve of the alarm, clips/s and gradient norm."""

from __future__ import annotations

from pytest import approx

from sce.evaluate.summary import summarize


def _item(label: str, answer: str, source: str, imu_on: bool, probs: list[float]) -> dict:
    return {
        "id": f"{source}-{label}-{imu_on}",
        "task": "mcq",
        "label": label,
        "source": source,
        "imu_on": imu_on,
        "prediction": answer,
        "option_probs": probs,
    }


ANSWERS = [
    ("collision", "A. collision", [0.8, 0.1, 0.1]),
    ("near_collision", "A. collision", [0.5, 0.3, 0.2]),
    ("normal", "C. normal", [0.1, 0.2, 0.7]),
    ("normal", "B. near-collision", [0.3, 0.4, 0.3]),
]


def test_one_source_gets_no_per_source_copy_of_the_overall_scalars():
    items = [_item(lbl, a, "synthetic", imu, p) for lbl, a, p in ANSWERS for imu in (True, False)]
    scalars = summarize(items).scalars
    assert scalars["acc"] == approx(0.5) and scalars["imu_on/acc"] == approx(0.5)
    assert not [k for k in scalars if "source_" in k]


def test_two_sources_keep_their_per_source_scalars():
    items = [_item(lbl, a, "synthetic", True, p) for lbl, a, p in ANSWERS]
    items += [_item("collision", "C. normal", "own", True, [0.2, 0.2, 0.6])]
    scalars = summarize(items).scalars
    assert scalars["source_synthetic/acc"] == approx(2 / 4)
    assert scalars["source_own/acc"] == 0.0 and scalars["acc"] == approx(2 / 5)


# ---------------------------------------------------------------- precision-recall curve

# (label, P(A), P(B), P(C)): alarm scores P(A) + P(B) = 0.9, 0.8, 0.4, 0.3 for targets 1, 0, 1, 0
ALARM = [
    ("collision", 0.6, 0.3, 0.1),
    ("normal", 0.5, 0.3, 0.2),
    ("near_collision", 0.1, 0.3, 0.6),
    ("normal", 0.1, 0.2, 0.7),
]


def test_alarm_precision_recall_curve_on_constructed_scores():
    from sce.evaluate.summary import alarm_pr_curve

    items = [_item(lbl, "C. normal", "synthetic", True, [a, b, c]) for lbl, a, b, c in ALARM]
    summary = summarize(items)
    targets, scores = summary.alarm
    assert targets == [1, 0, 1, 0] and scores == approx([0.9, 0.8, 0.4, 0.3])
    curve = alarm_pr_curve(targets, scores)
    # thresholds ascending; an item alarms when its score >= threshold
    assert curve["thresholds"] == approx([0.3, 0.4, 0.8, 0.9])
    assert curve["precision"] == approx([2 / 4, 2 / 3, 1 / 2, 1 / 1, 1.0])
    assert curve["recall"] == approx([1.0, 1.0, 0.5, 0.5, 0.0])
    # average precision = sum over thresholds of (recall drop) x precision = 0.5 * 1 + 0.5 * 2/3
    assert summary.scalars["alarm/ap"] == approx(0.5 + 0.5 * 2 / 3)
    assert "alarm_pr_curve" in summary.figures
    height, width, channels = summary.images()["alarm_pr_curve"].shape
    assert channels == 3 and height > 100 and width > 100


def test_no_curve_when_the_alarm_has_one_class():
    items = [_item("normal", "C. normal", "synthetic", True, [0.1, 0.2, 0.7])] * 3
    summary = summarize(items)
    assert summary.alarm is None and "alarm_pr_curve" not in summary.figures


# ---------------------------------------------------------------- step of images and text


class _Writer:
    def __init__(self):
        self.calls = []

    def add_image(self, tag, image, step, dataformats):
        self.calls.append(("image", tag, step))

    def add_text(self, tag, text, step):
        self.calls.append(("text", tag, step))

    def add_pr_curve_raw(self, tag, tp, fp, tn, fn, precision, recall, num_thresholds, global_step):
        self.calls.append(("pr_curve", tag, global_step, list(tp), list(fp)))

    def flush(self):
        pass


def test_media_goes_to_the_step_lightning_gives_the_scalars():
    """In a validation at a training batch's end, global_step is 4 and the scalars' step 3."""
    from types import SimpleNamespace

    import numpy as np

    from sce.evaluate.media import MediaLogger

    trainer = SimpleNamespace(
        global_step=4,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=3)),
        loggers=[],
    )
    media = MediaLogger(trainer)
    media.writer = writer = _Writer()
    media.images("val_gen", {"confusion_matrix": np.zeros((2, 2, 3), np.uint8)})
    media.text("val_gen/samples", "| id |")
    media.pr_curve("val_gen/alarm/pr_curve", [1, 0], [0.9, 0.2])
    assert writer.calls == [
        ("image", "val_gen/confusion_matrix", 3),
        ("text", "val_gen/samples", 3),
        ("pr_curve", "val_gen/alarm/pr_curve", 3, [1, 1], [1, 0]),  # tp, fp at 0.2, 0.9
    ]


# ---------------------------------------------------------------- clips/s and gradient norm


def test_clips_per_second_counts_the_clips_of_each_optimizer_step():
    from types import SimpleNamespace

    from sce.models.throughput import CLIPS_PER_SEC, ClipsPerSecond

    now = [10.0]
    logged = []
    callback = ClipsPerSecond(clock=lambda: now[0])
    accumulate = iter([True, False, True, False])  # accumulate_grad_batches = 2
    trainer = SimpleNamespace(
        world_size=2, fit_loop=SimpleNamespace(_should_accumulate=lambda: next(accumulate))
    )
    module = SimpleNamespace(log=lambda name, value, **kw: logged.append((name, value)))
    callback.on_train_epoch_start(trainer, module)
    batch = {"meta": [{}, {}, {}]}
    for seconds in (1.0, 1.0, 0.5, 1.0):  # steps of 2 s, then 1.5 s; one batch emptied
        now[0] += seconds
        clips = {"empty": True} if seconds == 0.5 else batch
        callback.on_train_batch_end(trainer, module, None, clips, 0)
    # 6 clips x 2 ranks / 2 s, then 3 clips x 2 ranks / 1.5 s
    assert logged == [(CLIPS_PER_SEC, approx(6.0)), (CLIPS_PER_SEC, approx(4.0))]


def test_gradient_norm_is_logged_with_and_without_clipping():
    from types import SimpleNamespace

    import torch

    from sce.models.module import SceModule

    for clip, grad_after in ((None, [3.0, 4.0]), (1.0, [0.6, 0.8])):
        param = torch.nn.Parameter(torch.zeros(2))
        param.grad = torch.tensor([3.0, 4.0])
        optimizer = torch.optim.SGD([param], lr=0.1)
        logged: dict = {}

        def log(name, value, logged=logged, **kwargs):
            logged[name] = value

        module = SimpleNamespace(_trainer=None, log=log)
        SceModule.configure_gradient_clipping(module, optimizer, clip, None)
        assert float(logged["train/grad_norm"]) == approx(5.0)  # before clipping
        assert param.grad.tolist() == approx(grad_after, abs=1e-5)
