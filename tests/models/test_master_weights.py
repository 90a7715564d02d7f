"""fp32 master weights: a bf16 full fine-tune must update like an fp32 one.

AdamW steps applied straight to bf16 weights round away (8 significant bits): on the tiny model,
3 steps at lr 1e-5 changed 12.8% of a full fine-tune's elements in bf16 against 82.3% in fp32.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import cpu_trainer

from sce.data.clip import WindowSpec
from sce.data.datamodule import SceDataModule
from sce.models.module import SceModule, keep_master_weights_fp32, mixed_compute_dtype


class Snapshot(L.Callback):
    """Trainable parameters (fp32 copies) and their dtypes when training starts."""

    def on_train_start(self, trainer, pl_module):
        named = [(n, p) for n, p in pl_module.named_parameters() if p.requires_grad]
        self.before = {n: p.detach().float().clone() for n, p in named}
        self.dtypes = {p.dtype for _, p in named}


def update_fraction(kit: Path, manifest: Path, tmp_path: Path, dtype: str, precision: str):
    """(fraction of trainable elements changed by 3 AdamW steps at lr 1e-5, snapshot, module)."""
    L.seed_everything(0)
    data = SceDataModule(
        str(manifest),
        str(kit),
        window=WindowSpec(width=56, height=56, fps=1.0),
        batch_size=2,
        imu_dropout=0.0,
    )
    module = SceModule(str(kit), finetuning="full", dtype=dtype, lr=1e-5, scheduler="constant")
    snapshot = Snapshot()
    trainer = cpu_trainer(
        tmp_path,
        max_steps=3,
        precision=precision,
        limit_val_batches=0,
        callbacks=[snapshot],
    )
    trainer.fit(module, datamodule=data)
    params = dict(module.named_parameters())
    changed = sum(int((params[n].detach().float() != v).sum()) for n, v in snapshot.before.items())
    total = sum(v.numel() for v in snapshot.before.values())
    return changed / total, snapshot, module


def test_bf16_full_finetune_updates_like_fp32(tiny_kit, synthetic_manifest, tmp_path):
    fp32, _, _ = update_fraction(tiny_kit, synthetic_manifest, tmp_path, "float32", "32-true")
    bf16, snap, module = update_fraction(
        tiny_kit, synthetic_manifest, tmp_path, "bfloat16", "bf16-mixed"
    )
    assert fp32 > 0.7
    assert abs(bf16 - fp32) < 0.03, (bf16, fp32)  # 0.128 without fp32 masters
    assert snap.dtypes == {torch.float32}  # master weights
    frozen = {p.dtype for p in module.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16}  # the frozen vision tower stays in the load dtype


def test_bf16_true_is_refused_with_the_fix(tiny_kit, synthetic_manifest, tmp_path):
    """bf16-true converts every weight (masters included) to bf16: refuse, naming the fix."""
    with pytest.raises(ValueError, match="trainer.precision: bf16-mixed with model.dtype"):
        update_fraction(tiny_kit, synthetic_manifest, tmp_path, "bfloat16", "bf16-true")


@pytest.mark.parametrize("mode", ["dora", "lora"])
def test_adapters_stay_fp32_on_a_bf16_base(tiny_kit, mode):
    module = SceModule(str(tiny_kit), finetuning=mode, rank=4, alpha=8, dtype="bfloat16")
    module.configure_model()
    trainable = {n: p.dtype for n, p in module.named_parameters() if p.requires_grad}
    frozen = {p.dtype for p in module.parameters() if not p.requires_grad}
    assert trainable and set(trainable.values()) == {torch.float32}
    assert all("lora_" in n for n in trainable)
    assert frozen == {torch.bfloat16}


def test_master_weight_helpers():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)).bfloat16()
    model[0].requires_grad_(False)
    assert keep_master_weights_fp32(model) == 2  # weight and bias of the trainable layer
    assert model[1].weight.dtype == torch.float32 and model[0].weight.dtype == torch.bfloat16
    assert mixed_compute_dtype(model) == torch.bfloat16  # FSDP2 computes in the lowest dtype
    keep_master_weights_fp32(model, frozen_too=True)  # FSDP1: one dtype per flat parameter
    assert mixed_compute_dtype(model) is None


def _lm_head_records(module: SceModule) -> list[tuple[bool, torch.dtype]]:
    """(CPU autocast on, output dtype) of every lm_head call, recorded by a forward hook."""
    records: list[tuple[bool, torch.dtype]] = []
    head = module.model.get_output_embeddings()
    head.register_forward_hook(
        lambda _m, _i, out: records.append((torch.is_autocast_enabled("cpu"), out.dtype))
    )
    return records


def test_generation_runs_in_the_trainers_precision(tiny_kit, synthetic_manifest, tmp_path):
    """The evaluation callback generates from on_validation_epoch_end, outside Lightning's
    precision context: under bf16-mixed, generate_batch must still run the fp32-master LM in
    bf16 autocast (it ran in fp32 before), and without a trainer in the weights' own dtype."""
    data = SceDataModule(
        str(synthetic_manifest),
        str(tiny_kit),
        window=WindowSpec(width=56, height=56, fps=1.0),
        eval_batch_size=1,
    )
    data.setup("validate")
    batch = next(iter(data.generation_dataloader("val", max_samples=1)))
    module = SceModule(str(tiny_kit), finetuning="full", dtype="bfloat16", max_new_tokens=2)
    module.configure_model()
    records = _lm_head_records(module)
    module.generate_batch(batch)
    assert records and set(records) == {(False, torch.float32)}  # fp32 masters, no trainer
    records.clear()
    module.trainer = cpu_trainer(tmp_path, precision="bf16-mixed")
    results = module.generate_batch(batch)
    assert len(results) == 1
    assert len(records) == 2 and set(records) == {(True, torch.bfloat16)}  # 2 new tokens


def test_fsdp1_with_adapters_warns_about_the_fp32_base(tiny_kit):
    """FSDP1 needs one dtype per FlatParameter (torch's _flat_param refuses mixed dtypes, with
    use_orig_params too), and a decoder-layer unit holds the fp32 adapters and their frozen
    base: the base goes to fp32, with a warning that names the extra memory."""
    from types import SimpleNamespace

    from sce.models.distributed import fsdp_strategy

    module = SceModule(str(tiny_kit), finetuning="lora", rank=4, alpha=8, dtype="bfloat16")
    module._trainer = SimpleNamespace(strategy=fsdp_strategy())
    with pytest.warns(UserWarning, match=r"frozen base weights are cast to float32 \(\+0\.\d+ GiB"):
        module.configure_model()
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    full = SceModule(str(tiny_kit), finetuning="full", dtype="bfloat16")
    full._trainer = SimpleNamespace(strategy=fsdp_strategy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a full fine-tune pays for fp32 masters anyway
        full.configure_model()
    assert frozen > 0


def test_fsdp1_gets_one_fp32_dtype_per_flat_parameter(tiny_kit):
    """FSDP1 flattens each unit's parameters into one tensor of one dtype; the root unit holds
    trainable embeddings and the frozen merger, so under FSDP1 every weight is fp32 (FSDP's
    MixedPrecision computes in bf16)."""
    from types import SimpleNamespace

    from sce.models.distributed import fsdp_strategy

    module = SceModule(str(tiny_kit), finetuning="full", dtype="bfloat16")
    module._trainer = SimpleNamespace(strategy=fsdp_strategy())
    module.configure_model()
    assert {p.dtype for p in module.parameters()} == {torch.float32}


def test_export_serves_a_full_finetune_in_the_load_dtype(tiny_kit):
    """The fp32 masters are for training: a checkpoint rebuilt for export / inference holds the
    trained values in the run's dtype (bf16 here), adapters aside."""
    from sce.deploy.export import module_from_checkpoint

    trained = SceModule(str(tiny_kit), finetuning="full", dtype="bfloat16")
    trained.configure_model()
    embed = trained.model.get_input_embeddings().weight
    with torch.no_grad():
        embed[0, 0] = 1.0 + 2**-7  # representable in bf16
    checkpoint = {"hyper_parameters": dict(trained.hparams), "state_dict": trained.state_dict()}
    trained.on_save_checkpoint(checkpoint)  # what Lightning's checkpoint holds
    assert checkpoint["state_dict"]["model.model.language_model.embed_tokens.weight"].dtype == (
        torch.float32
    )  # the checkpoint keeps the masters for resuming
    module = module_from_checkpoint(checkpoint)
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert module.model.get_input_embeddings().weight[0, 0].item() == 1.0 + 2**-7


def test_auto_dtype_export_uses_the_dtype_the_run_loaded(tiny_kit, monkeypatch):
    """model.dtype: auto resolves per machine (bf16 on CUDA, fp32 on CPU): a bf16 GPU run
    exported on CPU must come back in bf16, from the load dtype recorded at fit time."""
    import sce.models.module as module_lib
    from sce.deploy.export import module_from_checkpoint

    monkeypatch.setattr(module_lib.torch.cuda, "is_available", lambda: True)  # the GPU run
    trained = SceModule(str(tiny_kit), finetuning="full", dtype="auto")
    trained.configure_model()
    assert trained.load_dtype == torch.bfloat16
    assert "load_dtype" not in trained.hparams  # hparams are init arguments only
    checkpoint = {"hyper_parameters": dict(trained.hparams), "state_dict": trained.state_dict()}
    trained.on_save_checkpoint(checkpoint)  # what Lightning's checkpoint holds
    monkeypatch.undo()  # export on CPU, where "auto" alone would mean float32
    assert module_lib.resolve_dtype("auto") == torch.float32
    module = module_from_checkpoint(checkpoint)
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert module_from_checkpoint(checkpoint, dtype="float32").load_dtype == torch.float32
