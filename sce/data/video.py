"""Video windows, chunking and frame decoding.

Time conventions used throughout sce:
- Times are seconds from the clip's first frame. Frame i of a constant-frame-rate video is
  shown at i / fps; the frame for time t is the nearest one, clamped to [0, n_frames - 1], with
  exact half-frame ties going to the earlier frame (`frame_indices`), so times spaced k / fps
  apart always take frames k apart.
- A window [start, end) sampled at `fps` gives frames at the centres of its 1/fps intervals
  (`window_frame_times`). The IMU block of each frame is centred on that time, or ends at it
  for windows that end at the event (`sce.data.imu.synchronize`, anchor "centered" / "causal").
- A window never reaches outside the span it is cut from (the clip, or a chunk's
  [clip_start, clip_end]): `event_window` shifts it inside, and shrinks it to the largest even
  frame count that fits a span shorter than the window.

Recipes: event window [t_e - 4 s, t_e + 2 s] at 3 fps = 18 frames (paper 000); sliding-window
chunking of long videos into 4-6 s clips (paper 001); three windows of 6 / 3 / 1.5 s ending at
the event with three keyframes each (paper 002); road view on top of driver view (paper 003).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import numpy as np
import torch
import torch.nn.functional as F

from sce.data.schema import ALL_LABELS

Backend = Literal["decord", "pyav"]
DEFAULT_SIZE: tuple[int, int] = (420, 240)  # (W, H), paper 000
_EPS = 1e-9


class VideoError(RuntimeError):
    """A video cannot be opened or decoded; the message names the file."""


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
    before: float = 4.0,
    after: float = 2.0,
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
    """A clip cut from a longer video."""

    start: float
    end: float
    label: str
    has_event: bool = False  # the event lies inside [start, end]
    cut: bool = False  # the event lies within the margin of an edge (only when drop_cut=False)


def _chunk_starts(duration: float, chunk: float, stride: float, cover_tail: bool) -> list[float]:
    if duration <= chunk + _EPS:
        return [0.0]
    n = int(math.floor((duration - chunk) / stride + _EPS)) + 1
    starts = [i * stride for i in range(n)]
    if cover_tail and duration - (starts[-1] + chunk) > 1e-6:
        starts.append(duration - chunk)
    return starts


def sliding_chunks(
    duration: float,
    chunk: float = 5.0,
    stride: float = 2.5,
    event_time: float | None = None,
    label: str = "normal",
    min_event_margin: float = 0.5,
    drop_cut: bool = True,
    cover_tail: bool = True,
) -> list[Chunk]:
    """Cut [0, duration] into chunks of `chunk` s every `stride` s (paper 001: 40 s -> 4-6 s).

    - A chunk with the event at least `min_event_margin` s from both edges gets `label`.
    - A chunk without the event is "normal".
    - A chunk whose edge falls within the margin of the event "cuts" it: dropped when drop_cut,
      else kept with `label` and cut=True (the event is visible but may be truncated).
    The last chunk is aligned to the clip end when the stride leaves a tail (cover_tail); a
    clip shorter than `chunk` gives one chunk [0, duration]. Paper 001 reports 6-7 chunks per
    40 s video (about chunk=6, stride=6); the defaults overlap more (15 chunks).
    """
    if label not in ALL_LABELS:  # "event": a binary-scope record (Nexar)
        raise WindowError(f"unknown label {label!r}; expected one of {ALL_LABELS}")
    if duration <= 0 or chunk <= 0 or stride <= 0:
        raise WindowError("duration, chunk and stride must be positive")
    if event_time is not None and not (-_EPS <= event_time <= duration + _EPS):
        raise WindowError(f"event_time {event_time:.3f} s is outside the clip [0, {duration}] s")
    chunks = []
    for s in _chunk_starts(duration, chunk, stride, cover_tail):
        e = min(s + chunk, duration)
        if event_time is None or label == "normal" or not (s - _EPS <= event_time <= e + _EPS):
            chunks.append(Chunk(s, e, "normal"))
            continue
        inside = s + min_event_margin - _EPS <= event_time <= e - min_event_margin + _EPS
        if inside:
            chunks.append(Chunk(s, e, label, has_event=True))
        elif not drop_cut:
            chunks.append(Chunk(s, e, label, has_event=True, cut=True))
    return chunks


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
# Decoding
# --------------------------------------------------------------------------------------------


class VideoInfo(NamedTuple):
    duration: float  # seconds (n_frames / fps for constant-frame-rate video)
    fps: float
    n_frames: int
    size: tuple[int, int]  # (W, H)


def video_info(path: str | Path) -> VideoInfo:
    """(duration_s, fps, n_frames, (W, H)) from the container metadata (no decoding).

    Memoised per (path, mtime, size): the dataset asks for every sample of every epoch.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise VideoError(f"{path}: cannot read video metadata: {exc}") from exc
    return _video_info(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _video_info(path: str, mtime_ns: int, size_bytes: int) -> VideoInfo:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            n = int(stream.frames or 0)
            if stream.duration is not None:
                dur = float(stream.duration * stream.time_base)
            else:
                dur = (container.duration or 0) / 1e6
            size = (stream.codec_context.width, stream.codec_context.height)
    except Exception as exc:  # av raises many error types; all mean "unreadable"
        raise VideoError(f"{path}: cannot read video metadata: {exc}") from exc
    if fps <= 0:
        raise VideoError(f"{path}: video stream has no frame rate")
    if n <= 0:
        n = int(round(dur * fps))
    if n <= 0:
        raise VideoError(f"{path}: video stream has no frames")
    return VideoInfo(n / fps, fps, n, size)


# Half-frame ties within this many frames go to the earlier frame. Float error in t * fps is
# ~1e-11 frames for hour-long clips; real sub-frame offsets on a 0.01 s grid are >= 0.1 frame.
_TIE_FRAMES = 1e-6
# Names the time -> frame rule in frame-cache keys: a new rule must not reuse old pixels.
FRAME_INDEX_RULE = "nearest, ties to earlier (1e-6 frame)"


def frame_indices(times: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """Nearest frame index for each time, clamped to the clip: ceil(t * fps - 0.5 - 1e-6).

    The interval centres of a window whose start lies on the frame grid fall exactly halfway
    between two frames (every 30 fps window of a 30 fps video whose event time is on a 1/30 s
    grid; a 3 fps window when the event is an odd multiple of 0.05 s). Plain rounding
    (floor(t * fps + 0.5)) lets float noise break each tie its own way, repeating one frame and
    skipping the next within a window; sending every tie to the earlier frame keeps times
    spaced k / fps apart exactly k frames apart (every 10th frame at 3 fps from 30 fps).
    """
    x = np.asarray(times, dtype=np.float64) * fps
    idx = np.ceil(x - 0.5 - _TIE_FRAMES).astype(np.int64)
    return np.clip(idx, 0, n_frames - 1)


def read_frames(
    path: str | Path,
    times: np.ndarray | Sequence[float],
    size: tuple[int, int] | None = DEFAULT_SIZE,
    backend: Backend = "decord",
    num_threads: int = 1,
) -> np.ndarray:
    """Decode the frames nearest to `times` as uint8 [T, H, W, 3] RGB, resized to size=(W, H).

    Times map to frame indices once, by `frame_indices` with the container's frame rate and
    count (`video_info`), so both backends decode the same frames. Only the needed frames are
    decoded: decord reads them with one get_batch (it seeks to the key frame before each);
    PyAV seeks to the key frame before the first needed frame and decodes forward, stopping
    after the last. Both resize in the decoder's scaler (bilinear), so they agree up to
    rounding (PSNR > 35 dB). Times outside the clip repeat the edge frames.
    num_threads: decoder threads (1 suits dataloader workers; 0 = library default).
    Raises VideoError naming the file for a missing, corrupt or truncated video.
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError("times must be a non-empty 1-D array")
    if not Path(path).is_file():
        raise VideoError(f"{path}: video file not found")
    if backend == "decord":
        reader = _read_decord
    elif backend == "pyav":
        reader = _read_pyav
    else:
        raise ValueError(f"backend must be one of {list(get_args(Backend))}, got {backend!r}")
    info = video_info(path)
    idx = frame_indices(times, info.fps, info.n_frames)
    try:
        return reader(Path(path), idx, size, num_threads)
    except VideoError:
        raise
    except Exception as exc:
        raise VideoError(f"{path}: cannot decode with {backend}: {exc}") from exc


def _read_decord(
    path: Path, idx: np.ndarray, size: tuple[int, int] | None, threads: int
) -> np.ndarray:
    import decord

    kw = {} if size is None else {"width": int(size[0]), "height": int(size[1])}
    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads, **kw)
    # a container frame count one above decord's: hold the last frame (as PyAV does)
    uniq, inverse = np.unique(np.minimum(idx, len(vr) - 1), return_inverse=True)
    frames = vr.get_batch(uniq.tolist()).asnumpy()
    return np.ascontiguousarray(frames[inverse])


def _to_rgb(frame, size: tuple[int, int] | None) -> np.ndarray:
    if size is None:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(
        width=int(size[0]), height=int(size[1]), format="rgb24", interpolation="BILINEAR"
    )


def _read_pyav(
    path: Path, idx: np.ndarray, size: tuple[int, int] | None, threads: int
) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        fps = float(stream.average_rate or stream.guessed_rate)
        t0 = float((stream.start_time or 0) * stream.time_base)
        got = _decode_indices(container, stream, set(idx.tolist()), fps, t0, size)
    missing = sorted(set(idx.tolist()) - got.keys())
    if missing:
        last = max(got) if got else -1
        # container frame counts can be off by one at the end: hold the last decoded frame
        if last < 0 or missing[0] <= last or missing[-1] - last > 2:
            raise VideoError(f"{path}: frame {missing[0]} not decodable (video ends at {last})")
        for i in missing:
            got[i] = got[last]
    return np.stack([got[i] for i in idx.tolist()])


def _decode_indices(container, stream, wanted: set[int], fps, t0, size) -> dict[int, np.ndarray]:
    """Seek to the key frame before min(wanted), decode forward to max(wanted)."""
    first, last = min(wanted), max(wanted)
    got: dict[int, np.ndarray] = {}
    target = int((t0 + first / fps) / stream.time_base)
    for attempt in range(2):
        container.seek(target if attempt == 0 else 0, stream=stream, backward=True)
        prev_i, prev = -1, None
        for frame in container.decode(stream):
            i = int(math.floor((frame.time - t0) * fps + 0.5))
            if prev is None and i > first and attempt == 0:
                break  # seek landed after the first needed frame: retry from the start
            if i in wanted:
                got[i] = _to_rgb(frame, size)
            prev_i, prev = i, frame
            if i >= last:
                return got
        else:
            if prev is not None and prev_i not in got:
                got[prev_i] = _to_rgb(prev, size)  # last frame, for the end-of-stream hold
            return got
    return got


# --------------------------------------------------------------------------------------------
# Dual view (paper 003)
# --------------------------------------------------------------------------------------------


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 [T, H, W, 3] to size=(W, H) with antialiased bilinear interpolation."""
    w, h = int(size[0]), int(size[1])
    if frames.shape[1:3] == (h, w):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def stack_dual_view(
    road_frames: np.ndarray, driver_frames: np.ndarray, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Stack synchronised views vertically: road on top, driver at the bottom (paper 003).

    size=None keeps the road frames and resizes the driver frames to the road width (aspect
    kept). size=(W, H) gives a W x H result, road in the top H//2 rows, driver in the rest.
    Both inputs are uint8 [T, H, W, 3] with the same T.
    """
    if road_frames.ndim != 4 or driver_frames.ndim != 4:
        raise ValueError("frames must be [T, H, W, 3] arrays")
    if len(road_frames) != len(driver_frames):
        raise ValueError(
            f"road and driver views differ in frame count: {len(road_frames)} vs "
            f"{len(driver_frames)}"
        )
    if size is None:
        w = road_frames.shape[2]
        hd, wd = driver_frames.shape[1:3]
        road = road_frames
        driver = resize_frames(driver_frames, (w, max(1, round(hd * w / wd))))
    else:
        w, h = int(size[0]), int(size[1])
        road = resize_frames(road_frames, (w, h // 2))
        driver = resize_frames(driver_frames, (w, h - h // 2))
    return np.concatenate([road, driver], axis=1)
