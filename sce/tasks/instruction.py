"""instruction (paper 003): say whether a safety-critical event occurs, then give the driver one
instruction: "Yes, collision. <annotations.instruction>".

Scored on the instruction sentence: BLEU-4, BERTScore F1 (with a local encoder) and diversity
(sce.metrics.instruction).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from sce.common.labels import LABEL_TEXT
from sce.metrics.parsing import split_reasoning
from sce.tasks.base import (
    ScoringOptions,
    Task,
    TaskScores,
    TaskSource,
    check_text,
    graded_reward,
    register_task,
)

FIELD = "instruction"  # the safe-driving instruction
INSTRUCTION_QUESTION = (
    "First say whether a safety-critical event occurs, then give the driver one instruction "
    "for driving safely."
)
_YES_NO = re.compile(r"^(yes|no)\b", re.IGNORECASE)


class InstructionAnswer(NamedTuple):
    """What an instruction answer states: whether an event occurs, and the instruction."""

    event: bool
    instruction: str


class InstructionTask(Task):
    name = "instruction"
    fields = (FIELD,)
    uses_bertscore = True

    def check(self, annotations: Mapping[str, Any]) -> None:
        if annotations.get(FIELD) is not None:
            check_text(f"annotations.{FIELD}", annotations[FIELD])

    def question(self, source: TaskSource, rng: random.Random) -> str:
        return INSTRUCTION_QUESTION

    def answer(self, source: TaskSource, rng: random.Random) -> str:
        label = source.label
        said = "Yes" if label != "normal" else "No"
        return f"{said}, {LABEL_TEXT[label]}. {source.annotations[FIELD]}"

    def parse(self, text: str | None, scope: str = "three_class") -> InstructionAnswer | None:
        """The leading yes / no and the instruction after the event sentence; None without
        a leading yes / no or an instruction."""
        from sce.metrics.instruction import instruction_part

        if not isinstance(text, str):
            return None
        _, answer, valid = split_reasoning(text)
        said = _YES_NO.match(answer) if valid else None
        instruction = instruction_part(answer)
        if said is None or not instruction or instruction == answer.strip():
            return None
        return InstructionAnswer(said.group(1).lower() == "yes", instruction)

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        from sce.metrics.instruction import instruction_metrics

        return TaskScores(
            instruction_metrics(items, options.bertscore_model, options.bertscore_layer)
        )

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Readable, then half for the right yes / no (the record's label) and half for the
        instruction's ROUGE-L F1 to the reference's."""
        from sce.metrics.text import rouge_l_f1

        said, gold = self.parse(text), self.parse(item["reference"])
        if said is None or gold is None:
            return graded_reward(False, 0.0)
        event_right = said.event == (item["label"] != "normal")
        overlap = rouge_l_f1([said.instruction], [gold.instruction])[0]
        return graded_reward(True, 0.5 * event_right + 0.5 * overlap)


INSTRUCTION = register_task(InstructionTask())
