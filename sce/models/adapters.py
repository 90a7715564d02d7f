"""Which weights train: PEFT LoRA / DoRA / QLoRA adapters or full language-model fine-tuning.

Adapters go on the language model's decoder linear layers only. PEFT's "all-linear" shortcut
would also adapt the vision tower (`model.visual.blocks.N.attn.qkv`, `...mlp.gate_proj`) and the
merger (`model.visual.merger.mlp.N`), which the recipes keep frozen, so `target_modules` is a
regex anchored on `language_model.layers.N.(self_attn|mlp).<proj>` (transformers 5.x layout;
`model.layers.N...` of 4.x checkpoints also matches). The vision tower and the merger train only
when `train_vision` / `train_merger` ask for it.

Presets: "all" = q,k,v,o,gate,up,down (paper 000, DoRA r=32 alpha=64); "qv" (paper 002 baseline,
LoRA r=8 alpha=16); "qkvo" (paper 002 enhanced). A list of names may also add the token layers
(`lm_head`, `embed_tokens`), which no paper adapts: `sce demo`'s DoRA row does, because its
random tiny base never trained the rows of the answer words (README, "DoRA on the tiny base").

Adapter-only checkpoints (which parameters are saved, under which names, how they load back)
are sce.models.checkpointing's: `gather_trainable_state_dict`, `adapter_only`, `check_trainable_keys`.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from sce.common.choices import check_choice, choices_of

ATTENTION_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")
LM_PROJECTIONS: tuple[str, ...] = ATTENTION_PROJECTIONS + MLP_PROJECTIONS
TOKEN_LAYERS: tuple[str, ...] = ("lm_head", "embed_tokens")  # the LM's output head and input rows
TARGET_NAMES: tuple[str, ...] = LM_PROJECTIONS + TOKEN_LAYERS
TargetPreset = Literal["all", "qv", "qkvo"]  # model.targets
TARGET_PRESETS: dict[TargetPreset, tuple[str, ...]] = {
    "all": LM_PROJECTIONS,
    "qv": ("q_proj", "v_proj"),
    "qkvo": ATTENTION_PROJECTIONS,
}
assert tuple(TARGET_PRESETS) == choices_of(TargetPreset)
AdapterMode = Literal["dora", "lora", "full", "qlora"]  # model.finetuning, bar "none"
MODES: tuple[str, ...] = choices_of(AdapterMode)
AttnImplementation = Literal["auto", "eager", "sdpa", "flash_attention_2"]
ATTN_IMPLEMENTATIONS: tuple[str, ...] = choices_of(AttnImplementation)


class QLoRAUnavailableError(RuntimeError):
    """4-bit loading needs a CUDA device and the bitsandbytes package."""


def resolve_targets(targets: str | Sequence[str]) -> tuple[str, ...]:
    """Layer names for a preset ("all", "qv", "qkvo") or an explicit list of TARGET_NAMES."""
    if isinstance(targets, str):
        if targets not in TARGET_PRESETS:
            raise ValueError(
                f"unknown adapter targets preset {targets!r}; use one of "
                f"{sorted(TARGET_PRESETS)} or a list of {list(TARGET_NAMES)}"
            )
        return TARGET_PRESETS[targets]
    names = tuple(targets)
    unknown = [n for n in names if n not in TARGET_NAMES]
    if unknown or not names:
        raise ValueError(
            f"adapter targets must be a non-empty subset of {list(TARGET_NAMES)}, got {list(names)}"
        )
    return names


def target_regex(targets: str | Sequence[str] = "all") -> str:
    """Regex (PEFT fullmatch) for the language model's decoder projections and, when named, its
    token layers; never `visual.*`."""
    names = resolve_targets(targets)
    parts = []
    attn = [n for n in names if n in ATTENTION_PROJECTIONS]
    mlp = [n for n in names if n in MLP_PROJECTIONS]
    if attn:
        parts.append(r"self_attn\.(?:" + "|".join(attn) + ")")
    if mlp:
        parts.append(r"mlp\.(?:" + "|".join(mlp) + ")")
    # (?!.*visual\.) is belt and braces: the vision blocks are named `blocks`, not `layers`.
    lm = r"(?!.*visual\.)(?:.*\.)?(?:language_model|model)\."
    alternatives = [lm + r"layers\.\d+\.(?:" + "|".join(parts) + ")"] if parts else []
    if "embed_tokens" in names:
        alternatives.append(lm + "embed_tokens")
    if "lm_head" in names:
        alternatives.append(r"(?:.*\.)?lm_head")
    return alternatives[0] if len(alternatives) == 1 else "|".join(f"(?:{a})" for a in alternatives)


def is_visual_param(name: str) -> bool:
    """True for the vision tower and the merger (projector)."""
    return name.startswith("visual.") or ".visual." in name


def is_merger_param(name: str) -> bool:
    """True for the vision-to-language projector (`visual.merger`)."""
    return "visual.merger." in name


def quantization_config(mode: str = "qlora", compute_dtype: torch.dtype = torch.bfloat16):
    """BitsAndBytesConfig for `from_pretrained(..., quantization_config=...)`; None unless qlora.

    4-bit NF4 with double quantization (paper 002: "4-bit NF4", fp16 compute; pass
    `compute_dtype=torch.float16` with `dtype=torch.float16` to match it exactly). Raises
    QLoRAUnavailableError without CUDA or bitsandbytes.
    """
    if mode != "qlora":
        return None
    require_qlora_support()
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def require_qlora_support() -> None:
    """Raise QLoRAUnavailableError unless CUDA and bitsandbytes are both available."""
    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA device (bitsandbytes 4-bit kernels do not run on CPU here)")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package (pip install bitsandbytes)")
    if missing:
        raise QLoRAUnavailableError(
            "finetuning mode 'qlora' needs " + " and ".join(missing) + "; use mode 'lora' or "
            "'dora' on this machine."
        )


def _is_4bit(model: nn.Module) -> bool:
    base = unwrap_model(model)
    return bool(getattr(base, "is_loaded_in_4bit", False)) or any(
        type(p).__name__ == "Params4bit" for p in base.parameters()
    )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The transformers model under a PeftModel (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def apply_finetuning(
    model: nn.Module,
    mode: str = "dora",
    rank: int = 32,
    alpha: int = 64,
    dropout: float = 0.0,
    targets: str | Sequence[str] = "all",
    train_vision: bool = False,
    train_merger: bool = False,
) -> nn.Module:
    """Make the right parameters trainable; returns a PeftModel for lora/dora/qlora.

    Args:
        model: a Qwen2.5-VL for conditional generation (4-bit loaded for mode "qlora").
        mode: "dora" | "lora" | "qlora" (LoRA on a 4-bit model) | "full" (whole language model:
            embeddings, decoder layers, final norm, lm_head).
        rank, alpha, dropout: LoRA r, lora_alpha, lora_dropout. DoRA forces dropout 0 (with a
            warning): with dropout PEFT runs the base matmul a second time for the DoRA term.
        targets: "all" | "qv" | "qkvo" | list of projection names (ignored for "full").
        train_vision / train_merger: unfreeze the vision tower / the merger (projector).
    """
    check_choice("finetuning mode", mode, AdapterMode)
    if mode == "full":
        for name, param in model.named_parameters():
            param.requires_grad_(not is_visual_param(name))
    else:
        model = _apply_peft(model, mode, rank, alpha, dropout, targets)
    _set_visual_trainable(model, train_vision, train_merger)
    return model


def _apply_peft(
    model: nn.Module, mode: str, rank: int, alpha: int, dropout: float, targets
) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    if mode == "qlora":
        require_qlora_support()
        if not _is_4bit(model):
            raise ValueError(
                "mode 'qlora' needs a model loaded in 4 bit: from_pretrained(..., "
                "quantization_config=sce.models.adapters.quantization_config('qlora'))"
            )
    if rank <= 0 or alpha <= 0:
        raise ValueError(f"LoRA rank and alpha must be positive, got rank={rank}, alpha={alpha}")
    _check_untied(model, targets)
    use_dora = mode == "dora"
    if use_dora and dropout > 0:
        warnings.warn(
            f"DoRA with lora_dropout={dropout} makes PEFT run each base matmul twice; "
            "using lora_dropout=0.",
            stacklevel=3,
        )
        dropout = 0.0
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_regex(targets),
        use_dora=use_dora,
        bias="none",
    )
    return get_peft_model(model, config)


def _check_untied(model: nn.Module, targets) -> None:
    """Adapters on a token layer of a model that ties lm_head to embed_tokens (Qwen2.5-VL-3B)
    would, once merged, change both layers through the one shared matrix: refuse them."""
    token_layers = [n for n in resolve_targets(targets) if n in TOKEN_LAYERS]
    if not token_layers:
        return
    config = model.config
    text_config = getattr(config, "text_config", None)
    if getattr(config, "tie_word_embeddings", False) or getattr(
        text_config, "tie_word_embeddings", False
    ):
        raise ValueError(
            f"adapter targets {token_layers}: this model ties lm_head to embed_tokens, so a merged "
            "adapter would change both; leave the token layers out of model.targets"
        )


def _set_visual_trainable(model: nn.Module, train_vision: bool, train_merger: bool) -> None:
    """Vision tower and merger follow the flags, whatever the mode did to them."""
    for name, param in model.named_parameters():
        if is_merger_param(name):
            param.requires_grad_(train_merger)
        elif is_visual_param(name):
            param.requires_grad_(train_vision)


def _numel(param: torch.Tensor) -> int:
    # bitsandbytes packs two 4-bit weights per uint8 element.
    return param.numel() * 2 if type(param).__name__ == "Params4bit" else param.numel()


def count_parameters(model: nn.Module) -> dict[str, float]:
    """{"trainable": int, "total": int, "trainable_pct": float (0-100)}."""
    trainable = total = 0
    for param in model.parameters():
        n = _numel(param)
        total += n
        if param.requires_grad:
            trainable += n
    pct = 100.0 * trainable / total if total else 0.0
    return {"trainable": trainable, "total": total, "trainable_pct": pct}


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names (as in `model.state_dict()`) of the parameters that require grad."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Non-reentrant activation checkpointing, input grads on, KV cache off.

    Reentrant checkpointing drops the gradient when no input of a checkpointed block requires
    grad, which is the case with frozen embeddings (adapters); non-reentrant does not.
    """
    base = unwrap_model(model)
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    base.enable_input_require_grads()
    if getattr(base, "config", None) is not None:
        base.config.use_cache = False


def flash_attention_available() -> bool:
    """flash_attn importable and a CUDA device present."""
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def resolve_attn_implementation(requested: str = "auto") -> str:
    """ "auto" -> flash_attention_2 when usable, else "sdpa"; explicit choices are checked."""
    check_choice("attn_implementation", requested, AttnImplementation)
    if requested == "auto":
        return "flash_attention_2" if flash_attention_available() else "sdpa"
    if requested == "flash_attention_2" and not flash_attention_available():
        raise RuntimeError(
            "attn_implementation 'flash_attention_2' needs CUDA and the flash-attn package; "
            "use 'sdpa' or 'auto'"
        )
    return requested


def adapted_module_names(model: nn.Module) -> list[str]:
    """Names of the modules PEFT wrapped with LoRA/DoRA layers (for logs and tests)."""
    return [name for name, module in model.named_modules() if hasattr(module, "lora_A")]


__all__ = [
    "AdapterMode",
    "AttnImplementation",
    "LM_PROJECTIONS",
    "MODES",
    "QLoRAUnavailableError",
    "TARGET_PRESETS",
    "TargetPreset",
    "adapted_module_names",
    "apply_finetuning",
    "count_parameters",
    "enable_gradient_checkpointing",
    "flash_attention_available",
    "is_merger_param",
    "is_visual_param",
    "quantization_config",
    "require_qlora_support",
    "resolve_attn_implementation",
    "resolve_targets",
    "target_regex",
    "trainable_parameter_names",
    "unwrap_model",
]
