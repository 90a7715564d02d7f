"""The per-clip picture constants (Backdrop): sky, scenery, lane lines, camera geometry, and the
light and fog that every frame (and the agent's colours) is seen through.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sce.prepare.synthetic.scenario import LANE_WIDTH, Scenario

CAMERA_HEIGHT = 1.3  # m
HFOV_DEG = 70.0
LANES = {"urban": 2, "rural": 2, "highway": 3}  # lanes in the ego direction (ego in the right one)
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
class Backdrop:
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


def _background(
    sc: Scenario,
    pal: dict[str, tuple[int, int, int]],
    horizon: int,
    shape: tuple[int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """The canvas without road and agent: sky gradient, ground colour, scenery silhouettes."""
    bg = np.empty((*shape, 3), np.uint8)
    frac = np.linspace(0.0, 1.0, horizon + 1)[:, None]
    bg[: horizon + 1] = (
        (1 - frac) * np.array(pal["sky_top"]) + frac * np.array(pal["sky_low"])
    ).astype(np.uint8)[:, None, :]
    bg[horizon + 1 :] = pal[sc.scene]
    _draw_scenery(bg, sc.scene, horizon, pal["scenery"], rng)
    return bg


def _atmosphere(sc: Scenario, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Light floor and headlight reach (by the light), fog density and visibility (if fog)."""
    low, reach = {"day": (1.0, 1.0), "dusk": (0.75, 40.0), "night": (0.45, 25.0)}[sc.light]
    fog = sc.weather == "fog"
    density, visibility = (rng.uniform(0.5, 0.75), rng.uniform(12, 25)) if fog else (0.0, 1.0)
    return (low, reach, float(density), float(visibility))


def _row_filters(
    sc: Scenario, atmosphere: tuple[float, float, float, float], depth: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-row brightness gain (dusk, night) and fog weight (fog), x256; None where unused."""
    gain = haze = None
    if sc.light != "day":
        row_gain = np.where(np.isinf(depth), 1.0, _light_gain(atmosphere, depth))
        gain = (256 * row_gain).astype(np.uint16)
    if sc.weather == "fog":
        haze = (256 * _fog_weight(atmosphere, depth)).astype(np.uint16)
    return gain, haze


def _rain_and_grain(
    sc: Scenario, rng: np.random.Generator, hc: int, wc: int
) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """Rain streak mask (rain) and sensor grain frames (night or rain)."""
    rain = None
    if sc.weather == "rain":
        drops = rng.random((2 * hc, wc)) < 0.004
        rain = drops | np.roll(drops, 1, 0) | np.roll(drops, 2, 0) | np.roll(drops, 3, 0)
    grain = []
    if sc.light == "night" or sc.weather == "rain":
        grain = [rng.integers(-6, 7, (hc, wc, 1), dtype=np.int16) for _ in range(3)]
    return rain, grain


def build_backdrop(sc: Scenario, rng: np.random.Generator, width: int, height: int) -> Backdrop:
    """The clip's renderer constants; the canvas has margins for the camera's crop motion."""
    mx, my = max(4, width // 8), max(4, height // 12)
    hc, wc = height + 2 * my, width + 2 * mx
    horizon = my + int(round(sc.horizon * height))
    focal = width / (2 * math.tan(math.radians(HFOV_DEG) / 2))
    pal = PALETTES[sc.light]
    # The draw order is part of the output: scenery, fog, rain, grain.
    bg = _background(sc, pal, horizon, (hc, wc), rng)
    rows = np.arange(horizon + 1, hc, dtype=np.float32)
    scale = (rows - horizon) / CAMERA_HEIGHT
    # Distance seen by each canvas row: the sky and scenery are infinitely far.
    depth = np.full(hc, np.inf, np.float32)
    depth[horizon + 1 :] = focal / scale
    atmosphere = _atmosphere(sc, rng)
    gain, haze = _row_filters(sc, atmosphere, depth)
    rain, grain = _rain_and_grain(sc, rng, hc, wc)
    lines, road_span = _lane_lines(sc.scene, pal)
    return Backdrop(
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


def _light_gain(atmosphere: tuple[float, ...], distance: float | np.ndarray) -> np.ndarray:
    """Brightness factor at a distance: 1 by day, headlight fall-off at dusk and night."""
    low, reach = atmosphere[:2]
    return low + (1 - low) * np.exp(-np.asarray(distance) / reach)


def _fog_weight(atmosphere: tuple[float, ...], distance: float | np.ndarray) -> np.ndarray:
    """Weight of the fog colour at a distance (0 without fog)."""
    density, visibility = atmosphere[2:]
    return density * (1 - np.exp(-np.asarray(distance) / visibility))


def shade_color(
    backdrop: Backdrop, color: Sequence[int], distance: float, emissive: bool = False
) -> tuple[int, ...]:
    """An object colour as seen at `distance` through the scene's light and fog."""
    c = np.asarray(color, np.float32)
    if not emissive:
        c = c * float(_light_gain(backdrop.atmosphere, distance))
    w = float(_fog_weight(backdrop.atmosphere, distance))
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
