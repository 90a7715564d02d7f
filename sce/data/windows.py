"""Window geometry: which times of a clip a sample shows (no decoding, no telemetry).

Time conventions used throughout sce:
- Times are seconds from the clip's first frame (the frame for a time: `sce.data.video`).
- A window [start, end) sampled at `fps` gives frames at the centres of its 1/fps intervals
  (`window_frame_times`). The IMU block of each frame is centred on that time, or ends at it
  for windows that end at the event (`sce.data.imu.synchronize`, anchor "centered" / "causal").
- A window never reaches outside the span it is cut from (the clip, or a chunk's
  [clip_start, clip_end]): `event_window` shifts it inside, and shrinks it to the largest even
  frame count that fits a span shorter than the window.

Recipes: event window [t_e - 4 s, t_e + 2 s] at 3 fps = 18 frames (paper 000); sliding-window
chunking of long videos into 4-6 s clips (paper 001); three windows of 6 / 3 / 1.5 s ending at
the event with three keyframes each (paper 002, one of them per sample: `keyframe_window`);
the whole clip at 2 fps, at most 128 frames (paper 003: `whole_clip_window`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sce.data.schema import ALL_LABELS

_EPS = 1e-9


class WindowError(ValueError):
    """Invalid window request (e.g. event time outside the clip)."""


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A time window in clip seconds. start < 0 or end > clip duration means edge padding."""

    start: float
    end: float
    shifted: float = 0.0  # seconds the requested window moved to fit the clip (+ = later)
    padded_before: float = 0.0  # seconds before the clip start, filled with the first frame
    padded_after: float = 0.0  # seconds after the clip end, filled with the last frame
    shrunk: float = 0.0  # seconds cut off the requested length to fit a shorter span

    @property
    def length(self) -> float:
        return self.end - self.start


def event_window(
    duration: float,
    event_time: float,
    before: float,
    after: float,
    name: str = "",
    fps: float | None = None,
) -> Window:
    """Window [event_time - before, event_time + after] kept inside [0, duration].

    With `fps`, the length is an even number of 1/fps frame intervals (Qwen2.5-VL's temporal
    patch is 2): round((before + after) * fps) raised to even, the extra split over both ends
    (6 s at 3 fps: 18 frames, unchanged). A window crossing the clip start or end is shifted
    inside (the event then sits off-centre, `shifted` records by how much).

    A clip (or chunk) shorter than the window shrinks the window to the largest even frame
    count that fits (a 5 s chunk at 3 fps: 14 frames, 4.67 s), rather than padding it with
    frames and telemetry from outside the clip: a chunk cut from a longer video must not show
    what lies beyond its edges (a `normal` chunk right after a collision would see the impact).
    Shrinking keeps every chunk setting usable and the frame rate (and so the temporal
    positions) unchanged; only a clip shorter than 2 frames raises WindowError. Without `fps`
    the window is cut to the clip's length. `shrunk` records the seconds lost (6 s at 30 fps on
    a 5 s chunk: 150 of 180 frames, shrunk 1 s) so callers can count it. Raises WindowError if
    event_time is outside [0, duration].
    """
    where = f"{name}: " if name else ""
    if not duration > 0:
        raise WindowError(f"{where}clip duration must be positive, got {duration}")
    if before < 0 or after < 0 or before + after <= 0:
        raise WindowError(f"{where}need before, after >= 0 and before + after > 0")
    if not (-_EPS <= event_time <= duration + _EPS):
        raise WindowError(
            f"{where}event_time {event_time:.3f} s is outside the clip [0, {duration:.3f}] s"
        )
    length = _fitted_length(duration, before + after, fps, where)
    asked = before + after if fps is None else even_frame_count(before + after, fps) / fps
    ideal = event_time - before - (length - before - after) / 2.0  # centred on the asked window
    start = min(max(ideal, 0.0), max(0.0, duration - length))
    shrunk = max(0.0, asked - length)
    return Window(start=start, end=start + length, shifted=start - ideal, shrunk=shrunk)


def even_frame_count(length: float, fps: float) -> int:
    """Frames of a `length` s window at `fps`: round(length * fps) raised to even, at least 2."""
    n = max(2, int(math.floor(length * fps + 0.5)))
    return n + n % 2


def _fitted_length(duration: float, length: float, fps: float | None, where: str) -> float:
    """The window length: `length` made an even frame count at fps, shrunk to fit `duration`."""
    if fps is None:
        return min(length, duration)
    if fps <= 0:
        raise WindowError(f"{where}fps must be positive, got {fps}")
    n = even_frame_count(length, fps)
    if n / fps > duration + _EPS:
        n = int(math.floor(duration * fps + 1e-6))
        n -= n % 2
        if n < 2:
            raise WindowError(
                f"{where}the clip span of {duration:.3f} s holds fewer than 2 frames at {fps:g} "
                f"fps: no {length:g} s window fits (use longer chunks or a higher fps)"
            )
    return n / fps


def window_frame_times(window: Window, fps: float) -> np.ndarray:
    """Sample times of a window at `fps`, spaced exactly 1/fps and centred in the window.

    count = round(length * fps), raised to the next even number (Qwen2.5-VL temporal patch 2);
    t_k = centre + (k - (count - 1) / 2) / fps, i.e. start + (k + 0.5) / fps when the count is
    exact (6 s at 3 fps: 18 frames at start + 1/6, start + 1/2, ...). Keeping the spacing at
    exactly 1/fps keeps `second_per_grid_ts = 2 / fps` true; an odd count is padded by half a
    frame on each side instead of stretching the spacing.
    """
    if fps <= 0:
        raise WindowError(f"fps must be positive, got {fps}")
    n = even_frame_count(window.length, fps)
    centre = (window.start + window.end) / 2.0
    return centre + (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) / fps


# --------------------------------------------------------------------------------------------
# Chunking (paper 001) and multi-scale windows (paper 002)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """A clip cut from a longer video (times in the video's seconds)."""

    start: float
    end: float
    label: str
    has_event: bool = False  # the event chunk: the one chunk of its event that holds it
    # holds part of the event's signature but is not the event chunk (kept when drop_cut=False)
    cut: bool = False
    placed: bool = False  # the event chunk was placed around the event: no grid chunk held it


def _chunk_starts(duration: float, chunk: float, stride: float, cover_tail: bool) -> list[float]:
    if duration <= chunk + _EPS:
        return [0.0]
    n = int(math.floor((duration - chunk) / stride + _EPS)) + 1
    starts = [i * stride for i in range(n)]
    if cover_tail and duration - (starts[-1] + chunk) > 1e-6:
        starts.append(duration - chunk)
    return starts


def event_band(
    event_time: float,
    margin: float,
    signature: tuple[float, float] | None,
    span: tuple[float, float],
) -> tuple[float, float]:
    """What of the video shows the event: the guard band event_time +- margin joined with its
    `signature` (the IMU excursion), inside `span`."""
    lo, hi = event_time - margin, event_time + margin
    if signature is not None:
        lo, hi = min(lo, signature[0]), max(hi, signature[1])
    return max(lo, span[0]), min(hi, span[1])


def _event_chunk(
    grid: list[tuple[float, float]],
    band: tuple[float, float],
    event_time: float,
    margin: float,
    span: tuple[float, float],
    label: str,
) -> Chunk:
    """The one chunk of the event: the grid chunk holding its band with the event nearest its
    centre, else a chunk of the grid's length placed on the band's centre, keeping the guard
    band and staying inside the span."""
    holding = [(s, e) for s, e in grid if s <= band[0] + _EPS and e >= band[1] - _EPS]
    if holding:
        s, e = min(holding, key=lambda c: abs((c[0] + c[1]) / 2 - event_time))
        return Chunk(s, e, label, has_event=True)
    length = max(e - s for s, e in grid)
    start = (band[0] + band[1] - length) / 2
    start = min(max(start, event_time + margin - length), event_time - margin)
    start = min(max(start, span[0]), span[1] - length)
    return Chunk(start, start + length, label, has_event=True, placed=True)


def sliding_chunks(
    duration: float,
    chunk: float = 6.0,
    stride: float = 6.0,
    event_time: float | None = None,
    label: str = "normal",
    min_event_margin: float = 0.5,
    drop_cut: bool = True,
    cover_tail: bool = True,
    signature: tuple[float, float] | None = None,
    offset: float = 0.0,
) -> list[Chunk]:
    """Cut [offset, offset + duration] into chunks of `chunk` s every `stride` s (paper 001:
    40 s videos -> "6-7 overlapping segments", "only one of which typically contains the
    anomalous event"; the defaults give 7 chunks of 6 s, the last aligned to the end).

    An event (a non-normal `label` at `event_time`) shows in its band: event_time +-
    `min_event_margin` joined with its `signature` (e.g. the IMU excursion, `event_band`).
    - Exactly one chunk is the event's (`has_event`, with `label`): the grid chunk that holds
      the band, else one placed on it (`placed`; it holds the guard band always, the band when
      the band fits in a chunk).
    - Every other chunk that overlaps the band is never normal: dropped when `drop_cut`, else
      kept with `label` and `cut`.
    - The rest are normal.
    The last chunk is aligned to the span end when the stride leaves a tail (cover_tail); a span
    shorter than `chunk` gives one chunk, the whole span. Times are the video's seconds.
    """
    if label not in ALL_LABELS:  # "event": a binary-scope record (Nexar)
        raise WindowError(f"unknown label {label!r}; expected one of {ALL_LABELS}")
    if duration <= 0 or chunk <= 0 or stride <= 0:
        raise WindowError("duration, chunk and stride must be positive")
    if chunk <= 2 * min_event_margin:
        raise WindowError(
            f"chunk {chunk:g} s must be longer than twice the event margin {min_event_margin:g} s"
        )
    span = (offset, offset + duration)
    if event_time is not None and not (span[0] - _EPS <= event_time <= span[1] + _EPS):
        raise WindowError(
            f"event_time {event_time:.3f} s is outside the span [{span[0]}, {span[1]}] s"
        )
    starts = _chunk_starts(duration, chunk, stride, cover_tail)
    grid = [(offset + s, min(offset + s + chunk, span[1])) for s in starts]
    if event_time is None or label == "normal":
        return [Chunk(s, e, "normal") for s, e in grid]
    band = event_band(event_time, min_event_margin, signature, span)
    event = _event_chunk(grid, band, event_time, min_event_margin, span, label)
    chunks = [event]
    for s, e in grid:
        if (s, e) == (event.start, event.end):
            continue
        if s < band[1] - _EPS and e > band[0] + _EPS:  # shows part of the event
            if not drop_cut:
                chunks.append(Chunk(s, e, label, cut=True))
        else:
            chunks.append(Chunk(s, e, "normal"))
    return sorted(chunks, key=lambda c: (c.start, c.end))


@dataclass(frozen=True)
class ScaleWindow:
    """One scale of `multiscale_windows`."""

    name: str
    window: Window
    keyframe_times: np.ndarray  # [K] seconds
    keyframe_fractions: np.ndarray  # [K] positions as fractions of the largest window


def multiscale_windows(
    event_time: float,
    scales: Sequence[float] = (6.0, 3.0, 1.5),
    keyframes: Sequence[float] = (0.0, 0.5, 1.0),
    end_offset: float = 0.0,
    duration: float | None = None,
) -> list[ScaleWindow]:
    """Windows of each scale ending at event_time - end_offset, with keyframes (paper 002).

    Keyframes sit at fractions `keyframes` of each window (start, middle, end). Expressed as
    fractions of the largest (6 s) window this gives the paper's mid-scale keyframes at 50%,
    75%, 100% (event - 3, - 1.5, - 0 s) and mini-scale at 75%, 87.5%, 100% (event - 1.5,
    - 0.75, - 0 s); the paper leaves the max-scale ones implicit, the same rule gives 0%, 50%,
    100%. A window starting before the clip is padded with the first frame (`padded_before`);
    end_offset > 0 gives early-anticipation windows that stop before the event.
    """
    if duration is not None and not (-_EPS <= event_time <= duration + _EPS):
        raise WindowError(f"event_time {event_time:.3f} s is outside the clip [0, {duration}] s")
    names = ("max", "mid", "mini") if len(scales) == 3 else tuple(f"{s:g}s" for s in scales)
    end = event_time - end_offset
    largest = max(scales)
    fr = np.asarray(keyframes, dtype=np.float64)
    out = []
    for name, scale in zip(names, scales, strict=True):
        start = end - scale
        after = max(0.0, end - duration) if duration is not None else 0.0
        win = Window(start, end, padded_before=max(0.0, -start), padded_after=after)
        times = start + fr * scale
        out.append(ScaleWindow(name, win, times, (times - (end - largest)) / largest))
    return out


# --------------------------------------------------------------------------------------------
# Whole-clip windows (paper 003) and one keyframe window (paper 002)
# --------------------------------------------------------------------------------------------


def whole_clip_window(
    start: float, end: float, fps: float, max_frames: int
) -> tuple[Window, np.ndarray, float]:
    """(window, frame times, fps) covering the whole span [start, end] s (paper 003: "2 fps, at
    most 128 frames", LLaMA-Factory's video_fps / video_maxlen).

    A span of up to max_frames / fps seconds gets the largest even count n <= length * fps,
    spaced exactly 1 / fps and centred in the span (16 s at 2 fps: 32 frames at 0.25, 0.75, ...,
    15.75 s). A longer span gets max_frames at the centres of equal intervals over all of it,
    at the true rate n / length (100 s, 128 frames: 1.28 fps, 0.39 ... 99.61 s), which the
    processor's `second_per_grid_ts` = 2 / fps needs. A span shorter than two frames at `fps`
    gets two frames at its quarter points. The count is even (Qwen's temporal patch is 2), so
    every frame is a distinct sample and none is an edge-frame repeat.

    LLaMA-Factory takes floor(length * fps) frames (at most max_frames) by linspace from the
    first to the last video frame and repeats the last one when the count is odd; here frames
    sit at interval centres, like every sce window, and an odd count is rounded down instead.
    """
    length = end - start
    n = 2 * int(math.floor(length * fps / 2.0 + 1e-9))
    if n >= max_frames or n < 2:
        n = min(max(n, 2), max_frames)
        fps = n / length  # spread over the whole span
    centre = (start + end) / 2.0
    times = centre + (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) / fps
    return Window(start, end), times, fps


def keyframe_window(
    event_time: float, duration: float, scale: float, keyframes: Sequence[float]
) -> tuple[Window, np.ndarray, float]:
    """(window, keyframe times, fps) of one multi-scale window of `scale` s ending at the
    event (paper 002): exactly its keyframes (start, middle, end: event - scale, event -
    scale / 2, event), each sent as a separate image, so nothing is repeated to fill Qwen's
    temporal patch. `fps` (one frame per keyframe interval) sets the telemetry block of each
    keyframe. Also used by `sce budget`."""
    (scaled,) = multiscale_windows(
        event_time, scales=(scale,), keyframes=keyframes, duration=duration
    )
    times = np.clip(scaled.keyframe_times, 0.0, duration)
    spacing = scale * float(np.min(np.diff(sorted(keyframes))))
    return scaled.window, times, 1.0 / spacing
