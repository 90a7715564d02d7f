"""A non-finite training loss never goes unnoticed (issue 14 point 3): the batch is skipped before
the optimizer updates, counted and named, the run fails past model.max_nonfinite_steps, and no
checkpoint with non-finite weights is written."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers import cpu_trainer, poisoned_batch
from torch.utils.data import DataLoader

from sce.data.clip import WindowSpec
from sce.data.datamodule import SceDataModule
from sce.models.checkpointing import NonFiniteWeightsError
from sce.models.module import SceModule


@pytest.fixture(scope="module")
def batches(tiny_kit, synthetic_manifest) -> list[dict]:
    """Three collated training batches of the synthetic set."""
    L.seed_everything(0)
    data = SceDataModule(
        str(synthetic_manifest), str(tiny_kit), window=WindowSpec(width=112, height=56), batch_size=1,
        max_length=2048, imu_dropout=0.0,
    )  # fmt: skip
    data.setup("fit")
    loader = iter(data.train_dataloader())
    return [next(loader) for _ in range(3)]


class ListModule(SceModule):
    def configure_callbacks(self) -> list:
        return []  # a plain list-of-batches loader: no ClassResampler to track


def _fit(kit, batches: list[dict], tmp_path, **model) -> tuple[SceModule, L.Trainer]:
    """LoRA on the tiny model over `batches` in order, one optimizer step each."""
    L.seed_everything(0)
    module = ListModule(
        str(kit), finetuning="lora", rank=4, alpha=8, lr=1e-3, scheduler="constant", **model
    )
    trainer = cpu_trainer(tmp_path, max_epochs=1)
    loader = DataLoader(batches, batch_size=None, collate_fn=lambda batch: batch)
    trainer.fit(module, train_dataloaders=loader)
    return module, trainer


def _trained(module: SceModule) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def test_nonfinite_batch_is_skipped_before_the_update(tiny_kit, batches, tmp_path) -> None:
    """good, poisoned, good, good trains exactly as good, good, good: the NaN batch adds no
    gradient and its optimizer step updates nothing (AdamW moments and weights untouched)."""
    poisoned = poisoned_batch(batches[1])
    with pytest.warns(RuntimeWarning, match="non-finite training loss") as caught:
        module, trainer = _fit(
            tiny_kit, [batches[0], poisoned, *batches[1:]], tmp_path, max_nonfinite_steps=1
        )
    named = [str(w.message) for w in caught if "non-finite" in str(w.message)]
    assert len(named) == 1 and str([m["id"] for m in poisoned["meta"]]) in named[0]
    assert module.nonfinite_batches == 1
    assert trainer.callback_metrics["train/nonfinite_skipped"] == 1
    reference, _ = _fit(tiny_kit, batches, tmp_path / "reference")
    skipped, clean = _trained(module), _trained(reference)
    assert all(torch.isfinite(p).all() for p in skipped.values())
    assert all(torch.equal(skipped[n], clean[n]) for n in clean)


def test_too_many_nonfinite_batches_stop_the_run(tiny_kit, batches, tmp_path) -> None:
    poison = [poisoned_batch(batches[0]), batches[1], poisoned_batch(batches[2])]
    with pytest.warns(RuntimeWarning), pytest.raises(FloatingPointError) as err:
        _fit(tiny_kit, poison, tmp_path, max_nonfinite_steps=1)
    ids = [m["id"] for m in poison[2]["meta"]]
    assert str(err.value).startswith(
        "training loss was NaN or infinite in 2 batches, more than model.max_nonfinite_steps=1"
        f" (last at step 2, samples {ids})"
    )


def test_checkpoint_with_nonfinite_weights_is_refused(tiny_kit, batches, tmp_path) -> None:
    module, trainer = _fit(tiny_kit, batches[:1], tmp_path)
    name, param = next((n, p) for n, p in module.named_parameters() if p.requires_grad)
    with torch.no_grad():
        param.view(-1)[3] = float("inf")
    target = tmp_path / "last.ckpt"
    with pytest.raises(NonFiniteWeightsError, match="holds 1 non-finite value"):
        trainer.save_checkpoint(target)
    assert not target.exists()
