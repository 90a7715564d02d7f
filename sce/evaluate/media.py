"""The one way sce writes TensorBoard images, text and curves: at the step of the scalars.

Lightning logs `self.log` scalars at `trainer.fit_loop.epoch_loop._batches_that_stepped`
(LoggerConnector.log_metrics), not at `trainer.global_step`: during a validation at the end of a
training batch the batch has stepped the optimizer (global_step N) but not yet that counter
(N - 1). Images written at global_step therefore sat one step right of their scalars. Every
image, text and curve goes through `MediaLogger`, which asks `logged_step` for the step.

The PR CURVES tab: `SummaryWriter.add_pr_curve` buckets the scores into at most 127 fixed
thresholds (i/126); the alarm scores of a young model sit within a few hundredths of each other,
so they fell into one bucket and the tab drew one point. `pr_curve` writes the exact curve
instead (`add_pr_curve_raw`): one point per distinct score (at most MAX_PR_POINTS, then evenly
spaced distinct scores), the counts and precision/recall of "alarm when score >= threshold".
TensorBoard labels the points' thresholds i/(n-1), their rank, not the score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from lightning.pytorch import Trainer


def logged_step(trainer: Trainer) -> int:
    """The step Lightning gives the scalars logged now (see the module docstring)."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    stepped = getattr(loop, "_batches_that_stepped", None)
    return int(trainer.global_step if stepped is None else stepped)


def tensorboard_writer(trainer: Trainer):
    """The run's TensorBoard SummaryWriter, None without a TensorBoardLogger."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class MediaLogger:
    """Images, text and precision-recall curves of one trainer, at `logged_step`. Every method
    does nothing without a TensorBoard logger."""

    def __init__(self, trainer: Trainer) -> None:
        self.writer = tensorboard_writer(trainer)
        self.step = logged_step(trainer)

    def images(self, prefix: str, images: Mapping[str, np.ndarray]) -> None:
        """HWC uint8 images as `<prefix>/<name>`."""
        if self.writer is not None:
            for name, image in images.items():
                self.writer.add_image(f"{prefix}/{name}", image, self.step, dataformats="HWC")

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, self.step)

    def pr_curve(self, tag: str, labels: Sequence[int], scores: Sequence[float]) -> None:
        """TensorBoard's precision-recall curve (PR CURVES tab) of binary labels and scores,
        one point per distinct score (`pr_counts`)."""
        if self.writer is not None and len(labels):
            counts = pr_counts(labels, scores)
            self.writer.add_pr_curve_raw(
                tag, *counts.values(), num_thresholds=len(counts["tp"]), global_step=self.step
            )

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()


MAX_PR_POINTS = 127  # TensorBoard's PR curve summary holds at most 127 thresholds


def pr_counts(
    labels: Sequence[int], scores: Sequence[float], max_points: int = MAX_PR_POINTS
) -> dict[str, np.ndarray]:
    """tp, fp, tn, fn, precision, recall (add_pr_curve_raw's order) at each distinct score
    taken as threshold, ascending (an item alarms when its score >= threshold); precision is
    1 where nothing alarms. With more distinct scores than `max_points`, evenly spaced ones."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    thresholds = np.unique(s)
    if len(thresholds) > max_points:
        thresholds = thresholds[np.linspace(0, len(thresholds) - 1, max_points).round().astype(int)]
    alarm = s[None, :] >= thresholds[:, None]
    tp = (alarm & y).sum(axis=1).astype(np.float64)
    fp = (alarm & ~y).sum(axis=1).astype(np.float64)
    fn, tn = y.sum() - tp, (~y).sum() - fp
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=tp + fp > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "precision": precision, "recall": recall}


__all__ = ["MediaLogger", "logged_step", "pr_counts", "tensorboard_writer"]
