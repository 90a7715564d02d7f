"""The one adapter-state API (sce.models.checkpointing): what an adapter-only checkpoint holds, how it
loads back, and that sce.models.checkpointing and sce.models.distributed do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from helpers.paths import REPO
from transformers import AutoModelForImageTextToText

from sce.models.adapters import apply_finetuning, trainable_parameter_names
from sce.models.checkpointing import (
    CheckpointMismatchError,
    adapter_only,
    check_trainable_keys,
    gather_trainable_state_dict,
)

SCE = REPO / "sce"


def _adapted(kit: Path, mode: str, **kwargs) -> torch.nn.Module:
    return apply_finetuning(AutoModelForImageTextToText.from_pretrained(kit), mode, **kwargs).eval()


def _perturb_adapters(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


# the paper presets, and the demo's DoRA row that also adapts the token layers
@pytest.mark.parametrize("targets", ["qkvo", ["q_proj", "lm_head", "embed_tokens"]])
def test_adapter_state_round_trip(tiny_kit, targets):
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    trained = _adapted(tiny_kit, "dora", rank=4, alpha=8, targets=targets)
    _perturb_adapters(trained, seed=1)
    state = gather_trainable_state_dict(trained)
    assert set(state) == set(trainable_parameter_names(trained))
    assert all(t.device.type == "cpu" for t in state.values())
    # What SceModule.on_save_checkpoint keeps of the full state dict is the same state.
    assert set(adapter_only(trained, trained.state_dict())) == set(state)
    with torch.no_grad():
        want = trained(input_ids=ids).logits

    fresh = _adapted(tiny_kit, "dora", rank=4, alpha=8, targets=targets)
    with torch.no_grad():
        assert not torch.allclose(fresh(input_ids=ids).logits, want, atol=1e-4)
    check_trainable_keys(fresh, state)  # the load path of SceModule.on_load_checkpoint
    fresh.load_state_dict(state, strict=False)
    with torch.no_grad():
        assert torch.allclose(fresh(input_ids=ids).logits, want, atol=1e-6)
    params = dict(fresh.named_parameters())
    assert all(torch.equal(params[k], v) for k, v in state.items())


def test_adapter_state_mismatches_are_refused(tiny_kit):
    model = _adapted(tiny_kit, "lora", rank=2, alpha=4, targets="qv")
    state = gather_trainable_state_dict(model)
    with pytest.raises(CheckpointMismatchError, match="the model lacks"):
        check_trainable_keys(model, {**state, "nope.weight": torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match=f"lacks 1 of the model's {len(state)}"):
        check_trainable_keys(model, dict(list(state.items())[1:]))
    name = next(iter(state))
    with pytest.raises(RuntimeError, match="size mismatch"):
        model.load_state_dict({**state, name: torch.zeros(3, 3)}, strict=False)


def _sce_imports(path: Path) -> set[str]:
    """Modules named by a file's imports, at top level and inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("sce")}


def test_checkpointing_does_not_import_distributed():
    """sce.models.distributed builds on sce.models.checkpointing, never the other way round."""
    assert "sce.models.checkpointing" in _sce_imports(SCE / "models" / "distributed.py")
    assert "sce.models.distributed" not in _sce_imports(SCE / "models" / "checkpointing.py")
