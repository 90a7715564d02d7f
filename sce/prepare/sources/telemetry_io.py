"""Writing device telemetry as the canonical IMU/GPS CSVs (shared by the real-device converters).

The canonical files (see `sce.data.schema`): IMU `t,ax,ay,az,gx,gy,gz` (s, m/s^2, rad/s) and GPS
`t,speed` (s, m/s), with `t` in seconds on the video's time base (zero = the first frame).
Real devices stamp samples on their own clock; the converters subtract the clock time of the
first video frame before writing, so the files here already share the video's zero. Samples
before the first frame or after the last are kept (negative or late `t`): the loader reads
only the span it needs, and a centred block on the first frame needs a few samples before it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sce.prepare.sources.base import SourceError


def increasing_samples(t: np.ndarray, where: str) -> np.ndarray:
    """Indices that keep `t` strictly increasing: exact duplicate stamps (a device re-sending a
    sample) are dropped; a stamp that goes backwards raises SourceError naming `where`."""
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 1 or t.size < 2:
        raise SourceError(f"{where}: needs at least 2 time stamps, found {t.size}")
    if not np.isfinite(t).all():
        raise SourceError(
            f"{where}: non-finite time stamp at sample {np.flatnonzero(~np.isfinite(t))[0]}"
        )
    dt = np.diff(t)
    back = np.flatnonzero(dt < 0)
    if back.size:
        i = int(back[0]) + 1
        raise SourceError(
            f"{where}: time goes backwards at sample {i} ({t[i - 1]:.6f} -> {t[i]:.6f} s)"
        )
    return np.concatenate([[0], np.flatnonzero(dt > 0) + 1])


def write_imu_csv(path: Path, t: np.ndarray, accel: np.ndarray, gyro: np.ndarray) -> Path:
    """Write t [N] s, accel [N, 3] m/s^2 and gyro [N, 3] rad/s as the canonical IMU CSV."""
    data = np.column_stack([t, accel, gyro])
    return _write(path, "t,ax,ay,az,gx,gy,gz", data)


def write_speed_csv(path: Path, t: np.ndarray, speed: np.ndarray) -> Path:
    """Write t [M] s and speed [M] m/s as a `t,speed` CSV (GPS, or CAN speed kept alongside)."""
    return _write(path, "t,speed", np.column_stack([t, speed]))


def _write(path: Path, header: str, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # 1 us time resolution; 6 decimals keep a 16-bit sensor's scaled values exactly enough.
    np.savetxt(path, data, fmt="%.6f", delimiter=",", header=header, comments="")
    return path


def resample_onto(t_from: np.ndarray, values: np.ndarray, t_to: np.ndarray) -> np.ndarray:
    """Linear interpolation of each column of `values` [N, C] (stamped `t_from`) at `t_to`;
    NaN outside the source's time range (never extrapolated)."""
    out = np.empty((len(t_to), values.shape[1]))
    for c in range(values.shape[1]):
        out[:, c] = np.interp(t_to, t_from, values[:, c], left=np.nan, right=np.nan)
    return out


def measured_rate(t: np.ndarray) -> float:
    """Samples per second over the whole record: (N - 1) / (t[-1] - t[0])."""
    return float((len(t) - 1) / (t[-1] - t[0])) if len(t) > 1 and t[-1] > t[0] else float("nan")
