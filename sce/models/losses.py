"""Training losses: answer-token cross-entropy and the probability MSE (paper 002: CE + 5 x MSE,
positives weighted 3).

Memory: logits are only ever computed for the rows that are supervised. A Qwen2.5-VL batch is
mostly video tokens; [B, S, 152k] float logits would dwarf the activations. `compute_losses` asks
the model itself for those rows (`logits_to_keep` as a boolean [B, S] mask, transformers 5.x), so
the call goes through the root module's forward: PEFT, NEFTune's hook and FSDP wrappers all see
it. `supervised_cross_entropy` / `probability_mse` do the same from hidden states and an lm_head.

Probability MSE. Paper 002 adds an MSE term "on the probability token" without saying how a
sampled number becomes differentiable. Here it is the EXPECTED VALUE of the number under the
model's digit distribution, teacher-forced on the reference answer: at the position predicting
each digit of "0.872" (label position - 1), softmax over the ten digit tokens' logits only,
expected digit E_k = sum_j j * p_j, and predicted = sum_k place_value_k * E_k (1, 0.1, 0.01,
0.001).
Restricting the softmax to digits keeps the term about the value, not about whether a digit is
emitted (CE already teaches the format). The loss uses the unclamped expectation: clamping to
[0, 1] would zero the gradient exactly when the prediction is out of range (an untrained model's
integer digit averages ~4.5); the returned `predicted` is clamped to [0, 1] for metrics.
Per sample: w * (predicted - target)^2 with w = pos_weight if target >= 0.5 else 1, averaged over
the batch's probability samples (0 when there are none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sce.models.adapters import unwrap_model

IGNORE_INDEX = -100
MODEL_INPUT_KEYS: tuple[str, ...] = (
    "input_ids",
    "attention_mask",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
    "pixel_values",
    "image_grid_thw",
    "mm_token_type_ids",
)
POSITIVE_THRESHOLD = 0.5


@dataclass
class LossOutput:
    """total = ce + mse_weight * mse; n_tokens = supervised tokens in the CE mean."""

    total: torch.Tensor
    ce: torch.Tensor
    mse: torch.Tensor
    n_tokens: int
    predicted: torch.Tensor | None = None  # [B] probability per sample, nan where none


def combined_loss(ce: torch.Tensor, mse: torch.Tensor, mse_weight: float = 5.0) -> torch.Tensor:
    """CE + mse_weight * MSE (paper 002: mse_weight 5)."""
    return ce + mse_weight * mse


# ---------------------------------------------------------------- model inputs and forward


def mm_token_type_ids(input_ids: torch.Tensor, config) -> torch.Tensor:
    """0 text, 1 image placeholder, 2 video placeholder: what Qwen2.5-VL's 3D RoPE needs."""
    types = torch.zeros_like(input_ids, dtype=torch.int32)
    if getattr(config, "image_token_id", None) is not None:
        types[input_ids == config.image_token_id] = 1
    if getattr(config, "video_token_id", None) is not None:
        types[input_ids == config.video_token_id] = 2
    return types


def model_inputs(batch: Mapping[str, Any], config=None) -> dict[str, Any]:
    """The model-input keys of a collated batch (labels, meta and loss targets left out).

    In transformers 5.x Qwen2.5-VL only builds its 3D (temporal/height/width) positions when
    `mm_token_type_ids` is passed; without it text and video get plain 1D positions and
    `second_per_grid_ts` is ignored. If the batch lacks it, it is rebuilt from input_ids.
    """
    inputs = {k: batch[k] for k in MODEL_INPUT_KEYS if batch.get(k) is not None}
    has_visual = (
        inputs.get("video_grid_thw") is not None or inputs.get("image_grid_thw") is not None
    )
    if "mm_token_type_ids" not in inputs and has_visual and config is not None:
        inputs["mm_token_type_ids"] = mm_token_type_ids(inputs["input_ids"], config)
    return inputs


def lm_head_of(model: nn.Module) -> nn.Module:
    """The output projection (through a PeftModel wrapper)."""
    return unwrap_model(model).get_output_embeddings()


def forward_hidden(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """Final (normed) hidden states [B, S, H] without full-vocabulary logits.

    Goes through the root forward (PEFT, hooks, FSDP) with `logits_to_keep=1`; the last entry of
    `hidden_states` is the language model's normed output, the lm_head's input.
    """
    inputs = model_inputs(batch, getattr(model, "config", None))
    out = model(**inputs, output_hidden_states=True, logits_to_keep=1, use_cache=False)
    return out.hidden_states[-1]


# ---------------------------------------------------------------- cross-entropy


def next_token_mask(labels: torch.Tensor) -> torch.Tensor:
    """Bool [B, S]: positions whose NEXT token is supervised (the rows that need logits)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


def shifted_targets(labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Targets [N] aligned with the rows `tensor[keep]` (row-major over batch, position)."""
    return labels[:, 1:][keep[:, :-1]]


def _zero_like_graph(t: torch.Tensor) -> torch.Tensor:
    # A zero that still depends on the parameters, so every rank runs the same backward.
    return t.sum().float() * 0.0


def cross_entropy_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean CE of selected logit rows [N, V] (float32); 0 attached to the graph when N = 0."""
    if targets.numel() == 0:
        return _zero_like_graph(logits)
    return F.cross_entropy(logits.float(), targets)


def supervised_cross_entropy(
    hidden_states: torch.Tensor, lm_head: nn.Module, labels: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Token-mean CE of the supervised (label != -100) next tokens: (loss, n_tokens).

    lm_head runs on the [N, H] supervised rows only, never on the whole [B, S] sequence.
    Equals cross_entropy(full_logits[:, :-1], labels[:, 1:], ignore_index=-100).
    """
    keep = next_token_mask(labels)
    targets = shifted_targets(labels, keep)
    if targets.numel() == 0:
        return _zero_like_graph(hidden_states), 0
    return cross_entropy_rows(lm_head(hidden_states[keep]), targets), int(targets.numel())


# ---------------------------------------------------------------- probability MSE


def probability_slots(
    prob_positions: torch.Tensor, prob_targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(is_prob [B], valid [B, K]): probability samples and their digit slots.

    Raises ValueError for a probability sample whose answer has no digit position.
    """
    is_prob = torch.isfinite(prob_targets)
    valid = (prob_positions >= 1) & is_prob[:, None]
    empty = is_prob & ~valid.any(dim=1)
    if empty.any():
        rows = empty.nonzero().flatten().tolist()
        raise ValueError(
            f"batch rows {rows} have a probability target but no digit positions in their "
            "labels (prob_positions); the answer must contain the number"
        )
    return is_prob, valid


def expected_probability(digit_logits: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """sum_k scale_k * E[digit_k], digit_logits [B, K, 10] over tokens '0'..'9'. [B], unclamped."""
    probs = digit_logits.float().softmax(dim=-1)
    values = torch.arange(10, device=probs.device, dtype=probs.dtype)
    expected_digit = (probs * values).sum(dim=-1)
    return (expected_digit * scales.to(probs.dtype)).sum(dim=-1)


def weighted_mse(
    predicted: torch.Tensor,
    targets: torch.Tensor,
    is_prob: torch.Tensor,
    pos_weight: float = 3.0,
) -> torch.Tensor:
    """Mean over probability samples of w * (predicted - target)^2, w = pos_weight if t >= 0.5."""
    if not is_prob.any():
        return _zero_like_graph(predicted)
    pred, target = predicted[is_prob], targets[is_prob].to(predicted.dtype)
    weight = torch.where(target >= POSITIVE_THRESHOLD, pos_weight, 1.0).to(pred.dtype)
    return (weight * (pred - target) ** 2).mean()


def _probability_loss(
    rows_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    prob_positions: torch.Tensor,
    prob_scales: torch.Tensor,
    prob_targets: torch.Tensor,
    digit_ids: Sequence[int] | torch.Tensor,
    pos_weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shared MSE core; `rows_at(b, s)` returns the full-vocab logits [M, V] at (b, s)."""
    is_prob, valid = probability_slots(prob_positions, prob_targets)
    b_idx, k_idx = valid.nonzero(as_tuple=True)
    logits = rows_at(b_idx, prob_positions[b_idx, k_idx] - 1)
    digit_ids = torch.as_tensor(digit_ids, device=logits.device, dtype=torch.long)
    batch, slots = prob_positions.shape
    digit_logits = logits.new_zeros((batch, slots, 10), dtype=torch.float32)
    digit_logits = digit_logits.index_put((b_idx, k_idx), logits[:, digit_ids].float())
    scales = torch.where(valid, prob_scales, torch.zeros_like(prob_scales))
    raw = expected_probability(digit_logits, scales.to(digit_logits.device))
    targets = prob_targets.to(raw.device)
    loss = weighted_mse(raw, targets, is_prob.to(raw.device), pos_weight)
    if not is_prob.any():
        loss = loss + _zero_like_graph(logits)
    predicted = torch.where(is_prob.to(raw.device), raw.detach().clamp(0.0, 1.0), torch.nan)
    return loss, predicted


def probability_mse(
    hidden_states: torch.Tensor,
    lm_head: nn.Module,
    prob_positions: torch.Tensor,
    prob_scales: torch.Tensor,
    prob_targets: torch.Tensor,
    digit_ids: Sequence[int] | torch.Tensor,
    pos_weight: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, predicted [B]) for the probability answers (see module docstring).

    prob_positions [B, K]: label positions of the number's digits (-1 padding); prob_scales
    [B, K]: their place values; prob_targets [B]: nan for non-probability samples.
    """
    device = hidden_states.device

    def rows_at(b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return lm_head(hidden_states[b.to(device), s.to(device)])

    return _probability_loss(
        rows_at, prob_positions, prob_scales, prob_targets, digit_ids, pos_weight
    )


# ---------------------------------------------------------------- one forward, both losses


def compute_losses(
    model: nn.Module,
    batch: Mapping[str, Any],
    digit_ids: Sequence[int] | torch.Tensor | None = None,
    mse_weight: float = 5.0,
    pos_weight: float = 3.0,
) -> LossOutput:
    """One forward that returns logits for the supervised rows only, then CE (+ MSE).

    The MSE term is computed when the batch carries `prob_targets` with a finite value and
    `digit_ids` is given (`sce.data.collate.digit_token_ids(tokenizer)`); otherwise mse = 0.
    The digit rows are a subset of the supervised rows, so no extra lm_head work is needed.
    """
    labels = batch["labels"]
    keep = next_token_mask(labels)
    inputs = model_inputs(batch, getattr(model, "config", None))
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits  # [N, V]
    targets = shifted_targets(labels, keep).to(logits.device)
    ce = cross_entropy_rows(logits, targets)
    mse, predicted = _zero_like_graph(logits), None
    prob_targets = batch.get("prob_targets")
    if digit_ids is not None and prob_targets is not None and torch.isfinite(prob_targets).any():
        row_of = (keep.flatten().cumsum(0) - 1).view_as(keep)

        def rows_at(b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            if not bool(keep[b, s].all()):
                raise ValueError("a probability digit position is not a supervised label")
            return logits[row_of[b, s].to(logits.device)]

        mse, predicted = _probability_loss(
            rows_at,
            batch["prob_positions"],
            batch["prob_scales"],
            prob_targets,
            digit_ids,
            pos_weight,
        )
    return LossOutput(
        total=combined_loss(ce, mse, mse_weight),
        ce=ce,
        mse=mse,
        n_tokens=int(targets.numel()),
        predicted=predicted,
    )
