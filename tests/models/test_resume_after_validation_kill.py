"""A fit killed during its end-of-epoch validation and resumed logs that epoch's values and
validation, and cleans the crashed write's temporary where the checkpoint lives (issue 26.11)."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import pytest
from helpers import cpu_trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers.logger import Logger

from sce.data.clip import WindowSpec
from sce.data.datamodule import SceDataModule
from sce.models.module import SceModule

BATCHES_PER_EPOCH = 3  # 3 train clips x (mcq, caption), batches of 2


class Killed(RuntimeError):
    pass


class KillInValidation(L.Callback):
    """Stops the run inside the first validation after training began (a kill -9 there)."""

    def on_validation_batch_end(self, trainer, *args) -> None:
        if not trainer.sanity_checking:
            raise Killed("killed during validation")


class EpochValues(Logger):
    """{epoch: {name: (step, value)}} of the epoch values (train/*_epoch) and val/*."""

    name, version = "memory", 0

    def __init__(self) -> None:
        super().__init__()
        self.epochs: dict[int, dict[str, tuple[int, float]]] = {}

    @property
    def experiment(self) -> None:
        return None

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        for name, value in metrics.items():
            if name.endswith("_epoch") or name.startswith("val/"):
                self.epochs.setdefault(int(metrics["epoch"]), {})[name] = (step, float(value))


def fit(kit: Path, manifest: Path, root: Path, callbacks: list, ckpt_path=None) -> EpochValues:
    L.seed_everything(0)
    data = SceDataModule(
        str(manifest), str(kit), window=WindowSpec(fps=1, before=2, after=2, width=112, height=56),
        batch_size=2, task_weights={"mcq": 1, "caption": 1}, eval_tasks=["mcq"],
    )  # fmt: skip
    module = SceModule(str(kit), finetuning="dora", rank=4, alpha=8, lr=3e-3, max_new_tokens=4)
    log = EpochValues()
    trainer = cpu_trainer(
        root, max_epochs=2, callbacks=callbacks, logger=log, log_every_n_steps=1,
        limit_val_batches=1, enable_checkpointing=True,
    )  # fmt: skip
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return log


def test_resume_after_a_kill_in_validation_logs_the_interrupted_epoch(
    tiny_kit, synthetic_manifest, tmp_path
):
    """The issue's probe: killed in epoch 0's validation, resumed from the checkpoint of
    epoch 0's last batch, the run logged only epoch 1 (no val/loss, no train/loss_epoch for
    epoch 0) without a word, and the crashed write's temporary stayed. Now epoch 0's values
    are logged at the uninterrupted run's step with its values, and a warning says so."""
    full = fit(tiny_kit, synthetic_manifest, tmp_path / "full", [])
    assert sorted(full.epochs) == [0, 1]
    assert {"val/loss", "train/loss_epoch"} <= set(full.epochs[0])

    saved = tmp_path / "killed" / "ckpt"
    every_step = ModelCheckpoint(dirpath=saved, every_n_train_steps=1, save_top_k=-1)
    with pytest.raises(Killed):
        fit(tiny_kit, synthetic_manifest, tmp_path / "killed", [every_step, KillInValidation()])
    last = saved / f"epoch=0-step={BATCHES_PER_EPOCH}.ckpt"
    assert sorted(p.name for p in saved.iterdir())[-1] == last.name
    crashed = saved / f".{last.name}.k3j2h1ab.tmp"  # a write killed mid-way leaves this
    crashed.write_bytes(b"\0" * 100_000)

    resumed_to = ModelCheckpoint(dirpath=tmp_path / "resumed" / "ckpt", save_top_k=-1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = fit(tiny_kit, synthetic_manifest, tmp_path / "resumed", [resumed_to], last)
    messages = [str(w.message) for w in caught if "before that epoch ended" in str(w.message)]
    assert len(messages) == 1
    assert messages[0].startswith(
        "resumed at epoch 1 from a checkpoint written after epoch 0's last training batch"
    )
    assert "train/loss_epoch" in messages[0] and "its validation (val/*)" in messages[0]
    assert resumed.epochs == full.epochs  # same names, steps and values, both epochs
    assert not crashed.exists() and last.exists()
