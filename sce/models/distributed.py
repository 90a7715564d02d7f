"""Sharded training: FSDP2 (`ModelParallelStrategy`) on CPU or GPU, FSDP1 (`FSDPStrategy`) on GPU,
gradient clipping that is right under both, and adapter-only checkpoints of sharded models.

FSDP2 (`fully_shard`, Lightning's `ModelParallelStrategy`)
    `SceModule.configure_model` calls `shard_model(model, self.device_mesh)` when Lightning hands
    it a device mesh: every language-model decoder layer and every vision block becomes its own
    FSDP unit, then the transformers model itself (embeddings, merger, final norm, lm_head) is the
    root unit. The root is the transformers model, not the PEFT wrapper, so `model.generate`
    (which calls the transformers forward directly) goes through the root's hooks too. FSDP2
    shards per parameter (DTensor), so frozen base weights and trainable adapters can share a unit.
    It runs on CPU with gloo, which is how the multi-process test runs. Use
    `model_parallel_strategy()`: Lightning's `ModelParallelStrategy()` defaults to tensor
    parallelism over all devices (data_parallel_size = nodes), which this project does not
    implement; `shard_model` refuses such a mesh instead of training unsynchronised replicas.

FSDP1 (`FSDPStrategy`, GPU only: Lightning refuses `strategy="fsdp"` on CPU)
    `QwenFSDPStrategy` (or `fsdp_strategy()`) wraps the same block classes (auto-wrap policy)
    and checkpoints their activations, saves full state dicts and keeps `use_orig_params=True`,
    which PEFT's mix of frozen and trainable parameters inside one flat parameter needs.

Generation under either FSDP needs `generate(..., synced_gpus=True)` with more than one rank:
a rank that stops early would otherwise leave the others waiting in an all-gather.

Gradient clipping
    `Trainer(gradient_clip_val=...)` is honoured under every strategy by
    `SceModule.configure_gradient_clipping` -> `clip_gradients`: by global L2 norm over the
    optimizer's parameters. Lightning's FSDP1 precision plugin raises for norm clipping, and
    `torch.nn.utils.clip_grad_norm_` on FSDP1's local shards would compute a per-rank norm, so
    FSDP1 uses the root module's `clip_grad_norm_`. Under FSDP2 the gradients are DTensors and
    `clip_grad_norm_` reduces the norm across the mesh itself. The pre-clipping norm is logged
    as `train/grad_norm`.

Adapter-only checkpoints
    `AdapterModelParallelStrategy` gathers only the trainable parameters when saving (the
    stock strategy gathers the whole model to rank 0 before `on_save_checkpoint` throws the
    frozen base away) and checks, before loading, that the checkpoint holds every trainable
    parameter (`strict_loading=False` would otherwise skip missing adapters silently). Both
    strategies read checkpoint files themselves (not through the CheckpointIO), so both read
    them weights-only and refuse HTTP(S) paths (`load_weights_only`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from torch import nn

from sce.models.adapters import unwrap_model
from sce.models.checkpointing import (
    check_trainable_keys,
    gather_trainable_state_dict,
    load_weights_only,
    refuse_url,
)
from sce.models.families import DEFAULT_FAMILY, Family

# The default family's repeated blocks (decoder layer, vision block; also the model's
# `_no_split_modules`).
DEFAULT_BLOCK_CLASSES: tuple[str, ...] = DEFAULT_FAMILY.block_class_names


def block_class_names(model: nn.Module) -> tuple[str, ...]:
    """Class names of the blocks to shard: the model's `_no_split_modules`, else the default
    family's."""
    names = getattr(unwrap_model(model), "_no_split_modules", None)
    return tuple(names) if names else DEFAULT_BLOCK_CLASSES


def find_blocks(model: nn.Module, names: Iterable[str]) -> list[nn.Module]:
    """Modules whose class name is in `names`, in module order."""
    wanted = set(names)
    return [m for m in model.modules() if type(m).__name__ in wanted]


def _fsdp_mesh(device_mesh):
    """The data-parallel mesh to shard over; refuses tensor-parallel meshes (not implemented)."""
    names = getattr(device_mesh, "mesh_dim_names", None) or ()
    if "tensor_parallel" in names and device_mesh["tensor_parallel"].size() > 1:
        raise ValueError(
            f"device mesh {dict(zip(names, device_mesh.shape, strict=True))} asks for tensor "
            "parallelism, which sce does not implement (ModelParallelStrategy() defaults to "
            "tensor_parallel_size=<devices>). Use sce.models.distributed.model_parallel_strategy() "
            "or ModelParallelStrategy(data_parallel_size=<devices>, tensor_parallel_size=1)."
        )
    return device_mesh["data_parallel"] if "data_parallel" in names else device_mesh


def shard_model(
    model: nn.Module,
    device_mesh,
    block_names: Sequence[str] | None = None,
    param_dtype: torch.dtype | None = None,
    reshard_after_forward: bool = True,
) -> nn.Module:
    """FSDP2-shard `model` in place: each decoder layer / vision block, then the root.

    Args:
        model: the (PEFT-wrapped) transformers model, adapters already applied.
        device_mesh: Lightning's `self.device_mesh` (its "data_parallel" dimension is used) or a
            1-D mesh.
        block_names: class names of the units (default: `block_class_names(model)`).
        param_dtype: compute dtype of a MixedPrecisionPolicy (gradients reduced in float32);
            None keeps the parameters' own dtype.
        reshard_after_forward: free gathered weights after each unit's forward (ZeRO-3).
    Returns the same model object. Raises ValueError when no block is found.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = _fsdp_mesh(device_mesh)
    names = tuple(block_names or block_class_names(model))
    blocks = find_blocks(model, names)
    if not blocks:
        raise ValueError(f"shard_model: no module of class {list(names)} in {type(model).__name__}")
    kwargs: dict[str, Any] = {"mesh": mesh, "reshard_after_forward": reshard_after_forward}
    if param_dtype is not None:
        kwargs["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=param_dtype, reduce_dtype=torch.float32
        )
    for block in blocks:
        fully_shard(block, **kwargs)
    fully_shard(unwrap_model(model), **kwargs)
    return model


def is_sharded(model: nn.Module) -> bool:
    """True when some parameter is a DTensor (FSDP2 / tensor parallel)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


# ---------------------------------------------------------------------------- strategies


def model_parallel_strategy(**kwargs: Any) -> AdapterModelParallelStrategy:
    """`AdapterModelParallelStrategy` for FSDP2 over every device (CPU with gloo or GPUs).

    Keyword arguments go to Lightning's ModelParallelStrategy (e.g. `timeout`,
    `process_group_backend`); `data_parallel_size` defaults to all processes and
    `tensor_parallel_size` to 1.
    """
    return AdapterModelParallelStrategy(**kwargs)


class AdapterModelParallelStrategy(ModelParallelStrategy):
    """ModelParallelStrategy for FSDP2 data parallelism with adapter-only checkpoints.

    Defaults: data_parallel_size = all processes, tensor_parallel_size = 1, single-file
    checkpoints (`save_distributed_checkpoint=False`) holding only the trainable parameters,
    gathered parameter by parameter (never the whole model on rank 0).
    """

    def __init__(
        self,
        data_parallel_size: int | str = "auto",
        tensor_parallel_size: int | str = 1,
        save_distributed_checkpoint: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            data_parallel_size=data_parallel_size,
            tensor_parallel_size=tensor_parallel_size,
            save_distributed_checkpoint=save_distributed_checkpoint,
            **kwargs,
        )

    def setup_environment(self) -> None:
        check_world_size(self)
        if self._data_parallel_size == "auto":  # the parent's "auto" means one per node
            self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def lightning_module_state_dict(self) -> dict[str, Any]:
        if self._save_distributed_checkpoint:
            return super().lightning_module_state_dict()
        return gather_trainable_state_dict(self.lightning_module)

    def load_checkpoint(self, checkpoint_path, weights_only: bool | None = None) -> dict[str, Any]:
        """Lightning's load, weights-only whatever was asked (this strategy reads the file
        itself, not through the CheckpointIO), after checking the trainable keys."""
        path = self.broadcast(checkpoint_path)
        refuse_url(path)
        if not self._save_distributed_checkpoint:
            saved = load_weights_only(path, mmap=True)
            check_trainable_keys(self.lightning_module, saved.get("state_dict", {}), path)
        return super().load_checkpoint(path, weights_only=True)


def resolve_block_classes(
    names: Iterable[str | type] = DEFAULT_BLOCK_CLASSES, family: Family = DEFAULT_FAMILY
) -> set[type]:
    """Classes for block names (FSDP1's auto-wrap policy): a class, a dotted path
    ("pkg.module.Class"), or a name exported by transformers or the family's modeling module."""
    return family.block_classes(names)


def check_world_size(strategy: Any) -> None:
    """Refuse a launch whose trainer.devices x trainer.num_nodes differs from the world size.

    Lightning validates this only in the launcher it starts itself; under torchrun/SLURM
    (processes created outside) the FSDP strategies have none, so a missing `trainer.num_nodes`
    surfaced later as a device-mesh error (FSDP2) or a silently wrong rank layout (FSDP1)."""
    try:
        strategy.cluster_environment.validate_settings(strategy.num_processes, strategy.num_nodes)
    except ValueError as err:
        raise ValueError(
            f"{err} Set trainer.num_nodes to the number of machines and trainer.devices to "
            "the processes per machine."
        ) from err


class QwenFSDPStrategy(FSDPStrategy):
    """Lightning `FSDPStrategy` (FSDP1, CUDA only) for a VLM with PEFT adapters (the default
    family's blocks unless `block_classes` names others).

    Each decoder layer and vision block is an FSDP unit (auto-wrap policy) and, with
    `activation_checkpointing`, recomputes its activations in backward; leave the module's own
    `gradient_checkpointing` off then (one or the other). `state_dict_type="full"` (one file;
    `on_save_checkpoint` keeps the adapters) and `use_orig_params=True` (frozen and trainable
    parameters in one flat parameter, and the optimizer sees the real parameters). A class, so
    a YAML config can name it: `trainer.strategy.class_path:
    sce.models.distributed.QwenFSDPStrategy`. Other keyword arguments go to FSDPStrategy.
    """

    def __init__(
        self,
        block_classes: Sequence[str | type] = DEFAULT_BLOCK_CLASSES,
        activation_checkpointing: bool = True,
        sharding_strategy: str = "FULL_SHARD",
        cpu_offload: bool = False,
        **kwargs: Any,
    ) -> None:
        classes = resolve_block_classes(block_classes)
        options: dict[str, Any] = {
            "auto_wrap_policy": classes,
            "activation_checkpointing_policy": classes if activation_checkpointing else None,
            "state_dict_type": "full",
            "use_orig_params": True,
            "sharding_strategy": sharding_strategy,
            "cpu_offload": cpu_offload,
            "limit_all_gathers": True,
        }
        options.update(kwargs)
        super().__init__(**options)

    def setup_environment(self) -> None:
        check_world_size(self)
        super().setup_environment()

    def load_checkpoint(self, checkpoint_path, weights_only: bool | None = None) -> dict[str, Any]:
        """Lightning's FSDP load, after a weights-only read of a single-file checkpoint:
        Lightning reads that file with its own lazy unpickler, which has no weights-only mode
        (code in the file would run), and reads an HTTP(S) path not at all safely."""
        path = self.broadcast(checkpoint_path)
        refuse_url(path)
        if Path(str(path)).is_file():
            load_weights_only(path, mmap=True)  # raises before Lightning's unpickler sees it
        return super().load_checkpoint(path, weights_only=True)


def fsdp_strategy(**kwargs: Any) -> QwenFSDPStrategy:
    """`QwenFSDPStrategy(**kwargs)`: FSDP1 on GPUs with the default family's blocks as units."""
    return QwenFSDPStrategy(**kwargs)


# ---------------------------------------------------------------------------- clipping


def _grad_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def _fsdp1_root(trainer) -> nn.Module | None:
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = getattr(trainer, "model", None) if trainer is not None else None
    return model if isinstance(model, FullyShardedDataParallel) else None


def clip_grad_norm(
    optimizer: torch.optim.Optimizer,
    max_norm: float,
    trainer=None,
    norm_type: float = 2.0,
) -> torch.Tensor:
    """Clip the optimizer's gradients to a global norm of `max_norm`; returns the norm before.

    Correct on a single device, under DDP (gradients already all-reduced), FSDP2 (DTensor
    gradients: the norm is reduced across the mesh) and FSDP1 (the root module's
    `clip_grad_norm_`, which reduces the shards' norms across ranks). The result is a plain
    tensor on every rank.
    """
    root = _fsdp1_root(trainer)
    if root is not None:
        total = root.clip_grad_norm_(max_norm, norm_type=norm_type)
    else:
        params = _grad_params(optimizer)
        if not params:
            return torch.zeros(())
        total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    full_tensor = getattr(total, "full_tensor", None)
    return full_tensor() if callable(full_tensor) else total


def clip_gradients(
    module,
    optimizer: torch.optim.Optimizer,
    gradient_clip_val: float | None,
    gradient_clip_algorithm: str | None,
) -> torch.Tensor | None:
    """`configure_gradient_clipping` for every strategy; returns the pre-clip norm (norm mode).

    "value" clipping is elementwise, so shards clip correctly on their own: it goes through
    Lightning's default. "norm" (the default) uses `clip_grad_norm`.
    """
    if not gradient_clip_val or gradient_clip_val <= 0:
        return None
    algorithm = (gradient_clip_algorithm or "norm").lower()
    if algorithm == "value":
        module.clip_gradients(optimizer, gradient_clip_val, "value")
        return None
    if algorithm != "norm":
        raise ValueError(f"gradient_clip_algorithm must be 'norm' or 'value', got {algorithm!r}")
    return clip_grad_norm(optimizer, float(gradient_clip_val), getattr(module, "_trainer", None))


__all__ = [
    "DEFAULT_BLOCK_CLASSES",
    "AdapterModelParallelStrategy",
    "QwenFSDPStrategy",
    "block_class_names",
    "clip_grad_norm",
    "clip_gradients",
    "find_blocks",
    "fsdp_strategy",
    "is_sharded",
    "model_parallel_strategy",
    "resolve_block_classes",
    "shard_model",
]
