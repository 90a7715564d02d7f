"""Checkpoints never run code and leave no crash debris (issue 14 points 8 and 11)."""

from __future__ import annotations

import pickle
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from sce.models.checkpointing import AtomicCheckpointIO, CheckpointSourceError


class Payload:
    """Unpickling this runs Path.touch(marker): the stand-in for a crafted checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _crafted_checkpoint(folder: Path) -> tuple[Path, Path]:
    marker = folder / "code_ran"
    path = folder / "crafted.ckpt"
    torch.save({"state_dict": {}, "x": Payload(marker)}, path)
    return path, marker


def test_local_checkpoint_loads_weights_only(tmp_path) -> None:
    """Even when weights_only=False is asked (Lightning's default for URLs), no code runs."""
    path, marker = _crafted_checkpoint(tmp_path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not marker.exists()
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "plain.ckpt")
    loaded = AtomicCheckpointIO().load_checkpoint(tmp_path / "plain.ckpt")
    assert loaded["state_dict"]["w"].tolist() == [1.0, 1.0]


def test_url_checkpoint_is_refused_before_any_download(tmp_path) -> None:
    path, marker = _crafted_checkpoint(tmp_path)
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server naming)
            requests.append(self.path)
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/last.ckpt"
    try:
        with pytest.raises(CheckpointSourceError) as err:
            AtomicCheckpointIO().load_checkpoint(url, weights_only=False)
    finally:
        server.shutdown()
        server.server_close()
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
