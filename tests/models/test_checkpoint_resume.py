"""Adapter-only checkpoints: atomic writes, exact restore of the adapters, mid-epoch resume that
replays the uninterrupted run exactly, with and without DataLoader workers: the same step losses
(sampler position, per-sample draw seeds and RNG states restored) and the same epoch aggregates
(train/*_epoch and the data/train_* counts, `EpochAggregatesCallback`)."""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.trainer.states import TrainerFn

from sce.data.clip import WindowSpec
from sce.data.datamodule import SceDataModule
from sce.data.sampling import SamplerStateCallback
from sce.models.checkpointing import (
    AtomicCheckpointIO,
    CheckpointMismatchError,
    EpochAggregatesCallback,
    RNGStateCallback,
    atomic_torch_save,
    check_trainable_keys,
    collect_epoch_aggregates,
    collect_rng_states,
    merge_epoch_aggregates,
    set_rng_states,
)
from sce.models.module import SceModule

# 3 train clips x (mcq, caption), collisions x3: 10 items, batches of 2 -> 5 batches per epoch
BATCHES_PER_EPOCH = 5
TOTAL_STEPS = 7  # epoch 0 whole, epoch 1 cut by max_steps after 2 batches
STOP_AT = 3  # mid-epoch kill
EPOCH_END = BATCHES_PER_EPOCH  # a checkpoint at the last batch of epoch 0


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


class StopAt(L.Callback):
    """Interrupts training after `step` optimizer steps (like a crash right after a save)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class Snapshot(L.Callback):
    """Parameters as they are when training starts (after any checkpoint restore), or after
    optimizer step `step` when given."""

    def __init__(self, step: int | None = None) -> None:
        self.step = step

    def on_train_start(self, trainer, pl_module) -> None:
        if self.step is None:
            self.params = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            self.params = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


class EpochLogger(Logger):
    """Keeps the epoch-level values each epoch logs: {epoch: {name: value}}."""

    name, version = "memory", 0

    def __init__(self) -> None:
        super().__init__()
        self.epochs: dict[int, dict[str, float]] = {}

    @property
    def experiment(self) -> None:
        return None

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        epoch_values = {
            k: float(v) for k, v in metrics.items() if k.endswith("_epoch") or k.startswith("data/")
        }
        if epoch_values:
            self.epochs.setdefault(int(metrics["epoch"]), {}).update(epoch_values)


def problem_manifest(manifest: Path, folder: Path) -> Path:
    """The synthetic manifest with absolute paths, the normal train clip's IMU file and the
    near-collision one's GPS file removed: counted as data/train_imu_unavailable and
    data/train_gps_unavailable in the batches holding them."""
    rows = []
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        for field in ("video", "imu", "gps"):
            row[field] = str(manifest.parent / row[field])
        if row["split"] == "train" and row["label"] == "normal":
            del row["imu"]
        if row["split"] == "train" and row["label"] == "near_collision":
            del row["gps"]
        rows.append(json.dumps(row))
    out = folder / "manifest.jsonl"
    out.write_text("\n".join(rows) + "\n")
    return out


def make_run(
    kit: Path,
    manifest: Path,
    callbacks: list,
    root: Path,
    rng_callback: bool = True,
    workers: int = 0,
    logger: Logger | None = None,
):
    """Seeded module, data and trainer; every source of randomness is switched on."""
    L.seed_everything(0)
    data = SceDataModule(
        str(manifest),
        str(kit),
        window=WindowSpec(fps=1, before=2, after=2, width=112, height=56),
        batch_size=2,
        task_weights={"mcq": 1, "caption": 1},
        imu_dropout=0.5,
        class_factors={"collision": 3},
        num_workers=workers,
    )
    module = SceModule(
        str(kit),
        finetuning="dora",
        rank=4,
        alpha=8,
        lr=3e-3,
        neftune_alpha=5.0,
        scheduler="cosine",
        warmup_ratio=0.2,
        max_new_tokens=4,
    )
    if not rng_callback:  # the control run: SceModule adds RNGStateCallback by default
        module.configure_callbacks = lambda: [SamplerStateCallback()]
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=TOTAL_STEPS,
        gradient_clip_val=1.0,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(root),
        logger=logger or False,
        log_every_n_steps=1,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return module, data, trainer


def kill_and_resume(kit: Path, manifest: Path, root: Path, workers: int) -> dict:
    """An uninterrupted run; a run killed at EPOCH_END with a checkpoint after every step; fresh
    runs resumed from the mid-epoch (STOP_AT) and the end-of-epoch (EPOCH_END) checkpoints."""
    start = time.perf_counter()
    full, full_log = LossRecorder(), EpochLogger()
    module, data, trainer = make_run(
        kit, manifest, [full], root / "full", workers=workers, logger=full_log
    )
    trainer.fit(module, datamodule=data)
    grad_norm = trainer.callback_metrics.get("train/grad_norm")

    first, at_stop = LossRecorder(), Snapshot(STOP_AT)
    saver = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=1, save_top_k=-1)
    module, data, trainer = make_run(
        kit, manifest, [first, at_stop, StopAt(EPOCH_END), saver], root / "first", workers=workers
    )
    trainer.fit(module, datamodule=data)
    ckpts = {int(p.stem.split("step=")[1]): p for p in (root / "ckpt").glob("*.ckpt")}
    ckpt = ckpts[STOP_AT]

    second, snapshot, second_log = LossRecorder(), Snapshot(), EpochLogger()
    module, data, trainer = make_run(
        kit, manifest, [second, snapshot], root / "second", workers=workers, logger=second_log
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)

    third, third_log = LossRecorder(), EpochLogger()
    resumed, data, trainer = make_run(
        kit, manifest, [third], root / "third", workers=workers, logger=third_log
    )
    trainer.fit(resumed, datamodule=data, ckpt_path=ckpts[EPOCH_END])
    return {
        "full": full.losses,
        "first": first.losses,
        "second": second.losses,
        "third": third.losses,
        "full_epochs": full_log.epochs,
        "second_epochs": second_log.epochs,
        "third_epochs": third_log.epochs,
        "ckpt": ckpt,
        "saved_params": at_stop.params,
        "restored_params": snapshot.params,
        "grad_norm": grad_norm,
        "root": root,
        "module": module,
        "seconds": time.perf_counter() - start,
    }


@pytest.fixture(scope="module")
def manifest(synthetic_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return problem_manifest(synthetic_manifest, tmp_path_factory.mktemp("problems"))


@pytest.fixture(scope="module")
def runs(tiny_kit: Path, manifest: Path, tmp_path_factory: pytest.TempPathFactory):
    """kill_and_resume without workers, plus a control resume without the RNG states."""
    root = tmp_path_factory.mktemp("resume")
    out = kill_and_resume(tiny_kit, manifest, root, workers=0)
    # control: the same resume without restoring the RNG states (one step tells)
    control = LossRecorder()
    other, data, trainer = make_run(
        tiny_kit, manifest, [control, StopAt(STOP_AT + 1)], root / "control", rng_callback=False
    )
    trainer.fit(other, datamodule=data, ckpt_path=out["ckpt"])
    return {**out, "control": control.losses}


def assert_resume_is_exact(runs: dict) -> None:
    """Step losses and epoch values of the resumed runs are those of the uninterrupted run."""
    assert len(runs["full"]) == TOTAL_STEPS
    assert len(runs["first"]) == EPOCH_END
    assert len(runs["second"]) == TOTAL_STEPS - STOP_AT
    assert len(runs["third"]) == TOTAL_STEPS - EPOCH_END
    full = torch.tensor(runs["full"])
    for head, tail in (("first", "second"), ("first", "third")):
        start = len(runs["full"]) - len(runs[tail])
        resumed = torch.tensor(runs[head][:start] + runs[tail])
        torch.testing.assert_close(resumed, full, rtol=0, atol=0)  # bitwise
    # the sequence is not trivially constant: different prompts/tasks give different losses
    assert len({round(x, 3) for x in runs["full"]}) > 3

    uninterrupted = runs["full_epochs"]
    assert set(uninterrupted) == {0, 1}  # epoch 0 whole, epoch 1 cut by max_steps
    assert uninterrupted[0]["data/train_imu_unavailable"] > 0  # counts exist to compare
    assert uninterrupted[0]["data/train_gps_unavailable"] > 0
    # resumed mid-epoch 0: its epoch values include the batches before the kill
    assert runs["second_epochs"] == uninterrupted
    # resumed from epoch 0's last batch (saved before the epoch's end): epoch 0's values are
    # logged from the checkpoint (issue 26.11), epoch 1 holds its own batches only
    assert runs["third_epochs"] == uninterrupted


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(runs):
    assert_resume_is_exact(runs)
    # without the RNG states the resumed run draws other NEFTune noise (the prompts' own draws
    # are keyed by the sampler's SampleIndex, restored with its position)
    assert len(runs["control"]) == 1
    assert abs(runs["control"][0] - runs["full"][STOP_AT]) > 1e-3


@pytest.mark.parametrize("workers", [2, pytest.param(1, marks=pytest.mark.slow)])
def test_resume_with_workers_reproduces_the_run_without(
    runs, tiny_kit, manifest, tmp_path, workers
):
    """Exact with workers too, and the same run as without them: a sample's random choices
    (IMU dropout, question) depend on (data.seed, epoch, position), not on the worker."""
    with_workers = kill_and_resume(tiny_kit, manifest, tmp_path, workers=workers)
    assert_resume_is_exact(with_workers)
    torch.testing.assert_close(
        torch.tensor(with_workers["full"]), torch.tensor(runs["full"]), rtol=0, atol=0
    )
    assert with_workers["full_epochs"] == runs["full_epochs"]


def test_checkpoint_holds_adapters_optimizer_loops_and_rng(runs):
    ckpt = torch.load(runs["ckpt"], weights_only=True)
    module = runs["module"]
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert set(ckpt["state_dict"]) == trainable
    assert all("lora_" in n for n in trainable)  # DoRA: lora_A, lora_B, lora_magnitude_vector
    assert ckpt["global_step"] == STOP_AT
    assert len(ckpt["optimizer_states"][0]["state"]) == len(trainable)  # Adam moments
    rng = ckpt["callbacks"]["RNGStateCallback"]
    assert rng["world_size"] == 1 and set(rng["ranks"][0]) >= {"torch", "numpy", "python"}
    assert ckpt["callbacks"]["SamplerStateCallback"]["consumed"] == 2 * STOP_AT  # batches of 2
    aggregates = ckpt["callbacks"]["EpochAggregatesCallback"]
    assert aggregates["world_size"] == 1 and aggregates["ranks"][0]["epoch"] == 0
    loss = aggregates["ranks"][0]["metrics"]["on_before_optimizer_step.train/loss"]
    assert loss["reduce_fx"] == "mean" and int(loss["cumulated_batch_size"]) == STOP_AT
    # atomic writer: no temporary file left next to the checkpoints (one per step)
    names = sorted(p.name for p in runs["ckpt"].parent.iterdir())
    assert len(names) == EPOCH_END and all(n.endswith(".ckpt") for n in names)


def test_fit_ckpt_path_restores_adapters_exactly_and_leaves_the_base_alone(runs, tiny_kit):
    from transformers import AutoModelForImageTextToText

    saved, restored = runs["saved_params"], runs["restored_params"]
    ckpt = torch.load(runs["ckpt"], weights_only=True)["state_dict"]
    for name, value in ckpt.items():
        torch.testing.assert_close(restored[name], value, rtol=0, atol=0)
        torch.testing.assert_close(restored[name], saved[name], rtol=0, atol=0)
    # lora_B starts at zero: a restore that silently loaded nothing would leave it there
    assert any("lora_B" in n and value.abs().max() > 0 for n, value in ckpt.items())
    base = AutoModelForImageTextToText.from_pretrained(tiny_kit).state_dict()
    frozen = [n for n in restored if n not in ckpt]
    assert len(frozen) == len(base)
    for name in frozen:
        base_name = name.removeprefix("model.base_model.model.").replace(".base_layer", "")
        torch.testing.assert_close(restored[name], base[base_name], rtol=0, atol=0)


def test_gradient_clipping_logs_the_global_norm(runs):
    assert runs["grad_norm"] is not None and float(runs["grad_norm"]) > 0


def test_mismatched_checkpoint_is_refused(runs, tiny_kit):
    state = torch.load(runs["ckpt"], weights_only=True)["state_dict"]
    other = SceModule(str(tiny_kit), finetuning="lora", rank=4, alpha=8, targets="qv")
    other.configure_model()
    with pytest.raises(CheckpointMismatchError, match="lacks 8 of the model's 8"):
        check_trainable_keys(other, {})
    with pytest.raises(CheckpointMismatchError, match="parameters the model lacks"):
        check_trainable_keys(other, state)  # DoRA on all projections into LoRA on q, v
    same = SceModule(str(tiny_kit), finetuning="dora", rank=4, alpha=8)
    same.configure_model()
    check_trainable_keys(same, state)
    missing = dict(list(state.items())[1:])
    with pytest.raises(CheckpointMismatchError, match="lacks 1 of"):
        same.on_load_checkpoint({"state_dict": missing})


def test_atomic_save_replaces_whole_files_and_cleans_up_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "a.ckpt"
    atomic_torch_save({"x": torch.arange(3)}, target)
    atomic_torch_save({"x": torch.arange(5)}, target)
    assert torch.load(target)["x"].tolist() == [0, 1, 2, 3, 4]

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        AtomicCheckpointIO().save_checkpoint({"x": torch.zeros(1)}, target)
    monkeypatch.undo()
    assert torch.load(target)["x"].tolist() == [0, 1, 2, 3, 4]  # previous checkpoint intact
    assert [p.name for p in target.parent.iterdir()] == ["a.ckpt"]


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    atomic_torch_save(collect_rng_states(), tmp_path / "rng.pt")
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.rand(7), np.random.rand(7), random.random()  # move every stream on
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.testing.assert_close(again[0], expected[0], rtol=0, atol=0)
    np.testing.assert_array_equal(again[1], expected[1])
    assert again[2] == expected[2]


def fake_trainer(**state) -> SimpleNamespace:
    defaults = {"fn": TrainerFn.FITTING, "sanity_checking": False, "world_size": 1, "rank": 0}
    values = {**defaults, **state}
    return SimpleNamespace(
        state=SimpleNamespace(fn=values["fn"]),
        sanity_checking=values["sanity_checking"],
        world_size=values["world_size"],
        global_rank=values["rank"],
    )


def test_rng_callback_makes_evaluation_neutral_and_restores_per_rank():
    callback, trainer = RNGStateCallback(), fake_trainer()
    torch.manual_seed(0)
    callback.on_train_batch_end(trainer, None, None, None, 0)
    expected = torch.rand(3)  # what the next training batch would draw
    torch.manual_seed(0)
    callback.on_train_batch_end(trainer, None, None, None, 0)
    torch.rand(5)  # the validation DataLoader iterator, created before on_validation_start
    callback.on_validation_start(trainer, None)
    torch.rand(5)  # validation samples
    saved = callback.state_dict()  # a checkpoint written during validation
    callback.on_validation_end(trainer, None)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)

    sanity = fake_trainer(sanity_checking=True)
    torch.manual_seed(1)
    callback.on_sanity_check_start(sanity, None)
    callback.on_validation_start(sanity, None)
    torch.rand(9)
    callback.on_validation_end(sanity, None)
    callback.on_sanity_check_end(sanity, None)
    after_sanity = torch.rand(3)
    torch.manual_seed(1)
    torch.testing.assert_close(after_sanity, torch.rand(3), rtol=0, atol=0)

    # resume: the state saved mid-validation is the training state of the last batch
    resumed = RNGStateCallback()
    resumed.load_state_dict(saved)
    torch.rand(11)
    resumed.on_train_start(trainer, None)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)
    # another world size: nothing restored, with a warning
    resumed.load_state_dict(saved)
    with pytest.warns(UserWarning, match="from 1 processes, this run has 2"):
        resumed.on_train_start(fake_trainer(world_size=2), None)


def _log(results, name: str, value: float, reduce_fx: str, batch_size: int = 1) -> None:
    results.log(
        "training_step",
        name,
        torch.tensor(value),
        on_step=True,
        on_epoch=True,
        reduce_fx=reduce_fx,
        batch_size=batch_size,
    )


def test_epoch_aggregates_merge_like_the_uninterrupted_epoch():
    """Every reduction: the saved part of the epoch plus the batches since the resume give
    the uninterrupted epoch's value; a value not logged since the resume comes back too."""
    from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultCollection

    trainer = SimpleNamespace(strategy=SimpleNamespace(reduce=lambda value, **_: value))
    values = {"loss": [2.0, 4.0, 9.0], "count": [1.0, 0.0, 2.0], "peak": [3.0, 7.0, 5.0]}
    fx = {"loss": "mean", "count": "sum", "peak": "max", "low": "min"}
    full, before, after = (_ResultCollection(training=True) for _ in range(3))
    for step in range(3):
        for name, series in values.items():
            for results in (full, before if step < 2 else after):
                _log(results, name, series[step], fx[name], batch_size=step + 1)
    for results in (full, before):
        _log(results, "low", -1.0, "min")  # logged before the kill only
    saved = collect_epoch_aggregates(before)
    assert set(saved) == {f"training_step.{n}" for n in fx}
    atomic_torch_save(saved, Path(tempfile.mkdtemp()) / "state.pt")  # weights-only types
    merge_epoch_aggregates(after, saved, trainer)

    def epoch_values(results) -> dict[str, float]:
        logged = results.metrics(on_step=False)["log"].items()
        return {k: float(v) for k, v in logged}

    expected = epoch_values(full)
    assert epoch_values(after) == expected  # bitwise
    assert expected == pytest.approx(
        {
            "loss_epoch": (2 * 1 + 4 * 2 + 9 * 3) / 6,
            "count_epoch": 3,
            "peak_epoch": 7,
            "low_epoch": -1,
        }
    )


def test_epoch_aggregates_skip_another_epoch_and_world_size():
    callback = EpochAggregatesCallback()
    trainer = SimpleNamespace(current_epoch=1, world_size=1, global_rank=0)
    state = {"world_size": 1, "ranks": [{"epoch": 0, "metrics": {"x": {}}}]}
    callback.load_state_dict(state)
    callback.on_train_batch_end(trainer, None, None, None, 0)  # epoch 1: nothing merged
    callback.load_state_dict({**state, "world_size": 2})
    with pytest.warns(UserWarning, match="from 2 processes, this run has 1"):
        callback.on_train_batch_end(trainer, None, None, None, 0)
