"""The student's prompt: the system prompt, the user turn's frames and telemetry text around a
task's question (`sce.tasks`), and the chat messages.

Layouts
-------
`interleaved` (default): the window is cut into frame *pairs*, each pair one 2-frame video block
followed by the telemetry lines of its two frames. Qwen2.5-VL merges frames in pairs (temporal
patch 2), so a pair is the finest grain that costs no extra visual tokens: a per-frame grain
would have to duplicate every frame to fill the temporal patch (2x the visual tokens). The pair
grain adds only the two <|vision_start|>/<|vision_end|> tokens per pair (18 for 18 frames).
When telemetry is dropped, the pairs keep their time stamps, so the visual encoding of a clip is
identical with and without IMU.

`table`: one video block with every frame, followed by a telemetry table (one row per frame).

Keyframes (paper 002's multi-scale windows, `keyframes=True`): every frame is a separate image
(`{"type": "image"}`, the processor's image path), never a video, so Qwen does not merge two
keyframes seconds apart into one temporal patch. `table` follows the paper's prompt: the images
first, one per line, then the keyframe times and the telemetry table; `interleaved` puts each
image before its own time and telemetry line.

The questions and answers of the tasks live with their tasks, in `sce.tasks`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np

from sce.data.imu import FrameTelemetry
from sce.tasks.caption import CAPTION_QUESTION
from sce.tasks.events import EVENT_QUESTION, mcq_options
from sce.tasks.instruction import INSTRUCTION_QUESTION
from sce.tasks.probability import PROBABILITY_QUESTION, probability_answer
from sce.tasks.reasoning import REASONING_SUFFIX

Layout = Literal["interleaved", "table"]  # data.layout
LAYOUTS: tuple[str, ...] = get_args(Layout)

SYSTEM_PROMPT = (
    "You are a driving safety analyst. You watch dashcam video, read the vehicle telemetry when it "
    "is given, and report safety-critical events: collision, near-collision or normal driving."
)

TELEMETRY_HEADER = "t (s) | ax (m/s²) | ay (m/s²) | heading change (deg) | speed (m/s)"
NO_TELEMETRY = "Telemetry: unavailable."


def telemetry_line(t: float, accel: Sequence[float], yaw: float, speed: float | None) -> str:
    """One frame's sensor text, with units: 'ax -9.7 ay +0.3 m/s², heading +0.4°, 12.1 m/s'."""
    speed_text = "" if speed is None or not math.isfinite(speed) else f", {speed:.1f} m/s"
    return (
        f"ax {accel[0]:+.1f} ay {accel[1]:+.1f} m/s², heading {math.degrees(yaw):+.1f}°{speed_text}"
    )


def _time_label(t: float) -> str:
    return f"t={t:.1f}s"


def _pair_text(times: np.ndarray, tele: FrameTelemetry | None, index: slice) -> str:
    lines = []
    for k in range(index.start, index.stop):
        if tele is None:
            lines.append(_time_label(times[k]))
        else:
            speed = None if tele.speed is None else float(tele.speed[k])
            lines.append(
                f"{_time_label(times[k])}: "
                + telemetry_line(times[k], tele.accel[k], float(tele.yaw_delta[k]), speed)
            )
    return "\n".join(lines) + "\n"


def telemetry_table(tele: FrameTelemetry) -> str:
    rows = [TELEMETRY_HEADER]
    for k, t in enumerate(tele.frame_times):
        speed = "-" if tele.speed is None else f"{tele.speed[k]:.1f}"
        rows.append(
            f"{t:.1f} | {tele.accel[k, 0]:+.1f} | {tele.accel[k, 1]:+.1f} | "
            f"{math.degrees(tele.yaw_delta[k]):+.1f} | {speed}"
        )
    return "Telemetry:\n" + "\n".join(rows) + "\n"


def split_pairs(frames: np.ndarray) -> list[np.ndarray]:
    """Cut [T, H, W, 3] frames (T even) into T/2 videos of 2 frames each."""
    if len(frames) % 2:
        raise ValueError(f"frame count must be even (Qwen temporal patch 2), got {len(frames)}")
    return [frames[k : k + 2] for k in range(0, len(frames), 2)]


def build_user_content(
    frames: np.ndarray,
    frame_times: np.ndarray,
    telemetry: FrameTelemetry | None,
    question: str,
    layout: str = "interleaved",
    keyframes: bool = False,
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """The user turn's content list and the visual inputs it references, in order.

    Returns (content, visuals): content holds {"type": "video"} (or, for `keyframes`,
    {"type": "image"}) placeholders and text parts; `visuals[k]` is the array of the k-th
    placeholder: a [T, H, W, 3] video, or a [H, W, 3] image.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown prompt layout {layout!r}; expected one of {LAYOUTS}")
    if keyframes:
        content, visuals = _keyframe_content(frames, frame_times, telemetry, layout)
    elif layout == "interleaved":
        content, visuals = _pair_content(frames, frame_times, telemetry)
    else:
        visuals = [frames]
        content = [{"type": "video"}, {"type": "text", "text": _table_text(telemetry)}]
    content.append({"type": "text", "text": question})
    return content, visuals


def _pair_content(
    frames: np.ndarray, frame_times: np.ndarray, telemetry: FrameTelemetry | None
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Interleaved videos: each frame pair, then the time/telemetry lines of its two frames."""
    videos = split_pairs(frames)
    content: list[dict[str, Any]] = []
    for k in range(len(videos)):
        content.append({"type": "video"})
        content.append(
            {"type": "text", "text": _pair_text(frame_times, telemetry, slice(2 * k, 2 * k + 2))}
        )
    if telemetry is None:
        content.append({"type": "text", "text": NO_TELEMETRY + "\n"})
    return content, videos


def _keyframe_content(
    frames: np.ndarray, frame_times: np.ndarray, telemetry: FrameTelemetry | None, layout: str
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """One image per keyframe. `table` (paper 002's prompt: "<image>\\n<image>\\n<image>\\n",
    then "three frames at times [T1, T2, T3]" and the table); `interleaved`: each image, then
    its own time/telemetry line."""
    images = [frames[k] for k in range(len(frames))]
    content: list[dict[str, Any]] = []
    for k in range(len(images)):
        content.append({"type": "image"})
        text = "\n" if layout == "table" else _pair_text(frame_times, telemetry, slice(k, k + 1))
        content.append({"type": "text", "text": text})
    if layout == "table":
        times = ", ".join(_time_label(t) for t in frame_times)
        content.append({"type": "text", "text": f"Keyframes at {times}.\n"})
        content.append({"type": "text", "text": _table_text(telemetry)})
    elif telemetry is None:
        content.append({"type": "text", "text": NO_TELEMETRY + "\n"})
    return content, images


def _table_text(telemetry: FrameTelemetry | None) -> str:
    return telemetry_table(telemetry) if telemetry else NO_TELEMETRY + "\n"


def build_messages(user_content: list[dict[str, Any]], answer: str | None = None) -> list[dict]:
    """Chat messages: system, user (video + telemetry + question) and optionally the answer."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": user_content},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def template_corpus() -> list[str]:
    """Template texts, so the tiny tokenizer learns this project's vocabulary. The list (its
    texts and their order) is what the tiny kit's tokenizer is trained on: changing it changes
    the tiny kit and the pinned losses."""
    demo_tele = FrameTelemetry(
        frame_times=np.array([1.3, 1.7]),
        accel=np.array([[-9.7, 0.3, 9.8], [-0.4, -1.2, 9.8]]),
        yaw_delta=np.array([0.01, -0.02]),
        speed=np.array([12.1, 8.4]),
    )
    return [
        SYSTEM_PROMPT,
        EVENT_QUESTION,
        CAPTION_QUESTION,
        PROBABILITY_QUESTION,
        REASONING_SUFFIX,
        INSTRUCTION_QUESTION,
        TELEMETRY_HEADER,
        NO_TELEMETRY,
        telemetry_table(demo_tele),
        _pair_text(demo_tele.frame_times, demo_tele, slice(0, 2)),
        *mcq_options(),
        probability_answer(0.872),
    ]
