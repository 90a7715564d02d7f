"""reasoning: the event question with a reasoning instruction; the answer is
`<think>{annotations.reasoning}</think>` then the event answer.

Paper 001's reasoning-mode accuracy (Table 9) asks every evaluated clip, also one without a
reasoning annotation (its reference is then the final answer alone), and scores only the answer
after `</think>`; an answer without a closed think block is invalid.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from sce.metrics.parsing import reasoning_mode_answer
from sce.tasks.base import (
    AnnotationError,
    ScoringOptions,
    Task,
    TaskScores,
    TaskSource,
    check_text,
    graded_reward,
    register_task,
    scope_of,
)
from sce.tasks.events import DEFAULT_WORDING, event_answer, event_question, read_event, wording_of

FIELD = "reasoning"  # the think trace: a string or the labeling pipeline's {think, ...}
REASONING_SUFFIX = " Think step by step inside <think></think>, then answer."
# Generation budget: the think trace comes before the answer, so the answer budget (often
# 16-256 tokens) would cut the trace and leave the think block unclosed, which is scored
# invalid. 1024 tokens holds a few hundred words of step-by-step reasoning.
REASONING_MAX_NEW_TOKENS = 1024


def think_trace(annotations: Mapping[str, Any]) -> str | None:
    """The annotated think trace, None when absent or empty."""
    reasoning = annotations.get(FIELD)
    if isinstance(reasoning, Mapping):
        return reasoning.get("think") or None
    return reasoning or None


def check_reasoning(value: Any) -> None:
    """`annotations.reasoning`: the think trace as a string, or the labeling pipeline's object
    {think, answer, label} whose 'think' is a string."""
    field_name = f"annotations.{FIELD}"
    if not isinstance(value, dict):
        check_text(field_name, value)
    elif "think" not in value:
        raise AnnotationError(field_name, "an object without 'think'")
    else:
        check_text(field_name, value["think"], "'think': ")


class ReasoningTask(Task):
    name = "reasoning"
    fields = (FIELD,)
    max_new_tokens = REASONING_MAX_NEW_TOKENS
    thinks_first = True

    def check(self, annotations: Mapping[str, Any]) -> None:
        if annotations.get(FIELD) is not None:
            check_reasoning(annotations[FIELD])

    def serves(self, source: TaskSource) -> bool:
        return think_trace(source.annotations) is not None

    def asked_at_evaluation(self, source: TaskSource) -> bool:
        """Every record: reasoning mode needs only the label, not a trace."""
        return True

    def question(self, source: TaskSource, rng: random.Random) -> str:
        return event_question(source.scope, source.wording) + REASONING_SUFFIX

    def answer(self, source: TaskSource, rng: random.Random) -> str:
        # Without an annotated trace (an evaluation-only item) the reference is the final
        # answer alone: what reasoning mode is scored on.
        think = think_trace(source.annotations)
        final = event_answer(source.label, source.scope, source.wording)
        return final if think is None else f"<think>{think}</think>{final}"

    def parse(
        self, text: str | None, scope: str = "three_class", wording: str = DEFAULT_WORDING
    ) -> str | None:
        """The class named after `</think>`; None without a closed think block or a class."""
        return read_event(reasoning_mode_answer(text), scope, wording).label

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        """Every event-metric key under `reasoning/` (`reasoning/acc`, `reasoning/f1/<class>`,
        `reasoning/binary/acc`, `reasoning/imu_on/acc`, ...), scored on the answer after
        `</think>` (`reasoning_mode_answer`), and `reasoning/no_trace_rate` (responses without
        a closed think block). Table 9 reports n/a for the model that "fails to respond with
        reasoning traces, even when prompted", so an answer given without a trace is not a
        reasoning-mode answer."""
        from sce.tasks.scoring import event_metrics

        answers = [reasoning_mode_answer(i["prediction"]) for i in items]
        scored = [{**item, "prediction": a} for item, a in zip(items, answers, strict=True)]
        scalars, _ = event_metrics(scored, "reasoning/")
        scalars["reasoning/no_trace_rate"] = (
            sum(a is None for a in answers) / len(answers) if answers else math.nan
        )
        return TaskScores(scalars)

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Readable (a closed think block, then one class) and right: the record's label."""
        said = self.parse(text, scope_of(item), wording_of(item))
        return graded_reward(said is not None, float(said == item["label"]))


REASONING = register_task(ReasoningTask())
