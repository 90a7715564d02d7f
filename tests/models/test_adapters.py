"""Adapters: exactly which parameters train, counts by hand, QLoRA (adapter-only checkpoints:
tests/models/test_checkpoint_adapter_state.py)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from sce.models import adapters
from sce.models.adapters import (
    QLoRAUnavailableError,
    adapted_module_names,
    apply_finetuning,
    count_parameters,
    enable_gradient_checkpointing,
    quantization_config,
    resolve_attn_implementation,
    target_regex,
    trainable_parameter_names,
)
from sce.models.families.qwen2_5_vl import TinySpec

SPEC = TinySpec()
HEAD_DIM = SPEC.hidden_size // SPEC.num_attention_heads
# (in_features, out_features) of each language-model projection of the tiny model.
SHAPES = {
    "q_proj": (SPEC.hidden_size, SPEC.num_attention_heads * HEAD_DIM),
    "k_proj": (SPEC.hidden_size, SPEC.num_key_value_heads * HEAD_DIM),
    "v_proj": (SPEC.hidden_size, SPEC.num_key_value_heads * HEAD_DIM),
    "o_proj": (SPEC.num_attention_heads * HEAD_DIM, SPEC.hidden_size),
    "gate_proj": (SPEC.hidden_size, SPEC.intermediate_size),
    "up_proj": (SPEC.hidden_size, SPEC.intermediate_size),
    "down_proj": (SPEC.intermediate_size, SPEC.hidden_size),
}
BLOCK = {p: "self_attn" for p in ("q_proj", "k_proj", "v_proj", "o_proj")} | {
    p: "mlp" for p in ("gate_proj", "up_proj", "down_proj")
}
PRESETS = {
    "all": list(SHAPES),
    "qv": ["q_proj", "v_proj"],
    "qkvo": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
PEFT_PREFIX = "base_model.model.model.language_model.layers"


@pytest.fixture(scope="module")
def kit_path(tiny_kit):
    return tiny_kit


def load(path):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path)


def expected_adapter_names(projs: list[str], dora: bool) -> set[str]:
    kinds = ["lora_A", "lora_B"] + (["lora_magnitude_vector"] if dora else [])
    return {
        f"{PEFT_PREFIX}.{layer}.{BLOCK[p]}.{p}.{kind}.default.weight"
        for layer in range(SPEC.num_hidden_layers)
        for p in projs
        for kind in kinds
    }


def expected_adapter_count(projs: list[str], rank: int, dora: bool) -> int:
    per_layer = sum(rank * (i + o) + (o if dora else 0) for i, o in (SHAPES[p] for p in projs))
    return per_layer * SPEC.num_hidden_layers


def test_target_regex_never_matches_vision_or_merger(kit_path):
    names = [n for n, _ in load(kit_path).named_modules()]
    for preset, projs in PRESETS.items():
        matched = {n for n in names if re.fullmatch(target_regex(preset), n)}
        expected = {
            f"model.language_model.layers.{layer}.{BLOCK[p]}.{p}"
            for layer in range(SPEC.num_hidden_layers)
            for p in projs
        }
        assert matched == expected, preset
    # The vision blocks have gate/up/down projections too: "all" must not touch them.
    assert any(n.startswith("model.visual.blocks.0.mlp.gate_proj") for n in names)
    # transformers 4.x layout still matches.
    assert re.fullmatch(target_regex("qv"), "model.layers.3.self_attn.v_proj")
    assert not re.fullmatch(target_regex("all"), "model.visual.layers.0.mlp.up_proj")


@pytest.mark.parametrize("mode", ["dora", "lora"])
@pytest.mark.parametrize("preset", ["all", "qv", "qkvo"])
def test_peft_trains_exactly_the_targeted_adapters(kit_path, mode, preset):
    rank = 4
    model = apply_finetuning(load(kit_path), mode, rank=rank, alpha=8, targets=preset)
    dora = mode == "dora"
    trainable = set(trainable_parameter_names(model))
    assert trainable == expected_adapter_names(PRESETS[preset], dora)
    assert not any(".visual." in n for n in trainable)
    counts = count_parameters(model)
    assert counts["trainable"] == expected_adapter_count(PRESETS[preset], rank, dora)
    base_total = sum(p.numel() for p in load(kit_path).parameters())
    assert counts["total"] == base_total + counts["trainable"]
    assert counts["trainable_pct"] == pytest.approx(100 * counts["trainable"] / counts["total"])
    assert len(adapted_module_names(model)) == SPEC.num_hidden_layers * len(PRESETS[preset])


def test_rank_32_alpha_64_count_and_scaling(kit_path):
    model = apply_finetuning(load(kit_path), "dora", rank=32, alpha=64, targets="all")
    assert count_parameters(model)["trainable"] == expected_adapter_count(PRESETS["all"], 32, True)
    q_proj = dict(model.named_modules())[f"{PEFT_PREFIX}.0.self_attn.q_proj"]
    assert q_proj.scaling["default"] == 2.0  # alpha / r


def test_full_trains_language_model_not_vision(kit_path):
    model = apply_finetuning(load(kit_path), "full")
    trainable = set(trainable_parameter_names(model))
    names = [n for n, _ in model.named_parameters()]
    assert trainable == {n for n in names if not n.startswith("model.visual.")}
    for must in (
        "model.language_model.embed_tokens.weight",
        "model.language_model.layers.1.mlp.down_proj.weight",
        "model.language_model.norm.weight",
        "lm_head.weight",
    ):
        assert must in trainable
    visual = sum(p.numel() for n, p in model.named_parameters() if n.startswith("model.visual."))
    counts = count_parameters(model)
    assert counts["trainable"] == counts["total"] - visual > 0


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_vision_and_merger_flags(kit_path, mode):
    model = apply_finetuning(load(kit_path), mode, rank=2, alpha=4, train_merger=True)
    trainable = trainable_parameter_names(model)
    merger = [n for n in trainable if "visual.merger." in n]
    tower = [n for n in trainable if ".visual." in n and "visual.merger." not in n]
    assert len(merger) == 5 and not tower  # ln_q.weight, mlp.0 and mlp.2 weight + bias
    model = apply_finetuning(load(kit_path), mode, rank=2, alpha=4, train_vision=True)
    trainable = trainable_parameter_names(model)
    assert any(".visual.blocks.0.attn.qkv.weight" in n for n in trainable)
    assert not any("visual.merger." in n for n in trainable)


def test_dora_forces_dropout_zero_lora_keeps_it(kit_path):
    with pytest.warns(UserWarning, match="DoRA with lora_dropout=0.1"):
        dora = apply_finetuning(load(kit_path), "dora", rank=2, alpha=4, dropout=0.1)
    q = dict(dora.named_modules())[f"{PEFT_PREFIX}.0.self_attn.q_proj"]
    assert isinstance(q.lora_dropout["default"], nn.Identity)
    lora = apply_finetuning(load(kit_path), "lora", rank=2, alpha=4, dropout=0.1)
    q = dict(lora.named_modules())[f"{PEFT_PREFIX}.0.self_attn.q_proj"]
    assert isinstance(q.lora_dropout["default"], nn.Dropout) and q.lora_dropout["default"].p == 0.1


def _perturb_adapters(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def test_token_layer_targets_adapt_lm_head_and_embeddings_and_merge_exactly(kit_path):
    model = load(kit_path)
    vocab = model.lm_head.out_features
    hidden = SPEC.hidden_size
    assert model.model.language_model.embed_tokens.num_embeddings == vocab
    rank = 4
    peft = apply_finetuning(
        model, "dora", rank=rank, alpha=8, targets=["q_proj", "lm_head", "embed_tokens"]
    )
    trainable = set(trainable_parameter_names(peft))
    assert "base_model.model.lm_head.lora_B.default.weight" in trainable
    assert (
        "base_model.model.model.language_model.embed_tokens.lora_embedding_A.default" in trainable
    )
    assert not any(".visual." in n for n in trainable)
    # by hand: q_proj per layer r*(in+out) + out (DoRA magnitude); lm_head r*(hidden+vocab)
    # + vocab; embeddings r*(vocab+hidden) + hidden
    q = rank * (hidden + hidden) + hidden
    head = rank * (hidden + vocab) + vocab
    embed = rank * (vocab + hidden) + hidden
    assert count_parameters(peft)["trainable"] == SPEC.num_hidden_layers * q + head + embed
    # merged, the plain model computes exactly what the adapted one did
    _perturb_adapters(peft, seed=3)
    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 11, 12]])
    with torch.no_grad():
        adapted = peft(input_ids=ids).logits
        merged = peft.merge_and_unload()(input_ids=ids).logits
    assert torch.allclose(adapted, merged, atol=1e-4)
    assert not torch.allclose(adapted, load(kit_path)(input_ids=ids).logits, atol=1e-2)


def test_token_layer_targets_refuse_tied_embeddings(kit_path):
    model = load(kit_path)
    model.config.tie_word_embeddings = True  # as Qwen2.5-VL-3B
    with pytest.raises(ValueError, match="ties lm_head to embed_tokens"):
        apply_finetuning(model, "dora", targets=["q_proj", "lm_head"])
    apply_finetuning(model, "dora", targets="all")  # decoder projections only: fine


def test_gradient_checkpointing_same_grads(kit_path):
    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 11, 12]])

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = apply_finetuning(load(kit_path), "lora", rank=2, alpha=4, targets="qv")
        _perturb_adapters(model, seed=2)  # lora_B starts at 0: make lora_A's grad nonzero
        if checkpointing:
            enable_gradient_checkpointing(model)
            layer = model.get_base_model().model.language_model.layers[0]
            assert layer.gradient_checkpointing
            assert model.get_base_model().config.use_cache is False
        model.train()
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    plain, ckpt = grads(False), grads(True)
    assert plain.keys() == ckpt.keys() and len(plain) == 8
    for name in plain:
        assert plain[name].abs().sum() > 0, name
        assert torch.allclose(plain[name], ckpt[name], atol=1e-6), name


@pytest.mark.skipif(
    torch.cuda.is_available() and adapters.importlib.util.find_spec("bitsandbytes") is not None,
    reason="QLoRA is available here",
)
def test_qlora_unavailable_is_a_clear_error(kit_path):
    with pytest.raises(QLoRAUnavailableError, match="qlora.*(CUDA|bitsandbytes)"):
        quantization_config("qlora")
    with pytest.raises(QLoRAUnavailableError, match="use mode 'lora' or 'dora'"):
        apply_finetuning(load(kit_path), "qlora", rank=8, alpha=16, targets="qv")
    assert quantization_config("lora") is None


def test_bad_arguments(kit_path):
    model = load(kit_path)
    with pytest.raises(ValueError, match="finetuning mode"):
        apply_finetuning(model, "prefix")
    with pytest.raises(ValueError, match="preset"):
        apply_finetuning(model, "lora", targets="attention")
    with pytest.raises(ValueError, match="subset"):
        apply_finetuning(model, "lora", targets=["q_proj", "qkv"])


def test_resolve_attn_implementation(monkeypatch):
    monkeypatch.setattr(adapters, "flash_attention_available", lambda: False)
    assert resolve_attn_implementation("auto") == "sdpa"
    assert resolve_attn_implementation("eager") == "eager"
    with pytest.raises(RuntimeError, match="flash-attn"):
        resolve_attn_implementation("flash_attention_2")
    monkeypatch.setattr(adapters, "flash_attention_available", lambda: True)
    assert resolve_attn_implementation() == "flash_attention_2"
    with pytest.raises(ValueError, match="attn_implementation"):
        resolve_attn_implementation("flash")
