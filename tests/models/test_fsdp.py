"""Sharded training: FSDP1 strategy settings, global-norm clipping, and (slow) a real 2-process
FSDP2 run on CPU (gloo) through Lightning's ModelParallelStrategy, compared with one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers.paths import REPO
from torch import nn

from sce.models.checkpointing import clean_parameter_name
from sce.models.distributed import (
    QwenFSDPStrategy,
    _fsdp_mesh,
    block_class_names,
    clip_grad_norm,
    clip_gradients,
    find_blocks,
    fsdp_strategy,
)
from sce.models.families.qwen2_5_vl import TinySpec


def test_fsdp_strategy_wraps_and_checkpoints_decoder_layers_and_vision_blocks(tiny_model):
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        Qwen2_5_VLDecoderLayer,
        Qwen2_5_VLVisionBlock,
    )

    strategy = fsdp_strategy()
    wrap = strategy.kwargs["auto_wrap_policy"]
    assert wrap._module_classes == {Qwen2_5_VLDecoderLayer, Qwen2_5_VLVisionBlock}
    checkpointed = strategy._activation_checkpointing_kwargs["auto_wrap_policy"]
    assert checkpointed._module_classes == wrap._module_classes
    assert strategy.kwargs["use_orig_params"] is True
    assert strategy._state_dict_type == "full"
    assert fsdp_strategy(activation_checkpointing=False)._activation_checkpointing_kwargs == {}
    dotted = QwenFSDPStrategy(
        block_classes=["transformers.models.qwen2_5_vl.modeling_qwen2_5_vl.Qwen2_5_VLDecoderLayer"]
    )
    assert dotted.kwargs["auto_wrap_policy"]._module_classes == {Qwen2_5_VLDecoderLayer}
    with pytest.raises(ValueError, match="'NoSuchBlock' not found"):
        QwenFSDPStrategy(block_classes=["NoSuchBlock"])
    # the same blocks FSDP2 shards: 2 decoder layers + 2 vision blocks in the tiny model
    spec = TinySpec()
    names = block_class_names(tiny_model)
    assert set(names) == {"Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock"}
    assert len(find_blocks(tiny_model, names)) == spec.num_hidden_layers + spec.vision_depth


def test_clean_parameter_name_strips_wrapper_prefixes():
    name = "model.layers.0._fsdp_wrapped_module._checkpoint_wrapped_module.mlp.lora_A.weight"
    assert clean_parameter_name(name) == "model.layers.0.mlp.lora_A.weight"
    assert clean_parameter_name("_orig_mod.lm_head.weight") == "lm_head.weight"


class FakeMesh:
    def __init__(self, sizes: dict[str, int]):
        self.sizes = sizes
        self.mesh_dim_names = tuple(sizes)
        self.shape = tuple(sizes.values())

    def __getitem__(self, name: str):
        return SimpleNamespace(size=lambda: self.sizes[name], name=name)

    def size(self) -> int:
        return 1


def test_tensor_parallel_mesh_is_refused_data_parallel_dimension_is_used():
    with pytest.raises(ValueError, match="tensor_parallel_size=1"):
        _fsdp_mesh(FakeMesh({"data_parallel": 1, "tensor_parallel": 2}))
    assert _fsdp_mesh(FakeMesh({"data_parallel": 2, "tensor_parallel": 1})).name == "data_parallel"


def make_grads(*grads: list[float]) -> tuple[list[nn.Parameter], torch.optim.Optimizer]:
    params = [nn.Parameter(torch.zeros(len(g))) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g)
    frozen = nn.Parameter(torch.zeros(1))  # no grad: ignored
    return params, torch.optim.SGD([*params, frozen], lr=1.0)


def test_clip_grad_norm_scales_to_the_global_norm():
    params, optimizer = make_grads([3.0, 0.0], [4.0])  # global L2 norm 5
    norm = clip_grad_norm(optimizer, max_norm=1.0)
    assert float(norm) == pytest.approx(5.0)
    assert params[0].grad.tolist() == pytest.approx([0.6, 0.0], abs=1e-6)
    assert params[1].grad.tolist() == pytest.approx([0.8], abs=1e-6)
    params, optimizer = make_grads([3.0, 0.0], [4.0])
    assert float(clip_grad_norm(optimizer, max_norm=10.0)) == pytest.approx(5.0)
    assert params[1].grad.tolist() == [4.0]  # under the limit: untouched


def test_clip_gradients_modes():
    module = SimpleNamespace(_trainer=None, calls=[])
    module.clip_gradients = lambda opt, val, algo: module.calls.append((val, algo))
    params, optimizer = make_grads([6.0, 8.0])
    assert clip_gradients(module, optimizer, None, None) is None  # no clipping asked
    assert clip_gradients(module, optimizer, 0.5, "value") is None
    assert module.calls == [(0.5, "value")]  # elementwise: Lightning's default is right
    assert float(clip_gradients(module, optimizer, 2.0, None)) == pytest.approx(10.0)
    assert params[0].grad.tolist() == pytest.approx([1.2, 1.6], abs=1e-6)
    with pytest.raises(ValueError, match="'norm' or 'value'"):
        clip_gradients(module, optimizer, 1.0, "max")


# --------------------------------------------------------------------------- 2 CPU processes

SCRIPT = r'''
"""FSDP2 on 2 CPU ranks (gloo) via Lightning, or the 1-process reference with the same global
batches. Usage: script.py MANIFEST KIT OUT MODE (fsdp | reference)."""
import sys

import lightning as L
import torch
import torch.distributed as dist

from sce.data.clip import WindowSpec
from sce.data.datamodule import SceDataModule
from sce.models.checkpointing import gather_trainable_state_dict
from sce.models.distributed import is_sharded, model_parallel_strategy
from sce.models.module import SceModule

MANIFEST, KIT, OUT, MODE = sys.argv[1:5]
CLIP = 0.05


def global_norm(tensors):
    squares = sum(t.double().pow(2).sum() for t in tensors)
    if dist.is_initialized():
        dist.all_reduce(squares)
    return float(squares.sqrt())


class Probe(SceModule):
    """Global gradient norm (by hand, from the local shards) before and after clipping."""

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        local = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
        before = global_norm(local)
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self.norms.append((before, global_norm(local)))


class Snapshots(L.Callback):
    def __init__(self):
        self.states = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.states[trainer.global_step] = gather_trainable_state_dict(pl_module)  # collective


def run(devices, batch_size, max_steps, ckpt_path=None):
    L.seed_everything(0)
    window = WindowSpec(fps=2, before=2, after=2, width=112, height=56)
    data = SceDataModule(MANIFEST, KIT, window=window,
                         batch_size=batch_size, task_weights={"probability": 1}, imu_dropout=0.0)
    module = Probe(KIT, finetuning="dora", rank=4, alpha=8, lr=1e-3, scheduler="constant")
    module.norms = []
    snaps = Snapshots()
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, max_steps=max_steps, gradient_clip_val=CLIP,
        strategy=model_parallel_strategy() if devices > 1 else "auto",
        callbacks=[snaps], logger=False, enable_checkpointing=False, use_distributed_sampler=False,
        num_sanity_val_steps=0, limit_val_batches=0, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=OUT,
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return trainer, module, snaps


if MODE == "reference":
    trainer, module, snaps = run(devices=1, batch_size=2, max_steps=4)
    torch.save({"states": snaps.states, "norms": module.norms}, f"{OUT}/reference.pt")
else:
    trainer, module, snaps = run(devices=2, batch_size=1, max_steps=3)
    trainer.save_checkpoint(f"{OUT}/step3.ckpt")
    rank = trainer.global_rank
    first = next(p for p in module.parameters() if p.requires_grad)
    result = {"states": snaps.states, "norms": module.norms, "sharded": is_sharded(module.model),
              "local_shard": first.to_local().detach().clone()}
    trainer, module, snaps = run(devices=2, batch_size=1, max_steps=4, ckpt_path=f"{OUT}/step3.ckpt")
    result["resumed"] = snaps.states
    torch.save(result, f"{OUT}/rank{rank}.pt")
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_script(script: Path, args: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MASTER_ADDR": "127.0.0.1"}
    env["MASTER_PORT"] = str(_free_port())
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_fsdp2_two_cpu_ranks_match_one_process_clip_globally_and_resume(tiny_kit, tmp_path):
    from sce.prepare.synthetic import generate_synthetic_dataset

    # 6 training clips: 3 steps of 2 samples (one per rank) per epoch, no padding
    manifest = generate_synthetic_dataset(
        tmp_path / "data", clips=10, seed=0, duration=6, fps=10, width=112, height=64,
        split_fractions=(0.6, 0.4, 0.0), progress=False,
    )  # fmt: skip
    script = tmp_path / "fsdp_train.py"
    script.write_text(SCRIPT)
    for mode in ("fsdp", "reference"):
        _run_script(script, [str(manifest), str(tiny_kit), str(tmp_path), mode], tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    ref = torch.load(tmp_path / "reference.pt")

    # really sharded: each rank holds a different half of the same adapter tensor
    assert all(r["sharded"] for r in ranks)
    assert ranks[0]["local_shard"].shape == ranks[1]["local_shard"].shape
    assert not torch.equal(ranks[0]["local_shard"], ranks[1]["local_shard"])
    # both ranks end with the same (gathered) adapters, equal to the 1-process run's
    assert _max_diff(ranks[0]["states"][3], ranks[1]["states"][3]) == 0.0
    for step in (1, 2, 3):
        assert _max_diff(ranks[0]["states"][step], ref["states"][step]) < 1e-5
    assert _max_diff(ref["states"][3], ref["states"][1]) > 1e-4  # training moved them
    # clipping by the global norm: same pre-clip norm as one process, clipped to exactly CLIP
    for (before, after), (ref_before, _) in zip(ranks[0]["norms"], ref["norms"], strict=False):
        assert before == pytest.approx(ref_before, rel=1e-5) and before > 0.05
        assert after == pytest.approx(0.05, rel=1e-4)
    assert ranks[0]["norms"] == ranks[1]["norms"]
    # the adapter-only checkpoint resumes (weights + Adam moments) to the reference's step 4
    ckpt = torch.load(tmp_path / "step3.ckpt", weights_only=True)
    assert _max_diff(ckpt["state_dict"], ranks[0]["states"][3]) == 0.0
    assert _max_diff(ranks[0]["resumed"][4], ref["states"][4]) < 1e-5
    assert _max_diff(ranks[1]["resumed"][4], ref["states"][4]) < 1e-5


@pytest.mark.parametrize("strategy_class", ["QwenFSDPStrategy", "AdapterModelParallelStrategy"])
def test_fsdp_strategies_refuse_a_world_size_that_devices_x_nodes_do_not_make(
    strategy_class, monkeypatch
):
    """Under torchrun (2 processes) a config left at trainer.num_nodes 1 x devices 1 stops at
    setup with the settings to change, for FSDP1 as for FSDP2 (Lightning checks it only in the
    launcher it starts itself)."""
    from lightning.pytorch.plugins.environments import TorchElasticEnvironment

    import sce.models.distributed as distributed

    for name, value in {
        "WORLD_SIZE": "2",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "GROUP_RANK": "0",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    strategy = getattr(distributed, strategy_class)()
    strategy.cluster_environment = TorchElasticEnvironment()
    strategy.parallel_devices = [torch.device("cpu")]
    strategy.num_nodes = 1
    with pytest.raises(ValueError, match=r"world size \(2\)\. Set trainer\.num_nodes"):
        strategy.setup_environment()
