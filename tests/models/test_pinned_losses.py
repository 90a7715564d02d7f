"""Pinned loss trajectory: the first 4 training losses of the demo config, per finetuning mode.

The model and data settings come from experiments/demo.yaml (`model:` and `data:`), on the tiny
kit with seed 0 (what `tiny:0` builds) and the session's small synthetic set (9 clips), trained
on a CPU in fp32 through `Trainer.fit`, with every seed fixed, no worker processes and
deterministic algorithms. Any change to the data pipeline, prompts, collation, adapters, loss or
optimiser that moves a loss shows here as a mismatch beyond run-to-run noise.

After an INTENTIONAL change of the trajectory, re-pin (rewrites tests/fixtures/pinned_losses.json,
then review and commit its diff):

    SCE_REPIN=1 python -m pytest -q -m "slow or not slow" tests/models/test_pinned_losses.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from helpers import cpu_trainer
from helpers.paths import FIXTURES, REPO

from sce.data.datamodule import SceDataModule
from sce.models.module import SceModule

DEMO_CONFIG = REPO / "experiments" / "demo.yaml"
PINNED = FIXTURES / "pinned_losses.json"
STEPS = 4
# Measured run-to-run noise (same process twice, and in other test orders) is 0 on CPU fp32 with
# deterministic algorithms; the tolerance only absorbs BLAS differences between machines.
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


class LossRecorder(L.Callback):
    """Records each training step's loss (the value `training_step` returned)."""

    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss.detach()))


def demo_losses(finetuning: str, kit: Path, manifest: Path, tmp_path: Path) -> list[float]:
    """The first STEPS training losses of experiments/demo.yaml with `finetuning`, on `kit`
    (the tiny:0 folder) and `manifest`."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    L.seed_everything(config["seed_everything"], workers=True)
    module = SceModule(**(config["model"] | {"model_path": str(kit), "finetuning": finetuning}))
    data = SceDataModule(
        **(
            config["data"]
            | {"manifest": str(manifest), "processor_path": str(kit), "num_workers": 0}
        )
    )
    recorder = LossRecorder()
    # The 9-clip set gives one training batch per epoch at the demo's batch size, so the fit
    # runs STEPS steps (epochs); the cosine schedule spans those STEPS steps.
    trainer = cpu_trainer(
        tmp_path,
        max_steps=STEPS,
        precision=config["trainer"]["precision"],
        limit_val_batches=0,
        deterministic=True,
        callbacks=[recorder],
    )
    trainer.fit(module, datamodule=data)
    assert len(recorder.losses) == STEPS, f"the fit ran {len(recorder.losses)} steps"
    return recorder.losses


def load_pinned() -> dict[str, Any]:
    return json.loads(PINNED.read_text()) if PINNED.exists() else {}


def check_pinned(finetuning: str, losses: list[float]) -> None:
    """Compares with the pinned values, or rewrites them when SCE_REPIN=1."""
    if os.environ.get("SCE_REPIN") == "1":
        pinned = load_pinned() | {finetuning: losses}
        PINNED.parent.mkdir(parents=True, exist_ok=True)
        PINNED.write_text(json.dumps(dict(sorted(pinned.items())), indent=2) + "\n")
        return
    pinned = load_pinned()
    assert finetuning in pinned, f"no pinned losses for {finetuning}: run with SCE_REPIN=1"
    torch.testing.assert_close(
        torch.tensor(losses, dtype=torch.float64),
        torch.tensor(pinned[finetuning], dtype=torch.float64),
        **TOLERANCE,
        msg=lambda m: (
            f"{finetuning}: losses {losses} != pinned {pinned[finetuning]}\n{m}\n"
            "If the change is intentional, re-pin: see this file's docstring."
        ),
    )


@pytest.fixture(autouse=True)
def _deterministic():
    """Trainer(deterministic=True) switches deterministic algorithms on for the whole process;
    switch back afterwards so other tests run as they would alone."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize(
    "finetuning",
    [
        "dora",
        pytest.param("lora", marks=pytest.mark.slow),
        pytest.param("full", marks=pytest.mark.slow),
    ],
)
def test_demo_loss_trajectory_is_pinned(finetuning, tiny_kit, synthetic_manifest, tmp_path):
    losses = demo_losses(finetuning, tiny_kit, synthetic_manifest, tmp_path)
    check_pinned(finetuning, losses)
