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
first, one per line, then the keyframe times and the telemetry table; `interleaved` puts each
image before its own time and telemetry line.

Tasks
-----
mcq (the event question with lettered options: 3-way for a record with label_scope
"three_class", yes/no "collision or near-collision?" for a binary-scope record), caption, vqa
(from annotations), reasoning (`<think>...</think>` then the answer), probability
("Collision Probability: 0.872", paper 002),
instruction (paper 003: event detection, then a safe-driving instruction).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from sce.common.labels import (
    BINARY_OPTION_LETTERS,
    BINARY_OPTION_TEXT,
    LABEL_TEXT,
    LETTER_OF_LABEL,
    OPTION_LETTERS,
)
from sce.data.channels import (
    NO_TELEMETRY,
    TELEMETRY_HEADER,
    Channel,
    TelemetryChannel,
    frame_lines,
    missing_notes,
    table_blocks,
    telemetry_table,
    time_label,
)
from sce.data.clip import LAYOUTS, Layout
from sce.data.imu import FrameTelemetry

Task = Literal["mcq", "caption", "vqa", "reasoning", "probability", "instruction"]
TASKS: tuple[str, ...] = get_args(Task)

SYSTEM_PROMPT = (
    "You are a driving safety analyst. You watch dashcam video, read the vehicle telemetry when it "
    "is given, and report safety-critical events: collision, near-collision or normal driving."
)

EVENT_QUESTION = (
    "Which event occurs in this clip?\n"
    + "\n".join(f"{letter}. {LABEL_TEXT[label]}" for letter, label in OPTION_LETTERS.items())
    + "\nAnswer with the letter."
)
BINARY_EVENT_QUESTION = (
    "Does a safety-critical event (a collision or a near-collision) occur in this clip?\n"
    + "\n".join(
        f"{letter}. {BINARY_OPTION_TEXT[label]}" for letter, label in BINARY_OPTION_LETTERS.items()
    )
    + "\nAnswer with the letter."
)
CAPTION_QUESTION = "Describe the safety-critical event in this clip, if any."
# Paper 002's Task: asks for the probability of a collision occurring within the next few
# seconds, and its positives are windows ending at "the annotated collision (or near-miss)
# time": a near-collision is a positive (target 1, `default_collision_probability`), so the
# question names it. sce's windows may also run past the event ([-4 s, +2 s]), hence "in this
# clip or" before paper 002's horizon.
PROBABILITY_QUESTION = (
    "Estimate the probability of a collision (or a near-collision) occurring in this clip or "
    "within the next few seconds. "
    "Answer only as 'Collision Probability: X' with X between 0 and 1."
)
REASONING_SUFFIX = " Think step by step inside <think></think>, then answer."
INSTRUCTION_QUESTION = (
    "First say whether a safety-critical event occurs, then give the driver one instruction "
    "for driving safely."
)


def mcq_answer(label: str) -> str:
    """Answer to the event question, e.g. 'B. near-collision'."""
    return f"{LETTER_OF_LABEL[label]}. {LABEL_TEXT[label]}"


def mcq_options() -> list[str]:
    """All answers of the event question, in option order (for log-likelihood scoring)."""
    return [mcq_answer(label) for label in OPTION_LETTERS.values()]


def binary_answer(label: str) -> str:
    """Answer to the binary event question: 'A. yes' (event) or 'B. no' (normal)."""
    letter = {v: k for k, v in BINARY_OPTION_LETTERS.items()}[label]
    return f"{letter}. {BINARY_OPTION_TEXT[label]}"


def event_question(scope: str = "three_class") -> str:
    """The event question a record of this label scope can answer."""
    return BINARY_EVENT_QUESTION if scope == "binary" else EVENT_QUESTION


def event_answer(label: str, scope: str = "three_class") -> str:
    """The answer to `event_question(scope)`; a label outside the scope raises ValueError (a
    binary record's "event" is never turned into a 3-class collision)."""
    options = BINARY_OPTION_LETTERS if scope == "binary" else OPTION_LETTERS
    if label not in options.values():
        raise ValueError(
            f"label {label!r} is not a {scope!r} label; expected one of {tuple(options.values())}"
        )
    return binary_answer(label) if scope == "binary" else mcq_answer(label)


def default_collision_probability(label: str) -> float:
    """Probability target of a record without `annotations.probability`: 1 for an event, 0 for
    normal driving. Paper 002's positives are windows "ending at the annotated collision (or
    near-miss) time" (Nexar's label 1), so a 3-class near-collision is a positive as well."""
    return 1.0 if label in ("collision", "near_collision", "event") else 0.0


# Decimals of a probability answer: paper 002's "Collision Probability: 0.872" (its annotations'
# precision), so the text the model learns and the MSE target agree to 0.001.
PROBABILITY_DECIMALS = 3


def _probability_text(p: float) -> str:
    return f"{p:.{PROBABILITY_DECIMALS}f}"


def stated_probability(p: float) -> float:
    """The value `probability_answer(p)` states: `p` read back from its PROBABILITY_DECIMALS
    text (0.8725 -> 0.873, as Python formats the float nearest 0.8725). The MSE target is this value, so
    the number the model is taught to write and the one it is regressed to are the same."""
    return float(_probability_text(p))


def probability_answer(p: float) -> str:
    """'Collision Probability: 0.872' (PROBABILITY_DECIMALS decimals)."""
    return f"Collision Probability: {_probability_text(p)}"


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
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """The user turn's content list and the visual inputs it references, in order.

    `channels` are the per-frame inputs shown beside the frames (sce.data.channels, e.g.
    `[TelemetryChannel(telemetry)]`; a channel without data says it is unavailable).
    Returns (content, visuals): content holds {"type": "video"} (or, for `keyframes`,
    {"type": "image"}) placeholders and text parts; `visuals[k]` is the array of the k-th
    placeholder: a [T, H, W, 3] video, or a [H, W, 3] image.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown prompt layout {layout!r}; expected one of {LAYOUTS}")
    if keyframes:
        content, visuals = _keyframe_content(frames, frame_times, channels, layout)
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
    frames: np.ndarray, frame_times: np.ndarray, channels: Sequence[Channel], layout: str
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
        times = ", ".join(time_label(t) for t in frame_times)
        content.append({"type": "text", "text": f"Keyframes at {times}.\n"})
        content.extend(_texts(table_blocks(channels)))
    else:
        content.extend(_texts(missing_notes(channels)))
    return content, images


def build_messages(user_content: list[dict[str, Any]], answer: str | None = None) -> list[dict]:
    """Chat messages: system, user (video + telemetry + question) and optionally the answer."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": user_content},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


# ---------------------------------------------------------------------------------------------
# Tasks: (question, answer) from a record's label and annotations.


@dataclass
class TaskItem:
    task: str
    question: str
    answer: str
    probability_target: float | None = None  # for the MSE term of the probability task


def available_tasks(
    label: str, annotations: Mapping[str, Any], scope: str = "three_class"
) -> list[str]:
    """Tasks a record can serve: mcq and probability always; the rest need annotations.

    `scope` (the record's label_scope) does not change which tasks exist, only their questions
    (see `make_task`)."""
    tasks = ["mcq", "probability"]
    if annotations.get("caption"):
        tasks.append("caption")
    if annotations.get("vqa"):
        tasks.append("vqa")
    if _reasoning_of(annotations, label):
        tasks.append("reasoning")
    if annotations.get("instruction"):
        tasks.append("instruction")
    return tasks


def evaluation_tasks(
    label: str, annotations: Mapping[str, Any], scope: str = "three_class"
) -> list[str]:
    """Tasks a record can be asked at evaluation: those it can serve (`available_tasks`), plus
    reasoning for every record. Paper 001's reasoning-mode accuracy (Table 9) asks every test
    clip the event question with the reasoning instruction and scores the answer after
    `</think>`, which needs only the label, not a reasoning annotation."""
    tasks = available_tasks(label, annotations, scope)
    return tasks if "reasoning" in tasks else [*tasks, "reasoning"]


def _reasoning_of(annotations: Mapping[str, Any], label: str) -> str | None:
    reasoning = annotations.get("reasoning")
    if isinstance(reasoning, Mapping):
        return reasoning.get("think") or None
    return reasoning or None


def make_task(
    task: str,
    label: str,
    annotations: Mapping[str, Any],
    rng: random.Random,
    scope: str = "three_class",
) -> TaskItem:
    """Question and target answer for one task of one record.

    `scope` is the record's label_scope: a binary-scope record (event / no event) is asked the
    yes/no event question in mcq and reasoning, the only class question its label answers.
    """
    if task == "mcq":
        return TaskItem(task, event_question(scope), event_answer(label, scope))
    if task == "probability":
        annotated = annotations.get("probability")  # checked by sce.data.schema: in [0, 1]
        value = default_collision_probability(label) if annotated is None else float(annotated)
        target = stated_probability(value)  # what the answer text says, not the raw value
        return TaskItem(task, PROBABILITY_QUESTION, probability_answer(target), target)
    if task == "caption":
        return TaskItem(task, CAPTION_QUESTION, str(annotations["caption"]))
    if task == "vqa":
        qa = rng.choice(list(annotations["vqa"]))
        return TaskItem(task, _vqa_question(qa), _vqa_answer(qa))
    if task == "reasoning":
        # Without an annotated trace (an evaluation-only item, see `evaluation_tasks`) the
        # reference is the final answer alone: what reasoning mode is scored on.
        think = _reasoning_of(annotations, label)
        final = event_answer(label, scope)
        answer = final if think is None else f"<think>{think}</think>{final}"
        return TaskItem(task, event_question(scope) + REASONING_SUFFIX, answer)
    if task == "instruction":
        text = f"{'Yes' if label != 'normal' else 'No'}, {LABEL_TEXT[label]}. {annotations['instruction']}"
        return TaskItem(task, INSTRUCTION_QUESTION, text)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def _vqa_question(qa: Mapping[str, Any]) -> str:
    options = qa.get("options")
    if not options:
        return str(qa["question"])
    if isinstance(options, Mapping):
        lines = [f"{k}. {v}" for k, v in options.items()]
    else:
        lines = [f"{chr(65 + i)}. {v}" for i, v in enumerate(options)]
    return f"{qa['question']}\n" + "\n".join(lines) + "\nAnswer with the letter."


def _vqa_answer(qa: Mapping[str, Any]) -> str:
    return str(qa["answer"])


def check_task_weights(weights: Mapping[str, float]) -> None:
    """Raise ValueError for an unknown task name or a negative / non-finite weight."""
    unknown = set(weights) - set(TASKS)
    if unknown:
        raise ValueError(f"data.task_weights: unknown task(s) {sorted(unknown)}; expected {TASKS}")
    for task, weight in weights.items():
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(
                f"data.task_weights[{task!r}] must be a finite number >= 0, got {weight!r}"
            )


def training_tasks(
    weights: Mapping[str, float],
    label: str,
    annotations: Mapping[str, Any],
    scope: str = "three_class",
) -> list[str]:
    """The tasks a record gives training items for: those with weight > 0 that it can serve.

    Every such task is one item of the record (the sampler repeats it by the task weight and
    the (task, class) factor), so each record trains its mcq item whatever else it carries
    (paper 001 Table 1 counts MCQ, captions, VQA and reasoning as separate samples). A record
    that serves none of the weighted tasks falls back to mcq (weight
    1 unless given).
    """
    check_task_weights(weights)
    usable = [t for t in available_tasks(label, annotations, scope) if weights.get(t, 0) > 0]
    return usable or ["mcq"]


def template_corpus() -> list[str]:
    """Template texts, so the tiny tokenizer learns this project's vocabulary."""
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
    ]
