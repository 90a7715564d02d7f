"""Adapter-only checkpoints: atomic writes, exact restore of the adapters, mid-epoch resume that
replays the uninterrupted loss sequence (sampler position + RNG states restored)."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from sce.checkpointing import (
    AtomicCheckpointIO,
    CheckpointMismatchError,
    RNGStateCallback,
    atomic_torch_save,
    check_trainable_keys,
    collect_rng_states,
    set_rng_states,
)
from sce.data.datamodule import SceDataModule
from sce.data.sampling import SamplerStateCallback
from sce.models.module import SceModule

TOTAL_STEPS = 6
STOP_AT = 3  # mid-epoch: 3 train clips, collisions x3 -> 5 items (batches) per epoch


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
    """Parameters as they are when training starts (after any checkpoint restore)."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.params = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


def make_run(kit: Path, manifest: Path, callbacks: list, root: Path, rng_callback: bool = True):
    """Seeded module, data and trainer; every source of randomness is switched on."""
    L.seed_everything(0)
    data = SceDataModule(
        str(manifest),
        str(kit),
        fps=1,
        before=2,
        after=2,
        width=112,
        height=56,
        batch_size=1,
        task_weights={"mcq": 1, "caption": 1, "probability": 1},
        imu_dropout=0.5,
        class_factors={"collision": 3},
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
        logger=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return module, data, trainer


@pytest.fixture(scope="module")
def runs(tiny_kit: Path, synthetic_manifest: Path, tmp_path_factory: pytest.TempPathFactory):
    """Uninterrupted run; run stopped at STOP_AT with a checkpoint; fresh run resumed from it."""
    root = tmp_path_factory.mktemp("resume")
    full = LossRecorder()
    module, data, trainer = make_run(tiny_kit, synthetic_manifest, [full], root / "full")
    trainer.fit(module, datamodule=data)
    grad_norm = trainer.callback_metrics.get("train/grad_norm")

    first = LossRecorder()
    saver = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=STOP_AT, save_top_k=-1)
    module, data, trainer = make_run(
        tiny_kit, synthetic_manifest, [first, StopAt(STOP_AT), saver], root / "first"
    )
    trainer.fit(module, datamodule=data)
    saved_params = {n: p.detach().clone() for n, p in module.named_parameters()}
    (ckpt,) = sorted((root / "ckpt").glob("*.ckpt"))

    second, snapshot = LossRecorder(), Snapshot()
    module, data, trainer = make_run(
        tiny_kit, synthetic_manifest, [second, snapshot], root / "second"
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)

    # control: the same resume without restoring the RNG states (one step tells)
    control = LossRecorder()
    other, data, trainer = make_run(
        tiny_kit,
        synthetic_manifest,
        [control, StopAt(STOP_AT + 1)],
        root / "control",
        rng_callback=False,
    )
    trainer.fit(other, datamodule=data, ckpt_path=ckpt)
    return {
        "full": full.losses,
        "first": first.losses,
        "second": second.losses,
        "control": control.losses,
        "ckpt": ckpt,
        "saved_params": saved_params,
        "restored_params": snapshot.params,
        "grad_norm": grad_norm,
        "root": root,
        "module": module,
    }


def test_resume_mid_epoch_reproduces_the_uninterrupted_losses(runs):
    assert len(runs["full"]) == TOTAL_STEPS
    assert len(runs["first"]) == STOP_AT
    assert len(runs["second"]) == TOTAL_STEPS - STOP_AT
    resumed = runs["first"] + runs["second"]
    np.testing.assert_allclose(resumed, runs["full"], rtol=0, atol=1e-5)
    # the sequence is not trivially constant: different prompts/tasks give different losses
    assert len({round(x, 3) for x in runs["full"]}) > 3
    # without the RNG states the resumed run draws other tasks / IMU dropout / NEFTune noise
    assert len(runs["control"]) == 1
    assert abs(runs["control"][0] - runs["full"][STOP_AT]) > 1e-3


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
    assert ckpt["callbacks"]["SamplerStateCallback"]["consumed"] == STOP_AT
    # atomic writer: no temporary file left next to the checkpoint
    assert [p.name for p in runs["ckpt"].parent.iterdir()] == [runs["ckpt"].name]


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
