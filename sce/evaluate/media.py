"""The one way sce writes TensorBoard images, text and curves: at the step of the scalars.

Lightning logs `self.log` scalars at `trainer.fit_loop.epoch_loop._batches_that_stepped`
(LoggerConnector.log_metrics), not at `trainer.global_step`: during a validation at the end of a
training batch the batch has stepped the optimizer (global_step N) but not yet that counter
(N - 1). Images written at global_step therefore sat one step right of their scalars. Every
image, text and curve goes through `MediaLogger`, which asks `logged_step` for the step.
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
        """TensorBoard's precision-recall curve (PR CURVES tab) of binary labels and scores."""
        if self.writer is not None and len(labels):
            self.writer.add_pr_curve(tag, np.asarray(labels), np.asarray(scores), self.step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()


__all__ = ["MediaLogger", "logged_step", "tensorboard_writer"]
