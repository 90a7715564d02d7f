"""instruction (paper 003): chain-of-thought safe-driving instruction. The answer names the
detected driver and road events first, then gives the driver one instruction:

    Events: mobile phone use; harsh braking.
    Instruction: <annotations.instruction>

The events come from `annotations.driving_events` (keys of `DRIVING_EVENTS`, the structured
annotation a teacher writes the answer from; sce.labeling.templates.INSTRUCTION_V1) or, without
it, from the record's label (collision / near-collision / none). The two parts are separable
(`sce.metrics.instruction.split_answer`) and scored apart: BERTScore F1 of the event part
(paper 003: 0.897) and of the instruction (0.894), BLEU-4 and diversity of the instruction.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sce.metrics.parsing import EVENTS_HEAD, INSTRUCTION_HEAD, split_answer, split_reasoning
from sce.tasks.base import (
    AnnotationError,
    ScoringOptions,
    Task,
    TaskScores,
    TaskSource,
    check_text,
    graded_reward,
    register_task,
    shown,
)

FIELD = "instruction"  # the safe-driving instruction
EVENTS_FIELD = "driving_events"  # the structured events (DRIVING_EVENTS keys), optional
INSTRUCTION_QUESTION = (
    "First say whether a safety-critical event occurs, then give the driver one instruction "
    "for driving safely."
)


class DrivingEvent(NamedTuple):
    """One event of the taxonomy: the view that shows it, its words in an answer, and where
    it comes from (paper 003's text, or sce's classes)."""

    view: str  # "driver" (driver-facing camera) or "road" (road-facing camera)
    words: str
    origin: str


# Paper 003's events as its text names them (the stored copy lists no full taxonomy): driver
# behaviour seen by the driver camera ("mobile phone usage") and vehicle behaviour seen on the
# road ("harsh turns", "excessive speed during turns"); plus the events sce's own labels and
# telemetry give (collision, near-collision, harsh braking).
DRIVING_EVENTS: dict[str, DrivingEvent] = {
    "phone_use": DrivingEvent("driver", "mobile phone use", "paper 003"),
    "harsh_turn": DrivingEvent("road", "harsh turn", "paper 003"),
    "speeding_in_turn": DrivingEvent("road", "excessive speed during a turn", "paper 003"),
    "collision": DrivingEvent("road", "collision", "sce"),
    "near_collision": DrivingEvent("road", "near-collision", "sce"),
    "harsh_braking": DrivingEvent("road", "harsh braking", "sce"),
    "event": DrivingEvent("road", "collision or near-collision", "sce"),  # binary-scope label
}
NO_EVENT = "no risky event"  # paper 003's "good driving" clips
_EVENT_OF_WORDS = {e.words: key for key, e in DRIVING_EVENTS.items()}


def clip_events(source: TaskSource) -> list[str]:
    """The events an answer names: `annotations.driving_events`, else the label's event (none
    for normal driving)."""
    listed = source.annotations.get(EVENTS_FIELD)
    if listed is not None:
        return list(listed)
    return [] if source.label == "normal" else [source.label]


def events_text(events: Sequence[str]) -> str:
    """The event part's words: "mobile phone use; harsh braking." or "no risky event."."""
    words = [DRIVING_EVENTS[e].words for e in events]
    return ("; ".join(words) if words else NO_EVENT) + "."


def instruction_answer(events: Sequence[str], instruction: str) -> str:
    """The answer of the task: the events, then the instruction, each on its own line."""
    return f"{EVENTS_HEAD} {events_text(events)}\n{INSTRUCTION_HEAD} {instruction.strip()}"


def read_events(text: str) -> frozenset[str] | None:
    """The taxonomy keys an event part names (empty for "no risky event"); None when a named
    event is not in the taxonomy."""
    names = [w.strip().lower() for w in text.strip().rstrip(".").split(";") if w.strip()]
    if names == [NO_EVENT]:
        return frozenset()
    keys = [_EVENT_OF_WORDS.get(n) for n in names]
    return None if not keys or None in keys else frozenset(keys)


def check_events(value: Any) -> None:
    """`annotations.driving_events`: a list of DRIVING_EVENTS keys."""
    name = f"annotations.{EVENTS_FIELD}"
    if not isinstance(value, list):
        raise AnnotationError(name, f"expected a list of event names, got {shown(value)}")
    unknown = [v for v in value if v not in DRIVING_EVENTS]
    if unknown:
        raise AnnotationError(name, f"unknown event(s) {unknown}; expected {list(DRIVING_EVENTS)}")


class InstructionAnswer(NamedTuple):
    """What an instruction answer states: its events (taxonomy keys) and the instruction."""

    events: frozenset[str]
    instruction: str


class InstructionTask(Task):
    name = "instruction"
    fields = (FIELD,)
    uses_bertscore = True

    def check(self, annotations: Mapping[str, Any]) -> None:
        if annotations.get(FIELD) is not None:
            check_text(f"annotations.{FIELD}", annotations[FIELD])
        if annotations.get(EVENTS_FIELD) is not None:
            check_events(annotations[EVENTS_FIELD])

    def question(self, source: TaskSource, rng: random.Random) -> str:
        return INSTRUCTION_QUESTION

    def answer(self, source: TaskSource, rng: random.Random) -> str:
        return instruction_answer(clip_events(source), source.annotations[FIELD])

    def parse(self, text: str | None, scope: str = "three_class") -> InstructionAnswer | None:
        """The events and the instruction of an "Events: ... Instruction: ..." answer; None
        without both parts, with an event outside the taxonomy or an empty instruction."""
        if not isinstance(text, str):
            return None
        _, answer, valid = split_reasoning(text)
        parts = split_answer(answer) if valid else None
        events = read_events(parts[0]) if parts else None
        if events is None or not parts[1]:
            return None
        return InstructionAnswer(events, parts[1])

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        from sce.metrics.instruction import instruction_metrics

        return TaskScores(
            instruction_metrics(items, options.bertscore_model, options.bertscore_layer)
        )

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Readable, then half for the events (Jaccard overlap with the reference's) and half
        for the instruction's ROUGE-L F1 to the reference's."""
        from sce.metrics.text import rouge_l_f1

        said, gold = self.parse(text), self.parse(item["reference"])
        if said is None or gold is None:
            return graded_reward(False, 0.0)
        union = said.events | gold.events
        events = len(said.events & gold.events) / len(union) if union else 1.0
        overlap = rouge_l_f1([said.instruction], [gold.instruction])[0]
        return graded_reward(True, 0.5 * events + 0.5 * overlap)


INSTRUCTION = register_task(InstructionTask())
