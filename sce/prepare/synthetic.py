"""Synthetic dashcam clips with IMU/GPS telemetry, for tests, demos and smoke training runs.

Each clip is a cheap rendered road scene (sky, scenery, road with lane markings that scroll with
the ego speed) with one agent ahead (car, truck, bus, motorcycle, pedestrian, cyclist) whose
distance follows a class-specific script, plus a 100 Hz IMU and a 1 Hz GPS track whose
signatures match the class:

- collision: the agent closes in and fills most of the view at the event; ax shows a short
  (~0.7 s) deceleration pulse peaking at -8.6..-11.6 m/s^2, then braking to a stop; the picture shakes
  and flashes after the impact; side impacts add a lateral spike and a yaw jolt.
- near_collision: the agent closes in, then recedes under ~1 s of hard braking (-4.2..-5.4 m/s^2).
- normal: steady following; |ax| stays below ~2 m/s^2 and the event time is argmax |ax|
  (the heuristic of paper 000).

Axes: x longitudinal (negative = braking), y lateral (positive = left), z up (az includes
gravity). Everything is drawn from `numpy.random.default_rng([seed, clip_index])`, so a seed
gives byte-identical CSVs and manifest, and identical video frames.

Options for the ablations (`SynthOptions`; the defaults leave every clip unchanged):

- brief_events: the agent (and the impact's flash and shake) is visible for only
  BRIEF_VISIBLE_S = 0.3 s, at a random offset in [-0.5, +0.5) s from the event time, and the
  camera is stabilised (no pitch): 1 fps frames (spaced 1 s) catch it in about 30% of clips,
  15 fps frames (spaced 0.067 s) always (paper 001 Table 3's frame-rate question).
- telemetry_decides: near-collisions and normal clips look alike (the agent keeps a steady
  follow distance, no brake lights, no pitch); only the IMU's hard braking tells them apart
  (paper 000 Table V's IMU question). Collisions stay visible.
- class_fractions: the train split's class mix (a long tail, e.g. 2% collision, 15%
  near-collision); val and test stay balanced so collision F1 is measurable (paper 001 Table 7).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from tqdm import tqdm

from sce.data.schema import LABELS, ClipRecord, write_manifest
from sce.prepare.splits import assign_splits
from sce.tasks import CAPTION_FIELD

IMU_RATE = 100  # Hz
GRAVITY = 9.81  # m/s^2
PRE_EVENT_S = 4.0  # the default window [-4 s, +2 s] around the event must fit in the clip
POST_EVENT_S = 2.0
CAMERA_HEIGHT = 1.3  # m
BRIEF_VISIBLE_S = 0.3  # brief events: seconds the impact is visible (< 0.5 s, issue 17)
BRIEF_OFFSET_S = 0.5  # brief events: the visible interval starts within +-0.5 s of t_e
HFOV_DEG = 70.0

LIGHTS = ("day", "dusk", "night")
WEATHERS = ("clear", "rain", "fog")
SCENES = ("urban", "highway", "rural")
# Saturated colours whose chromaticity differs from sky, road, grass and fog (easy to measure).
AGENT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 35, 35),
    "orange": (235, 125, 25),
    "yellow": (225, 200, 35),
    "magenta": (190, 40, 160),
    "teal": (25, 150, 150),
}
AGENT_SIZES: dict[str, tuple[float, float]] = {  # width, height in metres
    "car": (1.8, 1.5),
    "truck": (2.5, 3.6),
    "bus": (2.5, 3.2),
    "motorcycle": (0.8, 1.5),
    "pedestrian": (0.55, 1.75),
    "cyclist": (0.6, 1.7),
}
# Agents per class with weights; a pedestrian impact would not give a -10 m/s^2 spike.
AGENT_WEIGHTS: dict[str, dict[str, float]] = {
    "collision": {"car": 0.55, "truck": 0.2, "bus": 0.1, "motorcycle": 0.15},
    "near_collision": {
        "car": 0.45,
        "truck": 0.15,
        "bus": 0.1,
        "motorcycle": 0.1,
        "pedestrian": 0.12,
        "cyclist": 0.08,
    },
    "normal": {"car": 0.6, "truck": 0.2, "bus": 0.12, "motorcycle": 0.08},
}
SPEED_RANGE = {"urban": (9.0, 15.0), "rural": (12.0, 22.0), "highway": (22.0, 31.0)}  # m/s
FOLLOW_RANGE = {"urban": (12.0, 22.0), "rural": (18.0, 30.0), "highway": (25.0, 40.0)}  # m
LANES = {"urban": 2, "rural": 2, "highway": 3}  # lanes in the ego direction (ego in the right one)
LANE_WIDTH = 3.5  # m
FOG_COLOR = np.array((175, 178, 182), np.float32)

# Colours per light condition: sky top, sky horizon, ground, road, lane line.
PALETTES: dict[str, dict[str, tuple[int, int, int]]] = {
    "day": {
        "sky_top": (110, 165, 230),
        "sky_low": (190, 215, 240),
        "road": (95, 95, 100),
        "line": (235, 235, 235),
        "urban": (150, 145, 140),
        "rural": (95, 140, 60),
        "highway": (110, 150, 75),
        "scenery": (120, 120, 130),
    },
    "dusk": {
        "sky_top": (70, 60, 120),
        "sky_low": (235, 150, 95),
        "road": (70, 65, 70),
        "line": (200, 190, 180),
        "urban": (110, 100, 100),
        "rural": (70, 95, 50),
        "highway": (80, 100, 60),
        "scenery": (60, 50, 70),
    },
    "night": {
        "sky_top": (5, 6, 15),
        "sky_low": (20, 22, 38),
        "road": (70, 70, 75),
        "line": (220, 220, 210),
        "urban": (90, 85, 85),
        "rural": (45, 65, 40),
        "highway": (55, 70, 45),
        "scenery": (15, 15, 25),
    },
}


@dataclass
class Scenario:
    """The sampled parameters of one clip (everything random is drawn here)."""

    label: str
    event_time: float  # designed event time (collision / near_collision); bump time (normal)
    light: str
    weather: str
    scene: str
    road: str
    agent: str
    color: str
    impact_side: str | None
    crossing_from: str | None
    evasive_action: str | None
    v0: float  # initial ego speed, m/s
    follow_distance: float  # m
    horizon: float  # fraction of the frame height
    params: dict[str, float] = field(default_factory=dict)  # class-specific shape parameters


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


@dataclass(frozen=True)
class SynthOptions:
    """Generator options for the ablations; the defaults give the standard clips byte for byte.

    brief_events: impacts visible for BRIEF_VISIBLE_S only, camera stabilised.
    telemetry_decides: near-collision and normal clips look alike; the IMU decides.
    class_fractions: {label: fraction} of the train split (val/test stay balanced), or None.
    """

    brief_events: bool = False
    telemetry_decides: bool = False
    class_fractions: dict[str, float] | None = None

    def __post_init__(self) -> None:
        fractions = self.class_fractions
        if fractions is None:
            return
        if set(fractions) != set(LABELS) or min(fractions.values()) < 0:
            raise ValueError(
                f"class_fractions needs a fraction >= 0 per label {LABELS}: {fractions}"
            )
        if abs(sum(fractions.values()) - 1) > 1e-6:
            raise ValueError(f"class_fractions must sum to 1: {fractions}")


def apply_options(sc: Scenario, options: SynthOptions, rng: np.random.Generator) -> None:
    """Mark the scenario for the renderer and the lead track (params keys; none by default).

    `rng` is a spawned child generator, so the clip's own draws are the same as without options.
    """
    if options.brief_events:
        start = sc.event_time + float(rng.uniform(-BRIEF_OFFSET_S, BRIEF_OFFSET_S))
        sc.params["brief_start"] = start
        sc.params["brief_end"] = start + BRIEF_VISIBLE_S
        sc.params["stabilised"] = 1.0
    if options.telemetry_decides:
        sc.params["stabilised"] = 1.0
        if sc.label != "collision":
            sc.params["steady_lead"] = 1.0


def agent_visible(sc: Scenario, time: float) -> bool:
    """Whether the agent is drawn at `time` (always, except outside a brief event's interval)."""
    if "brief_start" not in sc.params:
        return True
    if sc.label == "normal":
        return False
    return sc.params["brief_start"] <= time < sc.params["brief_end"]


# ----------------------------------------------------------------------------- sampling


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _collision_params(rng: np.random.Generator, agent: str) -> dict[str, float]:
    # Narrow agents come closer so that they too fill the view at the contact.
    narrow = min(max(AGENT_SIZES[agent][0] / 1.8, 0.5), 1.0)
    return {
        "peak": -rng.uniform(8.6, 11.6),  # m/s^2, plus <= 0.4 of noise: min ax in [-12, -8.2]
        # s: the pulse lasts ~0.6-0.8 s, so the 3 fps block means of paper 000 (1/3 s blocks,
        # which straddle the peak) still read -6 to -8 m/s^2, above near-collision braking.
        "sigma": rng.uniform(0.17, 0.22),
        "post_brake": -rng.uniform(2.5, 4.5),
        "contact": rng.uniform(1.2, 1.8) * narrow,  # camera-to-agent distance at impact, m
        "close_s": rng.uniform(3.0, 4.0),
        "vertical": rng.uniform(1.0, 3.0) * rng.choice([-1.0, 1.0]),
        "lateral": rng.uniform(3.0, 6.0),
        "yaw": rng.uniform(0.4, 0.9),
    }


def _near_collision_params(rng: np.random.Generator, swerve: bool) -> dict[str, float]:
    return {
        "peak": -rng.uniform(4.2, 5.4),  # m/s^2, held ~0.5 s with ~0.3 s ramps
        "hold": rng.uniform(0.4, 0.6),
        "ramp": rng.uniform(0.25, 0.35),
        "min_gap": rng.uniform(3.5, 6.0),
        "end_gap": rng.uniform(10.0, 16.0),
        "recede_s": rng.uniform(0.8, 1.5),
        "close_s": rng.uniform(2.5, 3.5),
        "swerve": rng.uniform(0.05, 0.2) * rng.choice([-1.0, 1.0]) if swerve else 0.0,
    }


def _normal_params(rng: np.random.Generator) -> dict[str, float]:
    return {
        "bump": rng.uniform(1.0, 1.6) * rng.choice([-1.0, 1.0]),  # gentle speed change, m/s^2
        "bump_sigma": rng.uniform(0.25, 0.4),
        "gap_amp": rng.uniform(0.5, 2.5),
        "gap_period": rng.uniform(6.0, 14.0),
    }


def sample_scenario(rng: np.random.Generator, label: str, duration: float) -> Scenario:
    """Draw the scene, agent, speeds and event time of one clip."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    light = LIGHTS[int(rng.choice(3, p=[0.55, 0.2, 0.25]))]
    weather = WEATHERS[int(rng.choice(3, p=[0.55, 0.25, 0.2]))]
    scene = SCENES[int(rng.integers(3))]
    road = "wet" if weather == "rain" or (weather == "fog" and rng.random() < 0.5) else "dry"
    agent = _choice(rng, AGENT_WEIGHTS[label])
    color = list(AGENT_COLORS)[int(rng.integers(len(AGENT_COLORS)))]
    lo, hi = PRE_EVENT_S, duration - POST_EVENT_S
    margin = min(0.5, (hi - lo) / 2)
    event_time = round(float(rng.uniform(lo + margin, hi - margin)), 2)
    impact_side = crossing_from = evasive = None
    if label == "collision":
        impact_side = ("front", "left", "right")[int(rng.choice(3, p=[0.6, 0.2, 0.2]))]
        params = _collision_params(rng, agent)
    elif label == "near_collision":
        if agent in ("pedestrian", "cyclist"):
            crossing_from = ("left", "right")[int(rng.integers(2))]
        swerve = bool(rng.random() < 0.4)
        evasive = "braking and swerving" if swerve else "hard braking"
        params = _near_collision_params(rng, swerve)
    else:
        params = _normal_params(rng)
    params["curv_amp"] = rng.uniform(0.0, 0.004)  # 1/m: radius >= 250 m
    params["curv_period"] = rng.uniform(8.0, 30.0)
    params["curv_phase"] = rng.uniform(0, 2 * np.pi)
    params["sway"] = rng.uniform(0.0, 0.3)
    return Scenario(
        label=label,
        event_time=event_time,
        light=light,
        weather=weather,
        scene=scene,
        road=road,
        agent=agent,
        color=color,
        impact_side=impact_side,
        crossing_from=crossing_from,
        evasive_action=evasive,
        v0=float(rng.uniform(*SPEED_RANGE[scene])),
        follow_distance=float(rng.uniform(*FOLLOW_RANGE[scene])),
        horizon=float(rng.uniform(0.40, 0.47)),
        params=params,
    )


# ----------------------------------------------------------------------------- telemetry


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


def simulate(sc: Scenario, rng: np.random.Generator, duration: float) -> Kinematics:
    """Build the 100 Hz IMU, speed and agent track of a scenario."""
    n = int(round(duration * IMU_RATE))
    dt = 1.0 / IMU_RATE
    t = np.arange(n + 1) * dt  # one extra sample so GPS at t = duration can be interpolated
    p = sc.params
    speed, ax_true, ax = _longitudinal(sc, rng, t)
    curvature = p["curv_amp"] * np.sin(2 * np.pi * t / p["curv_period"] + p["curv_phase"])
    yaw_jolt, lateral_jolt, vertical_jolt = _jolts(sc, t)
    moving = (speed > 0).astype(float)
    road_yaw = speed * curvature
    gz = road_yaw + yaw_jolt + rng.normal(0.0, 0.004, t.size) * moving
    ay = speed * road_yaw + lateral_jolt + rng.normal(0.0, 0.05, t.size) * moving  # centripetal
    vibration = rng.normal(0.0, 0.05, t.size) * (0.3 + speed / 20.0)
    az = GRAVITY + vertical_jolt + vibration
    gx = rng.normal(0.0, 0.008, t.size) * moving
    gy = 0.002 * np.gradient(ax_true, dt) + rng.normal(0.0, 0.004, t.size)  # pitch with braking
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
        yaw_offset=np.cumsum(yaw_jolt) * dt if sc.label == "collision" else np.zeros_like(t),
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


# ----------------------------------------------------------------------------- rendering


@dataclass
class _Scene:
    """Per-clip constants of the renderer (computed once, reused by every frame)."""

    background: np.ndarray  # (Hc, Wc, 3) uint8 canvas without road and agent
    horizon: int  # canvas row of the horizon
    margin_x: int
    margin_y: int
    focal: float
    cx: float
    rows_scale: np.ndarray  # px per metre on each road row (below the horizon)
    rows_depth: np.ndarray  # distance of each road row, m
    cols: np.ndarray
    gain: np.ndarray | None  # per-row brightness (x256): headlights reach only the near road
    haze: np.ndarray | None  # per-row fog weight (x256), growing with the row's distance
    atmosphere: tuple[float, float, float, float]  # light floor, headlight reach, fog, visibility
    rain: np.ndarray | None  # (2 Hc, Wc) streak mask, scrolled per frame
    grain: list[np.ndarray]  # small pre-drawn noise frames, cycled
    palette: dict[str, tuple[int, int, int]]
    lines: list[tuple[float, bool, tuple[int, int, int]]]  # lateral position, dashed, colour
    road_span: tuple[float, float]


def _build_scene(sc: Scenario, rng: np.random.Generator, width: int, height: int) -> _Scene:
    mx, my = max(4, width // 8), max(4, height // 12)
    hc, wc = height + 2 * my, width + 2 * mx
    horizon = my + int(round(sc.horizon * height))
    focal = width / (2 * math.tan(math.radians(HFOV_DEG) / 2))
    pal = PALETTES[sc.light]
    bg = np.empty((hc, wc, 3), np.uint8)
    frac = np.linspace(0.0, 1.0, horizon + 1)[:, None]
    bg[: horizon + 1] = (
        (1 - frac) * np.array(pal["sky_top"]) + frac * np.array(pal["sky_low"])
    ).astype(np.uint8)[:, None, :]
    bg[horizon + 1 :] = pal[sc.scene]
    _draw_scenery(bg, sc.scene, horizon, pal["scenery"], rng)
    rows = np.arange(horizon + 1, hc, dtype=np.float32)
    scale = (rows - horizon) / CAMERA_HEIGHT
    # Distance seen by each canvas row: the sky and scenery are infinitely far.
    depth = np.full(hc, np.inf, np.float32)
    depth[horizon + 1 :] = focal / scale
    low, reach = {"day": (1.0, 1.0), "dusk": (0.75, 40.0), "night": (0.45, 25.0)}[sc.light]
    fog = sc.weather == "fog"
    density, visibility = (rng.uniform(0.5, 0.75), rng.uniform(12, 25)) if fog else (0.0, 1.0)
    atmosphere = (low, reach, float(density), float(visibility))
    gain = haze = rain = None
    if sc.light != "day":
        row_gain = np.where(np.isinf(depth), 1.0, _light_gain(atmosphere, depth))
        gain = (256 * row_gain).astype(np.uint16)
    if fog:
        haze = (256 * _fog_weight(atmosphere, depth)).astype(np.uint16)
    if sc.weather == "rain":
        drops = rng.random((2 * hc, wc)) < 0.004
        rain = drops | np.roll(drops, 1, 0) | np.roll(drops, 2, 0) | np.roll(drops, 3, 0)
    grain = []
    if sc.light == "night" or sc.weather == "rain":
        grain = [rng.integers(-6, 7, (hc, wc, 1), dtype=np.int16) for _ in range(3)]
    lines, road_span = _lane_lines(sc.scene, pal)
    return _Scene(
        background=bg,
        horizon=horizon,
        margin_x=mx,
        margin_y=my,
        focal=focal,
        cx=wc / 2,
        rows_scale=scale,
        rows_depth=depth[horizon + 1 :],
        cols=np.arange(wc, dtype=np.float32),
        gain=gain,
        haze=haze,
        atmosphere=atmosphere,
        rain=rain,
        grain=grain,
        palette=pal,
        lines=lines,
        road_span=road_span,
    )


def _lane_lines(
    scene: str, pal: dict[str, tuple[int, int, int]]
) -> tuple[list[tuple[float, bool, tuple[int, int, int]]], tuple[float, float]]:
    """Lane lines (lateral position, dashed, colour) and the road's lateral span, in metres.

    The ego drives in the rightmost lane: the road spans the lanes to its left plus a shoulder.
    """
    lanes = LANES[scene]
    white = pal["line"]
    yellow = (220, 180, 40) if white[0] > 210 else (190, 160, 50)
    lines = [(LANE_WIDTH / 2, False, white), (-LANE_WIDTH * (lanes - 0.5), False, white)]
    lines += [(LANE_WIDTH / 2 - LANE_WIDTH * k, True, white) for k in range(1, lanes)]
    if scene == "rural":  # two-way road: the line to the oncoming lane is yellow
        lines[2] = (lines[2][0], True, yellow)
    return lines, (-LANE_WIDTH * (lanes - 0.5) - 0.5, LANE_WIDTH / 2 + 0.8)


def _light_gain(atmosphere: tuple[float, ...], distance):
    """Brightness factor at a distance: 1 by day, headlight fall-off at dusk and night."""
    low, reach = atmosphere[:2]
    return low + (1 - low) * np.exp(-np.asarray(distance) / reach)


def _fog_weight(atmosphere: tuple[float, ...], distance):
    """Weight of the fog colour at a distance (0 without fog)."""
    density, visibility = atmosphere[2:]
    return density * (1 - np.exp(-np.asarray(distance) / visibility))


def _shade(scene: _Scene, color, distance: float, emissive: bool = False) -> tuple[int, ...]:
    """An object colour as seen at `distance` through the scene's light and fog."""
    c = np.asarray(color, np.float32)
    if not emissive:
        c = c * float(_light_gain(scene.atmosphere, distance))
    w = float(_fog_weight(scene.atmosphere, distance))
    return tuple(int(v) for v in np.clip(c * (1 - w) + FOG_COLOR * w, 0, 255))


def _draw_scenery(
    bg: np.ndarray, scene: str, horizon: int, color: tuple[int, int, int], rng: np.random.Generator
) -> None:
    """Static silhouettes on the horizon: buildings (urban), trees (rural), hills (highway)."""
    wc = bg.shape[1]
    base = np.array(color, np.uint8)
    if scene == "highway":
        x = np.arange(wc)
        top = horizon - (3 + 4 * (1 + np.sin(x / wc * 7 + rng.uniform(0, 6)))).astype(int)
        rows = np.arange(horizon + 1)[:, None]
        bg[: horizon + 1][rows >= top[None, :]] = base
        return
    count = 18 if scene == "urban" else 26
    for _ in range(count):
        x0 = int(rng.integers(0, wc))
        w = int(rng.integers(wc // 30 + 2, wc // 8 + 3))
        h = int(rng.integers(horizon // 8 + 1, horizon // 2 + 2))
        shade = (base.astype(int) + int(rng.integers(-20, 21))).clip(0, 255).astype(np.uint8)
        if scene == "rural":  # trees, darker when the scenery is dark
            shade = (np.array([50, 90, 45]) * (0.4 if base.max() < 60 else 1.0)).astype(np.uint8)
            h //= 2
        bg[max(horizon - h, 0) : horizon + 1, x0 : x0 + w] = shade


# Parts of each agent seen from behind: (x0, x1, y0, y1) as fractions of its width / height
# (y up from the ground) and a colour key: body, dark, glass, light, skin.
_PARTS: dict[str, list[tuple[float, float, float, float, str]]] = {
    "car": [
        (0.0, 1.0, 0.12, 0.58, "body"),
        (0.1, 0.9, 0.58, 1.0, "body"),
        (0.16, 0.84, 0.62, 0.93, "glass"),
        (0.02, 0.2, -0.04, 0.22, "dark"),
        (0.8, 0.98, -0.04, 0.22, "dark"),
        (0.0, 1.0, 0.12, 0.2, "dark"),
        (0.05, 0.2, 0.4, 0.5, "light"),
        (0.8, 0.95, 0.4, 0.5, "light"),
    ],
    "truck": [
        (0.05, 0.95, 0.0, 0.25, "dark"),
        (0.0, 1.0, 0.22, 1.0, "body"),
        (0.49, 0.51, 0.25, 0.97, "dark"),
        (0.0, 1.0, 0.22, 0.26, "dark"),
        (0.03, 0.12, 0.27, 0.33, "light"),
        (0.88, 0.97, 0.27, 0.33, "light"),
    ],
    "bus": [
        (0.05, 0.95, 0.0, 0.12, "dark"),
        (0.0, 1.0, 0.08, 1.0, "body"),
        (0.08, 0.92, 0.6, 0.9, "glass"),
        (0.04, 0.14, 0.2, 0.3, "light"),
        (0.86, 0.96, 0.2, 0.3, "light"),
    ],
    "motorcycle": [
        (0.35, 0.65, 0.0, 0.35, "dark"),
        (0.1, 0.9, 0.2, 0.55, "body"),
        (0.15, 0.85, 0.55, 0.88, "body"),  # the rider's jacket
        (0.3, 0.7, 0.88, 1.0, "dark"),
        (0.4, 0.6, 0.45, 0.52, "light"),
    ],
    "pedestrian": [
        (0.2, 0.45, 0.0, 0.47, "dark"),
        (0.55, 0.8, 0.0, 0.47, "dark"),
        (0.0, 1.0, 0.45, 0.86, "body"),
        (0.28, 0.72, 0.87, 1.0, "skin"),
    ],
    "cyclist": [
        (0.4, 0.6, 0.0, 0.4, "dark"),
        (0.05, 0.95, 0.4, 0.82, "body"),
        (0.28, 0.72, 0.83, 1.0, "skin"),
    ],
}


def _fill(
    canvas: np.ndarray, x0: float, x1: float, y0: float, y1: float, color: Sequence[int]
) -> None:
    """Paint a rectangle given in (fractional) pixels, clipped to the canvas."""
    h, w = canvas.shape[:2]
    c0, c1 = max(int(round(x0)), 0), min(int(round(x1)), w)
    r0, r1 = max(int(round(y0)), 0), min(int(round(y1)), h)
    if c1 > c0 and r1 > r0:
        canvas[r0:r1, c0:c1] = color


def _draw_agent(
    canvas: np.ndarray,
    scene: _Scene,
    sc: Scenario,
    distance: float,
    lateral: float,
    curvature: float,
    braking: bool,
) -> None:
    """Draw the agent (after light and fog were applied to the road: its colours are shaded)."""
    if distance < 0.3:
        return
    width, height = AGENT_SIZES[sc.agent]
    s = scene.focal / distance  # px per metre at the agent
    centre = scene.cx + s * (lateral + 0.5 * curvature * min(distance, 120.0) ** 2)
    bottom = scene.horizon + s * CAMERA_HEIGHT
    lit = braking or sc.light != "day"  # tail lights glow at night, brake lights when braking
    colors = {
        "body": _shade(scene, AGENT_COLORS[sc.color], distance),
        "dark": _shade(scene, (25, 25, 28), distance),
        "glass": _shade(scene, (40, 50, 62), distance),
        "skin": _shade(scene, (200, 160, 130), distance),
        "light": _shade(scene, (255, 60, 50) if braking else (200, 30, 30), distance, True)
        if lit
        else _shade(scene, (120, 20, 20), distance),
    }
    shadow = (
        centre - 0.55 * width * s,
        centre + 0.55 * width * s,
        bottom - 0.02 * height * s,
        bottom + 0.04 * height * s,
    )
    _fill(canvas, *shadow, _shade(scene, (30, 30, 32), distance))
    for fx0, fx1, fy0, fy1, key in _PARTS[sc.agent]:
        box = (
            centre + (fx0 - 0.5) * width * s,
            centre + (fx1 - 0.5) * width * s,
            bottom - fy1 * height * s,
            bottom - fy0 * height * s,
        )
        _fill(canvas, *box, colors[key])


def _road_layer(canvas: np.ndarray, scene: _Scene, sc: Scenario, kin: Kinematics, i: int) -> None:
    """Road surface and lane markings; dashes scroll with the travelled distance."""
    below = canvas[scene.horizon + 1 :]
    depth = np.minimum(scene.rows_depth, 120.0)
    shift = 0.5 * kin.curvature[i] * depth**2  # road centre drifts sideways with curvature
    lateral = (scene.cols[None, :] - scene.cx) / scene.rows_scale[:, None] - shift[:, None]
    left, right = scene.road_span
    below[(lateral > left) & (lateral < right)] = scene.palette["road"]
    dash = ((scene.rows_depth + kin.travelled[i]) % 12.0) < 4.0
    half = np.maximum(0.08, 0.6 / scene.rows_scale)[:, None]
    for pos, dashed, color in scene.lines:
        mark = np.abs(lateral - pos) < half
        if dashed:
            mark &= dash[:, None]
        below[mark] = color
    if sc.road == "wet":  # wet asphalt: a light sheen in the lane between the dashes
        sheen = (np.abs(lateral) < 0.6) & ~dash[:, None]
        below[sheen] = (np.array(scene.palette["road"]) * 1.25).clip(0, 255).astype(np.uint8)


def _frame_index(kin: Kinematics, time: float) -> int:
    return min(int(round(time * IMU_RATE)), kin.t.size - 1)


def render_frames(
    sc: Scenario, kin: Kinematics, rng: np.random.Generator, fps: int, width: int, height: int
) -> Iterator[np.ndarray]:
    """Yield (height, width, 3) uint8 RGB frames of the clip."""
    scene = _build_scene(sc, rng, width, height)
    n_frames = int(round((kin.t.size - 1) / IMU_RATE * fps))
    closing = np.gradient(kin.lead_distance, 1.0 / IMU_RATE)
    shake = rng.uniform(-1.0, 1.0, (n_frames, 2))
    for k in range(n_frames):
        time = k / fps
        i = _frame_index(kin, time)
        canvas = scene.background.copy()
        _road_layer(canvas, scene, sc, kin, i)
        if scene.gain is not None:
            canvas = ((canvas * scene.gain[:, None, None]) >> 8).astype(np.uint8)
        if scene.haze is not None:
            fog = FOG_COLOR.astype(np.uint16) * scene.haze[:, None, None]
            canvas = ((canvas * (256 - scene.haze)[:, None, None] + fog) >> 8).astype(np.uint8)
        braking = closing[i] < -2.0 or (sc.label == "near_collision" and time > sc.event_time - 0.6)
        braking = braking and "steady_lead" not in sc.params
        if agent_visible(sc, time):
            _draw_agent(
                canvas,
                scene,
                sc,
                kin.lead_distance[i],
                kin.lead_lateral[i],
                kin.curvature[i],
                braking,
            )
        if scene.rain is not None:
            offset = (k * 7) % (scene.rain.shape[0] // 2)
            canvas[scene.rain[offset : offset + canvas.shape[0]]] = (170, 175, 185)
        yield _crop(canvas, scene, sc, kin, i, time, shake[k])


def _crop(
    canvas: np.ndarray,
    scene: _Scene,
    sc: Scenario,
    kin: Kinematics,
    i: int,
    time: float,
    jitter: np.ndarray,
) -> np.ndarray:
    """Camera motion by cropping the canvas: pitch under braking, yaw jolt, impact shake, flash."""
    mx, my = scene.margin_x, scene.margin_y
    stabilised = "stabilised" in sc.params
    dy = 0.0 if stabilised else -kin.ax_true[i] * 0.05 * my
    dx = 0.0 if stabilised else scene.focal * kin.yaw_offset[i]
    after = time - sc.params.get("brief_start", kin.event_time)
    if sc.label == "collision" and after >= 0 and agent_visible(sc, time):
        amp = math.exp(-after / 0.25)
        dx, dy = dx + jitter[0] * 0.5 * mx * amp, dy + jitter[1] * 0.5 * my * amp
    r0 = int(np.clip(round(my + dy), 0, 2 * my))
    c0 = int(np.clip(round(mx + dx), 0, 2 * mx))
    h, w = canvas.shape[0] - 2 * my, canvas.shape[1] - 2 * mx
    frame = canvas[r0 : r0 + h, c0 : c0 + w]
    if sc.label == "collision" and 0.05 <= after < 0.15:  # flash just after the contact frame
        frame = 255 - (255 - frame) // 3
    if scene.grain:
        noise = scene.grain[int(round(time * 30)) % len(scene.grain)][r0 : r0 + h, c0 : c0 + w]
        frame = np.clip(frame + noise, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame)


def encode_video(frames: Iterator[np.ndarray], path: Path, fps: int, preset: str) -> int:
    """Encode RGB frames to H.264 (libx264, yuv420p) in an mp4; returns the frame count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.options = {"preset": preset, "crf": "23"}
        stream.codec_context.thread_count = 1  # frames are tiny: threads cost more than they save
        for array in frames:
            if count == 0:
                stream.height, stream.width = array.shape[:2]
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = count
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode(None))
    return count


# ----------------------------------------------------------------------------- manifest


def _describe_conditions(meta: dict[str, Any]) -> str:
    light = {"day": "in daylight", "dusk": "at dusk", "night": "at night"}[meta["light"]]
    weather = {"clear": "", "rain": " in the rain", "fog": " in fog"}[meta["weather"]]
    return f"on a {meta['road']} {meta['scene']} road {light}{weather}"


def _agent_phrase(meta: dict[str, Any]) -> str:
    agent = meta["other_agent"]
    article = "an" if meta["agent_color"][0] in "aeiou" else "a"
    return f"{article} {meta['agent_color']} {agent}"


def make_caption(label: str, meta: dict[str, Any], event_time: float) -> str:
    """A templated caption of the clip, deterministic from its label, metadata and event time."""
    speed = f"{meta['ego_speed_kmh']:.0f} km/h"
    where = _describe_conditions(meta)
    agent = _agent_phrase(meta)
    peak = meta["peak_decel_ms2"]
    if label == "collision":
        side = meta["impact_side"]
        if side == "front":
            how, impact = f"collides with {agent} ahead", "frontal"
        else:
            how, impact = f"collides with {agent} cutting in from the {side}", f"{side}-side"
        return (
            f"The ego vehicle, travelling at {speed} {where}, {how}; the {impact} impact "
            f"produces a {peak:.1f} m/s² deceleration spike at {event_time:.1f} s."
        )
    if label == "near_collision":
        if meta["crossing_from"]:
            who = f"{agent} crossing from the {meta['crossing_from']}"
        else:
            who = f"{agent} ahead"
        return (
            f"The ego vehicle, travelling at {speed} {where}, closes in on {who} and avoids a "
            f"collision by {meta['evasive_action']} ({peak:.1f} m/s² at {event_time:.1f} s), "
            f"keeping a minimum gap of {meta['min_distance_m']:.1f} m."
        )
    return (
        f"The ego vehicle drives normally at about {speed} {where}, following {agent} at a "
        f"steady distance of about {meta['lead_distance_m']:.0f} m; no safety-critical event "
        f"occurs (peak longitudinal acceleration {meta['peak_accel_ms2']:.1f} m/s² "
        f"at {event_time:.1f} s)."
    )


def _metadata(sc: Scenario, kin: Kinematics, duration: float, fps: int, size) -> dict[str, Any]:
    n = kin.t.size - 1
    i = _frame_index(kin, kin.event_time)
    ax = kin.imu[:n, 0]
    peak_i = int(np.argmax(np.abs(ax)))
    return {
        "weather": sc.weather,
        "light": sc.light,
        "scene": sc.scene,
        "road": sc.road,
        "other_agent": sc.agent,
        "agent_color": sc.color,
        "agent_rgb": list(AGENT_COLORS[sc.color]),
        "impact_side": sc.impact_side,
        "crossing_from": sc.crossing_from,
        "evasive_action": sc.evasive_action,
        "ego_speed_kmh": round(float(kin.speed[i]) * 3.6, 1),
        "initial_speed_kmh": round(float(kin.speed[0]) * 3.6, 1),
        "peak_decel_ms2": round(float(ax.min()), 2),
        "peak_accel_ms2": round(float(ax[peak_i]), 2),
        "min_distance_m": round(float(kin.lead_distance[:n].min()), 2),
        "lead_distance_m": round(float(np.median(kin.lead_distance[:n])), 1),
        "heading_change_deg": round(float(np.degrees(kin.imu[:n, 5].sum() / IMU_RATE)), 2),
        "ego_stopped": bool(kin.speed[n] == 0.0),
        "duration_s": float(duration),
        "fps": fps,
        "width": size[0],
        "height": size[1],
    }


def class_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Clips per label for `n` clips at `fractions` (largest remainder, in LABELS order)."""
    exact = np.array([fractions[label] for label in LABELS]) * n
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    return dict(zip(LABELS, counts.tolist(), strict=True))


def long_tail_labels(
    clips: int, seed: int, split_fractions: Sequence[float], fractions: dict[str, float]
) -> tuple[list[str], list[str]]:
    """Labels and splits: a train split with the class mix `fractions`, balanced val/test.

    The train split holds round(clips x split_fractions[0]) clips; the rest are balanced
    round-robin and divided between val and test in their ratio (stratified).
    """
    n_train = int(round(clips * split_fractions[0]))
    train = [label for label, k in class_counts(n_train, fractions).items() for _ in range(k)]
    held = [LABELS[i % len(LABELS)] for i in range(clips - n_train)]
    rest = sum(split_fractions[1:])
    held_splits = (
        assign_splits(held, [0.0] + [f / rest for f in split_fractions[1:]]) if held else []
    )
    labels = train + held
    splits = ["train"] * n_train + held_splits
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(clips)
    return [labels[i] for i in order], [splits[i] for i in order]


def _check_args(clips: int, seed: int, duration: float, fps: int, width: int, height: int) -> None:
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if duration < PRE_EVENT_S + POST_EVENT_S:
        raise ValueError(
            f"duration must be >= {PRE_EVENT_S + POST_EVENT_S} s so the [-4 s, +2 s] event "
            f"window fits, got {duration}"
        )
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"width and height must be even and >= 16 (yuv420p): {width}x{height}")


def generate_clip(
    out_dir: Path,
    clip_id: str,
    label: str,
    split: str,
    rng: np.random.Generator,
    duration: float,
    fps: int,
    width: int,
    height: int,
    preset: str = "ultrafast",
    options: SynthOptions = SynthOptions(),
) -> ClipRecord:
    """Write one clip (video, IMU, GPS) under out_dir and return its manifest record."""
    sc = sample_scenario(rng, label, duration)
    if options != SynthOptions():
        apply_options(sc, options, rng.spawn(1)[0])
    kin = simulate(sc, rng, duration)
    n = kin.t.size - 1
    imu_path, gps_path = f"imu/{clip_id}.csv", f"gps/{clip_id}.csv"
    imu = np.column_stack([kin.t[:n], kin.imu[:n]])
    write_csv(out_dir / imu_path, "t,ax,ay,az,gx,gy,gz", imu, ["%.2f"] + ["%.4f"] * 6)
    write_csv(out_dir / gps_path, "t,speed", gps_track(kin, rng, duration), ["%.0f", "%.3f"])
    video_path = f"videos/{clip_id}.mp4"
    frames = render_frames(sc, kin, rng, fps, width, height)
    encode_video(frames, out_dir / video_path, fps, preset)
    meta = _metadata(sc, kin, duration, fps, (width, height))
    if "brief_start" in sc.params:  # where the impact can be seen (the ablation's ground truth)
        meta["visible_from_s"] = round(sc.params["brief_start"], 3)
        meta["visible_to_s"] = round(sc.params["brief_end"], 3)
    return ClipRecord(
        id=clip_id,
        video=video_path,
        label=label,
        source="synthetic",
        split=split,
        imu=imu_path,
        gps=gps_path,
        event_time=kin.event_time,
        metadata=meta,
        annotations={CAPTION_FIELD: make_caption(label, meta, kin.event_time)},
        root=str(out_dir),
    )


def generate_synthetic_dataset(
    out_dir: str | Path,
    clips: int = 60,
    seed: int = 0,
    duration: float = 16.0,
    fps: int = 30,
    width: int = 320,
    height: int = 180,
    split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
    progress: bool = True,
    preset: str = "ultrafast",
    options: SynthOptions = SynthOptions(),
) -> Path:
    """Write a synthetic dataset (videos/, imu/, gps/, manifest.jsonl) and return the manifest.

    Args:
        out_dir: output folder (created); manifest paths are relative to it.
        clips: number of clips; classes are balanced round-robin, then shuffled with `seed`.
        seed: the same seed gives byte-identical CSVs and manifest and identical video frames.
        duration: clip length in seconds (>= 6 so the [-4 s, +2 s] event window fits).
        fps, width, height: video frame rate and size (width and height even).
        split_fractions: train/val/test fractions, stratified by class.
        progress: show a tqdm progress bar.
        preset: libx264 preset ("ultrafast" keeps a 60-clip demo around a minute).
        options: ablation options (brief events, telemetry-decides, long-tail train split).
    """
    _check_args(clips, seed, duration, fps, width, height)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if options.class_fractions is None:
        labels = [LABELS[i % len(LABELS)] for i in range(clips)]
        order = np.random.default_rng([seed, 2**31 - 1]).permutation(clips)
        labels = [labels[i] for i in order]
        splits = assign_splits(labels, split_fractions)
    else:
        labels, splits = long_tail_labels(clips, seed, split_fractions, options.class_fractions)
    records = []
    for i in tqdm(range(clips), desc="synthetic clips", unit="clip", disable=not progress):
        rng = np.random.default_rng([seed, i])
        clip_id = f"synth_{seed}_{i:05d}"
        records.append(
            generate_clip(
                out,
                clip_id,
                labels[i],
                splits[i],
                rng,
                duration,
                fps,
                width,
                height,
                preset,
                options,
            )
        )
    return write_manifest(records, out / "manifest.jsonl")
