"""Shared test helpers, imported as the `helpers` package (setup.cfg's pytest `pythonpath = tests`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L


def cpu_trainer(tmp_path: Path, **kwargs: Any) -> L.Trainer:
    """A quiet single-process CPU Trainer for tests: no logger, checkpoints, progress bar,
    model summary, sanity validation or distributed sampler; `kwargs` override any of these."""
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )
    return L.Trainer(**(defaults | kwargs))


# Telemetry values no clean prompt shows, yet inside the physical bounds loading applies
# (sce.data.imu: |a| <= 200 m/s², |w| <= 50 rad/s, speed <= 100 m/s), so the file stays usable.
POISON = {"accel": 150.0, "gyro": 40.0, "speed": 90.0}


def poisoned_telemetry(record, keep, folder: Path, **changes: Any):
    """A copy of `record` (a ClipRecord) whose IMU/GPS samples at times failing `keep(t)` read
    POISON, written to `folder`: a prompt that reads any of them shows 150 m/s² or 90 m/s.
    `changes` replace other record fields (e.g. id)."""
    import dataclasses

    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    imu = pd.read_csv(record.path("imu"))
    poisoned = ~keep(imu["t"].to_numpy())
    imu.loc[poisoned, ["ax", "ay", "az"]] = POISON["accel"]
    imu.loc[poisoned, "gz"] = POISON["gyro"]
    gps = pd.read_csv(record.path("gps"))
    gps.loc[~keep(gps["t"].to_numpy()), "speed"] = POISON["speed"]
    imu.to_csv(folder / "imu.csv", index=False)
    gps.to_csv(folder / "gps.csv", index=False)
    return dataclasses.replace(
        record,
        video=str(record.path("video")),
        imu=str(folder / "imu.csv"),
        gps=str(folder / "gps.csv"),
        **changes,
    )


def poisoned_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A copy of a collated training batch whose pixels are NaN: the model's loss on it is NaN
    (as a probability target of 1e20 or an overflowing activation would make it)."""
    poisoned = dict(batch)
    for key in ("pixel_values", "pixel_values_videos"):
        if key in batch:
            poisoned[key] = batch[key].clone().fill_(float("nan"))
    poisoned["meta"] = [{**m, "id": f"poisoned_{m['id']}"} for m in batch["meta"]]
    return poisoned


class StopAfterEpoch(L.Callback):
    """Ends `fit` after epoch `epoch` as an interruption would (a kill after the epoch's
    checkpoint), without changing max_epochs and so the LR schedule."""

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True
