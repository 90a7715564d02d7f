"""Validation of teacher answers: JSON extraction, per-task schemas, normalization, filters.

`parse_answer(task, text, label)` returns a `TeacherAnswer` (the normalized value, plus a filter
verdict), or raises `AnswerError` with the reason when the answer is malformed; the pipeline then
asks again and finally records the item as failed with that reason.

Filters (answers that are well formed but not kept, paper 001):
* reasoning: the think trace is kept only when its final answer is the ground-truth label;
* vqa: dropped when its mandatory event-type question answers a different event type than the
  ground-truth label (a teacher contradicting the label would teach the student the wrong event).

The schemas are plain JSON Schema (the subset `check_schema` implements), so they can also be
sent to servers that support structured output (`response_format`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sce.common.labels import LABELS, OPTION_LETTERS
from sce.tasks import (
    CAPTION,
    CAPTION_FIELD,
    INSTRUCTION,
    INSTRUCTION_FIELD,
    REASONING,
    REASONING_VQA,
    VQA,
)
from sce.tasks.instruction import DRIVING_EVENTS, EVENTS_FIELD

_STR = {"type": "string", "minLength": 1}
_LETTER4 = {"type": "string", "enum": ["A", "B", "C", "D"]}

# Teacher task -> the JSON schema of its reply. A teacher task named after a student task
# (sce.tasks) writes that task's annotation field.
SCHEMAS: dict[str, dict[str, Any]] = {
    CAPTION.name: {
        "type": "object",
        "required": [CAPTION_FIELD, "questions"],
        "properties": {
            CAPTION_FIELD: {"type": "string", "minLength": 20},
            "questions": {
                "type": "array",
                "minItems": 1,
                "maxItems": 12,
                "items": {
                    "type": "object",
                    "required": ["type", "question", "answer"],
                    "properties": {
                        "type": {"type": "string", "enum": ["open", "closed"]},
                        "question": _STR,
                        "answer": _STR,
                    },
                },
            },
        },
    },
    VQA.name: {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "minItems": 5,
                "maxItems": 7,
                "items": {
                    "type": "object",
                    "required": ["dimension", "question", "options", "answer"],
                    "properties": {
                        "dimension": _STR,
                        "question": _STR,
                        "options": {"type": "array", "minItems": 3, "maxItems": 4, "items": _STR},
                        "answer": _LETTER4,
                    },
                },
            }
        },
    },
    REASONING_VQA.name: {
        "type": "object",
        "required": ["question", "options", "answer", "reasons"],
        "properties": {
            "question": _STR,
            "options": {"type": "array", "minItems": 4, "maxItems": 4, "items": _STR},
            "answer": _LETTER4,
            "reasons": {"type": "array", "minItems": 1, "items": _STR},
        },
    },
    INSTRUCTION.name: {
        "type": "object",
        "required": ["events", INSTRUCTION_FIELD],
        "properties": {
            "events": {"type": "array", "items": {"type": "string", "enum": list(DRIVING_EVENTS)}},
            INSTRUCTION_FIELD: {"type": "string", "minLength": 5},
        },
    },
    REASONING.name: {
        "type": "object",
        "required": ["think", "answer"],
        "properties": {
            "think": {"type": "string", "minLength": 20},
            "answer": {"type": "string", "enum": list(OPTION_LETTERS)},
        },
    },
}


class AnswerError(ValueError):
    """A teacher answer does not have the expected structure; the message is the reason."""


@dataclass
class TeacherAnswer:
    """A valid teacher answer: `value` is what goes into the annotations; `filtered` says it is
    not kept. (Not sce.metrics.parsing.ParsedAnswer, the student's event answer.)"""

    value: dict[str, Any]
    filtered: bool = False
    filter_reason: str | None = None


# ---------------------------------------------------------------------------------------------
# JSON extraction and schema checking

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def split_think(text: str) -> tuple[str | None, str]:
    """(think trace or None, the rest) of a reply that may start with <think>...</think>."""
    match = _THINK.search(text)
    if not match:
        return None, text
    return match.group(1).strip(), (text[: match.start()] + text[match.end() :]).strip()


def extract_json(text: str) -> Any:
    """The first JSON object or array in a reply (bare, fenced, or inside prose)."""
    _, body = split_think(text)
    candidates = [m.group(1) for m in _FENCE.finditer(body)] + [body]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        candidate = candidate.strip()
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
        for i, char in enumerate(candidate):
            if char in "{[":
                try:
                    return decoder.raw_decode(candidate, i)[0]
                except json.JSONDecodeError:
                    continue
    raise AnswerError("no JSON object found in the answer")


_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


def check_schema(value: Any, schema: Mapping[str, Any], path: str = "$") -> list[str]:
    """Errors of `value` against a JSON Schema subset (type, required, properties, items,
    enum, minLength, minItems, maxItems). An empty list means valid."""
    kind = schema.get("type")
    if kind is not None:
        ok = isinstance(value, _TYPES[kind]) and not (
            kind in ("integer", "number") and isinstance(value, bool)
        )
        if not ok:
            return [f"{path}: expected {kind}, got {type(value).__name__}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str) and len(value.strip()) < schema.get("minLength", 0):
        errors.append(f"{path}: shorter than {schema['minLength']} characters")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: {len(value)} items, expected at least {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: {len(value)} items, expected at most {schema['maxItems']}")
        for i, item in enumerate(value):
            errors.extend(check_schema(item, schema.get("items", {}), f"{path}[{i}]"))
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}: missing field '{name}'")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors.extend(check_schema(value[name], sub, f"{path}.{name}"))
    return errors


# ---------------------------------------------------------------------------------------------
# Normalization: accept the common variants teachers produce, then check the strict schema.

_LETTER_ONLY = re.compile(r"[\(\[]?([A-Da-d])[\)\]\.:]?")
_LETTER_LEAD = re.compile(r"[\(\[]?([A-D])[\)\]\.:]\s")
_OPTION_PREFIX = re.compile(r"^\s*[\(\[]?[A-Da-d][\)\]\.:]\s*")


def _letter(value: Any) -> Any:
    """'A', 'a', '(B)', 'C. text', 'Answer: D' -> the upper-case letter; other values unchanged."""
    if not isinstance(value, str):
        return value
    text = re.sub(r"^\s*(answer|option)\s*[:\-]?\s*", "", value, flags=re.IGNORECASE).strip()
    match = _LETTER_ONLY.fullmatch(text) or _LETTER_LEAD.match(text)
    return match.group(1).upper() if match else value


def _options(value: Any) -> Any:
    """Options as a list of texts without their letter prefixes ("A.xxx\\nB.xxx" is split)."""
    if isinstance(value, Mapping):
        value = [value[k] for k in sorted(value)]
    elif isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if isinstance(value, list):
        return [_OPTION_PREFIX.sub("", v).strip() if isinstance(v, str) else v for v in value]
    return value


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k).strip().lower(): v for k, v in value.items()}
    return value


def _require(value: Any, task: str) -> None:
    errors = check_schema(value, SCHEMAS[task])
    if errors:
        shown = "; ".join(errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
        raise AnswerError(f"{task} answer does not match its schema: {shown}")


def _answer_in_range(item: Mapping[str, Any], where: str) -> None:
    index = ord(item["answer"]) - ord("A")
    if index >= len(item["options"]):
        raise AnswerError(
            f"{where}: answer {item['answer']} but only {len(item['options'])} options"
        )


_EVENT_WORDS = (
    (
        "near_collision",
        re.compile(r"near[\s\-_]*(collision|miss|crash)|almost|narrowly|avoid", re.I),
    ),
    ("collision", re.compile(r"collision|collides|crash|impact|hits|contact", re.I)),
    ("normal", re.compile(r"normal|no incident|uneventful|nothing happens", re.I)),
)


def label_of_text(text: str) -> str | None:
    """The event label a free text names (near-collision wins over collision), or None."""
    for label, pattern in _EVENT_WORDS:
        if pattern.search(text):
            return label
    return None


def _is_event_item(item: Mapping[str, Any]) -> bool:
    if "event" in item["dimension"].lower():
        return True
    named = {label_of_text(o) for o in item["options"]}
    return set(LABELS) <= named


# ---------------------------------------------------------------------------------------------
# Per-task parsers


def _parse_caption(data: Any, label: str | None) -> TeacherAnswer:
    data = _lower_keys(data)
    if isinstance(data, dict) and isinstance(data.get("questions"), list):
        data["questions"] = [_lower_keys(q) for q in data["questions"]]
        for q in data["questions"]:
            if isinstance(q, dict) and isinstance(q.get("type"), str):
                q["type"] = q["type"].strip().lower().replace("-ended", "")
    _require(data, CAPTION.name)
    questions = [{k: q[k] for k in ("type", "question", "answer")} for q in data["questions"]]
    return TeacherAnswer({CAPTION_FIELD: data[CAPTION_FIELD].strip(), "questions": questions})


def _parse_vqa(data: Any, label: str | None) -> TeacherAnswer:
    if isinstance(data, list):  # paper 001's output is a bare list of triplets
        data = {"items": data}
    data = _lower_keys(data)
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        items = [_lower_keys(i) for i in data["items"]]
        for item in items:
            if isinstance(item, dict):
                item["options"] = _options(item.get("options"))
                item["answer"] = _letter(item.get("answer"))
        data["items"] = items
    _require(data, VQA.name)
    items = [
        {k: i[k] for k in ("dimension", "question", "options", "answer")} for i in data["items"]
    ]
    for n, item in enumerate(items):
        _answer_in_range(item, f"vqa item {n}")
    event_items = [i for i in items if _is_event_item(i)]
    if not event_items:
        raise AnswerError(
            "vqa answer has no event-type question (collision / near collision / normal)"
        )
    parsed = TeacherAnswer({"items": items})
    event = event_items[0]
    said = label_of_text(event["options"][ord(event["answer"]) - ord("A")])
    if label is not None and said is not None and not _answer_matches(said, label):
        parsed.filtered = True
        parsed.filter_reason = f"event-type question answers {said!r}, ground truth is {label!r}"
    return parsed


def _parse_reasoning_vqa(data: Any, label: str | None) -> TeacherAnswer:
    data = _lower_keys(data)
    if isinstance(data, dict):
        data["options"] = _options(data.get("options"))
        data["answer"] = _letter(data.get("answer"))
        if isinstance(data.get("reasons"), str):
            data["reasons"] = [
                r.strip(" -*\t") for r in data["reasons"].splitlines() if r.strip(" -*#\t")
            ]
    _require(data, REASONING_VQA.name)
    value = {k: data[k] for k in ("question", "options", "answer", "reasons")}
    _answer_in_range(value, REASONING_VQA.name)
    return TeacherAnswer(value)


_ANSWER_LINE = re.compile(r"(?i:answer)(?:\s+is)?\s*[:\-]?\s*\**\s*[\(\[]?([A-C])\b")


def _reasoning_from_text(text: str) -> dict[str, Any]:
    """{think, answer} from '<think>...</think> ... ANSWER: B' replies (no JSON)."""
    think, rest = split_think(text)
    matches = _ANSWER_LINE.findall(rest)
    if think is None or not matches:
        raise AnswerError("reasoning answer is neither JSON nor '<think>...</think> ANSWER: X'")
    return {"think": think, "answer": matches[-1].upper()}


def _answer_matches(answer: str, label: str) -> bool:
    """The teacher's 3-class answer agrees with the ground truth; a binary "event" (Nexar:
    collision or near-collision) accepts either event class."""
    return answer != "normal" if label == "event" else answer == label


def _parse_reasoning(text: str, label: str | None) -> TeacherAnswer:
    think, _ = split_think(text)
    try:
        data = _lower_keys(extract_json(text))
        if isinstance(data, dict) and think and not data.get("think"):
            data["think"] = think  # reasoning servers put the trace in <think> tags
    except AnswerError:
        data = _reasoning_from_text(text)
    if isinstance(data, dict):
        data["answer"] = _letter(data.get("answer"))
    _require(data, REASONING.name)
    answer = data["answer"]
    value = {"think": data["think"].strip(), "answer": answer, "label": OPTION_LETTERS[answer]}
    parsed = TeacherAnswer(value)
    if label is not None and not _answer_matches(OPTION_LETTERS[answer], label):
        parsed.filtered = True
        parsed.filter_reason = (
            f"answer {answer} ({OPTION_LETTERS[answer]}) but ground truth is {label!r}"
        )
    return parsed


def _parse_instruction(data: Any, label: str | None) -> TeacherAnswer:
    """Paper 003's answer parts: the events (DRIVING_EVENTS names) and the instruction, as the
    annotations the instruction task reads."""
    _require(data, INSTRUCTION.name)
    events = list(dict.fromkeys(data["events"]))  # a repeated event is named once
    return TeacherAnswer({EVENTS_FIELD: events, INSTRUCTION_FIELD: data[INSTRUCTION_FIELD].strip()})


def parse_answer(task: str, text: str, label: str | None = None) -> TeacherAnswer:
    """Validate and normalize the teacher's reply for `task` against its schema.

    Args:
        task: caption, vqa, reasoning_vqa, reasoning or instruction.
        text: the raw reply.
        label: the clip's ground-truth label, for the filters (None disables them).
    Raises:
        AnswerError: the reply is malformed (the message says why).
    """
    if not isinstance(text, str) or not text.strip():
        raise AnswerError("empty answer")
    if task == REASONING.name:
        return _parse_reasoning(text, label)
    parsers = {
        INSTRUCTION.name: _parse_instruction,
        CAPTION.name: _parse_caption,
        VQA.name: _parse_vqa,
        REASONING_VQA.name: _parse_reasoning_vqa,
    }
    if task not in parsers:
        raise KeyError(f"no answer parser for task {task!r}")
    return parsers[task](extract_json(text), label)


def keep_rate(kept: int, filtered: int) -> float | None:
    """Fraction of valid answers kept by the filter (None when there were none)."""
    total = kept + filtered
    return kept / total if total else None
