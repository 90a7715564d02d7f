"""probability: the collision probability, "Collision Probability: 0.872" (paper 002), from
`annotations.probability` or, without one, 1 for an event and 0 for normal driving.

Its items add the MSE term (the stated probability regressed from the answer's digits). Scored
by calibration: Brier score, ECE, MAE and a reliability diagram.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from sce.metrics.parsing import parse_probability
from sce.tasks.base import (
    MSE_TERM,
    AnnotationError,
    ScoringOptions,
    Task,
    TaskScores,
    TaskSource,
    graded_reward,
    register_task,
    shown,
)

FIELD = "probability"  # optional annotated target in [0, 1]
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
# Paper 002's Task: and Note: lines, as written in its prompt (Fig. 3), asked with
# data.window.prompt=paper002. Its answer is still "Collision Probability: 0.872" (the paper's
# gpt turn), whatever "output only a single floating-point number" says.
PAPER002_QUESTION = (
    "Task:\n"
    "Output only a single floating-point number between 0.00 and 1.00;\n"
    "indicating the probability of a collision occurring within the next few seconds.\n"
    "Do not output any additional text or labels.\n"
    "Note: the downstream detection tracker may miss objects that are extremely close;\n"
    "if you know from the images that another vehicle is about to collide, factor that in."
)
# The question per prompt (data.window.prompt); other prompts ask PROBABILITY_QUESTION.
QUESTIONS = {"paper002": PAPER002_QUESTION}
# Decimals of a probability answer: paper 002's "Collision Probability: 0.872" (its annotations'
# precision), so the text the model learns and the MSE target agree to 0.001.
PROBABILITY_DECIMALS = 3


def default_collision_probability(label: str) -> float:
    """Probability target of a record without `annotations.probability`: 1 for an event, 0 for
    normal driving. Paper 002's positives are windows "ending at the annotated collision (or
    near-miss) time" (Nexar's label 1), so a 3-class near-collision is a positive as well."""
    return 1.0 if label in ("collision", "near_collision", "event") else 0.0


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


def check_probability(value: Any) -> None:
    """`annotations.probability` (paper 002's collision-probability target), when given, is a
    JSON number within [0, 1]: a string, NaN / Infinity or a percentage would train a target the
    answer text cannot state."""
    if value is None:
        return
    field_name = f"annotations.{FIELD}"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise AnnotationError(field_name, f"expected a number, got {shown(value)}")
    if not math.isfinite(value):
        raise AnnotationError(field_name, f"must be finite, got {value!r}")
    if not 0 <= value <= 1:
        hint = " (a percentage?)" if 1 < value <= 100 else ""
        raise AnnotationError(field_name, f"must be within [0, 1]{hint}, got {value!r}")


class ProbabilityTask(Task):
    name = "probability"
    fields = (FIELD,)
    every_record = True  # the annotation is optional: the label gives a default target
    loss_term = MSE_TERM

    def check(self, annotations: Mapping[str, Any]) -> None:
        check_probability(annotations.get(FIELD))

    def question(self, source: TaskSource, rng: random.Random) -> str:
        return QUESTIONS.get(source.prompt, PROBABILITY_QUESTION)

    def answer(self, source: TaskSource, rng: random.Random) -> str:
        return probability_answer(self.target(source))

    def target(self, source: TaskSource) -> float:
        """What the answer text states (not the raw annotated value): the MSE target."""
        annotated = source.annotations.get(FIELD)  # checked on load: in [0, 1]
        value = default_collision_probability(source.label) if annotated is None else annotated
        return stated_probability(float(value))

    def parse(self, text: str | None, scope: str = "three_class") -> float | None:
        return parse_probability(text)

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        """`calibration/{brier,ece,mae,...}` against the label's target (1 event, 0 normal) and
        the reliability diagram."""
        from sce.metrics.calibration import CalibrationMetrics
        from sce.tasks.scoring import local

        metric = local(CalibrationMetrics())
        metric.update(
            [self.parse(i["prediction"]) for i in items],
            [default_collision_probability(i["label"]) for i in items],
        )
        scalars = {f"calibration/{k}": v for k, v in metric.compute().items()}
        figure = metric.figure("Collision probability: reliability")
        return TaskScores(scalars, figures={"reliability": figure})

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Readable, then 1 - squared error (a Brier score) to the reference's probability."""
        said, gold = self.parse(text), self.parse(item["reference"])
        readable = said is not None and gold is not None
        return graded_reward(readable, 1.0 - (said - gold) ** 2 if readable else 0.0)


PROBABILITY = register_task(ProbabilityTask())
