"""Pre-flight GPU memory plan of a config: peak memory per device for one training step.

    sce plan --config experiments/paper000_dora.yaml [--devices 4] [--gpu-memory 24GiB]

How (issue 18). The config's real architecture (Qwen2.5-VL-3B/7B widths carried by its model
family, sce.models.families, or a local folder's config.json) is built on the meta device (no weights, no RAM), with sce's own
fine-tuning code (`apply_finetuning`, fp32 master weights, gradient checkpointing), and one
steady-state training step (optimizer state present, forward, backward, AdamW step) runs on
meta tensors under PyTorch's `MemTracker` (categories) and `FlopCounterMode` (FLOPs).

Two obstacles of the full model on meta/fake tensors are avoided, not patched:
- the rope index and the visual-token scatter read data (`aten._local_scalar_dense`): the trace
  feeds the language model its `inputs_embeds` [B, S, H] and 3-D position ids directly, which is
  what those steps produce. The vision tower is frozen in every planned config: nothing in it is
  saved for backward, so its cost is its (exact) parameters plus a transient during its forward,
  before the language model runs (estimated from its widths, reported as its own phase).
- MemTracker hooks every parameter's gradient, which raises for frozen ones: `_TrainableTracker`
  hooks only the parameters that train (frozen ones are still counted as parameters).

Depth: tracing 28 layers on meta costs ~2 s per layer on this CPU, so the step is traced at 1 and
2 decoder layers (each at 1 and 2 samples) and every category is extrapolated linearly in depth
and in micro-batch. Sound because the layers are identical: each adds exactly its parameters,
gradients and AdamW state (so these come out exact), and with or without checkpointing its saved
activations, which are per-sample; the peak falls in the same phase at every depth (the start of
backward, or the optimizer step: both are traced and the larger wins).

Attention is traced as the fused flash kernel (`aten._scaled_dot_product_flash_attention`, memory
linear in the sequence), what flash-attn 2 / SDPA run on a GPU; the meta device would otherwise
take the math path that materializes [heads, S, S].

Sharding: DDP replicates everything and adds a gradient bucket copy (Lightning's DDP leaves
`gradient_as_bucket_view` off); sce's FSDP1 strategy casts every weight to fp32 (one dtype per
flat parameter), shards weights, gradients and AdamW state over N ranks, and gathers one decoder
layer at a time in bf16 (plus one prefetched) and the root unit (embeddings, lm_head, final norm)
for the whole step. qlora: the 4-bit base is counted at NF4 + double-quantized absmax bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

GiB = 2**30
CATEGORIES = ("parameters", "gradients", "optimizer state", "activations", "temporaries")
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit + 8-bit absmax/64 + fp32 per 256
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
CUDA_CONTEXT = 0.5 * 2**30  # bytes a CUDA context takes outside the allocator (kept free)


# ------------------------------------------------------------------------------ architectures
def known_architectures() -> dict[str, dict[str, Any]]:
    """The public checkpoints' architectures (config.json values that shape memory), from the
    sizes each model family carries (sce.models.families), with their model_type."""
    from sce.models.families import FAMILIES

    return {
        hub_id: {**family.architecture(checkpoint), "model_type": family.key}
        for family in dict.fromkeys(FAMILIES.values())
        for hub_id, checkpoint in family.checkpoints.items()
    }


def architecture_config(
    model_path: str, vision_overrides: Mapping[str, Any] | None = None, **text_overrides: Any
):
    """The family's transformers config for `model_path`: a local folder's config.json, else
    the known public architecture (matched on the name, "-Instruct" optional). `text_overrides`
    replace text config fields (e.g. num_hidden_layers=2 for the validation model)."""
    from sce.models.families import family_for
    from sce.train.assets import resolve_model_path

    known = known_architectures()
    folder = Path(resolve_model_path(model_path) if model_path.startswith("tiny:") else model_path)
    if (folder / "config.json").is_file():
        data = json.loads((folder / "config.json").read_text())
        data.setdefault("text_config", {k: v for k, v in data.items() if k != "vision_config"})
    else:
        key = next((k for k in known if k.startswith(model_path)), None)
        if key is None:
            raise ValueError(
                f"model.model_path {model_path!r}: no config.json there and not a known "
                f"architecture ({', '.join(known)}); give a local model folder"
            )
        data = copy.deepcopy(known[key])
    data["text_config"] = {**data["text_config"], **text_overrides}
    data["vision_config"] = {**data.get("vision_config", {}), **(vision_overrides or {})}
    return family_for(data).config_from_dict(data)


# ------------------------------------------------------------------------------ setup
@dataclass(frozen=True)
class Setup:
    """What a training step of a config looks like on one device."""

    model_path: str
    finetuning: str = "dora"
    rank: int = 32
    alpha: int = 64
    targets: Any = "all"
    dtype: str = "bfloat16"
    checkpointing: bool = True
    strategy: str = "single"  # single | ddp | fsdp
    devices: int = 1
    micro_batch: int = 1
    seq_len: int = 4096
    visual_tokens: int = 0
    supervised_tokens: int = 64
    accumulate: bool = False  # gradient accumulation: gradients live through forward/backward
    device: str = "cuda"  # "cuda": foreach AdamW, fused attention; "cpu": for validation
    text_overrides: dict[str, Any] = field(default_factory=dict)
    vision_overrides: dict[str, Any] = field(default_factory=dict)


def setup_from_config(
    config: Mapping[str, Any], devices: int | None = None, model_path: str | None = None
) -> Setup:
    """The Setup of an sce config (dict as resolved by `sce.train.config.resolve_config`)."""
    from sce.train.budget import budget_report

    model = config.get("model") or {}
    trainer = config.get("trainer") or {}
    data = config.get("data") or {}
    if model.get("train_vision") or model.get("train_merger"):
        raise ValueError("sce plan covers a frozen vision tower and merger (model.train_vision)")
    strategy_cfg = trainer.get("strategy", "ddp")
    is_fsdp = "FSDP" in json.dumps(strategy_cfg).upper()
    strategy_ckpt = is_fsdp and bool(
        (strategy_cfg.get("init_args") or {}).get("activation_checkpointing", False)
        if isinstance(strategy_cfg, Mapping)
        else False
    )
    n = int(devices or trainer.get("devices") or 1)
    budget = budget_report(config)
    finetuning = model.get("finetuning", "dora")
    if finetuning == "none":
        raise ValueError("model.finetuning is 'none': nothing trains, there is no step to plan")
    return Setup(
        model_path=model_path or model.get("model_path", "Qwen/Qwen2.5-VL-7B-Instruct"),
        finetuning=finetuning,
        rank=int(model.get("rank", 32)),
        alpha=int(model.get("alpha", 64)),
        targets=model.get("targets", "all"),
        dtype="bfloat16" if model.get("dtype", "bfloat16") in ("auto", None) else model["dtype"],
        checkpointing=bool(model.get("gradient_checkpointing", False)) or strategy_ckpt,
        strategy="fsdp" if is_fsdp else ("ddp" if n > 1 else "single"),
        devices=n,
        micro_batch=int(data.get("batch_size", 1)),
        accumulate=int(trainer.get("accumulate_grad_batches") or 1) > 1,
        seq_len=int(budget["total_tokens"]),
        visual_tokens=int(budget["visual_tokens_per_clip"]),
    )


# ------------------------------------------------------------------------------ tracing
def _tracker_class():
    from torch.distributed._tools.mem_tracker import MemTracker

    class _TrainableTracker(MemTracker):
        """MemTracker that hooks gradients of trainable parameters only (a hook on a frozen
        parameter raises); frozen parameters and buffers are still tracked."""

        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            for param in module.parameters():
                if not param.requires_grad:
                    self._update_and_maybe_create_winfos(param, self._ref_class.PARAM)
            trainable = any(p.requires_grad for p in module.parameters())
            return super()._track_module_params_and_buffers(
                _TrainableView(module), install_grad_hooks and trainable
            )

    return _TrainableTracker


class _TrainableView:
    """A module seen through its trainable parameters (and all its buffers)."""

    def __init__(self, module: torch.nn.Module):
        self._module = module

    def parameters(self):
        return (p for p in self._module.parameters() if p.requires_grad)

    def buffers(self):
        return self._module.buffers()


def _flash_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """Causal fused attention (flash kernel: O(S) memory), GQA by repeating KV heads."""
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    out = torch.ops.aten._scaled_dot_product_flash_attention(
        query, key, value, 0.0, True, False, scale=scaling
    )[0]
    return out.transpose(1, 2).contiguous(), None


def build_meta_model(setup: Setup, num_layers: int, device: str = "meta"):
    """The config's model with `num_layers` decoder layers and sce's fine-tuning applied, on
    `device` (meta: shapes only). Returns (model, language_model, lm_head)."""
    from transformers import AttentionInterface

    from sce.models import adapters as adapter_lib
    from sce.models.families import family_for
    from sce.models.module import keep_master_weights_fp32

    AttentionInterface.register("sce_fused_trace", _flash_attention)
    config = architecture_config(
        setup.model_path,
        setup.vision_overrides,
        **{**setup.text_overrides, "num_hidden_layers": num_layers},
    )
    config._attn_implementation = "sce_fused_trace" if device == "meta" else "sdpa"
    config.text_config._attn_implementation = config._attn_implementation
    dtype = getattr(torch, setup.dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = family_for(config).model_from_config(config)
    finally:
        torch.set_default_dtype(previous)
    mode = "lora" if setup.finetuning == "qlora" else setup.finetuning
    model = adapter_lib.apply_finetuning(
        model, mode=mode, rank=setup.rank, alpha=setup.alpha, targets=setup.targets
    )
    keep_master_weights_fp32(model, frozen_too=setup.strategy == "fsdp")
    base = adapter_lib.unwrap_model(model)
    if setup.checkpointing:
        adapter_lib.enable_gradient_checkpointing(model)
        if device == "meta" and setup.dtype != "float32":
            # checkpoint restores torch.autocast for the recompute, not a TorchFunctionMode
            dtype = getattr(torch, setup.dtype)
            kwargs = {
                "use_reentrant": False,
                "context_fn": lambda: (contextlib.nullcontext(), MetaAutocast(dtype, cache=False)),
            }
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    return model, base.model.language_model, base.lm_head


def _snapshot_bytes(snapshot: Mapping[Any, Mapping[Any, int]]) -> dict[str, int]:
    names = {
        "Parameter": "parameters",
        "Buffer": "parameters",
        "Gradient": "gradients",
        "Optstate": "optimizer state",
        "Activation": "activations",
        "Temp": "temporaries",
        "Other": "activations",  # the step's inputs (inputs_embeds)
    }
    out = dict.fromkeys(CATEGORIES, 0)
    for device_snapshot in snapshot.values():
        for key, value in device_snapshot.items():
            name = getattr(key, "value", key)
            if name in names:
                out[names[name]] += int(value)
    return out


def _step_inputs(setup: Setup, language_model, batch: int, device: str):
    """(inputs_embeds, 3-D position ids) as the model's own forward makes them: token embeddings
    (so the embedding's gradient and AdamW state exist when it trains; enable_input_require_grads
    hooks it), visual features in place of the placeholder rows (same shape)."""
    ids = torch.zeros(batch, setup.seq_len, dtype=torch.long, device=device)
    embeds = language_model.embed_tokens(ids)
    positions = torch.arange(setup.seq_len, device=device).expand(3, batch, setup.seq_len)
    return embeds, positions


class MetaAutocast(torch.overrides.TorchFunctionMode):
    """torch.autocast's lower-precision rule for meta tensors (which autocast skips): matmul-like
    ops run in `dtype`, their inputs cast above autograd (so backward saves the cast copies),
    and casts of trainable leaves (fp32 master weights) cached for the region, as autocast does."""

    OPS = frozenset(
        {
            torch.nn.functional.linear,
            torch.matmul,
            torch.mm,
            torch.bmm,
            torch.addmm,
            torch.Tensor.matmul,
            torch.Tensor.__matmul__,
        }
    )

    def __init__(self, dtype: torch.dtype, cache: bool = True):
        super().__init__()
        self.dtype = dtype
        self.cache: dict[int, torch.Tensor] | None = {} if cache else None

    def _cast(self, t: Any) -> Any:
        if not (isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != self.dtype):
            return t
        if self.cache is not None and t.is_leaf and t.requires_grad:
            if id(t) not in self.cache:
                self.cache[id(t)] = t.to(self.dtype)
            return self.cache[id(t)]
        return t.to(self.dtype)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.OPS:
            args = tuple(self._cast(a) for a in args)
            kwargs = {k: self._cast(v) for k, v in kwargs.items()}
        return func(*args, **kwargs)

    def __exit__(self, *exc):
        if self.cache is not None:
            self.cache.clear()
        return super().__exit__(*exc)


def _autocast(device: str, dtype: str, backward: bool = False):
    """bf16-mixed compute: torch.autocast on a real device, MetaAutocast on meta (checkpointed
    layers get theirs for the recompute through checkpoint's context_fn)."""
    if dtype == "float32" or backward:
        return contextlib.nullcontext()
    if device == "meta":
        return MetaAutocast(getattr(torch, dtype), cache=not backward)
    return torch.autocast(device, dtype=getattr(torch, dtype))


def _collect_after_each_block(model: torch.nn.Module) -> None:
    """Run Python's cyclic collector after every decoder layer's forward and backward.

    MemTracker's module hooks put autograd nodes in reference cycles; what they hold is then
    freed only when the collector happens to run (22-44 GiB for the same 7B step, depending on
    what ran before). Collecting at each layer boundary frees it where the model itself does:
    a step without the tracker leaves no tensor in cyclic garbage."""

    def collect(*_):
        gc.collect()

    for name, module in model.named_modules():
        if re.search(r"\.layers\.\d+$", name):
            module.register_forward_hook(collect)
            module.register_full_backward_hook(collect)


def trace_step(
    setup: Setup, num_layers: int, batch: int, device: str = "meta", count_flops: bool = True
) -> dict[str, Any]:
    """Peak bytes by category of the forward+backward phase and of the optimizer step, and the
    step's FLOPs, for `num_layers` decoder layers and `batch` samples (steady state: AdamW state
    exists from an untracked first step)."""

    model, language_model, lm_head = build_meta_model(setup, num_layers, device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, foreach=setup.device == "cuda")

    def forward_backward():
        embeds, positions = _step_inputs(setup, language_model, batch, device)
        with _autocast(device, setup.dtype):
            hidden = language_model(
                inputs_embeds=embeds, position_ids=positions, use_cache=False
            ).last_hidden_state
            rows = hidden[:, -setup.supervised_tokens :].reshape(-1, hidden.shape[-1])
            logits = lm_head(rows)
        loss = logits.float().logsumexp(-1).mean()  # CE on supervised rows only (sce.models.losses)
        with _autocast(device, setup.dtype, backward=True):
            loss.backward()

    forward_backward()  # untracked first step: AdamW state exists in the tracked one
    optimizer.step()
    if not setup.accumulate:  # accumulating: the gradients of earlier micro-batches are there
        optimizer.zero_grad(set_to_none=True)
    _collect_after_each_block(model)
    try:
        gc.collect()
        gc.freeze()  # the per-layer collections then scan only what the step creates: fast
        return _tracked_phases(setup, model, optimizer, forward_backward, count_flops)
    finally:
        gc.unfreeze()


def _tracked_phases(setup, model, optimizer, forward_backward, count_flops) -> dict[str, Any]:
    """MemTracker over forward+backward, then over the AdamW step; FLOPs of a third step."""
    from torch.utils.flop_counter import FlopCounterMode

    tracker_class = _tracker_class()
    flops = FlopCounterMode(display=False)
    # Cyclic garbage (autograd/checkpoint frames) is freed when Python's collector runs, which
    # depends on what ran before: start each tracked phase from a collection, so the trace is the
    # same whatever ran earlier in the process.
    gc.collect()
    fb = tracker_class()
    fb.track_external(model, optimizer)
    with fb:
        forward_backward()
    gc.collect()
    opt = tracker_class()
    opt.track_external(model, optimizer)
    with opt:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if count_flops:  # apart: FlopCounterMode's module tracking keeps checkpointed tensors alive
        with flops:
            forward_backward()
    root = [p for n, p in model.named_parameters() if not re.search(r"\.(layers|blocks)\.", n)]
    return {
        "root_params": sum(p.numel() for p in root),
        "root_trainable": sum(p.numel() for p in root if p.requires_grad),
        "forward_backward": _snapshot_bytes(fb.get_tracker_snapshot("peak")),
        "optimizer_step": _snapshot_bytes(opt.get_tracker_snapshot("peak")),
        "flops": int(flops.get_total_flops()) if count_flops else 0,
    }


# ------------------------------------------------------------------------------ the plan
def _extrapolate(c11: dict, c21: dict, c12: dict, c22: dict, layers: int, batch: int) -> dict:
    """Bilinear in depth and micro-batch from traces at 1-2 layers x 1-2 samples."""
    out = {}
    for k in c11:
        d_layer, d_batch = c21[k] - c11[k], c12[k] - c11[k]
        cross = c22[k] - c21[k] - c12[k] + c11[k]
        out[k] = c11[k] + (layers - 1) * d_layer + (batch - 1) * d_batch
        out[k] += (layers - 1) * (batch - 1) * cross
    return out


def _sharded(phase: dict, setup: Setup, layer_params: int, root: tuple[int, int]) -> dict:
    """Per-rank bytes under the strategy. FSDP shards parameters, gradients and optimizer state
    over the ranks; it gathers the root unit (embeddings, lm_head, norm, merger, patch embedding:
    `root` = (parameters, trainable)) for the whole step and one decoder layer at a time (+ one
    prefetched) in the compute dtype, with unsharded gradients in that dtype until their
    reduce-scatter. DDP keeps a gradient bucket copy of the gradients."""
    out = dict(phase)
    if setup.strategy == "fsdp":
        n = setup.devices
        for k in ("parameters", "gradients", "optimizer state"):
            out[k] = phase[k] / n
        compute = DTYPE_BYTES[setup.dtype]
        gathered = root[0] + 2 * layer_params
        out["temporaries"] += compute * (gathered + root[1] + layer_params)
    elif setup.strategy == "ddp":
        out["temporaries"] += phase["gradients"]
    return out


def plan(setup: Setup, gpu_memory: float | None = None, max_batch: int = 64) -> dict[str, Any]:
    """Predicted peak bytes per device by category, verdict, largest micro-batch and FLOPs."""
    layers = architecture_config(
        setup.model_path, setup.vision_overrides, **setup.text_overrides
    ).text_config.num_hidden_layers
    traces = {(n, b): trace_step(setup, n, b) for n in (1, 2) for b in (1, 2)}
    layer_params = _layer_params(setup)
    root = (traces[1, 1]["root_params"], traces[1, 1]["root_trainable"])

    def peak(batch: int) -> tuple[float, dict, str]:
        best = (-1.0, {}, "")
        for phase in ("forward_backward", "optimizer_step"):
            c = [traces[k][phase] for k in ((1, 1), (2, 1), (1, 2), (2, 2))]
            cats = _sharded(_extrapolate(*c, layers, batch), setup, layer_params, root)
            if setup.finetuning == "qlora":
                cats["parameters"] -= quantized_savings(setup)
            total = sum(cats.values())
            if total > best[0]:
                best = (total, cats, phase)
        return best

    def peak_with_vision(batch: int) -> tuple[float, dict, str]:
        best = peak(batch)
        state = {
            k: (v if k in ("parameters", "optimizer state") else 0) for k, v in best[1].items()
        }
        vision = {**state, "temporaries": vision_forward_bytes(setup, batch)}
        return max(best, (sum(vision.values()), vision, "vision_forward"), key=lambda t: t[0])

    total, cats, phase = peak_with_vision(setup.micro_batch)
    largest = None
    if gpu_memory:
        usable = gpu_memory - CUDA_CONTEXT
        fitting = [b for b in range(1, max_batch + 1) if peak_with_vision(b)[0] <= usable]
        largest = max(fitting) if fitting else 0
    f = [traces[k]["flops"] for k in ((1, 1), (2, 1), (1, 2), (2, 2))]
    flops = _extrapolate(*({"f": v} for v in f), layers, setup.micro_batch)["f"]
    return {
        "setup": setup,
        "layers": layers,
        "categories": cats,
        "peak_bytes": total,
        "phase": phase,
        "gpu_memory": gpu_memory,
        "fits": None if gpu_memory is None else total <= gpu_memory - CUDA_CONTEXT,
        "largest_micro_batch": largest,
        "flops_per_device": flops,
    }


def vision_forward_bytes(setup: Setup, batch: int) -> float:
    """Transient of the frozen vision tower's forward (estimate from its widths: nothing is
    saved for backward, one block's residual, normed input and SwiGLU gate/up/product live at
    once, plus the merged output): 4 patches per visual token."""
    config = architecture_config(setup.model_path, setup.vision_overrides, **setup.text_overrides)
    v, t = config.vision_config, config.text_config
    patches = 4 * setup.visual_tokens * batch
    per_patch = 2 * v.hidden_size + 3 * v.intermediate_size
    merged = setup.visual_tokens * batch * t.hidden_size
    return (patches * per_patch + merged) * DTYPE_BYTES[setup.dtype]


def _layer_params(setup: Setup) -> int:
    """Parameters of one decoder layer (projections and the two norms)."""
    t = architecture_config(setup.model_path, setup.vision_overrides, **setup.text_overrides)
    t = t.text_config
    h, kv = t.hidden_size, t.num_key_value_heads * (t.hidden_size // t.num_attention_heads)
    return 2 * h * h + 2 * h * kv + 3 * h * t.intermediate_size + h + 2 * kv + 2 * h


def quantized_savings(setup: Setup) -> float:
    """Bytes saved by NF4 on the language model's frozen linear weights (qlora): traced as the
    load dtype, stored as 4-bit + double-quantized absmax."""
    config = architecture_config(setup.model_path).text_config
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i
    return layers * per_layer * (DTYPE_BYTES[setup.dtype] - NF4_BYTES_PER_PARAM)


def parse_size(text: str) -> float:
    """'24GiB', '80GB', '24' (GiB) -> bytes."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([GMT]i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"--gpu-memory: expected a size like 24GiB or 80GB, got {text!r}")
    unit = (m.group(2) or "GiB").lower()
    scale = {"gib": 2**30, "gb": 1e9, "mib": 2**20, "mb": 1e6, "tib": 2**40, "tb": 1e12}[unit]
    return float(m.group(1)) * scale


def format_plan(p: Mapping[str, Any]) -> str:
    s: Setup = p["setup"]
    lines = [
        f"{s.model_path}: {s.finetuning}, {s.dtype}, checkpointing {'on' if s.checkpointing else 'off'}, "
        f"{s.strategy} x {s.devices}, micro-batch {s.micro_batch} x {s.seq_len} tokens "
        f"({s.visual_tokens} visual), {p['layers']} decoder layers",
        f"peak memory per device ({p['phase'].replace('_', ' ')}):",
    ]
    for name in CATEGORIES:
        lines.append(f"  {name:<16} {p['categories'][name] / GiB:8.2f} GiB")
    lines.append(f"  {'total':<16} {p['peak_bytes'] / GiB:8.2f} GiB")
    if p["gpu_memory"]:
        head = (p["gpu_memory"] - CUDA_CONTEXT - p["peak_bytes"]) / GiB
        verdict = "fits" if p["fits"] else "does NOT fit"
        lines.append(
            f"{verdict} in {p['gpu_memory'] / GiB:.1f} GiB ({CUDA_CONTEXT / GiB:.1f} GiB kept for the "
            f"CUDA context): headroom {head:+.2f} GiB"
        )
        lines.append(f"largest micro-batch that fits: {p['largest_micro_batch']}")
        lines.append("not counted: allocator fragmentation (keep some headroom)")
    lines.append(f"step FLOPs per device: {p['flops_per_device']:.3e} (with recompute)")
    return "\n".join(lines)


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    from sce.train.config import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--devices", type=int, default=None, help="GPUs (default: trainer.devices)")
    parser.add_argument("--gpu-memory", default=None, help="memory per GPU, e.g. 24GiB or 80GB")
    parser.add_argument("--model", default=None, help="local model folder (its config.json)")


def plan_command(args: argparse.Namespace) -> int:
    """Print the plan; exit 1 when the config does not fit --gpu-memory."""
    import warnings

    from sce.train.config import resolve_config

    config = resolve_config(args.config, args.config_overrides)
    setup = setup_from_config(config, args.devices, args.model)
    gpu = parse_size(args.gpu_memory) if args.gpu_memory else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = plan(setup, gpu)
    print(format_plan(result))
    return 0 if result["fits"] in (None, True) else 1


def state_bytes(setup: Setup) -> dict[str, float]:
    """Exact per-rank bytes of parameters, gradients (fp32, all trainable) and AdamW state (two
    fp32 moments) from the parameter shapes and dtypes of the config's model (no step traced):
    built on meta at 1 and 2 decoder layers, the difference times the depth. Sharded over the
    ranks under FSDP; qlora's base at NF4 bytes."""
    layers = architecture_config(
        setup.model_path, setup.vision_overrides, **setup.text_overrides
    ).text_config.num_hidden_layers
    counts = []
    for n in (1, 2):
        model = build_meta_model(setup, n)[0]
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        counts.append((params, trainable))
    (p1, t1), (p2, t2) = counts
    params, trainable = p1 + (layers - 1) * (p2 - p1), t1 + (layers - 1) * (t2 - t1)
    if setup.finetuning == "qlora":
        params -= quantized_savings(setup)
    shards = setup.devices if setup.strategy == "fsdp" else 1
    return {
        "parameters": params / shards,
        "gradients": 4 * trainable / shards,
        "optimizer state": 8 * trainable / shards,
        "trainable": trainable,
    }


def measure_step(setup: Setup, num_layers: int, batch: int) -> dict[str, Any]:
    """The step really run on CPU tensors (random weights) under the same tracker, with the
    process's peak RSS above its RSS before the model was built (run it in a fresh process)."""
    import resource

    import psutil

    before = psutil.Process().memory_info().rss
    traced = trace_step(setup, num_layers, batch, device="cpu", count_flops=False)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {**traced, "rss_peak_bytes": peak_rss - before}


def peak_of(trace: Mapping[str, Any]) -> float:
    """The larger of a trace's forward+backward and optimizer-step peaks, in bytes."""
    return max(sum(trace[p].values()) for p in ("forward_backward", "optimizer_step"))
