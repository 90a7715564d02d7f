"""Checkpoints never run code and leave no crash debris (issue 14 points 8 and 11), whatever
the config's trainer.plugins hold (issue 26 point 1)."""

from __future__ import annotations

import pickle
import uuid

import pytest
import torch
from helpers import cpu_trainer
from helpers.payload import crafted_checkpoint, serving
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

from sce.models.checkpointing import (
    AtomicCheckpointIO,
    CheckpointIOError,
    CheckpointIOGuard,
    CheckpointSourceError,
)


def test_local_checkpoint_loads_weights_only(tmp_path) -> None:
    """Even when weights_only=False is asked (Lightning's default for URLs), no code runs."""
    path, marker = crafted_checkpoint(tmp_path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not marker.exists()
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "plain.ckpt")
    loaded = AtomicCheckpointIO().load_checkpoint(tmp_path / "plain.ckpt")
    assert loaded["state_dict"]["w"].tolist() == [1.0, 1.0]


def test_url_checkpoint_is_refused_before_any_download(tmp_path) -> None:
    path, marker = crafted_checkpoint(tmp_path)
    with serving(path.read_bytes()) as (base, requests):
        url = f"{base}/last.ckpt"
        with pytest.raises(CheckpointSourceError) as err:
            AtomicCheckpointIO().load_checkpoint(url, weights_only=False)
    assert str(err.value).startswith(
        f"ckpt_path '{url}': checkpoints are not loaded from HTTP(S) URLs"
    )
    assert "Download the file, check its origin, and pass the local path" in str(err.value)
    assert requests == [] and not marker.exists()


def test_cli_trainer_uses_the_safe_checkpoint_io(tmp_path) -> None:
    from sce.cli import _lightning_cli_kwargs, _sce_cli_class

    # the trainer the CLI builds (the plugin is given as a class_path, so the saved
    # config.yaml can be loaded again)
    args = ["--model.model_path=tiny:0", "--data.manifest=m.jsonl", "--trainer.logger=false"]
    args += [f"--trainer.default_root_dir={tmp_path}"]
    cli = _sce_cli_class()(args=args, run=False, **_lightning_cli_kwargs())
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO


# ------------------------------------------------ issue 26.1: a trainer.plugins list in a config
PLUGINS_WITHOUT_IO = (
    '--trainer.plugins=[{"class_path": '
    '"lightning.fabric.plugins.environments.LightningEnvironment"}]'
)


def test_a_plugins_list_in_the_config_keeps_the_safe_checkpoint_io(tmp_path) -> None:
    """The issue's probe: a config's trainer.plugins list replaced the default that carried
    AtomicCheckpointIO, and the trainer then downloaded an http ckpt_path and ran its pickle
    (marker written). Now the CLI's trainer keeps AtomicCheckpointIO next to the plugin given."""
    from sce.cli import _lightning_cli_kwargs, _sce_cli_class

    path, marker = crafted_checkpoint(tmp_path)
    args = ["--model.model_path=tiny:0", "--data.manifest=m.jsonl", "--trainer.logger=false"]
    args += [f"--trainer.default_root_dir={tmp_path}", PLUGINS_WITHOUT_IO]
    cli = _sce_cli_class()(args=args, run=False, **_lightning_cli_kwargs())
    strategy = cli.trainer.strategy
    assert type(strategy.checkpoint_io) is AtomicCheckpointIO
    # the config's list replaced the default: it holds the environment plugin only
    assert [p.class_path for p in cli.config.trainer.plugins] == [
        "lightning.fabric.plugins.environments.LightningEnvironment"
    ]
    with serving(path.read_bytes()) as (base, requests):
        with pytest.raises(CheckpointSourceError):
            strategy.load_checkpoint(f"{base}/evil-{uuid.uuid4().hex}.ckpt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        strategy.load_checkpoint(path, weights_only=False)
    assert requests == [] and not marker.exists()


def test_the_module_guard_puts_the_safe_io_on_any_trainer(tmp_path) -> None:
    """A trainer built without sce's CLI or defaults (plugins=[another plugin]) gets
    AtomicCheckpointIO from SceModule's own callbacks before Lightning restores a ckpt_path;
    a wrapper keeps wrapping (now AtomicCheckpointIO); another CheckpointIO is refused."""
    from sce.models.checkpointing import resume_callbacks

    assert sum(isinstance(c, CheckpointIOGuard) for c in resume_callbacks()) == 1
    trainer = cpu_trainer(tmp_path, plugins=[LightningEnvironment()])
    assert type(trainer.strategy.checkpoint_io) is TorchCheckpointIO
    CheckpointIOGuard().setup(trainer, None, "fit")
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO

    wrapped = cpu_trainer(tmp_path, plugins=[AsyncCheckpointIO()])
    CheckpointIOGuard().setup(wrapped, None, "fit")
    io = wrapped.strategy.checkpoint_io
    assert type(io) is AsyncCheckpointIO and type(io.checkpoint_io) is AtomicCheckpointIO

    class OwnIO(TorchCheckpointIO):
        pass

    other = cpu_trainer(tmp_path, plugins=[OwnIO()])
    with pytest.raises(CheckpointIOError, match=r"trainer.plugins: checkpoint IO .*OwnIO"):
        CheckpointIOGuard().setup(other, None, "fit")


def test_fit_with_a_plugins_list_loads_a_crafted_checkpoint_weights_only(
    tmp_path, tiny_kit
) -> None:
    """The whole Lightning path: SceModule fit with plugins=[LightningEnvironment()] and a
    crafted local ckpt_path fails in the weights-only unpickler; no code from the file runs."""
    from torch.utils.data import DataLoader

    from sce.models.module import SceModule

    path, marker = crafted_checkpoint(tmp_path)
    module = SceModule(str(tiny_kit), finetuning="lora", rank=2, alpha=4)
    trainer = cpu_trainer(tmp_path, plugins=[LightningEnvironment()], max_steps=1)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        trainer.fit(module, train_dataloaders=DataLoader([0]), ckpt_path=path, weights_only=False)
    assert not marker.exists()


def test_fsdp_strategies_read_checkpoint_files_weights_only(tmp_path) -> None:
    """FSDP1 and FSDP2 read checkpoint files themselves (not through the CheckpointIO):
    Lightning's FSDP1 full-checkpoint reader is an unpickler without a weights-only mode."""
    from sce.models.distributed import AdapterModelParallelStrategy, QwenFSDPStrategy

    path, marker = crafted_checkpoint(tmp_path)
    for strategy in (QwenFSDPStrategy(), AdapterModelParallelStrategy()):
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            strategy.load_checkpoint(path, weights_only=False)
        with pytest.raises(CheckpointSourceError):
            strategy.load_checkpoint("https://example.invalid/last.ckpt")
    assert not marker.exists()


def test_sce_fit_refuses_an_http_ckpt_path_end_to_end(tmp_path) -> None:
    """Through the `sce` command, with the issue's plugins list: refused before anything is
    built or downloaded; exit 2; the message names the URL; the payload never runs."""
    import os
    import subprocess
    import sys

    from helpers.paths import REPO

    path, marker = crafted_checkpoint(tmp_path)
    with serving(path.read_bytes()) as (base, requests):
        url = f"{base}/evil-{uuid.uuid4().hex}.ckpt"
        args = ["fit", "--model.model_path=tiny:0", f"--data.manifest={tmp_path}/m.jsonl"]
        args += [f"--trainer.default_root_dir={tmp_path}", PLUGINS_WITHOUT_IO, "--ckpt_path", url]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-m", "sce.cli", *args],
            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert (
        f"sce fit: ckpt_path '{url}': checkpoints are not loaded from HTTP(S) URLs" in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert requests == [] and not marker.exists()


# ------------------------------------------------------------------ point 11: crash leftovers
def test_stale_checkpoint_temporaries_are_removed_at_fit_start(tmp_path) -> None:
    """A write killed mid-way leaves ".last.ckpt.<random>.tmp" (checkpoint-sized); the next
    fit into that folder removes it and keeps everything else."""
    from helpers import cpu_trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    from sce.models.checkpointing import StaleTemporaryCleaner, atomic_torch_save, resume_callbacks

    folder = tmp_path / "checkpoints"
    atomic_torch_save({"w": torch.zeros(4)}, folder / "last.ckpt")
    crashed = folder / ".last.ckpt.k3j2h1ab.tmp"  # as tempfile.mkstemp names it
    crashed.write_bytes(b"\0" * 100_000)
    other = folder / ".editor-swap.tmp"  # not a checkpoint's temporary: kept
    other.write_bytes(b"notes")
    trainer = cpu_trainer(
        tmp_path, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=folder)]
    )
    cleaner = next(c for c in resume_callbacks() if isinstance(c, StaleTemporaryCleaner))
    cleaner.on_fit_start(trainer, None)
    assert sorted(p.name for p in folder.iterdir()) == [".editor-swap.tmp", "last.ckpt"]
