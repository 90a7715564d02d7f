"""`ClipsPerSecond`: training throughput as `train/clips_per_sec`.

Lightning's ThroughputMonitor was considered: it reports nothing before `window_size` (100)
batches, which a short run never reaches, warns on every run that the module has no
`flops_per_batch`, and names its keys `train|samples_per_sec`. This callback logs, at each
optimizer step, the clips (training samples) of that step's batches over the wall time since
the previous step ended: data loading, forward, backward and the optimizer step, validation
excluded.
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

CLIPS_PER_SEC = "train/clips_per_sec"


def batch_clips(batch: Any) -> int:
    """Clips in a training batch: one per sample (`meta` row); 0 for an emptied batch."""
    if not isinstance(batch, dict) or batch.get("empty"):
        return 0
    return len(batch.get("meta", ()))


class ClipsPerSecond(Callback):
    """Logs `train/clips_per_sec` once per optimizer step: clips of the step's batches, summed
    over ranks (each rank's count times the world size, as Lightning's Throughput does), per
    second of wall time since the previous step (or the epoch's start, or a validation's end)."""

    def __init__(self, clock=time.perf_counter) -> None:
        self.clock = clock
        self._start = 0.0
        self._clips = 0

    def _restart(self) -> None:
        self._start, self._clips = self.clock(), 0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restart()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restart()  # validation inside an epoch is not training time

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._clips += batch_clips(batch)
        if trainer.fit_loop._should_accumulate():  # the optimizer has not stepped yet
            return
        elapsed = self.clock() - self._start
        if elapsed > 0:
            rate = self._clips * trainer.world_size / elapsed
            pl_module.log(CLIPS_PER_SEC, float(rate), on_step=True, on_epoch=False)
        self._restart()


__all__ = ["CLIPS_PER_SEC", "ClipsPerSecond", "batch_clips"]
