"""The driver-facing view of a dual-view clip (paper 003) and its chain-of-thought annotation.

With `SynthOptions.driver_view` every clip gets a second video of the cabin (a driver's head
that sways, and a phone held to it while the driver uses it), `metadata.driver_video`, and the
structured annotation paper 003's answers are written from: `annotations.driving_events` (keys
of sce.tasks.instruction.DRIVING_EVENTS: the road event of the clip's label, phone use with
probability PHONE_USE_P) and `annotations.instruction` (one safe-driving sentence per event).
The instruction task then answers "Events: ... Instruction: ...".

Everything here is drawn from its own generator, spawned from the clip's after the road clip
is written, so the road video, telemetry, caption and every other annotation are the same
byte for byte with and without the driver view.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sce.prepare.synthetic.render import encode_video
from sce.tasks.instruction import DRIVING_EVENTS

PHONE_USE_P = 0.5  # share of clips whose driver uses a phone
PHONE_MIN_S = 2.0  # the shortest phone use
# One instruction per event, in the order the events are listed; a clip without events gets
# SAFE_DRIVING.
ADVICE: dict[str, str] = {
    "phone_use": "Put the phone away and keep your attention on the road.",
    "harsh_turn": "Slow down before turning and steer smoothly.",
    "speeding_in_turn": "Reduce your speed before entering the turn.",
    "collision": "Stop safely, check for injuries and keep a larger gap to the road users ahead.",
    "near_collision": "Keep a larger gap to the road user ahead so you need not brake hard.",
    "harsh_braking": "Anticipate the traffic ahead so you can brake gently.",
    "event": "Keep a larger gap to the road users ahead.",
}
SAFE_DRIVING = "Keep driving as you do: steady speed and a safe distance."
_BACKGROUND, _SKIN, _HAIR, _PHONE = (40, 44, 52), (205, 160, 130), (50, 35, 25), (20, 20, 24)


def draw_events(label: str, duration: float, rng: np.random.Generator):
    """(events, phone span in s or None): the label's road event (none for normal driving),
    then phone use with probability PHONE_USE_P over a span inside the clip."""
    events = [] if label == "normal" else [label]
    span = None
    if rng.random() < PHONE_USE_P:
        start = float(rng.uniform(0.0, max(duration - PHONE_MIN_S, 0.0)))
        span = (start, float(rng.uniform(start + PHONE_MIN_S, max(duration, start + PHONE_MIN_S))))
        events.insert(0, "phone_use")  # the driver view's event first, as the answer lists it
    return events, span


def instruction_text(events: list[str]) -> str:
    """The instruction for the events: one sentence each, or SAFE_DRIVING."""
    unknown = [e for e in events if e not in DRIVING_EVENTS]
    if unknown:
        raise ValueError(f"unknown driving events {unknown}; expected {list(DRIVING_EVENTS)}")
    return " ".join(ADVICE[e] for e in events) or SAFE_DRIVING


def cabin_frames(
    n_frames: int, fps: int, width: int, height: int, span, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """The driver camera's frames: a swaying head, a phone beside it during `span`."""
    yy, xx = np.mgrid[0:height, 0:width]
    sway = rng.uniform(0.2, 0.6) * width / 20
    for k in range(n_frames):
        time = k / fps
        canvas = np.empty((height, width, 3), np.uint8)
        canvas[:] = _BACKGROUND
        cx, cy = width / 2 + sway * np.sin(2 * np.pi * 0.3 * time), height * 0.5
        rx, ry = width * 0.12, height * 0.3
        head = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        canvas[head] = _SKIN
        canvas[head & (yy < cy - ry * 0.45)] = _HAIR
        if span is not None and span[0] <= time < span[1]:
            x0, y0 = int(cx + rx * 0.8), int(cy - ry * 0.3)
            canvas[y0 : y0 + int(ry * 0.8), x0 : x0 + max(int(rx * 0.5), 2)] = _PHONE
        yield canvas


def write_driver_view(
    out_dir: Path,
    clip_id: str,
    label: str,
    rng: np.random.Generator,
    duration: float,
    fps: int,
    width: int,
    height: int,
    preset: str,
) -> tuple[str, dict[str, object]]:
    """Write the clip's driver video; returns its path (relative to out_dir) and the
    annotations paper 003's instruction task reads (driving_events, instruction)."""
    from sce.tasks import INSTRUCTION_FIELD
    from sce.tasks.instruction import EVENTS_FIELD

    events, span = draw_events(label, duration, rng)
    path = f"driver/{clip_id}.mp4"
    n_frames = int(round(duration * fps))
    encode_video(cabin_frames(n_frames, fps, width, height, span, rng), out_dir / path, fps, preset)
    return path, {EVENTS_FIELD: events, INSTRUCTION_FIELD: instruction_text(events)}
