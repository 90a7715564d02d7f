"""A faster `_preprocess` for Qwen2-VL / Qwen2.5-VL video processors, equal to the original.

Why our own: transformers' version converts the whole resized video to float32, normalises it,
then patchifies it with a permute + reshape of the float tensor and concatenates the batch, so
each clip's 23 MB of float pixels (18 frames at 420x252) are written about four times. That is
most of the collate time once frames come from the cache (35-40 ms of a ~50 ms clip). Here each
video is converted to float32 once and its patches are copied straight into one preallocated
batch tensor (no stack, no reshape copy, no concatenation), then the fused rescale+normalise
runs in place: 7 ms instead of 45 ms for 18 frames at 420x252 on one core. (Permuting the
uint8 frames first and converting in the copy is slower: the strided gather dominates.) Resizing and the normalisation arithmetic are the upstream calls, so the output
is bit-for-bit the same (`tests/test_video_processing.py` compares them).

Only `_preprocess` is replaced: the processor's text expansion, `second_per_grid_ts` and
`mm_token_type_ids` stay upstream's. Input that is not uint8 on the CPU falls back to the
original.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

try:
    from transformers import Qwen2VLVideoProcessor
except ImportError:  # pragma: no cover - transformers without Qwen2-VL
    Qwen2VLVideoProcessor = None


if Qwen2VLVideoProcessor is not None:

    class FastQwen2VLVideoProcessor(Qwen2VLVideoProcessor):
        """Qwen2VLVideoProcessor with a single-copy patchify; outputs are identical."""

        def _preprocess(self, videos, **kwargs):
            if not kwargs.get("do_normalize") or any(
                v.dtype != torch.uint8 or v.device.type != "cpu" for v in videos
            ):  # the fast path is for the CPU dataloader's uint8 frames
                return super()._preprocess(videos, **kwargs)
            return _fast_preprocess(self, videos, **kwargs)

        def to_dict(self):
            # Saved configs must name the upstream class, so they load without sce.
            out = super().to_dict()
            out["video_processor_type"] = Qwen2VLVideoProcessor.__name__
            return out


def with_fast_video_processor(processor):
    """A shallow copy of `processor` whose Qwen2-VL video processor uses the fast path.

    The caller's processor is left untouched (it may be saved by `sce export`). Processors
    with any other video processor (or a subclass that changes preprocessing) are returned
    unchanged.
    """
    video_processor = getattr(processor, "video_processor", None)
    if Qwen2VLVideoProcessor is None or type(video_processor) is not Qwen2VLVideoProcessor:
        return processor
    fast = copy.copy(video_processor)
    fast.__class__ = FastQwen2VLVideoProcessor
    processor = copy.copy(processor)
    processor.video_processor = fast
    return processor


def _fast_preprocess(
    self,
    videos: list[torch.Tensor],
    do_resize: bool,
    size,
    resample,
    do_rescale: bool,
    rescale_factor: float,
    do_normalize: bool,
    image_mean,
    image_std,
    patch_size: int,
    temporal_patch_size: int,
    merge_size: int,
    cap_pixels_per_frame: bool | None = None,
    return_tensors=None,
    **_,
):
    """Same contract as Qwen2VLVideoProcessor._preprocess for uint8 [T, C, H, W] videos."""
    from transformers.feature_extraction_utils import BatchFeature

    resized = []
    for video in videos:
        if do_resize:  # the upstream call on a batch of one: same pixels as the stacked batch
            video = self.resize(
                videos=video[None],
                size=size,
                resample=resample,
                factor=patch_size * merge_size,
                temporal_factor=temporal_patch_size,
                cap_pixels_per_frame=bool(cap_pixels_per_frame),
            )[0]
        resized.append(_pad_frames(video, temporal_patch_size))
    grids = [_grid(v, patch_size, temporal_patch_size) for v in resized]
    channels = resized[0].shape[1]
    width = channels * temporal_patch_size * patch_size * patch_size
    out = torch.empty(sum(t * h * w for t, h, w in grids), width, dtype=torch.float32)
    row = 0
    for video, (_, h, w) in zip(resized, grids, strict=True):
        # One temporal patch at a time: its float copy stays in the CPU cache for the gather.
        for group in video.split(temporal_patch_size):
            rows = out[row : row + h * w]
            rows.view(h // merge_size, w // merge_size, merge_size, merge_size, channels,
                      temporal_patch_size, patch_size, patch_size).copy_(
                _patch_view(group.to(torch.float32), temporal_patch_size, merge_size, patch_size)[0]
            )  # fmt: skip
            row += h * w
    mean, std, do_rescale = self._fuse_mean_std_and_rescale_factor(
        do_normalize=do_normalize,
        image_mean=image_mean,
        image_std=image_std,
        do_rescale=do_rescale,
        rescale_factor=rescale_factor,
    )
    # Same elementwise ops as torchvision's in-place normalize ((x - mean) / std per channel).
    per_channel = out.view(len(out), channels, -1)
    per_channel.sub_(torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1))
    per_channel.div_(torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1))
    return BatchFeature(
        data={"pixel_values_videos": out, "video_grid_thw": torch.tensor(grids)},
        tensor_type=return_tensors,
    )


def _pad_frames(video: torch.Tensor, temporal_patch_size: int) -> torch.Tensor:
    """Repeat the last frame up to a multiple of the temporal patch (as upstream does)."""
    pad = -len(video) % temporal_patch_size
    return torch.cat([video, video[-1:].expand(pad, -1, -1, -1)]) if pad else video


def _grid(video: torch.Tensor, patch_size: int, temporal_patch_size: int) -> tuple[int, int, int]:
    frames, _, height, width = video.shape
    return frames // temporal_patch_size, height // patch_size, width // patch_size


def _patch_view(video: torch.Tensor, tp: int, merge: int, patch: int) -> torch.Tensor:
    """[T, C, H, W] -> [t, h/m, w/m, m, m, C, tp, p, p] view in Qwen's patch order."""
    frames, channels, height, width = video.shape
    view = video.view(
        frames // tp, tp, channels, height // (merge * patch), merge, patch,
        width // (merge * patch), merge, patch,
    )  # fmt: skip
    return view.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)


def model_frame_size(
    processor, width: int, height: int, max_pixels: int | None = None
) -> tuple[int, int]:
    """(width, height) that `processor` resizes width x height video frames to.

    For Qwen2-VL style video processors this is `smart_resize` (each side to a multiple of
    patch * merge = 28, within the pixel limits): 420x240 -> 420x252. Other processors, and
    the per-frame cap whose limit depends on the video's length, give (width, height) back.
    `max_pixels` (data.window.max_pixels, paper 003) caps each frame first, with the same rounding
    (the processor's settings, else Qwen2.5-VL's): 420x476 at 16,384 pixels -> 112x112.
    """
    video_processor = getattr(processor, "video_processor", None)
    if Qwen2VLVideoProcessor is None or not isinstance(video_processor, Qwen2VLVideoProcessor):
        return capped_frame_size(width, height, max_pixels, QWEN25_VL_DEFAULTS)
    s = processor_settings(processor, "model")
    width, height = capped_frame_size(width, height, max_pixels, s)
    if getattr(video_processor, "cap_pixels_per_frame", False):
        return width, height
    resized_height, resized_width = smart_resize(
        height, width, s.factor, s.min_pixels, s.max_pixels
    )
    if max_pixels is not None and (resized_width, resized_height) != (width, height):
        raise ValueError(
            f"data.window.max_pixels={max_pixels}: the processor's min_pixels {s.min_pixels:,} "
            f"(video_processor.size.shortest_edge) would scale the capped {width}x{height} "
            f"frames back up to {resized_width}x{resized_height}; the cap needs min_pixels <= "
            f"{width * height:,} (Qwen2.5-VL's own preprocessor config has 3,136)"
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


# ------------------------------------------------------------------ Qwen2-VL video geometry
# (smart_resize, processor settings, visual-token counts: read by the collator's frame sizing
# and by `sce budget`)
@dataclass(frozen=True)
class ProcessorSettings:
    """The video processor numbers that decide the visual token count."""

    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 12845056
    cap_pixels_per_frame: bool = False
    max_video_tokens: int = 128000
    source: str = "Qwen2.5-VL defaults"

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size


QWEN25_VL_DEFAULTS = ProcessorSettings()


def smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = QWEN25_VL_DEFAULTS.min_pixels,
    max_pixels: int = QWEN25_VL_DEFAULTS.max_pixels,
) -> tuple[int, int]:
    """(height, width) after Qwen2-VL's resize: transformers' own smart_resize."""
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize as qwen_resize

    if min(height, width) <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {width}x{height} exceeds 200")
    return qwen_resize(height, width, factor, min_pixels, max_pixels)


def capped_frame_size(
    width: int,
    height: int,
    max_pixels: int | None,
    settings: ProcessorSettings = QWEN25_VL_DEFAULTS,
) -> tuple[int, int]:
    """(width, height) of a frame under the per-frame cap `data.window.max_pixels` (paper 003: 16,384
    pixels), rounded like the processor's own `max_pixels` (smart_resize, factor 28, within
    its min/max pixels): 420x476 -> 112x112. Unchanged without a cap.

    Frames are decoded at this size (`sce.data.video_processing.at_model_size`); the processor
    then leaves them as they are. Paper 003 only says "16,384 pixels maximum"; this is the
    processor's (and qwen-vl-utils') reading of max_pixels. LLaMA-Factory, which the paper
    trained with, first scales by sqrt(cap / pixels) with truncation and lets the processor
    round afterwards: 420x476 -> 120x136 -> 112x140 (20 tokens per pair, not 16).
    """
    if max_pixels is None:
        return width, height
    cap = min(int(max_pixels), settings.max_pixels)
    h, w = smart_resize(height, width, settings.factor, settings.min_pixels, cap)
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
    settings: ProcessorSettings = QWEN25_VL_DEFAULTS,
    **overrides: Any,
) -> int:
    """Visual tokens of one video of `num_frames` frames of width x height (before resizing).

    `overrides` replace fields of `settings`, e.g. `visual_tokens(18, 420, 240, max_pixels=50176)`.
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    s = _with(settings, overrides)
    h, w = smart_resize(height, width, s.factor, s.min_pixels, video_max_pixels(num_frames, s))
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


def image_tokens(width: int, height: int, settings: ProcessorSettings = QWEN25_VL_DEFAULTS) -> int:
    """Visual tokens of one image: Qwen2-VL's image processor tiles it to one temporal patch,
    so (H' / patch) * (W' / patch) / merge^2 after smart_resize (no per-frame video cap)."""
    s = settings
    h, w = smart_resize(height, width, s.factor, s.min_pixels, s.max_pixels)
    return (h // s.patch_size) * (w // s.patch_size) // (s.merge_size**2)


def processor_settings(processor, source: str, kind: str = "video") -> ProcessorSettings:
    """Settings read from a loaded processor's video processor, or its image processor for
    `kind="image"` (keyframes), with defaults for missing fields."""
    vp = getattr(processor, f"{kind}_processor", None)
    if vp is None:
        return QWEN25_VL_DEFAULTS
    size = vp.size if isinstance(vp.size, Mapping) else vars(vp.size)
    d = QWEN25_VL_DEFAULTS
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
