"""IMU mounting orientation: device axes -> the vehicle frame (x forward, y left, z up).

Paper 000 reads a_x as the longitudinal axis (the event is argmax |a_x|; braking is negative
a_x). A real device is mounted any way up: comma's EON has z pointing down, a GoPro on a
helmet or a dash has gravity on whichever axis faces up. The rotation R (3 x 3, rows = the
vehicle's x, y, z axes written in device coordinates; a_vehicle = R @ a_device, the same for
the gyro) is found in two steps:

1. Up: the long-window mean of the accelerometer. An accelerometer measures specific force,
   +g along "up" at rest, so up = mean(a) / |mean(a)| over the recording; accelerations and
   turns average out over a drive (over 60 s of highway the mean linear acceleration is
   ~0.1 m/s^2, a tilt error under 1 degree).
2. Forward: the heading in the horizontal plane whose acceleration best explains the motion.
   Between GPS fixes i and j (>= `min_interval_s` apart), (v_j - v_i) / (t_j - t_i) is the
   mean longitudinal acceleration over [t_i, t_j] (the correlation with d(GPS speed)/dt the
   issue asks for), and the mean of v * omega_up (GPS speed times the gyro's yaw rate about
   up) the mean centripetal one, pointing left. The heading angle that maps the horizontal
   device acceleration onto this (longitudinal, lateral) pair in least squares has a closed
   form (Wahba's problem in the plane), and the sign comes with it. Why both: on the comma2k19
   highway segment the horizontal accelerations along and across the road are themselves
   correlated, and a fit of d(speed)/dt alone on the two horizontal components leaves the
   heading ill-determined (it swung from 9 to 44 degrees off x with the interval length
   while its correlation stayed at 0.87); with the centripetal term it is stable.
Then y = z x x (left) makes the frame right-handed.

Gravity: after the rotation gravity lies on z only, so a_x and a_y are linear accelerations
(what paper 000's a_x and block averages expect); a_z keeps +g, as the canonical IMU CSV
and the synthetic data do (the schema's az includes gravity).

The rotation is stored in the record's metadata (`imu_rotation`, with the estimate's quality
in `imu_alignment`) by the converters, and applied when the record's telemetry is loaded
(`align_record_imu`, called by `sce.data.clip.load_record_imu`); the CSV keeps the device's
axes. An estimate whose forward axis is not resolved (no GPS: "gravity_only"; motion too weak:
"unresolved") is recorded in `imu_alignment` but not stored as `imu_rotation` (the loader
keeps the device axes) unless asked (`imu_axes="estimate_always"`); `sce data validate` notes
it. A device whose mounting is known takes an explicit axis mapping instead of an estimate
(`axes_rotation("x,-y,-z")`: vehicle x = device x, vehicle y = -device y, vehicle z = -device
z), e.g. the converters' `imu_axes` option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sce.data.imu import GpsSignal, ImuSignal

ROTATION_KEY = "imu_rotation"
ALIGNMENT_KEY = "imu_alignment"
MIN_FORWARD_CORRELATION = 0.5  # below: the forward axis is "unresolved" (too little accel.)
MIN_INTERVALS = 5
ESTIMATE_OPTIONS = ("estimate", "estimate_always")  # imu_axes values that estimate from data
MIN_COVERAGE = 0.9  # an interval between GPS fixes needs 90% of its time covered by the IMU
MAX_BRIDGE_S = 0.1  # a hole between finite IMU samples up to this long counts as covered
# Known mountings: device axes -> vehicle (x forward, y left, z up).
KNOWN_AXES: dict[str, str] = {
    "vehicle": "x,y,z",  # already in the vehicle frame (the synthetic data, private CSVs)
    "comma_eon": "x,-y,-z",  # comma EON / comma2k19: x forward, y right, z down
}


class AlignmentError(ValueError):
    """An axis mapping or a stored rotation is malformed; the message names the field."""


@dataclass(frozen=True)
class Alignment:
    """A device -> vehicle rotation and how it was obtained."""

    rotation: np.ndarray  # [3, 3], rows: vehicle x, y, z in device coordinates
    method: str  # "estimated" | "axes" | "gravity_only" (no GPS) | "unresolved" (weak motion)
    gravity: float | None = None  # |mean accel|, m/s^2 (estimated)
    forward_correlation: float | None = None  # corr(aligned mean a_x, dv/dt) over intervals
    intervals: int = 0  # speed-change intervals used

    @property
    def resolved(self) -> bool:
        """The whole rotation is known: an explicit mapping, or an estimate whose forward
        axis passed MIN_FORWARD_CORRELATION (gravity_only / unresolved know only up)."""
        return self.method in ("axes", "estimated")

    def metadata(self, apply: bool | None = None) -> dict[str, Any]:
        """`{imu_rotation: [[...]], imu_alignment: {...}}` for a record's metadata. The
        rotation (what the loader applies) is stored when `apply` is True, or by default when
        `resolved`; otherwise only `imu_alignment` is, with the rotation the estimate would
        have applied under `rotation` and `applied: false` (the IMU keeps the device axes)."""
        apply = self.resolved if apply is None else apply
        info: dict[str, Any] = {"method": self.method, "intervals": self.intervals}
        if self.gravity is not None:
            info["gravity_m_s2"] = round(self.gravity, 4)
        if self.forward_correlation is not None:
            info["forward_correlation"] = round(self.forward_correlation, 4)
        info["applied"] = apply
        rows = [[round(float(v), 6) for v in row] for row in self.rotation]
        if not apply:
            return {ALIGNMENT_KEY: {**info, "rotation": rows}}
        return {ROTATION_KEY: rows, ALIGNMENT_KEY: info}


# ------------------------------------------------------------------------------ axis mapping


def axes_rotation(spec: str) -> np.ndarray:
    """Rotation for an explicit mapping "x,-y,-z" (or a KNOWN_AXES name): item k names the
    signed device axis that is vehicle axis k (x forward, y left, z up). Raises AlignmentError
    unless it is a proper rotation (each device axis once, determinant +1)."""
    text = KNOWN_AXES.get(spec, spec)
    parts = [p.strip().lower() for p in text.split(",")]
    rows = []
    for part in parts:
        sign, axis = (-1.0, part[1:]) if part.startswith("-") else (1.0, part.lstrip("+"))
        if axis not in ("x", "y", "z"):
            raise AlignmentError(
                f"imu_axes {spec!r}: {part!r} is not a signed device axis (x, -y, ...)"
            )
        row = np.zeros(3)
        row["xyz".index(axis)] = sign
        rows.append(row)
    rotation = np.array(rows)
    if rotation.shape != (3, 3) or not np.isclose(np.linalg.det(rotation), 1.0):
        raise AlignmentError(
            f"imu_axes {spec!r}: needs three device axes, each once, forming a right-handed "
            "frame (e.g. 'x,-y,-z'; known: " + ", ".join(KNOWN_AXES) + ")"
        )
    return rotation


# -------------------------------------------------------------------------------- estimation


def _horizontal_basis(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two orthonormal horizontal vectors: the device axis least aligned with `up`, made
    horizontal, and up x that."""
    axis = np.eye(3)[int(np.argmin(np.abs(up)))]
    e1 = axis - axis.dot(up) * up
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(up, e1)


@dataclass(frozen=True)
class MotionIntervals:
    """Per interval between GPS fixes: mean device acceleration [K, 3], dv/dt [K] (m/s^2),
    mean v * omega_up [K] (m/s^2) and duration [K] (s)."""

    accel: np.ndarray
    longitudinal: np.ndarray
    lateral: np.ndarray
    duration: np.ndarray


def motion_intervals(
    imu: ImuSignal, gps: GpsSignal, up: np.ndarray, min_interval_s: float
) -> MotionIntervals:
    """Over intervals between GPS fixes >= min_interval_s apart (inside the IMU's range):
    mean device acceleration, dv/dt, mean v * omega_up and duration. dv/dt is the mean
    longitudinal acceleration over the interval; v * omega_up (GPS speed times the gyro's yaw
    rate about `up`) the mean centripetal (leftward) one.

    NaN-aware: an IMU sample with a non-finite accel or gyro value counts as missing; the
    integrals bridge a hole between finite samples up to MAX_BRIDGE_S long (scattered missing
    rows) and count a longer one as uncovered, the means are taken over the covered time, and
    an interval less than MIN_COVERAGE covered is left out. Bridging every hole instead gives
    the intervals inside a 20 s one the mean of the two samples at its edges, a constant that
    dv/dt cannot explain: on the comma2k19 segment with its first 20 s of accelerometer rows
    NaN the forward correlation fell from 0.87 to 0.46, under the threshold."""
    empty = MotionIntervals(np.empty((0, 3)), np.empty(0), np.empty(0), np.empty(0))
    ok = np.isfinite(gps.speed) & (gps.t >= imu.t[0]) & (gps.t <= imu.t[-1])
    t, v = gps.t[ok], gps.speed[ok]
    good = np.isfinite(imu.accel).all(axis=1) & np.isfinite(imu.gyro).all(axis=1)
    ti = imu.t[good]
    if len(t) < 2 or len(ti) < 2:
        return empty
    centripetal = np.interp(ti, t, v) * (imu.gyro[good] @ up)
    signals = np.column_stack([imu.accel[good], centripetal, np.ones(len(ti))])
    # cumulative trapezoid integral at every finite IMU stamp (holes > MAX_BRIDGE_S add
    # nothing, the last column integrates the covered time), read at the GPS stamps
    dt = np.diff(ti)
    steps = 0.5 * (signals[1:] + signals[:-1]) * np.where(dt <= MAX_BRIDGE_S, dt, 0.0)[:, None]
    integral = np.vstack([np.zeros(5), np.cumsum(steps, axis=0)])
    picks = [0]
    for k in range(1, len(t)):
        if t[k] - t[picks[-1]] >= min_interval_s:
            picks.append(k)
    if len(picks) < 2:
        return empty
    tp = t[picks]
    at_fix = np.stack([np.interp(tp, ti, integral[:, c]) for c in range(5)], axis=1)
    duration = np.diff(tp)
    sums = np.diff(at_fix, axis=0)
    covered = sums[:, 4]
    keep = covered >= MIN_COVERAGE * duration
    means = sums[keep, :4] / covered[keep, None]
    dv_dt = np.diff(v[picks]) / duration
    return MotionIntervals(means[:, :3], dv_dt[keep], means[:, 3], duration[keep])


def forward_angle(h: np.ndarray, longitudinal: np.ndarray, lateral: np.ndarray) -> float:
    """The angle phi of forward = cos(phi) e1 + sin(phi) e2 that best maps the horizontal
    device accelerations h [K, 2] onto (longitudinal, lateral) in least squares (Wahba's
    problem in the plane; closed form)."""
    c = np.sum(longitudinal * h[:, 0] + lateral * h[:, 1])
    s = np.sum(longitudinal * h[:, 1] - lateral * h[:, 0])
    return float(np.arctan2(s, c))


def fit_forward(motion: MotionIntervals, up: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(forward unit vector, corr(a_x, dv/dt)) for a given up; forward is None-safe: when the
    motion is too weak (see `estimate_alignment`) the correlation is None or below threshold."""
    e1, e2 = _horizontal_basis(up)
    n = len(motion.longitudinal)
    if n < MIN_INTERVALS or not np.std(motion.longitudinal) > 0:
        return e1, None
    h = np.column_stack([motion.accel @ e1, motion.accel @ e2])
    phi = forward_angle(
        h - h.mean(axis=0),
        motion.longitudinal - motion.longitudinal.mean(),
        motion.lateral - motion.lateral.mean(),
    )
    forward = np.cos(phi) * e1 + np.sin(phi) * e2
    return forward, float(np.corrcoef(motion.accel @ forward, motion.longitudinal)[0, 1])


def refined_up(motion: MotionIntervals, up: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Up from the mean acceleration with the vehicle's own mean acceleration (known from GPS
    speed and the gyro) taken out: a recording that ends slower than it began (a collision
    stops the car) has a mean linear acceleration of ~1 m/s^2, a 5 degree tilt if ignored."""
    left = np.cross(up, forward)
    linear = np.outer(motion.longitudinal, forward) + np.outer(motion.lateral, left)
    gravity = ((motion.accel - linear) * motion.duration[:, None]).sum(axis=0)
    return gravity / np.linalg.norm(gravity)


def estimate_alignment(
    imu: ImuSignal, gps: GpsSignal | None, min_interval_s: float = 1.0, iterations: int = 3
) -> Alignment:
    """Estimate the device -> vehicle rotation (see the module docstring).

    Up starts as the long-window mean of the accelerometer (NaN samples left out); with GPS,
    forward and up are then refined in turn (`fit_forward`, `refined_up`) `iterations` times.
    Without GPS (method "gravity_only"), or when the motion is too weak to find the forward
    axis (method "unresolved": the correlation of the aligned a_x with dv/dt below
    MIN_FORWARD_CORRELATION before or after the refinement, or fewer than MIN_INTERVALS
    intervals covered by the IMU), up stays the mean and forward is the horizontal projection
    of the device axis least aligned with up: a_z is right, a_x a guess, and `metadata()`
    does not store the rotation for the loader unless asked (`record_alignment`).
    """
    mean = np.nanmean(imu.accel, axis=0)
    gravity = float(np.linalg.norm(mean))
    if not np.isfinite(gravity) or gravity < 1.0:
        raise AlignmentError(
            f"{imu.path or 'imu'}: mean acceleration {gravity:.3f} m/s^2 shows no gravity"
        )
    up = mean / gravity
    fallback = Alignment(_frame(_horizontal_basis(up)[0], up), "gravity_only", gravity)
    if gps is None:
        return fallback
    motion = motion_intervals(imu, gps, up, min_interval_s)
    forward, correlation = fit_forward(motion, up)
    unresolved = Alignment(
        fallback.rotation, "unresolved", gravity, correlation, len(motion.duration)
    )
    if correlation is None or correlation < MIN_FORWARD_CORRELATION:
        return unresolved
    for _ in range(iterations):
        up = refined_up(motion, up, forward)
        motion = motion_intervals(imu, gps, up, min_interval_s)  # omega_up changes with up
        forward, correlation = fit_forward(motion, up)
    if correlation is None or correlation < MIN_FORWARD_CORRELATION:  # lost in the refinement
        return Alignment(
            unresolved.rotation, "unresolved", gravity, correlation, len(motion.duration)
        )
    return Alignment(_frame(forward, up), "estimated", gravity, correlation, len(motion.duration))


def _frame(forward: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Rows x (forward), y = up x forward (left), z (up)."""
    return np.stack([forward, np.cross(up, forward), up])


# ----------------------------------------------------------------------------- application


def rotate(imu: ImuSignal, rotation: np.ndarray) -> ImuSignal:
    """The IMU with accel and gyro expressed in the rotated frame (a' = R @ a)."""
    return ImuSignal(imu.t, imu.accel @ rotation.T, imu.gyro @ rotation.T, imu.path)


def rotation_from_metadata(metadata: dict[str, Any], where: str = "record") -> np.ndarray | None:
    """The stored `imu_rotation` as a 3 x 3 array, None when absent; AlignmentError naming
    `where` and the field unless it is a proper rotation (orthonormal, determinant +1)."""
    value = metadata.get(ROTATION_KEY)
    if value is None:
        return None
    try:
        rotation = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        rotation = np.empty(0)
    if rotation.shape != (3, 3) or not np.isfinite(rotation).all():
        raise AlignmentError(f"{where}: field 'metadata.{ROTATION_KEY}': expected a 3 x 3 matrix")
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) or np.linalg.det(rotation) < 0:
        raise AlignmentError(
            f"{where}: field 'metadata.{ROTATION_KEY}': not a rotation (R R^T != I or det < 0)"
        )
    return rotation


def align_record_imu(imu: ImuSignal, record) -> ImuSignal:
    """The record's IMU in the vehicle frame: rotated by `metadata.imu_rotation` when the
    record has one (converters of real devices store it), else unchanged."""
    rotation = rotation_from_metadata(record.metadata, f"sample {record.id!r}")
    return imu if rotation is None else rotate(imu, rotation)


def record_alignment(imu: ImuSignal, gps: GpsSignal | None, imu_axes: str) -> dict[str, Any]:
    """Metadata for a converter's `imu_axes` option: "estimate" (from the data; the rotation
    is applied only when its forward axis is resolved, see `Alignment.metadata`),
    "estimate_always" (the estimate applied whatever its quality), "none" (no rotation
    stored), or an explicit mapping / KNOWN_AXES name."""
    if imu_axes == "none":
        return {}
    if imu_axes in ESTIMATE_OPTIONS:
        return estimate_alignment(imu, gps).metadata(apply=imu_axes == "estimate_always" or None)
    return Alignment(axes_rotation(imu_axes), "axes").metadata()


def alignment_problem(metadata: dict[str, Any]) -> str:
    """Why a record's stored mounting is not to be trusted ("" when it is, or when none was
    estimated), for `sce data validate`: an estimate whose forward axis was not resolved,
    applied or not, and an "estimated" rotation whose stored correlation is under
    MIN_FORWARD_CORRELATION (a manifest written before this check existed)."""
    info = metadata.get(ALIGNMENT_KEY)
    if not isinstance(info, dict) or info.get("method") in (None, "axes"):
        return ""
    correlation = info.get("forward_correlation")
    quality = (
        f"forward correlation {correlation:.2f} < {MIN_FORWARD_CORRELATION}"
        if isinstance(correlation, (int, float))
        else "no GPS speed to find the forward axis"
        if info.get("method") == "gravity_only"
        else f"{info.get('intervals', 0)} usable GPS intervals"
    )
    if info.get("method") == "estimated":
        if isinstance(correlation, (int, float)) and correlation < MIN_FORWARD_CORRELATION:
            return f"method 'estimated' with {quality}: the rotation applied is not reliable"
        return ""
    applied = ROTATION_KEY in metadata
    effect = "applied anyway (estimate_always)" if applied else "not applied: device axes used"
    return f"forward axis not resolved ({quality}); rotation {effect}"
