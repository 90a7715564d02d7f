"""What happens in a clip: the ablation options, the label's script and the sampled Scenario.

The scenario is drawn first from the clip's generator (telemetry noise and pictures follow);
`apply_options` draws from a spawned child, so the options leave the clip's own draws unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sce.data.schema import LABELS

PRE_EVENT_S = 4.0  # the default window [-4 s, +2 s] around the event must fit in the clip
POST_EVENT_S = 2.0
BRIEF_VISIBLE_S = 0.3  # brief events: seconds the impact is visible (< 0.5 s, issue 17)
BRIEF_OFFSET_S = 0.5  # brief events: the visible interval starts within +-0.5 s of t_e

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
LANE_WIDTH = 3.5  # m


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


@dataclass(frozen=True)
class SynthOptions:
    """Generator options for the ablations; the defaults give the standard clips byte for byte.

    brief_events: impacts visible for BRIEF_VISIBLE_S only, camera stabilised.
    telemetry_decides: near-collision and normal clips look alike; the IMU decides.
    class_fractions: {label: fraction} of the train split (val/test stay balanced), or None.
    driver_view: each clip also gets a driver-facing video and paper 003's structured events
        and instruction (sce.prepare.synthetic.cabin); the road clip is unchanged.
    """

    brief_events: bool = False
    telemetry_decides: bool = False
    class_fractions: dict[str, float] | None = None
    driver_view: bool = False

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


# Frozen, so one shared instance is a safe default argument (the standard clips).
DEFAULT_OPTIONS = SynthOptions()


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


def _event_time(rng: np.random.Generator, duration: float) -> float:
    """The designed event time: the [-4 s, +2 s] window fits, with up to 0.5 s to spare."""
    lo, hi = PRE_EVENT_S, duration - POST_EVENT_S
    margin = min(0.5, (hi - lo) / 2)
    return round(float(rng.uniform(lo + margin, hi - margin)), 2)


def _class_script(
    rng: np.random.Generator, label: str, agent: str
) -> tuple[str | None, str | None, str | None, dict[str, float]]:
    """Impact side, crossing side, evasive action and shape parameters of the label's script."""
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
    return impact_side, crossing_from, evasive, params


def sample_scenario(rng: np.random.Generator, label: str, duration: float) -> Scenario:
    """Draw the scene, agent, speeds and event time of one clip."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    # The draw order is part of the output (a seed gives the same clips): keep it.
    light = LIGHTS[int(rng.choice(3, p=[0.55, 0.2, 0.25]))]
    weather = WEATHERS[int(rng.choice(3, p=[0.55, 0.25, 0.2]))]
    scene = SCENES[int(rng.integers(3))]
    road = "wet" if weather == "rain" or (weather == "fog" and rng.random() < 0.5) else "dry"
    agent = _choice(rng, AGENT_WEIGHTS[label])
    color = list(AGENT_COLORS)[int(rng.integers(len(AGENT_COLORS)))]
    event_time = _event_time(rng, duration)
    impact_side, crossing_from, evasive, params = _class_script(rng, label, agent)
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
