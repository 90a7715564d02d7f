"""Temporal RoPE guard: check the installed transformers' temporal positions of a video.

A video VLM places each temporal patch (a frame pair, for Qwen2.5-VL) at a temporal position
derived from the frame rate; a wrong release can put every frame on one position and silently
erase the order of events. `check_temporal_rope(model, frames, fps)` runs the model's own
`get_rope_index` on a probe sequence (text, one video block holding the configured window's
frames at the configured fps, text) through the model's family
(`Family.temporal_positions`, sce.models.families), from the model's config only: no weights
are loaded and no forward runs. It raises `TemporalRopeError` (naming the installed
transformers version and the family's advice) when the positions do not increase from the
first temporal patch to the last, and warns with the numbers when patches share an index.
`SceModule` calls it at fit / validate start, on its data module's window
(`window_probe(datamodule.window)`).

Qwen2.5-VL: several transformers 5.x releases computed the interval as `tokens_per_second *
int(second_per_grid_ts)`: above 2 fps `int(2 / fps)` is 0 and every frame lands on one temporal
position. Even correct code maps 1 / (2 * 2 / fps) pairs onto one index above 4 fps
(`tokens_per_second = 2`): at 30 fps 7-8 frame pairs share an index. Releases, read from their
wheels' modeling_qwen2_5_vl.py: 5.0.0 casts second_per_grid_t to int64 before multiplying,
5.6.0, 5.10.4 and 5.12.0 to 5.17.0 use `int(second_per_grid_ts)` (all collapse >2 fps videos);
5.18.0, 5.19.0, 5.20.0, 5.22.2 and 5.23.0 multiply by the float value. setup.cfg asks for 5.23,
the release the whole test suite runs on; the guard also catches an older or patched install at
run time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import nn

from sce.data.clip import WindowSpec
from sce.models.adapters import unwrap_model
from sce.models.families import Family, family_for


class TemporalRopeError(RuntimeError):
    """The installed transformers collapses a video's frames onto one temporal position."""


@dataclass(frozen=True)
class TemporalProbe:
    """Temporal positions of each frame pair of a probe video, relative to the first pair."""

    frames: int
    fps: float
    positions: tuple[int, ...]

    @property
    def pairs(self) -> int:
        return len(self.positions)

    @property
    def distinct(self) -> int:
        return len(set(self.positions))

    @property
    def most_per_index(self) -> int:
        """The largest number of frame pairs sharing one temporal index."""
        return max(self.positions.count(p) for p in set(self.positions)) if self.positions else 0

    @property
    def increases(self) -> bool:
        return self.pairs < 2 or self.positions[-1] > self.positions[0]


def _rope_owner(model: nn.Module) -> nn.Module:
    """The module that defines `get_rope_index` (the base model under the CausalLM / PEFT)."""
    base = unwrap_model(model)
    for candidate in (getattr(base, "model", None), base):
        if candidate is not None and callable(getattr(candidate, "get_rope_index", None)):
            return candidate
    raise TypeError(f"{type(base).__name__} has no get_rope_index: not a video VLM with 3D RoPE")


def probe_temporal_positions(model: nn.Module, frames: int, fps: float) -> TemporalProbe:
    """Temporal position of each temporal patch (frame pair) of a `frames`-frame video at
    `fps`, relative to the first, as the model's family probes it."""
    owner = _rope_owner(model)
    positions = family_for(owner.config).temporal_positions(owner, frames, fps)
    return TemporalProbe(frames, fps, tuple(p - positions[0] for p in positions))


def check_temporal_rope(model: nn.Module, frames: int, fps: float) -> TemporalProbe:
    """Raise TemporalRopeError if the frames of a `frames`-frame video at `fps` do not get
    increasing temporal positions; warn when several frame pairs share a temporal index."""
    import transformers

    probe = probe_temporal_positions(model, frames, fps)
    family = _family(model)
    if not probe.increases:
        raise TemporalRopeError(
            f"transformers {transformers.__version__} gives every frame pair of a {frames}-frame "
            f"video at {fps:g} fps the same {family.name} temporal position (first pair "
            f"{probe.positions[0]}, last pair {probe.positions[-1]}): {family.collapse_advice()}"
        )
    if probe.distinct < probe.pairs:
        interval = family.temporal_interval(_rope_owner(model).config, fps)
        warnings.warn(
            f"{family.name} temporal RoPE: {probe.pairs} frame pairs of a {frames}-frame video at "
            f"{fps:g} fps get only {probe.distinct} distinct temporal indices (up to "
            f"{probe.most_per_index} pairs per index; interval between pairs {interval:.3g} < 1): "
            "pairs on one index are ordered only by their spatial positions. Lower data.window.fps to 4 "
            "or less to give every pair its own index.",
            stacklevel=2,
        )
    return probe


def _family(model: nn.Module) -> Family:
    return family_for(_rope_owner(model).config)


def window_probe(window: WindowSpec) -> tuple[int, float] | None:
    """(frames, fps) of the video a data module's window (`SceDataModule.window`) sends, or
    None when it sends none (`scales`: paper 002's keyframes go in as images).

    The frames of the event window (`WindowSpec.num_frames`); a whole-clip window (mode
    "whole") probes its longest block, `max_frames` frames.
    """
    if window.scales:  # keyframes go in as images (paper 002): no video RoPE
        return None
    return window.num_frames, float(window.fps)


__all__ = [
    "TemporalProbe",
    "TemporalRopeError",
    "check_temporal_rope",
    "probe_temporal_positions",
    "window_probe",
]
