"""What a clip's record says about it: its metadata (conditions, speeds, peak accelerations)
and a templated caption built from them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sce.prepare.synthetic.scenario import AGENT_COLORS, Scenario
from sce.prepare.synthetic.telemetry import IMU_RATE, Kinematics, sample_index


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


def clip_metadata(
    sc: Scenario, kin: Kinematics, duration: float, fps: int, size: tuple[int, int]
) -> dict[str, Any]:
    """The record's metadata: the scenario's conditions and the telemetry's key numbers."""
    n = kin.t.size - 1
    i = sample_index(kin, kin.event_time)
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
