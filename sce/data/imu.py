"""IMU/GPS telemetry: loading, event time and synchronisation to sampled video frames.

Paper 000 (Sec. III-A/B) defines the event time as the sample of largest |a_x| and aligns the
100 Hz IMU with the 3 fps frames by non-overlapping blocks of W = floor(fs / fps) samples:

    a_sync[k]       = (1 / W) * sum_{n in block k} a[n]           (m/s^2, per axis)
    d_alpha_sync[k] = sum_{n in block k} omega_z[n] / fs           (rad, heading change)
    s_sync[k]       = GPS speed linearly interpolated at frame time t_k   (m/s)

Block placement (`synchronize`'s anchor; the paper's index range (k-1)W+1 .. kW fixes the
block length, not where frame k sits in it):
- "centered": block k is the W samples centred on frame time t_k. With the frame times of
  `sce.data.windows.window_frame_times` (centres of the 1/fps frame intervals) the blocks tile
  the event window exactly like the paper's partition, for paper 000's window around the event.
- "causal": block k is the W samples up to t_k, and nothing after the last frame time is read
  (GPS included). Paper 002 anticipates a collision before it happens: a window that ends at
  the event must not average in the impact that follows (a centred block on the last keyframe
  of the 6 s scale reads 1.5 s past the event).
A `span` (a chunk's [clip_start, clip_end]) bounds every sample read: the signals are cut to
it and block samples beyond it repeat its edge value, as frames outside a clip repeat its edge
frames.

Everything here is plain numpy and usable from a notebook::

    imu = load_imu("clip.imu.csv"); gps = load_gps("clip.gps.csv")
    t_e = event_time_from_imu(imu)
    tel = synchronize(imu, gps, frame_times, fps=3.0)
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

IMU_COLUMNS: tuple[str, ...] = ("t", "ax", "ay", "az", "gx", "gy", "gz")
GPS_COLUMNS: tuple[str, ...] = ("t", "speed")
_NAN_TOKENS = {"", "nan", "NaN", "NAN", "null", "None", "NA"}
_SPAN_EPS = 1e-9  # s: a sample stamped on a span edge belongs to the span
Anchor = Literal["centered", "causal"]
ANCHORS: tuple[str, ...] = ("centered", "causal")


# Physical bounds (m/s^2, rad/s, m/s), applied when telemetry is loaded and by `sce data
# validate`. They catch gross unit mistakes (milli-g, fast turns logged in deg/s, km/h above
# 100) and overflow-sized garbage (1e308 would overflow the block mean into inf); accel in g,
# deg/s at ordinary yaw rates and km/h in city traffic fall inside them and pass (a lower bound
# on |a| would also reject IMUs that report gravity-free linear acceleration).
MAX_ABS_ACCEL = 200.0
MAX_ABS_GYRO = 50.0
MAX_SPEED = 100.0


class ImuError(ValueError):
    """Malformed or unusable telemetry file; the message names the file and the column/row."""


@dataclass(frozen=True)
class ImuSignal:
    """Raw IMU samples. NaN marks a missing sample (handled by `synchronize`)."""

    t: np.ndarray  # [N] float64 seconds from the clip start, strictly increasing
    accel: np.ndarray  # [N, 3] m/s^2 (x forward, y left, z up)
    gyro: np.ndarray  # [N, 3] rad/s
    path: str = ""

    def between(self, lo: float, hi: float) -> ImuSignal:
        """The samples with lo <= t <= hi (a chunk's span, or up to a window's end)."""
        keep = (self.t >= lo - _SPAN_EPS) & (self.t <= hi + _SPAN_EPS)
        return ImuSignal(self.t[keep], self.accel[keep], self.gyro[keep], self.path)

    @property
    def fs(self) -> float:
        """Sampling rate 1 / median(dt), ignoring intervals over 1.5x a first median estimate
        (dropped samples would otherwise bias it low when time stamps also jitter)."""
        dt = np.diff(self.t)
        first = np.median(dt)
        return 1.0 / float(np.median(dt[dt <= 1.5 * first]))


@dataclass(frozen=True)
class GpsSignal:
    """GPS speed samples (typically 1 Hz)."""

    t: np.ndarray  # [M] float64 seconds, strictly increasing
    speed: np.ndarray  # [M] m/s, NaN = missing
    path: str = ""

    def between(self, lo: float, hi: float) -> GpsSignal:
        """The samples with lo <= t <= hi."""
        keep = (self.t >= lo - _SPAN_EPS) & (self.t <= hi + _SPAN_EPS)
        return GpsSignal(self.t[keep], self.speed[keep], self.path)


@dataclass(frozen=True)
class SyncedTelemetry:
    """Telemetry aligned to T frames: the synchronizer's verdict. `accel`/`yaw_delta` are None
    when `available` is False; `speed` is None when there is no usable GPS (see `reason`). When
    available, its values flow on as a `FrameTelemetry`."""

    frame_times: np.ndarray  # [T] s
    accel: np.ndarray | None  # [T, 3] m/s^2, block means
    yaw_delta: np.ndarray | None  # [T] rad, integrated omega_z over each block
    speed: np.ndarray | None  # [T] m/s
    available: bool  # IMU usable for every frame
    reason: str  # "" when everything is usable, else why IMU and/or GPS was dropped
    fs: float  # IMU rate used for blocking and integration (Hz)
    window_samples: int  # W = floor(fs / fps)
    gps_reason: str = ""  # why `speed` is None ("" when it is not)


@dataclass
class FrameTelemetry:
    """Per-frame telemetry as it flows on to the prompt (synchronized to the frames).

    How it relates to `SyncedTelemetry`: `synchronize` returns a `SyncedTelemetry`, the
    synchronizer's verdict (IMU values may be unavailable; it carries the reasons and rates).
    When it is available, its usable values become a `FrameTelemetry` (`sce.data.clip`): what
    the window cache, the student's prompt and the teacher's prompt read, so IMU values are
    always present and finite here.
    """

    frame_times: np.ndarray  # [T] seconds from the clip start
    accel: np.ndarray  # [T, 3] m/s^2, block-averaged
    yaw_delta: np.ndarray  # [T] rad, heading change per frame
    speed: np.ndarray | None  # [T] m/s, or None without GPS

    def __post_init__(self) -> None:
        # No prompt may read "nan" or "inf": loading bounds the samples (sce.data.imu) and
        # drops unusable signals, so a non-finite value here is a bug upstream.
        for name in ("accel", "yaw_delta", "speed"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value).all():
                raise ValueError(f"telemetry field {name!r} holds non-finite values: {value}")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _parse_float(value: str, path: Path, line: int, column: str) -> float:
    value = value.strip()
    if value in _NAN_TOKENS:
        return math.nan
    try:
        return float(value)
    except ValueError:  # the cell is not quoted: reasons never copy file content (issue 14)
        raise ImuError(f"{path}: line {line}, column '{column}': not a number") from None


def _read_columns(path: str | Path, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read the named numeric columns of a CSV (extra columns ignored, any order).

    pandas' C parser reads a well-formed file (~10x faster: this runs per sample in the
    dataloader); anything it cannot read cleanly goes through the line-by-line reader, whose
    errors name the line and column.
    """
    path = Path(path)
    if not path.is_file():
        raise ImuError(f"{path}: telemetry file not found")
    data = _read_fast(path, columns)
    if data is None:
        data = _read_checked(path, columns)
    _check_time(data[:, 0], path)
    return {c: data[:, i] for i, c in enumerate(columns)}


def _read_fast(path: Path, columns: tuple[str, ...]) -> np.ndarray | None:
    import pandas as pd

    try:
        frame = pd.read_csv(
            path, skipinitialspace=True, na_values=sorted(_NAN_TOKENS), keep_default_na=False
        )
        frame.columns = [str(c).strip() for c in frame.columns]
        data = frame[list(columns)].to_numpy(dtype=np.float64)
    except Exception:  # malformed in any way: the checked reader explains where
        return None
    # pandas fills short rows with NaN: let the checked reader tell them from NaN cells.
    return None if np.isnan(data).any() else data


def _read_checked(path: Path, columns: tuple[str, ...]) -> np.ndarray:
    """The line-by-line reader. Its errors name the line and column but never quote the file:
    reasons are logged, cached and printed, and a manifest may point at any readable file."""
    try:
        return _read_rows(path, columns)
    except UnicodeDecodeError:
        raise ImuError(f"{path}: not a UTF-8 text (CSV) file") from None


def _read_rows(path: Path, columns: tuple[str, ...]) -> np.ndarray:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise ImuError(
                f"{path}: the header lacks column(s) {missing}; expected {list(columns)}"
            )
        pos = {c: header.index(c) for c in columns}
        rows: list[list[float]] = []
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < len(header):
                raise ImuError(f"{path}: line {line}: {len(row)} fields, header has {len(header)}")
            rows.append([_parse_float(row[pos[c]], path, line, c) for c in columns])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(columns))


def _check_time(t: np.ndarray, path: Path) -> None:
    if len(t) < 2:
        raise ImuError(f"{path}: column 't': needs at least 2 samples, found {len(t)}")
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise ImuError(f"{path}: line {bad[0] + 2}, column 't': missing time stamp")
    back = np.flatnonzero(np.diff(t) <= 0)
    if back.size:
        i = back[0] + 1
        raise ImuError(
            f"{path}: line {i + 2}, column 't': time not strictly increasing "
            f"({t[i - 1]:.6f} -> {t[i]:.6f})"
        )


def _check_bounds(path: str | Path, cols: dict[str, np.ndarray], names, bound: float, unit: str):
    """ImuError naming the first row of `names` columns whose |value| exceeds `bound` (NaN,
    a missing sample, passes: `synchronize` bridges or rejects gaps)."""
    for name in names:
        beyond = np.flatnonzero(np.abs(cols[name]) > bound)
        if beyond.size:
            value = cols[name][beyond[0]]
            raise ImuError(
                f"{path}: line {beyond[0] + 2}, column '{name}': {value:g} {unit} is beyond the "
                f"physical bound {bound:g} {unit} (units?); telemetry not used"
            )


def load_imu(path: str | Path, bounded: bool = True) -> ImuSignal:
    """Load an IMU CSV with header t,ax,ay,az,gx,gy,gz (s, m/s^2, rad/s).

    Empty cells or "nan" are kept as NaN (gaps are handled by `synchronize`); unparsable
    values, a missing column, non-increasing time or fewer than 2 rows raise ImuError, and so,
    when `bounded`, does a value beyond MAX_ABS_ACCEL / MAX_ABS_GYRO (infinities included):
    such a sample is no measurement, and would reach the prompt as inf or overflow.
    """
    cols = _read_columns(path, IMU_COLUMNS)
    if bounded:
        _check_bounds(path, cols, ("ax", "ay", "az"), MAX_ABS_ACCEL, "m/s²")
        _check_bounds(path, cols, ("gx", "gy", "gz"), MAX_ABS_GYRO, "rad/s")
    accel = np.stack([cols["ax"], cols["ay"], cols["az"]], axis=1)
    gyro = np.stack([cols["gx"], cols["gy"], cols["gz"]], axis=1)
    return ImuSignal(t=cols["t"], accel=accel, gyro=gyro, path=str(path))


def load_gps(path: str | Path, bounded: bool = True) -> GpsSignal:
    """Load a GPS CSV with header t,speed (s, m/s). Negative speeds raise ImuError, and so,
    when `bounded`, do speeds above MAX_SPEED."""
    cols = _read_columns(path, GPS_COLUMNS)
    if bounded:
        _check_bounds(path, cols, ("speed",), MAX_SPEED, "m/s")
    neg = np.flatnonzero(cols["speed"] < 0)
    if neg.size:
        raise ImuError(
            f"{path}: line {neg[0] + 2}, column 'speed': negative speed {cols['speed'][neg[0]]}"
        )
    return GpsSignal(t=cols["t"], speed=cols["speed"], path=str(path))


def event_time_from_imu(imu: ImuSignal) -> float:
    """Event time t_e = t[argmax |a_x|] (paper 000: peak longitudinal g-sensor reading)."""
    ax = np.abs(imu.accel[:, 0])
    if not np.isfinite(ax).any():
        raise ImuError(f"{imu.path or 'imu'}: column 'ax': no finite sample to locate the event")
    return float(imu.t[np.nanargmax(ax)])


def moving_mean(t: np.ndarray, x: np.ndarray, width: float) -> np.ndarray:
    """Centred `width` s mean of x at every stamp of t (trapezoid integral; edges shortened)."""
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (x[1:] + x[:-1]) * np.diff(t))])
    lo = np.clip(t - width / 2, t[0], t[-1])
    hi = np.clip(t + width / 2, t[0], t[-1])
    span = np.maximum(hi - lo, 1e-9)
    return (np.interp(hi, t, integral) - np.interp(lo, t, integral)) / span


# The event's IMU excursion (sce data chunk): where the smoothed longitudinal acceleration departs
# from the drive's median by at least EXCURSION_M_S2 (about 0.15 g: above drive noise, below
# any evasive braking), or by half the event's own peak departure when that is smaller.
EXCURSION_M_S2 = 1.5
EXCURSION_SMOOTH_S = 0.1


def event_excursion(
    imu: ImuSignal,
    event_time: float,
    search_s: float,
    level: float = EXCURSION_M_S2,
    smooth_s: float = EXCURSION_SMOOTH_S,
) -> tuple[float, float] | None:
    """[first, last] time of the event's IMU excursion, or None without finite a_x near it.

    The excursion is the contiguous stretch around the largest departure of a_x (smoothed over
    `smooth_s`, minus the median of `imu`'s a_x) within `search_s` of `event_time`, where the
    departure stays at or above min(level, half that peak): a near-collision's held braking with
    its ramps, a collision's impact and the braking after it. Pass the IMU of the record's span.
    """
    keep = np.isfinite(imu.accel[:, 0])
    t, ax = imu.t[keep], imu.accel[keep, 0]
    near = np.flatnonzero(np.abs(t - event_time) <= search_s)
    if len(t) < 2 or near.size == 0:
        return None
    departure = np.abs(moving_mean(t, ax - np.median(ax), smooth_s))
    peak = near[int(np.argmax(departure[near]))]
    below = np.flatnonzero(departure < min(level, departure[peak] / 2))
    before, after = below[below < peak], below[below > peak]
    first = before[-1] + 1 if before.size else 0
    last = after[0] - 1 if after.size else len(t) - 1
    return float(t[first]), float(t[last])


# --------------------------------------------------------------------------------------------
# Synchronisation
# --------------------------------------------------------------------------------------------


def _resample(
    t: np.ndarray, v: np.ndarray, query: np.ndarray, max_gap_s: float, name: str
) -> tuple[np.ndarray | None, str]:
    """Linear interpolation of the finite samples of v at `query`.

    Fails (returns None and a reason) when, over the span of `query`, two consecutive finite
    samples are more than max_gap_s apart, or the signal stops more than max_gap_s short of the
    span (shorter edge shortfalls hold the edge value).
    """
    ok = np.isfinite(v)
    lo, hi = float(query.min()), float(query.max())
    if ok.sum() < 2:
        return None, f"'{name}' has fewer than 2 finite samples around {lo:.3f}-{hi:.3f} s"
    tv, vv = t[ok], v[ok]
    if tv[0] - lo > max_gap_s + 1e-9:
        return None, f"'{name}' starts at {tv[0]:.3f} s but {lo:.3f} s is needed"
    if hi - tv[-1] > max_gap_s + 1e-9:
        return None, f"'{name}' ends at {tv[-1]:.3f} s but {hi:.3f} s is needed"
    dt = np.diff(tv)
    overlaps = (tv[1:] >= lo) & (tv[:-1] <= hi)
    big = np.flatnonzero(overlaps & (dt > max_gap_s + 1e-9))
    if big.size:
        i = big[0]
        return None, f"'{name}' has a {dt[i]:.3f} s gap after t={tv[i]:.3f} s (max {max_gap_s} s)"
    return np.interp(query, tv, vv), ""


def block_sample_times(
    frame_times: np.ndarray,
    fs: float,
    w: int,
    anchor: Anchor = "centered",
    span: tuple[float, float] | None = None,
) -> np.ndarray:
    """[T, W] times of the W samples at rate fs that form each frame's block.

    centered: t_k + (j - (W-1)/2) / fs, j = 0..W-1   (block centred on the frame time)
    causal:   t_k - (W-1-j) / fs                     (block ends at the frame time)
    With a span, times outside it are clamped to its edges (the edge value repeats).
    """
    j = np.arange(w, dtype=np.float64)
    if anchor == "centered":
        offsets = (j - (w - 1) / 2.0) / fs
    elif anchor == "causal":
        offsets = (j - (w - 1)) / fs
    else:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    times = np.asarray(frame_times, dtype=np.float64)[:, None] + offsets[None, :]
    return times if span is None else np.clip(times, span[0], span[1])


def telemetry_span(
    frame_times: np.ndarray, anchor: Anchor, span: tuple[float, float] | None
) -> tuple[float, float]:
    """The time range telemetry may be read from: `span` (default: unbounded), ending at the
    last frame time for causal blocks."""
    lo, hi = span if span is not None else (-math.inf, math.inf)
    if anchor == "causal":
        hi = min(hi, float(np.max(frame_times)))
    return lo, hi


def synchronize(
    imu: ImuSignal | None,
    gps: GpsSignal | None,
    frame_times: np.ndarray,
    fps: float,
    max_gap_s: float = 0.25,
    anchor: Anchor = "centered",
    fs: float | None = None,
    max_gps_gap_s: float = 2.0,
    span: tuple[float, float] | None = None,
) -> SyncedTelemetry:
    """Align IMU (block mean accel, integrated yaw) and GPS speed to the given frame times.

    fs: IMU rate; default 1 / median(dt) of the file. W = floor(fs / fps) samples per frame.
    For frame k the W sample times of `block_sample_times(frame_times, fs, W, anchor, span)`
    are read from the raw signal by linear interpolation: this resamples irregular or jittered
    time stamps onto a uniform grid at the nominal rate before blocking, and equals the paper's
    plain block of raw samples when the stamps are regular and on the grid. Then

        accel[k]     = mean_j a(s_kj)                 [T, 3]  m/s^2
        yaw_delta[k] = sum_j omega_z(s_kj) / fs       [T]     rad
        speed[k]     = GPS speed interpolated at t_k  [T]     m/s

    Only samples inside `telemetry_span(frame_times, anchor, span)` are read: `span` (a chunk's
    [clip_start, clip_end]) and, for causal blocks, nothing after the last frame time; an edge
    value is held up to the gap limits below.

    NaN samples are dropped and bridged by linear interpolation when the hole between the
    finite samples around them is <= max_gap_s; a longer hole, or a signal that stops more
    than max_gap_s short of the needed span, makes the IMU unavailable (`available=False`,
    accel/yaw_delta None, `reason` says why). GPS is judged the same way with max_gps_gap_s
    (a 1 Hz signal has 1 s holes by design); unusable GPS only sets speed=None.
    """
    frame_times = np.asarray(frame_times, dtype=np.float64)
    if frame_times.ndim != 1 or frame_times.size == 0:
        raise ValueError("frame_times must be a non-empty 1-D array")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    lo, hi = telemetry_span(frame_times, anchor, span)
    reasons: list[str] = []
    accel = yaw = None
    rate, w = (fs or 0.0), 0
    if imu is None:
        reasons.append("no IMU")
    else:
        rate = float(fs) if fs else imu.fs  # from the whole file: a short span has few samples
        w = int(math.floor(rate / fps + 1e-9))
        if w < 1:
            raise ValueError(f"IMU rate {rate:.3f} Hz is below the frame rate {fps} fps")
        query = block_sample_times(frame_times, rate, w, anchor, (lo, hi))
        accel, yaw, why = _imu_blocks(imu.between(lo, hi), query, rate, max_gap_s)
        if why:
            reasons.append(f"{imu.path or 'imu'}: {why}")
    speed, gps_reason = None, "no GPS"
    if gps is not None:
        query = np.clip(frame_times, lo, hi)
        inside = gps.between(lo, hi)
        speed, why = _resample(inside.t, inside.speed, query, max_gps_gap_s, "speed")
        gps_reason = f"{gps.path or 'gps'}: {why}" if why else ""
        if why:
            reasons.append(gps_reason)
    return SyncedTelemetry(
        frame_times=frame_times,
        accel=accel,
        yaw_delta=yaw,
        speed=speed,
        available=accel is not None,
        reason="; ".join(reasons),
        fs=rate,
        window_samples=w,
        gps_reason=gps_reason,
    )


def _imu_blocks(
    imu: ImuSignal, query: np.ndarray, fs: float, max_gap_s: float
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """Block means of accel and integrated gz over the [T, W] sample times `query`."""
    channels = {"ax": imu.accel[:, 0], "ay": imu.accel[:, 1], "az": imu.accel[:, 2]}
    channels["gz"] = imu.gyro[:, 2]
    values = {}
    for name, v in channels.items():
        values[name], why = _resample(imu.t, v, query.ravel(), max_gap_s, name)
        if why:
            return None, None, why
    accel = np.stack([values[c].reshape(query.shape).mean(axis=1) for c in ("ax", "ay", "az")], 1)
    yaw = values["gz"].reshape(query.shape).sum(axis=1) / fs
    return accel, yaw, ""
