"""The demo says what it is doing at every stage, in a terminal and in a log file alike
(issue 27: "about 10 minutes of the demo's warm-up print nothing")."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from sce.studies.demo import EpochLines, _trainer


def test_each_training_epoch_prints_one_flushed_line(capsys, monkeypatch):
    lines = EpochLines("warmup")
    clock = iter([100.0, 112.4])
    monkeypatch.setattr("sce.studies.demo.time.time", lambda: next(clock))
    trainer = SimpleNamespace(
        current_epoch=2,
        max_epochs=10,
        callback_metrics={"train/loss_epoch": torch.tensor(1.23456), "val/loss": torch.tensor(2.0)},
    )
    lines.on_train_epoch_start(trainer, None)
    lines.on_train_epoch_end(trainer, None)
    assert capsys.readouterr().out == (
        "[demo] warmup: epoch 3/10, train/loss_epoch 1.235, val/loss 2.000, 12 s\n"
    )


def test_every_demo_trainer_carries_the_epoch_lines(tmp_path):
    trainer = _trainer(tmp_path, "recipe", 1, [])
    assert [c.stage for c in trainer.callbacks if isinstance(c, EpochLines)] == ["recipe"]
