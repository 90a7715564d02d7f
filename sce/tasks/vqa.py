"""vqa: one question of `annotations.vqa` (a list of {question, answer[, options]}), drawn at
random per item; options are lettered and the answer is then a letter.

Scored by accuracy (`vqa/acc`: the letter, or the answer's words as in closed QA), overall and
per IMU setting.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from sce.metrics.parsing import parse_letter
from sce.tasks.base import (
    AnnotationError,
    ScoringOptions,
    Task,
    TaskScores,
    TaskSource,
    check_text,
    register_task,
    shown,
)

FIELD = "vqa"  # the annotation holding the question/answer pairs


def vqa_question(qa: Mapping[str, Any]) -> str:
    """The pair's question; with options, one lettered option a line and the letter asked."""
    options = qa.get("options")
    if not options:
        return str(qa["question"])
    if isinstance(options, Mapping):
        lines = [f"{k}. {v}" for k, v in options.items()]
    else:
        lines = [f"{chr(65 + i)}. {v}" for i, v in enumerate(options)]
    return f"{qa['question']}\n" + "\n".join(lines) + "\nAnswer with the letter."


def vqa_answer(qa: Mapping[str, Any]) -> str:
    return str(qa["answer"])


def check_vqa(items: Any) -> None:
    """`annotations.vqa`: a list of {question, answer[, options]} objects; options a list of
    strings (lettered A, B, ...) or an object letter -> text (`vqa_question`)."""
    field_name = f"annotations.{FIELD}"
    if not isinstance(items, list):
        detail = f"expected a list of {{question, answer}} objects, got {shown(items)}"
        raise AnnotationError(field_name, detail)
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            raise AnnotationError(field_name, f"item {k}: expected an object, got {shown(item)}")
        for key in ("question", "answer"):
            if key not in item:
                raise AnnotationError(field_name, f"item {k}: missing '{key}'")
            check_text(field_name, item[key], f"item {k}: '{key}': ")
            if not item[key].strip():
                raise AnnotationError(field_name, f"item {k}: '{key}' is empty")
        options = item.get("options")
        texts = options.values() if isinstance(options, dict) else options
        if options is not None and (
            not isinstance(options, (list, dict)) or not all(isinstance(t, str) for t in texts)
        ):
            detail = f"item {k}: 'options': expected a list of strings or an object of strings"
            raise AnnotationError(field_name, f"{detail}, got {shown(options)}")


class VqaTask(Task):
    name = "vqa"
    fields = (FIELD,)

    def check(self, annotations: Mapping[str, Any]) -> None:
        if annotations.get(FIELD) is not None:
            check_vqa(annotations[FIELD])

    def _pair(self, source: TaskSource, rng: random.Random) -> Mapping[str, Any]:
        return rng.choice(list(source.annotations[FIELD]))

    def question(self, source: TaskSource, rng: random.Random) -> str:
        return vqa_question(self._pair(source, rng))

    def answer(self, source: TaskSource, rng: random.Random) -> str:
        return vqa_answer(self._pair(source, rng))

    def parse(self, text: str | None, scope: str = "three_class") -> str | None:
        """The option letter the answer picks, else its normalized text; None when empty."""
        from sce.metrics.text import normalize_answer

        return parse_letter(text) or normalize_answer(text) or None

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        """`vqa/{n,acc}` over all items and `imu_<on|off>/vqa/...` per IMU setting (paper 000's
        Closed QA column is the closed_qa task's, on the teacher's static-scene questions)."""
        from sce.tasks.scoring import closed_answer_scores

        return closed_answer_scores(self.name, items)

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Readable, then right by the closed-QA rule (the letter, or the answer's words)."""
        from sce.tasks.scoring import closed_answer_reward

        return closed_answer_reward(self.parse(text) is not None, text, item["reference"])


VQA = register_task(VqaTask())
