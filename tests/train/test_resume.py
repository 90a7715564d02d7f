"""Resume that resumes (issue 27.1): last.ckpt is the run's latest state, and
`sce fit --run RUN --resume` continues RUN in its own log folder with the losses of an
uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from helpers.paths import EXPERIMENTS

from sce.cli import main
from sce.train.config import resolve_config
from sce.train.runs import RESUME_FIXED, RunFolderError, resolve_run_arguments

DEMO = str(EXPERIMENTS / "demo.yaml")


def fast(kit: Path, manifest: Path, *extra: str) -> list[str]:
    """The demo config on the test kit: 2 training batches an epoch."""
    return [
        "--config", DEMO, f"--model.model_path={kit}", f"--data.manifest={manifest}",
        '--data.eval_imu=["on"]', "--data.window.width=56", "--data.batch_size=1", "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=1", *extra,
    ]  # fmt: skip


def log_dir(run: Path) -> Path:
    return run / "tensorboard" / "version_0"


def read_ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def step_losses(folder: Path) -> dict[int, float]:
    """{step: train/loss_step} of every TensorBoard events file in `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    losses: dict[int, float] = {}
    for events in sorted(folder.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "train/loss_step" in acc.Tags()["scalars"]:
            for event in acc.Scalars("train/loss_step"):
                assert event.step not in losses, f"step {event.step} logged twice"
                losses[event.step] = event.value
    return losses


def test_last_ckpt_is_the_last_epoch_with_validation_every_k_epochs(
    tmp_path, tiny_kit, synthetic_manifest, monkeypatch
):
    """The issue's probe: demo.yaml (save_top_k 1 on val_gen/acc, save_last) validating every
    2 epochs, 3 epochs of 2 steps: last.ckpt held epoch 1, step 4 (the last top-k save). Now it
    holds epoch 2 and step 6, and `best` still names the top-k checkpoint."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    args = fast(tiny_kit, synthetic_manifest, "--trainer.max_epochs=3")
    args += ["--trainer.check_val_every_n_epoch=2", "--run", str(run)]
    assert main(["fit", *args]) == 0
    checkpoints = log_dir(run) / "checkpoints"
    last = read_ckpt(checkpoints / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (2, 6)
    best = [p.name for p in checkpoints.glob("epoch=*.ckpt")]
    assert best == ["epoch=1-step=4.ckpt"]  # the one validated epoch
    states = last["callbacks"]
    top_k = next(v for k, v in states.items() if k.startswith("ModelCheckpoint"))
    assert Path(top_k["best_model_path"]).name == "epoch=1-step=4.ckpt"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch=1-step=4.ckpt", "last.ckpt"]


def test_resume_continues_in_the_same_folder_with_the_losses_of_one_run(
    tmp_path, tiny_kit, synthetic_manifest, monkeypatch, capsys
):
    """2 epochs in one go vs a run stopped after epoch 0 (as a kill after its checkpoint would)
    then `sce fit --run RUN --resume`: one log folder (version_0) whose TensorBoard steps hold
    the same losses, and a last.ckpt at the same epoch and step."""
    monkeypatch.chdir(tmp_path)
    whole, split = tmp_path / "whole", tmp_path / "split"
    args = fast(tiny_kit, synthetic_manifest, "--trainer.max_epochs=2")
    assert main(["fit", *args, "--run", str(whole)]) == 0
    stop = "--trainer.callbacks+=helpers.StopAfterEpoch"
    assert main(["fit", *args, stop, "--run", str(split)]) == 0
    assert f"sce fit --run {split} --resume" in capsys.readouterr().out  # the next command
    assert read_ckpt(log_dir(split) / "checkpoints" / "last.ckpt")["global_step"] == 2

    assert main(["fit", "--run", str(split), "--resume"]) == 0
    out = capsys.readouterr().out
    assert str(log_dir(split)) in out
    assert [p.name for p in (split / "tensorboard").iterdir()] == ["version_0"]  # no version_1
    expected = step_losses(log_dir(whole))
    assert sorted(expected) == [0, 1, 2, 3]  # Lightning logs step s as s - 1 ... 4 steps
    assert step_losses(log_dir(split)) == expected
    ends = [read_ckpt(log_dir(r) / "checkpoints" / "last.ckpt") for r in (whole, split)]
    assert [(c["epoch"], c["global_step"]) for c in ends] == [(1, 4), (1, 4)]
    saved = yaml.safe_load((log_dir(split) / "config.yaml").read_text())
    assert saved["resume"] is False and saved["trainer"]["max_epochs"] == 2


@pytest.fixture
def finished_run(tmp_path, tiny_kit, synthetic_manifest) -> Path:
    """A run folder as sce fit leaves it (config.yaml of demo.yaml, a last.ckpt), no training."""
    run = tmp_path / "run"
    (log_dir(run) / "checkpoints").mkdir(parents=True)
    config = resolve_config(DEMO, [f"--model.model_path={tiny_kit}",
                                   f"--data.manifest={synthetic_manifest}"])  # fmt: skip
    (log_dir(run) / "config.yaml").write_text(yaml.safe_dump({**config, "ckpt_path": None}))
    (log_dir(run) / "checkpoints" / "last.ckpt").write_bytes(b"")
    return run


def test_resume_arguments_take_the_run_config_and_last_ckpt(finished_run):
    args = resolve_run_arguments(
        "fit", ["--run", str(finished_run), "--resume", "--seed_everything=3"]
    )
    assert args == [
        "--config", str(log_dir(finished_run) / "config.yaml"), "--seed_everything=3",
        "--run", str(finished_run), "--resume=true",
        "--ckpt_path", str(log_dir(finished_run) / "checkpoints" / "last.ckpt"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("--model.rank=8", "model.rank"),
        ("--model.lr=0.1", "model.lr"),
        ("--model.finetuning=lora", "model.finetuning"),
        ("--model.model_path=tiny:1", "model.model_path"),
        ("--data.window.fps=4", "data.window"),
    ],
)
def test_resume_refuses_a_config_that_changes_the_model_or_window(
    finished_run, override, key, capsys
):
    """Lightning would replace model.* with the checkpoint's hyper_parameters without a word."""
    assert key.rpartition(".")[0] in RESUME_FIXED or key in RESUME_FIXED
    assert main(["fit", "--run", str(finished_run), "--resume", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"sce fit: --resume: {key} is ")
    assert str(log_dir(finished_run) / "config.yaml") in err[0]


def test_resume_allows_more_epochs_and_refuses_misuse(finished_run, tmp_path, capsys):
    args = resolve_run_arguments("fit", ["--run", str(finished_run), "--resume",
                                         "--trainer.max_epochs=9"])  # fmt: skip
    assert "--trainer.max_epochs=9" in args and "--resume=true" in args
    refusals = {
        ("fit", "--resume"): "--resume needs --run RUN",
        ("test", "--run", str(finished_run), "--resume"): "--resume is for sce fit --run RUN",
        ("fit", "--run", str(finished_run), "--resume", "--ckpt_path", "a.ckpt"):
            "--resume continues from the run's last.ckpt; drop --ckpt_path",
        ("fit", "--run", str(tmp_path / "none"), "--resume"): "--run: folder not found",
    }  # fmt: skip
    for argv, message in refusals.items():
        assert main(list(argv)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    with pytest.raises(RunFolderError, match="sce fit --run RUN --resume"):
        resolve_run_arguments("fit", ["--run", str(finished_run), "--ckpt", "last"])
