"""One reader of a run's log folder (sce.evaluate.run_folder), shared by `sce test --run`,
`sce report` and `sce sweep`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sce.evaluate.run_folder import RunFolder, RunFolderError, log_dirs


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_prefers_lightning_clis_config_over_the_loggers_hparams(tmp_path):
    _write(tmp_path / "hparams.yaml", "rank: 8\nbetas: !!python/tuple [0.9, 0.999]\n")
    assert RunFolder(tmp_path).config() == {"rank": 8, "betas": [0.9, 0.999]}
    _write(tmp_path / "config.yaml", "model: {rank: 32}\n")
    assert RunFolder(tmp_path).config() == {"model": {"rank": 32}}
    assert RunFolder(tmp_path / "empty").config() == {}


def test_metrics_and_evaluations(tmp_path):
    run = RunFolder(tmp_path)
    assert run.metrics() is None
    _write(run.metrics_path, json.dumps({"split": "test", "step": 12, "scalars": {"acc": 0.5}}))
    assert run.metrics()["scalars"] == {"acc": 0.5}
    for step in (12, 3, 100):
        _write(tmp_path / "evaluations" / f"test_step{step}.json", "{}")
    _write(tmp_path / "evaluations" / "val_step7.json", "{}")
    _write(tmp_path / "evaluations" / "test_step9.json.tmp", "{}")
    assert [step for step, _ in run.evaluations("test")] == [3, 12, 100]
    assert [path.name for _, path in run.evaluations("val")] == ["val_step7.json"]


def test_unreadable_files_name_themselves(tmp_path):
    bad = _write(tmp_path / "metrics.json", "{not json")
    with pytest.raises(RunFolderError, match=f"{bad}: cannot read JSON"):
        RunFolder(tmp_path).metrics()
    bad = _write(tmp_path / "config.yaml", "model: [unclosed\n")
    with pytest.raises(RunFolderError, match=f"{bad}: cannot read YAML"):
        RunFolder(tmp_path).config()


def test_log_dirs_root_first_then_each_level_in_name_order(tmp_path):
    for folder in ("tensorboard/version_1", "tensorboard/version_0", "b", "a", "."):
        _write(tmp_path / folder / "metrics.json", "{}")
    _write(tmp_path / "x/y/z/metrics.json", "{}")  # three levels down: not searched
    found = [p.relative_to(tmp_path).as_posix() for p in log_dirs(tmp_path, "metrics.json")]
    assert found == [".", "a", "b", "tensorboard/version_0", "tensorboard/version_1"]


def test_checkpoint_without_last_takes_the_only_one(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(RunFolderError, match="no last.ckpt"):
        run.checkpoint("last")
    only = _write(tmp_path / "checkpoints" / "epoch=0-step=1.ckpt", "")
    assert run.checkpoint("best") == only


def test_non_utf8_files_name_themselves_and_the_byte(tmp_path):
    """Issue 26.10: a non-UTF-8 metrics.json or config.yaml was a bare UnicodeDecodeError."""
    bad = tmp_path / "metrics.json"
    bad.write_bytes(b'{"split": "test", "note": "\xff"}')
    with pytest.raises(
        RunFolderError, match=rf"^{bad}: not UTF-8 text \(byte 0xff at offset 27\)$"
    ):
        RunFolder(tmp_path).metrics()
    config = tmp_path / "config.yaml"
    config.write_bytes(b"model:\n  model_path: Qwen\xe9-7B\n")
    with pytest.raises(
        RunFolderError, match=rf"^{config}: not UTF-8 text \(byte 0xe9 at offset 25\)$"
    ):
        RunFolder(tmp_path).config()
