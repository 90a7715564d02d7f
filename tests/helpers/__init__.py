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
