"""Every prompt and answer template the student model sees, in one module.

Layouts
-------
The frames go in beside per-frame *channels* (sce.data.channels: the telemetry today, objects
from a perception stage next), each rendering its own text.

`interleaved` (default): the window is cut into frame *pairs*, each pair one 2-frame video block
followed by the lines of its two frames (time stamp and every channel's text). Qwen2.5-VL merges frames in pairs (temporal
patch 2), so a pair is the finest grain that costs no extra visual tokens: a per-frame grain
would have to duplicate every frame to fill the temporal patch (2x the visual tokens). The pair
grain adds only the two <|vision_start|>/<|vision_end|> tokens per pair (18 for 18 frames).
When telemetry is dropped, the pairs keep their time stamps, so the visual encoding of a clip is
identical with and without IMU.

`table`: one video block with every frame, followed by each channel's table (one row per frame).

Keyframes (paper 002's multi-scale windows, `keyframes=True`): every frame is a separate image
(`{"type": "image"}`, the processor's image path), never a video, so Qwen does not merge two
keyframes seconds apart into one temporal patch. `table` follows the paper's prompt: the images
first, one per line, then the keyframe times and each channel's table; `interleaved` puts each
image before its own time and channel line.

Prompts (data.window.prompt, whose wording): "sce" sends `system_prompt` (naming only the
configured channels) and, for keyframes, "Keyframes at t=...". "paper002" is paper 002's prompt
as written (Fig. 3): no system turn (the chat template's default one), and after the three
images its analyst line and its scenario line ("Below are three frames at times [T1, T2, T3]
seconds"), then the channels' tables (the objects table once a perception stage gives one; its
"and data for the three closest tracked objects" clause comes with it), then the probability
task's "Task:" and "Note:" lines (sce.tasks.probability).

The question and the answer come from the task (`sce.tasks`); this module only wraps the
question in the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sce.data.channels import (
    NO_TELEMETRY,
    TELEMETRY_HEADER,
    Channel,
    TelemetryChannel,
    channel_instructions,
    frame_lines,
    missing_notes,
    table_blocks,
    telemetry_table,
    time_label,
)
from sce.data.clip import LAYOUTS, Layout
from sce.data.imu import FrameTelemetry
from sce.tasks import DEFAULT_PROMPT, PROMPTS
from sce.tasks.caption import CAPTION_QUESTION
from sce.tasks.events import EVENT_QUESTION, mcq_options
from sce.tasks.instruction import INSTRUCTION_QUESTION
from sce.tasks.probability import PAPER002_QUESTION, PROBABILITY_QUESTION, probability_answer
from sce.tasks.reasoning import REASONING_SUFFIX

SYSTEM_PROMPT = (
    "You are a driving safety analyst. You watch dashcam video, read the vehicle telemetry when it "
    "is given, and report safety-critical events: collision, near-collision or normal driving."
)
# Paper 002's prompt (Fig. 3): the analyst line and the scenario line after the keyframes.
PAPER002_ROLE = (
    "You are a traffic-safety risk analyst tasked with real-time collision probability "
    "assessment.\n"
)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def system_prompt(channels: Sequence[str] = ("telemetry",), prompt: str = DEFAULT_PROMPT):
    """The system turn's text for a model given the channels `channels` (data.window.channels)
    in the wording `prompt`: SYSTEM_PROMPT with telemetry, the same without its telemetry clause
    for video only; None for paper 002's prompt, which has no system turn."""
    if prompt not in PROMPTS:
        raise ValueError(f"unknown prompt {prompt!r}; expected one of {PROMPTS}")
    if prompt == "paper002":
        return None
    clauses = "".join(f", {clause}" for clause in channel_instructions(channels))
    return (
        f"You are a driving safety analyst. You watch dashcam video{clauses}{',' if clauses else ''}"
        " and report safety-critical events: collision, near-collision or normal driving."
    )


def paper002_scenario(frame_times: np.ndarray) -> str:
    """Paper 002's scenario line: 'Below are three frames at times [2.8, 3.8, 4.8] seconds.'"""
    n = len(frame_times)
    count = NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)
    times = ", ".join(f"{t:.1f}" for t in frame_times)
    return f"Below are {count} frames at times [{times}] seconds.\n"


def keyframe_intro(frame_times: np.ndarray, prompt: str = DEFAULT_PROMPT) -> str:
    """The text after the keyframe images (table layout), before the channels' tables."""
    if prompt == "paper002":
        return PAPER002_ROLE + paper002_scenario(frame_times)
    return f"Keyframes at {', '.join(time_label(t) for t in frame_times)}.\n"


def split_pairs(frames: np.ndarray) -> list[np.ndarray]:
    """Cut [T, H, W, 3] frames (T even) into T/2 videos of 2 frames each."""
    if len(frames) % 2:
        raise ValueError(f"frame count must be even (Qwen temporal patch 2), got {len(frames)}")
    return [frames[k : k + 2] for k in range(0, len(frames), 2)]


def build_user_content(
    frames: np.ndarray,
    frame_times: np.ndarray,
    channels: Sequence[Channel],
    question: str,
    layout: Layout = "interleaved",
    keyframes: bool = False,
    prompt: str = DEFAULT_PROMPT,
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """The user turn's content list and the visual inputs it references, in order.

    `channels` are the per-frame inputs shown beside the frames (sce.data.channels, e.g.
    `[TelemetryChannel(telemetry)]`; a channel without data says it is unavailable; [] for
    video only). `prompt` is the wording (data.window.prompt; "paper002" for keyframes in the
    table layout only).
    Returns (content, visuals): content holds {"type": "video"} (or, for `keyframes`,
    {"type": "image"}) placeholders and text parts; `visuals[k]` is the array of the k-th
    placeholder: a [T, H, W, 3] video, or a [H, W, 3] image.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown prompt layout {layout!r}; expected one of {LAYOUTS}")
    if prompt != DEFAULT_PROMPT and not (keyframes and layout == "table"):
        raise ValueError(f"prompt {prompt!r} is a keyframe prompt in the table layout")
    if keyframes:
        content, visuals = _keyframe_content(frames, frame_times, channels, layout, prompt)
    elif layout == "interleaved":
        content, visuals = _pair_content(frames, frame_times, channels)
    else:
        visuals = [frames]
        content = [{"type": "video"}, *_texts(table_blocks(channels))]
    content.append({"type": "text", "text": question})
    return content, visuals


def _texts(texts: Sequence[str]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text} for text in texts]


def _pair_content(
    frames: np.ndarray, frame_times: np.ndarray, channels: Sequence[Channel]
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Interleaved videos: each frame pair, then the lines of its two frames."""
    videos = split_pairs(frames)
    content: list[dict[str, Any]] = []
    for k in range(len(videos)):
        content.append({"type": "video"})
        lines = frame_lines(frame_times, channels, slice(2 * k, 2 * k + 2))
        content.append({"type": "text", "text": lines})
    content.extend(_texts(missing_notes(channels)))
    return content, videos


def _keyframe_content(
    frames: np.ndarray,
    frame_times: np.ndarray,
    channels: Sequence[Channel],
    layout: str,
    prompt: str = DEFAULT_PROMPT,
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """One image per keyframe. `table` (paper 002's prompt: "<image>\\n<image>\\n<image>\\n",
    then "three frames at times [T1, T2, T3]" and the tables); `interleaved`: each image, then
    its own line."""
    images = [frames[k] for k in range(len(frames))]
    content: list[dict[str, Any]] = []
    for k in range(len(images)):
        content.append({"type": "image"})
        text = "\n" if layout == "table" else frame_lines(frame_times, channels, slice(k, k + 1))
        content.append({"type": "text", "text": text})
    if layout == "table":
        content.append({"type": "text", "text": keyframe_intro(frame_times, prompt)})
        content.extend(_texts(table_blocks(channels)))
    else:
        content.extend(_texts(missing_notes(channels)))
    return content, images


def build_messages(
    user_content: list[dict[str, Any]],
    answer: str | None = None,
    system: str | None = SYSTEM_PROMPT,
) -> list[dict]:
    """Chat messages: system (`system`, e.g. `system_prompt(...)`; None: no system turn, the
    chat template's default), user (video + channels + question) and optionally the answer."""
    messages: list[dict[str, Any]] = (
        []
        if system is None
        else [{"role": "system", "content": [{"type": "text", "text": system}]}]
    )
    messages.append({"role": "user", "content": user_content})
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
        frame_lines(demo_tele.frame_times, [TelemetryChannel(demo_tele)], slice(0, 2)),
        *mcq_options(),
        probability_answer(0.872),
        system_prompt(()),
        PAPER002_ROLE,
        paper002_scenario(demo_tele.frame_times),
        PAPER002_QUESTION,
    ]
