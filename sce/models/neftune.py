"""NEFTune: uniform noise on the input embeddings during training (paper 000: alpha = 5).

    noise = U(-1, 1) * alpha / sqrt(L * d)

with d the hidden size and L the sequence length. Choices made here, per sample:

- L counts the sample's REAL text tokens: attention-mask positions that are not visual
  placeholders (<|image_pad|>, <|video_pad|>). The common transformers hook uses the padded batch
  length, so a sample's noise shrinks as frames (hundreds of placeholders each) or padding grow.
  <|vision_start|>/<|vision_end|> are ordinary embedded tokens that the language model sees
  (like <|im_start|>), so they count as text and get noise.
- Noise goes to real text positions only. Padding gets none (it is masked anyway). Placeholder
  embeddings are overwritten by the vision features (`inputs_embeds.masked_scatter(video_mask,
  video_embeds)` in Qwen2_5_VLModel.forward), so noise there would vanish; leaving it at zero
  keeps the measured noise equal to the noise the language model actually receives.
- Only while the embedding module is in training mode: `model.eval()` turns it off.

The noise is drawn from torch's global generator on the embedding's device, so
`torch.manual_seed` makes it reproducible.

Use:
    neftune = NEFTune(alpha=5.0, excluded_token_ids=visual_placeholder_ids(model.config))
    neftune.attach(model)
    with neftune.batch(batch["input_ids"], batch["attention_mask"]):
        out = model(**inputs)
Without a `batch(...)` context every non-placeholder token counts as real text (then pass the pad
token id in `excluded_token_ids`, or padding is counted in L).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


def visual_placeholder_ids(config) -> list[int]:
    """Token ids of <|image_pad|> and <|video_pad|> from a Qwen2.5-VL config."""
    ids = [getattr(config, "image_token_id", None), getattr(config, "video_token_id", None)]
    ids = [int(i) for i in ids if i is not None]
    if not ids:
        raise ValueError("config has neither image_token_id nor video_token_id")
    return ids


def text_token_mask(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    excluded_token_ids: Iterable[int],
) -> torch.Tensor:
    """Bool [B, S]: attended positions whose token is not an excluded (placeholder) token."""
    mask = torch.ones_like(input_ids, dtype=torch.bool)
    if attention_mask is not None:
        mask &= attention_mask.bool()
    excluded = torch.as_tensor(list(excluded_token_ids), dtype=input_ids.dtype)
    if excluded.numel():
        mask &= ~torch.isin(input_ids, excluded.to(input_ids.device))
    return mask


def noise_scale(text_mask: torch.Tensor, hidden_size: int, alpha: float) -> torch.Tensor:
    """Per-sample bound alpha / sqrt(L * d), L = real text tokens of the sample (>= 1). [B]"""
    lengths = text_mask.sum(dim=1).clamp(min=1).to(torch.float32)
    return alpha / torch.sqrt(lengths * hidden_size)


class NEFTune:
    """Forward hook on the input embedding module that adds NEFTune noise in training mode."""

    def __init__(self, alpha: float = 5.0, excluded_token_ids: Iterable[int] = ()):
        if alpha < 0 or not math.isfinite(alpha):
            raise ValueError(f"NEFTune alpha must be a finite number >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.excluded_token_ids = [int(i) for i in excluded_token_ids]
        self._handle = None
        self._attention_mask: torch.Tensor | None = None
        self._input_ids: torch.Tensor | None = None

    @property
    def attached(self) -> bool:
        return self._handle is not None

    def attach(self, model: nn.Module) -> NEFTune:
        """Register the hook on `model.get_input_embeddings()` (works through PeftModel)."""
        if self._handle is not None:
            raise RuntimeError("NEFTune is already attached; detach() first")
        embeddings = model.get_input_embeddings()
        self._handle = embeddings.register_forward_hook(self._hook)
        return self

    def detach(self) -> None:
        """Remove the hook (no-op when not attached)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @contextmanager
    def batch(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> Iterator[NEFTune]:
        """Tell the hook which positions of the current batch are padding."""
        previous = (self._input_ids, self._attention_mask)
        self._input_ids, self._attention_mask = input_ids, attention_mask
        try:
            yield self
        finally:
            self._input_ids, self._attention_mask = previous

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training or self.alpha == 0:
            return None
        input_ids = inputs[0] if inputs else None
        # Only token-sequence lookups get noise (not e.g. a single placeholder id lookup).
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            return None
        return output + self.noise(input_ids, output)

    def noise(self, input_ids: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        """The noise to add to `embeds` [B, S, d] for tokens `input_ids` [B, S]."""
        attention_mask = self._attention_mask
        context_ids = self._input_ids
        if context_ids is not None and context_ids.shape != input_ids.shape:
            raise ValueError(
                f"NEFTune batch context has input_ids {tuple(context_ids.shape)} but the "
                f"embedded input_ids are {tuple(input_ids.shape)}; wrap each forward in "
                "neftune.batch(input_ids, attention_mask) of that same batch"
            )
        mask = text_token_mask(input_ids, attention_mask, self.excluded_token_ids)
        scale = noise_scale(mask, embeds.shape[-1], self.alpha).to(embeds.device)
        uniform = torch.empty_like(embeds).uniform_(-1.0, 1.0)
        weight = mask.to(embeds.dtype) * scale.to(embeds.dtype)[:, None]
        return uniform * weight[..., None]
