"""GPU checks (`pytest -m gpu` on a CUDA machine; skipped elsewhere, never run by CI)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from sce.data.clip import WindowSpec
from sce.data.datamodule import SceDataModule
from sce.models import adapters as adapter_lib
from sce.models.module import SceModule

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("precision", ["bf16-mixed"])  # bf16-true: refused (fp32 masters)
def test_dora_training_steps_in_bf16_lower_the_loss(
    tiny_kit, synthetic_manifest, tmp_path, precision
):
    L.seed_everything(0)
    data = SceDataModule(
        str(synthetic_manifest),
        str(tiny_kit),
        window=WindowSpec(width=112, height=56),
        batch_size=3,
    )
    module = SceModule(
        str(tiny_kit), finetuning="dora", rank=8, alpha=16, lr=5e-3, gradient_checkpointing=True
    )
    losses: list[float] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(
        accelerator="gpu",
        devices=1,
        precision=precision,
        max_steps=12,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[Record()],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, datamodule=data)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) < sum(losses[:3])


def test_flash_attention_is_chosen_when_installed():
    expected = "flash_attention_2" if adapter_lib.flash_attention_available() else "sdpa"
    assert adapter_lib.resolve_attn_implementation("auto") == expected
