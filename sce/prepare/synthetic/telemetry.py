"""A scenario's signals on the 100 Hz grid (Kinematics): IMU, speed, road curvature and the
scripted agent track, plus the 1 Hz GPS speed and the CSV writer for both.

Axes: x longitudinal (negative = braking), y lateral (positive = left), z up (az includes
gravity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sce.prepare.synthetic.scenario import LANE_WIDTH, Scenario

IMU_RATE = 100  # Hz
GRAVITY = 9.81  # m/s^2


@dataclass
class Kinematics:
    """Telemetry on the 100 Hz grid (n samples) plus the scripted agent track."""

    t: np.ndarray
    imu: np.ndarray  # (n, 6): ax, ay, az, gx, gy, gz
    ax_true: np.ndarray  # noise-free longitudinal acceleration (drives speed and pitch)
    speed: np.ndarray  # m/s
    travelled: np.ndarray  # m
    curvature: np.ndarray  # 1/m, road curvature ahead
    yaw_offset: np.ndarray  # rad, camera heading error from impact yaw jolts
    lead_distance: np.ndarray  # m
    lead_lateral: np.ndarray  # m, positive = right of the ego lane centre in the image
    event_time: float


def _smooth_noise(rng: np.random.Generator, n: int, scale: float, width: int = 60) -> np.ndarray:
    """Low-pass noise with standard deviation ~`scale` (moving average of white noise)."""
    white = rng.standard_normal(n + width)
    kernel = np.ones(width) / math.sqrt(width)
    return scale * np.convolve(white, kernel, mode="valid")[:n]


def _pulse(t: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / sigma) ** 2)


def _plateau(t: np.ndarray, centre: float, hold: float, ramp: float) -> np.ndarray:
    """1 on [centre - hold/2, centre + hold/2], cosine ramps of length `ramp` on both sides."""
    d = np.maximum(np.abs(t - centre) - hold / 2, 0.0)
    return np.where(d < ramp, 0.5 + 0.5 * np.cos(np.pi * d / ramp), 0.0)


def _event_accel(sc: Scenario, t: np.ndarray) -> np.ndarray:
    """The class-specific longitudinal acceleration added to the drive noise (m/s^2)."""
    p, te = sc.params, sc.event_time
    if sc.label == "collision":
        spike = p["peak"] * _pulse(t, te, p["sigma"])
        onset = np.clip((t - te - 0.2) / 0.3, 0.0, 1.0)  # braking after the impact
        return spike + p["post_brake"] * onset * (t > te)
    if sc.label == "near_collision":
        return p["peak"] * _plateau(t, te, p["hold"], p["ramp"])
    return p["bump"] * _pulse(t, te, p["bump_sigma"])


def _integrate_speed(v0: float, ax: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Speed from acceleration; once the car stops it stays stopped (ax is zeroed there)."""
    speed = v0 + np.concatenate([[0.0], np.cumsum(ax[:-1]) * dt])
    stopped = np.flatnonzero(speed <= 0.0)
    if stopped.size:
        ax = ax.copy()
        ax[stopped[0] :] = 0.0
        speed = np.maximum(speed, 0.0)
        speed[stopped[0] :] = 0.0
    return speed, ax


def _lead_track(sc: Scenario, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scripted distance and lateral position of the agent ahead."""
    p, te, d0 = sc.params, sc.event_time, sc.follow_distance
    lateral = np.zeros_like(t)
    if "steady_lead" in p:  # telemetry_decides: the same steady picture for normal and near
        return np.full_like(t, d0), lateral
    if sc.label == "normal":
        gap = d0 + p["gap_amp"] * np.sin(2 * np.pi * t / p["gap_period"])
        return gap, lateral
    d0 = min(d0, 20.0)  # closing from further away would need an implausible closing speed
    if sc.label == "collision":
        u = np.clip((t - (te - p["close_s"])) / p["close_s"], 0.0, 1.0)
        gap = d0 + (p["contact"] - d0) * u**2
        after = t > te
        gap[after] = p["contact"] + 0.4 * (1 - np.exp(-(t[after] - te) / 0.25))
        if sc.impact_side in ("left", "right"):  # the agent cuts in from the adjacent lane
            side = -1.0 if sc.impact_side == "left" else 1.0
            lateral = side * (LANE_WIDTH * (1 - np.minimum(u, 1.0)) + 0.5)
        return gap, lateral
    t_min = te + 0.3
    u = np.clip((t - (t_min - p["close_s"])) / p["close_s"], 0.0, 1.0)
    gap = d0 + (p["min_gap"] - d0) * u**2
    after = t > t_min
    recede = 1 - np.exp(-(t[after] - t_min) / p["recede_s"])
    if sc.crossing_from is not None:  # a walker or rider crosses; the ego stops and waits
        gap[after] = p["min_gap"] + 0.5 * recede
        side = -1.0 if sc.crossing_from == "left" else 1.0
        lateral = np.clip(side * (0.3 - 1.4 * (t - te)), -6.0, 6.0)
    else:
        gap[after] = p["min_gap"] + (p["end_gap"] - p["min_gap"]) * recede
    return gap, lateral


def _noise_terms(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounded drive noise (smooth) and sensor noise (white) for ax."""
    drive = np.clip(_smooth_noise(rng, n, 0.12), -0.25, 0.25)
    sensor = np.clip(rng.normal(0.0, 0.03, n), -0.08, 0.08)
    return drive, sensor


def _longitudinal(
    sc: Scenario, rng: np.random.Generator, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Speed, noise-free ax (drives speed and pitch) and measured ax on the 100 Hz grid."""
    drive, sensor = _noise_terms(rng, t.size)
    if sc.label == "normal":
        # Fade the noise under the gentle speed change so that argmax |ax| (the paper-000 event
        # heuristic) is exactly its centre, which lies inside the [-4 s, +2 s] window.
        calm = 1.0 - _pulse(t, sc.event_time, sc.params["bump_sigma"])
        drive, sensor = drive * calm, sensor * calm
    speed, ax_true = _integrate_speed(sc.v0, drive + _event_accel(sc, t), 1.0 / IMU_RATE)
    return speed, ax_true, ax_true + sensor * (speed > 0)


def _jolts(sc: Scenario, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Yaw rate, lateral and vertical acceleration added by the event (zero for normal)."""
    p, te = sc.params, sc.event_time
    yaw, lateral, vertical = np.zeros_like(t), np.zeros_like(t), np.zeros_like(t)
    if sc.label == "collision":
        spike = _pulse(t, te, p["sigma"])
        vertical = p["vertical"] * (spike - _pulse(t, te + 0.15, p["sigma"]))  # bounce
        if sc.impact_side in ("left", "right"):
            away = -1.0 if sc.impact_side == "left" else 1.0  # y is positive to the left
            lateral = away * p["lateral"] * spike
            yaw = away * p["yaw"] * _pulse(t, te + 0.05, 0.1)
    elif sc.label == "near_collision" and p["swerve"]:
        swerve = np.sin(2 * np.pi * (t - te) / 1.5) * _plateau(t, te + 0.4, 0.8, 0.3)
        yaw = p["swerve"] * swerve
    return yaw, lateral, vertical


def _other_axes(
    rng: np.random.Generator,
    t: np.ndarray,
    speed: np.ndarray,
    ax_true: np.ndarray,
    curvature: np.ndarray,
    jolts: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ay, az, gx, gy, gz: the road's curve, the event's jolts, pitch under braking, noise."""
    yaw_jolt, lateral_jolt, vertical_jolt = jolts
    moving = (speed > 0).astype(float)
    road_yaw = speed * curvature
    gz = road_yaw + yaw_jolt + rng.normal(0.0, 0.004, t.size) * moving
    ay = speed * road_yaw + lateral_jolt + rng.normal(0.0, 0.05, t.size) * moving  # centripetal
    vibration = rng.normal(0.0, 0.05, t.size) * (0.3 + speed / 20.0)
    az = GRAVITY + vertical_jolt + vibration
    gx = rng.normal(0.0, 0.008, t.size) * moving
    gy = 0.002 * np.gradient(ax_true, 1.0 / IMU_RATE) + rng.normal(0.0, 0.004, t.size)  # pitch
    return ay, az, gx, gy, gz


def simulate(sc: Scenario, rng: np.random.Generator, duration: float) -> Kinematics:
    """Build the 100 Hz IMU, speed and agent track of a scenario."""
    n = int(round(duration * IMU_RATE))
    dt = 1.0 / IMU_RATE
    t = np.arange(n + 1) * dt  # one extra sample so GPS at t = duration can be interpolated
    p = sc.params
    speed, ax_true, ax = _longitudinal(sc, rng, t)
    curvature = p["curv_amp"] * np.sin(2 * np.pi * t / p["curv_period"] + p["curv_phase"])
    jolts = _jolts(sc, t)
    ay, az, gx, gy, gz = _other_axes(rng, t, speed, ax_true, curvature, jolts)
    gap, lateral = _lead_track(sc, t)
    if "brief_start" in p:  # brief events: the agent is seen at its closest, at the event
        gap = np.full_like(t, np.interp(sc.event_time + 0.3, t, gap))
    return Kinematics(
        t=t,
        imu=np.round(np.stack([ax, ay, az, gx, gy, gz], axis=1), 4),
        ax_true=ax_true,
        speed=speed,
        travelled=np.concatenate([[0.0], np.cumsum(speed[:-1]) * dt]),
        curvature=curvature,
        yaw_offset=np.cumsum(jolts[0]) * dt if sc.label == "collision" else np.zeros_like(t),
        lead_distance=gap,
        lead_lateral=lateral + p["sway"] * np.sin(2 * np.pi * t / 7.0),  # ego sways in its lane
        event_time=sc.event_time,
    )


def gps_track(kin: Kinematics, rng: np.random.Generator, duration: float) -> np.ndarray:
    """1 Hz GPS speed (m/s) for t = 0, 1, ..., floor(duration): the IMU speed plus fix noise."""
    gps_t = np.arange(int(math.floor(duration + 1e-9)) + 1, dtype=float)
    speed = np.interp(gps_t, kin.t, kin.speed)
    speed = np.maximum(speed + rng.normal(0.0, 0.08, gps_t.size) * (speed > 0), 0.0)
    return np.stack([gps_t, np.round(speed, 3)], axis=1)


def write_csv(path: Path, header: str, columns: np.ndarray, fmt: Sequence[str]) -> None:
    """Write a numeric table with fixed formatting (byte-identical for identical values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, columns, fmt=list(fmt), delimiter=",", header=header, comments="")


def sample_index(kin: Kinematics, time: float) -> int:
    """The 100 Hz sample nearest to `time` (the last one past the end)."""
    return min(int(round(time * IMU_RATE)), kin.t.size - 1)
