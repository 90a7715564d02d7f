"""Shared test helpers (importable as `helpers`: pytest puts tests/ on sys.path)."""

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


POISON = 1000.0  # a telemetry value no prompt may show


def poisoned_telemetry(record, keep, folder: Path, **changes: Any):
    """A copy of `record` (a ClipRecord) whose IMU/GPS samples at times failing `keep(t)` read
    POISON, written to `folder`: a prompt that reads any of them shows 1000 m/s² or km/h.
    `changes` replace other record fields (e.g. id)."""
    import dataclasses

    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    imu = pd.read_csv(record.path("imu"))
    imu.loc[~keep(imu["t"].to_numpy()), ["ax", "ay", "az", "gz"]] = POISON
    gps = pd.read_csv(record.path("gps"))
    gps.loc[~keep(gps["t"].to_numpy()), "speed"] = POISON
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
