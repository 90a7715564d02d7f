"""The model's frame geometry: the size a processor resizes frames to, and the visual tokens.

A patch-grid VLM (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) resizes every frame so that each side is a
multiple of patch * merge (`smart_resize`, within the processor's pixel limits), cuts patches,
merges merge x merge of them into one token and groups `temporal_patch_size` frames into one
temporal patch. The numbers and the rounding come from the model's family
(`sce.models.families`: the processor's own settings when one is loaded, else the default
family's hub defaults); the arithmetic here is shared. Read by the DataModule (frames are
decoded at the model's size), by `sce infer` and by `sce budget`.

`with_fast_video_processor` gives the collator the family's bit-identical fast video
preprocessing (`sce.models.families.patchify`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from sce.models.families import (
    DEFAULT_FAMILY,
    Family,
    ProcessorSettings,
    family_of_processor,
)

# The processor numbers used when no processor is at hand: the default family's hub defaults.
DEFAULT_SETTINGS = DEFAULT_FAMILY.settings


def with_fast_video_processor(processor):
    """A shallow copy of `processor` whose video processor uses its family's fast path
    (`Family.with_fast_video_processor`); the caller's processor is left untouched (it may be
    saved by `sce export`). Processors of no known family are returned unchanged."""
    family = family_of_processor(processor)
    return processor if family is None else family.with_fast_video_processor(processor)


def model_frame_size(
    processor, width: int, height: int, max_pixels: int | None = None
) -> tuple[int, int]:
    """(width, height) that `processor` resizes width x height video frames to.

    For a known family's video processor this is its `smart_resize` (Qwen2.5-VL: each side to
    a multiple of patch * merge = 28, within the pixel limits): 420x240 -> 420x252. Other
    processors, and the per-frame cap whose limit depends on the video's length, give (width,
    height) back. `max_pixels` (data.window.max_pixels, paper 003) caps each frame first, with the same
    rounding (the processor's settings, else the default family's): 420x476 at 16,384 pixels ->
    112x112.
    """
    video_processor = getattr(processor, "video_processor", None)
    family = family_of_processor(processor)
    if family is None:
        return capped_frame_size(width, height, max_pixels, DEFAULT_SETTINGS)
    s = processor_settings(processor, "model")
    width, height = capped_frame_size(width, height, max_pixels, s, family)
    if getattr(video_processor, "cap_pixels_per_frame", False):
        return width, height
    resized_height, resized_width = smart_resize(
        height, width, s.factor, s.min_pixels, s.max_pixels, family
    )
    if max_pixels is not None and (resized_width, resized_height) != (width, height):
        raise ValueError(
            f"data.window.max_pixels={max_pixels}: the processor's min_pixels {s.min_pixels:,} "
            f"(video_processor.size.shortest_edge) would scale the capped {width}x{height} "
            f"frames back up to {resized_width}x{resized_height}; the cap needs min_pixels <= "
            f"{width * height:,} ({family.name}'s own preprocessor config has "
            f"{family.settings.min_pixels:,})"
        )
    return resized_width, resized_height


def at_model_size(spec, processor):
    """`spec` (a WindowSpec) with its frame size replaced by the size the model sees.

    Frames are then decoded once, straight from the source to the model's input size (as
    qwen-vl-utils resizes), instead of to data.window.width x height and then again by the
    processor: sharper frames, the same token count, and the processor's resize becomes a
    no-op (about 6 ms per 18-frame clip on one core). With `spec.max_pixels` that size is the
    capped one, so training, evaluation and `sce infer` (which all call this) see the same
    pixels.
    """
    import dataclasses

    width, height = model_frame_size(processor, spec.width, spec.height, spec.max_pixels)
    return dataclasses.replace(spec, width=width, height=height)


# ------------------------------------------------------------------ patch-grid geometry
# (smart_resize, processor settings, visual-token counts: read by the collator's frame sizing
# and by `sce budget`)
def smart_resize(
    height: int,
    width: int,
    factor: int | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    family: Family = DEFAULT_FAMILY,
) -> tuple[int, int]:
    """(height, width) after the family's processor resize (its own smart_resize); factor and
    pixel limits default to the family's settings."""
    s = family.settings
    if min(height, width) <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {width}x{height} exceeds 200")
    return family.smart_resize(
        height,
        width,
        s.factor if factor is None else factor,
        s.min_pixels if min_pixels is None else min_pixels,
        s.max_pixels if max_pixels is None else max_pixels,
    )


def capped_frame_size(
    width: int,
    height: int,
    max_pixels: int | None,
    settings: ProcessorSettings = DEFAULT_SETTINGS,
    family: Family = DEFAULT_FAMILY,
) -> tuple[int, int]:
    """(width, height) of a frame under the per-frame cap `data.window.max_pixels` (paper 003: 16,384
    pixels), rounded like the processor's own `max_pixels` (smart_resize, factor 28 for
    Qwen2.5-VL, within its min/max pixels): 420x476 -> 112x112. Unchanged without a cap.

    Frames are decoded at this size (`sce.data.video_processing.at_model_size`); the processor
    then leaves them as they are. Paper 003 only says "16,384 pixels maximum"; this is the
    processor's (and qwen-vl-utils') reading of max_pixels. LLaMA-Factory, which the paper
    trained with, first scales by sqrt(cap / pixels) with truncation and lets the processor
    round afterwards: 420x476 -> 120x136 -> 112x140 (20 tokens per pair, not 16).
    """
    if max_pixels is None:
        return width, height
    cap = min(int(max_pixels), settings.max_pixels)
    h, w = smart_resize(height, width, settings.factor, settings.min_pixels, cap, family)
    return w, h


def video_max_pixels(num_frames: int, s: ProcessorSettings) -> int:
    """Per-frame pixel cap; with cap_pixels_per_frame also an even share of the video budget."""
    if not s.cap_pixels_per_frame:
        return s.max_pixels
    total = int(s.max_video_tokens * s.factor * s.factor * 0.9)
    share = total * s.temporal_patch_size // num_frames
    return max(min(s.max_pixels, share), int(s.min_pixels * 1.05))


def visual_tokens(
    num_frames: int,
    width: int,
    height: int,
    settings: ProcessorSettings = DEFAULT_SETTINGS,
    family: Family = DEFAULT_FAMILY,
    **overrides: Any,
) -> int:
    """Visual tokens of one video of `num_frames` frames of width x height (before resizing),
    resized by `family`'s smart_resize.

    `overrides` replace fields of `settings`, e.g. `visual_tokens(18, 420, 240, max_pixels=50176)`.
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    s = _with(settings, overrides)
    max_pixels = video_max_pixels(num_frames, s)
    h, w = smart_resize(height, width, s.factor, s.min_pixels, max_pixels, family)
    grid_t = math.ceil(num_frames / s.temporal_patch_size)
    return grid_t * (h // s.patch_size) * (w // s.patch_size) // (s.merge_size**2)


def _with(settings: ProcessorSettings, overrides: Mapping[str, Any]) -> ProcessorSettings:
    if not overrides:
        return settings
    fields = asdict(settings)
    unknown = set(overrides) - set(fields)
    if unknown:
        raise TypeError(f"unknown processor setting(s): {sorted(unknown)}")
    return ProcessorSettings(**{**fields, **overrides})


def image_tokens(
    width: int,
    height: int,
    settings: ProcessorSettings = DEFAULT_SETTINGS,
    family: Family = DEFAULT_FAMILY,
) -> int:
    """Visual tokens of one image: a patch-grid image processor tiles it to one temporal patch,
    so (H' / patch) * (W' / patch) / merge^2 after smart_resize (no per-frame video cap)."""
    s = settings
    h, w = smart_resize(height, width, s.factor, s.min_pixels, s.max_pixels, family)
    return (h // s.patch_size) * (w // s.patch_size) // (s.merge_size**2)


def processor_settings(processor, source: str, kind: str = "video") -> ProcessorSettings:
    """Settings read from a loaded processor's video processor, or its image processor for
    `kind="image"` (keyframes), with defaults for missing fields."""
    vp = getattr(processor, f"{kind}_processor", None)
    if vp is None:
        return DEFAULT_SETTINGS
    size = vp.size if isinstance(vp.size, Mapping) else vars(vp.size)
    d = (family_of_processor(processor) or DEFAULT_FAMILY).settings
    return ProcessorSettings(
        patch_size=int(getattr(vp, "patch_size", None) or d.patch_size),
        merge_size=int(getattr(vp, "merge_size", None) or d.merge_size),
        temporal_patch_size=int(getattr(vp, "temporal_patch_size", None) or d.temporal_patch_size),
        min_pixels=int(size.get("shortest_edge") or d.min_pixels),
        max_pixels=int(size.get("longest_edge") or d.max_pixels),
        # The collator turns an unset cap off (frames arrive already sized for the model).
        cap_pixels_per_frame=bool(getattr(vp, "cap_pixels_per_frame", False)),
        max_video_tokens=int(getattr(vp, "max_video_tokens", None) or d.max_video_tokens),
        source=source,
    )
