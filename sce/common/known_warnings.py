"""Warnings and log lines sce knows to be harmless, silenced the same way by every entry point
(`sce`, `make ablations`). Imports nothing but the standard library."""

from __future__ import annotations

import logging
import warnings

KNOWN_HARMLESS_WARNINGS = (
    r"LightningCLI's args parameter",  # sce hands LightningCLI its own slice of argv on purpose
    r"`is_gradient_checkpointing` is deprecated",  # transformers 5 rename, read by peft
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # lightning's pytree on torch 2.14
    # wrong for sce: SamplerStateCallback restores the sampler's position (exact resume)
    r"You're resuming from a checkpoint that ended before the epoch ended",
)
ADVERTISEMENT_PREFIX = "💡 Tip"  # Lightning's logger advertisement at every Trainer start


def _not_advertisement(record) -> bool:
    return not str(record.msg).startswith(ADVERTISEMENT_PREFIX)


def quiet_known_noise() -> None:
    """Silence KNOWN_HARMLESS_WARNINGS and Lightning's advertisement line (info log)."""
    for pattern in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)

    # the loggers Lightning's rank_zero_info writes to (a logger's filter sees its own records)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _not_advertisement not in logger.filters:
            logger.addFilter(_not_advertisement)
