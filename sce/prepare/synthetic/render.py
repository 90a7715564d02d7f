"""Frames of a clip: the road and lane markings scrolling with the ego speed, the agent at its
scripted distance, weather, and the camera's motion (pitch, yaw jolt, impact shake and flash);
then H.264 encoding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sce.prepare.synthetic.backdrop import (
    CAMERA_HEIGHT,
    FOG_COLOR,
    Backdrop,
    build_backdrop,
    shade_color,
)
from sce.prepare.synthetic.scenario import AGENT_COLORS, AGENT_SIZES, Scenario, agent_visible
from sce.prepare.synthetic.telemetry import IMU_RATE, Kinematics, sample_index

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


def _agent_colors(
    backdrop: Backdrop, sc: Scenario, distance: float, braking: bool
) -> dict[str, tuple[int, ...]]:
    """The agent's colour keys (see _PARTS) as seen at `distance`."""
    lit = braking or sc.light != "day"  # tail lights glow at night, brake lights when braking
    return {
        "body": shade_color(backdrop, AGENT_COLORS[sc.color], distance),
        "dark": shade_color(backdrop, (25, 25, 28), distance),
        "glass": shade_color(backdrop, (40, 50, 62), distance),
        "skin": shade_color(backdrop, (200, 160, 130), distance),
        "light": shade_color(backdrop, (255, 60, 50) if braking else (200, 30, 30), distance, True)
        if lit
        else shade_color(backdrop, (120, 20, 20), distance),
    }


def _draw_agent(
    canvas: np.ndarray,
    backdrop: Backdrop,
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
    s = backdrop.focal / distance  # px per metre at the agent
    centre = backdrop.cx + s * (lateral + 0.5 * curvature * min(distance, 120.0) ** 2)
    bottom = backdrop.horizon + s * CAMERA_HEIGHT
    colors = _agent_colors(backdrop, sc, distance, braking)
    shadow = (
        centre - 0.55 * width * s,
        centre + 0.55 * width * s,
        bottom - 0.02 * height * s,
        bottom + 0.04 * height * s,
    )
    _fill(canvas, *shadow, shade_color(backdrop, (30, 30, 32), distance))
    for fx0, fx1, fy0, fy1, key in _PARTS[sc.agent]:
        box = (
            centre + (fx0 - 0.5) * width * s,
            centre + (fx1 - 0.5) * width * s,
            bottom - fy1 * height * s,
            bottom - fy0 * height * s,
        )
        _fill(canvas, *box, colors[key])


def _road_layer(
    canvas: np.ndarray, backdrop: Backdrop, sc: Scenario, kin: Kinematics, i: int
) -> None:
    """Road surface and lane markings; dashes scroll with the travelled distance."""
    below = canvas[backdrop.horizon + 1 :]
    depth = np.minimum(backdrop.rows_depth, 120.0)
    shift = 0.5 * kin.curvature[i] * depth**2  # road centre drifts sideways with curvature
    lateral = (backdrop.cols[None, :] - backdrop.cx) / backdrop.rows_scale[:, None] - shift[:, None]
    left, right = backdrop.road_span
    below[(lateral > left) & (lateral < right)] = backdrop.palette["road"]
    dash = ((backdrop.rows_depth + kin.travelled[i]) % 12.0) < 4.0
    half = np.maximum(0.08, 0.6 / backdrop.rows_scale)[:, None]
    for pos, dashed, color in backdrop.lines:
        mark = np.abs(lateral - pos) < half
        if dashed:
            mark &= dash[:, None]
        below[mark] = color
    if sc.road == "wet":  # wet asphalt: a light sheen in the lane between the dashes
        sheen = (np.abs(lateral) < 0.6) & ~dash[:, None]
        below[sheen] = (np.array(backdrop.palette["road"]) * 1.25).clip(0, 255).astype(np.uint8)


def _light_and_fog(canvas: np.ndarray, backdrop: Backdrop) -> np.ndarray:
    """Dim the rows beyond the headlights and fade distant rows into the fog (integer maths)."""
    if backdrop.gain is not None:
        canvas = ((canvas * backdrop.gain[:, None, None]) >> 8).astype(np.uint8)
    if backdrop.haze is not None:
        fog = FOG_COLOR.astype(np.uint16) * backdrop.haze[:, None, None]
        canvas = ((canvas * (256 - backdrop.haze)[:, None, None] + fog) >> 8).astype(np.uint8)
    return canvas


def _braking(sc: Scenario, closing: float, time: float) -> bool:
    """Whether the agent's brake lights are on (never where the picture must not tell)."""
    braking = closing < -2.0 or (sc.label == "near_collision" and time > sc.event_time - 0.6)
    return braking and "steady_lead" not in sc.params


def render_frames(
    sc: Scenario, kin: Kinematics, rng: np.random.Generator, fps: int, width: int, height: int
) -> Iterator[np.ndarray]:
    """Yield (height, width, 3) uint8 RGB frames of the clip."""
    backdrop = build_backdrop(sc, rng, width, height)
    n_frames = int(round((kin.t.size - 1) / IMU_RATE * fps))
    closing = np.gradient(kin.lead_distance, 1.0 / IMU_RATE)
    shake = rng.uniform(-1.0, 1.0, (n_frames, 2))
    for k in range(n_frames):
        time = k / fps
        i = sample_index(kin, time)
        canvas = backdrop.background.copy()
        _road_layer(canvas, backdrop, sc, kin, i)
        canvas = _light_and_fog(canvas, backdrop)
        braking = _braking(sc, closing[i], time)
        if agent_visible(sc, time):
            _draw_agent(
                canvas,
                backdrop,
                sc,
                kin.lead_distance[i],
                kin.lead_lateral[i],
                kin.curvature[i],
                braking,
            )
        if backdrop.rain is not None:
            offset = (k * 7) % (backdrop.rain.shape[0] // 2)
            canvas[backdrop.rain[offset : offset + canvas.shape[0]]] = (170, 175, 185)
        yield _crop(canvas, backdrop, sc, kin, i, time, shake[k])


def _crop(
    canvas: np.ndarray,
    backdrop: Backdrop,
    sc: Scenario,
    kin: Kinematics,
    i: int,
    time: float,
    jitter: np.ndarray,
) -> np.ndarray:
    """Camera motion by cropping the canvas: pitch under braking, yaw jolt, impact shake, flash."""
    mx, my = backdrop.margin_x, backdrop.margin_y
    stabilised = "stabilised" in sc.params
    dy = 0.0 if stabilised else -kin.ax_true[i] * 0.05 * my
    dx = 0.0 if stabilised else backdrop.focal * kin.yaw_offset[i]
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
    if backdrop.grain:
        noise = backdrop.grain[int(round(time * 30)) % len(backdrop.grain)][
            r0 : r0 + h, c0 : c0 + w
        ]
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
