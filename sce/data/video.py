"""Frame decoding: the frames of a video at given times (which times: `sce.data.windows`).

Times are seconds from the clip's first frame. Frame i of a constant-frame-rate video is shown
at i / fps; the frame for time t is the nearest one, clamped to [0, n_frames - 1], with exact
half-frame ties going to the earlier frame (`frame_indices`), so times spaced k / fps apart
always take frames k apart. Dual view (paper 003): road view on top of driver view.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import numpy as np
import torch
import torch.nn.functional as F

Backend = Literal["decord", "pyav"]


class VideoError(RuntimeError):
    """A video cannot be opened or decoded; the message names the file."""


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
    size: tuple[int, int] | None = None,
    backend: Backend = "decord",
    num_threads: int = 1,
) -> np.ndarray:
    """Decode the frames nearest to `times` as uint8 [T, H, W, 3] RGB, resized to size=(W, H)
    (None: the source size).

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
