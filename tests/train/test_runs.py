"""A run you can find (issue 15 point 3): `--run DIR` moves the whole run, `sce test --run DIR`
takes its config and checkpoint and writes beside its training results."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.paths import EXPERIMENTS

from sce.cli import main
from sce.train.runs import RunFolderError, find_checkpoint, find_log_dir, resolve_run_arguments


def test_fit_then_test_in_one_run_folder(
    tmp_path, tiny_kit, synthetic_manifest, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # the config's own runs/demo_fit would land here
    run = tmp_path / "exp1"
    fast = [
        f"--model.model_path={tiny_kit}", f"--data.manifest={synthetic_manifest}",
        '--data.eval_imu=["on"]', "--data.window.width=56", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
    ]  # fmt: skip
    assert main(["fit", "--config", str(EXPERIMENTS / "demo.yaml"), "--run", str(run), *fast]) == 0
    out = capsys.readouterr().out
    log_dir = run / "tensorboard" / "version_0"
    assert f"sce fit: run folder {run}" in out and str(log_dir) in out
    assert "checkpoints: best" in out and f"sce test --run {run} --ckpt best" in out
    assert "acc" in out and "invalid_rate" in out  # the compact validation table
    assert not (tmp_path / "runs").exists()  # nothing left at the config's pinned folders
    fit_config = (log_dir / "config.yaml").read_text()
    assert (log_dir / "checkpoints" / "last.ckpt").is_file()
    evaluations = log_dir / "evaluations"
    assert [p.name for p in evaluations.glob("*.json")] == ["val_step1.json"]

    assert (
        main(["test", "--run", str(run), "--ckpt", "last", "--trainer.limit_test_batches=1"]) == 0
    )
    out = capsys.readouterr().out
    assert "test evaluation (generated answers):" in out
    assert "Test metric" not in out  # Lightning's results dump is replaced by the table
    assert f"wrote {log_dir / 'metrics.json'}" in out
    # named by the step of the checkpoint tested (1: one training batch), not the test loop's 0
    assert torch.load(log_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 1
    assert sorted(p.name for p in evaluations.glob("*.json")) == [
        "test_step1.json",
        "val_step1.json",
    ]
    assert json.loads((log_dir / "metrics.json").read_text())["split"] == "test"
    assert (log_dir / "config.yaml").read_text() == fit_config  # the recipe is kept
    assert (log_dir / "config_test.yaml").is_file()
    assert list((run / "tensorboard").iterdir()) == [log_dir]  # no second log folder


def test_run_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(RunFolderError, match=f"folder not found: {tmp_path / 'none'}"):
        find_log_dir(tmp_path / "none")
    with pytest.raises(RunFolderError, match="no config.yaml in it or two levels down"):
        find_log_dir(tmp_path)
    with pytest.raises(RunFolderError, match="--ckpt best|last needs --run"):
        resolve_run_arguments("test", ["--ckpt", "best"])
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(RunFolderError, match="no last.ckpt"):
        find_checkpoint(tmp_path, "last")


def test_run_arguments_put_the_run_config_first_and_keep_overrides(tmp_path):
    log_dir = tmp_path / "tensorboard" / "version_3"
    (log_dir / "checkpoints").mkdir(parents=True)
    (log_dir / "config.yaml").write_text("{}")
    (log_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    args = resolve_run_arguments("test", ["--run", str(tmp_path), "--ckpt", "last", "--x=1"])
    assert args == [
        "--config", str(log_dir / "config.yaml"),
        "--ckpt_path", str(log_dir / "checkpoints" / "last.ckpt"),
        "--run", str(tmp_path), "--x=1",
    ]  # fmt: skip
    given = resolve_run_arguments("test", ["--run", str(tmp_path), "--ckpt_path", "a.ckpt"])
    assert given[:2] == ["--config", str(log_dir / "config.yaml")] and "a.ckpt" in given


def test_misused_run_flags_give_one_line_naming_the_fix(tmp_path, capsys):
    """`sce fit --run RUN --ckpt last` (by analogy with sce test) and `sce test --ckpt best`
    without a run: exit 2 with one line, no traceback (issue 27, CLI polish)."""
    assert main(["fit", "--run", str(tmp_path), "--ckpt", "last"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "sce fit: --ckpt best|last is for sce validate/test/predict; to continue a run give "
        "sce fit --run RUN --resume"
    ]
    assert main(["test", "--ckpt", "best"]) == 2
    assert capsys.readouterr().err.strip() == (
        "sce test: --ckpt best|last needs --run DIR (sce validate/test/predict)"
    )


def test_help_lists_every_subcommand(capsys):
    from sce.cli import LIGHTNING_COMMANDS, build_parser

    parser, _ = build_parser()
    listing = parser.format_help()
    for name in (*LIGHTNING_COMMANDS, "demo", "data", "export", "infer", "report", "sweep"):
        assert f"\n    {name} " in listing, name
