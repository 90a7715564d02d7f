"""reasoning_vqa: paper 001's "Reasoning VQA" (Table 1's "VQA Reasoning Data", ~10k; Table 9's best
row): a hard multiple-choice question about the road users' goals and intentions, answered after
a think trace. The annotation (`sce label`'s reasoning_vqa template, the paper's Fig. A.2) is
{question, options: [A, B, C, D], answer: letter, reasons: [step, ...]}, or a list of them; each
is its own item. The answer is `<think>{the reasons}</think>` then the letter.

Scored like the reasoning mode (Table 9): the letter after `</think>` (`reasoning_vqa/acc`), and
`reasoning_vqa/no_trace_rate` (responses without a closed think block, which are invalid).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sce.metrics.parsing import parse_letter, reasoning_mode_answer
from sce.tasks.base import (
    AnnotationError,
    PairTask,
    ScoringOptions,
    TaskScores,
    TaskSource,
    check_text,
    graded_reward,
    register_task,
    shown,
)
from sce.tasks.reasoning import REASONING_MAX_NEW_TOKENS, REASONING_SUFFIX
from sce.tasks.vqa import check_vqa, vqa_question

FIELD = "reasoning_vqa"  # {question, options, answer, reasons} or a list of them


def _triplets(value: Any) -> list[Any]:
    return [value] if isinstance(value, dict) else value


def check_reasoning_vqa(value: Any) -> None:
    """`annotations.reasoning_vqa`: one {question, options, answer, reasons} object or a list;
    options a list of strings, answer the letter of one of them, reasons a non-empty list of
    strings."""
    field_name = f"annotations.{FIELD}"
    items = _triplets(value)
    if not isinstance(items, list):
        detail = f"expected a {{question, options, answer, reasons}} object or a list, got {shown(value)}"
        raise AnnotationError(field_name, detail)
    try:
        check_vqa(items)
    except AnnotationError as error:
        raise AnnotationError(field_name, error.detail) from None
    for k, item in enumerate(items):
        options, reasons = item.get("options"), item.get("reasons")
        if not isinstance(options, list) or len(options) < 2:
            raise AnnotationError(field_name, f"item {k}: 'options': expected a list of 2 or more")
        letters = [chr(65 + i) for i in range(len(options))]
        if item["answer"].strip().upper() not in letters:
            detail = f"item {k}: 'answer': expected one of {letters}, got {item['answer']!r}"
            raise AnnotationError(field_name, detail)
        if not isinstance(reasons, list) or not reasons:
            detail = f"item {k}: 'reasons': expected a non-empty list, got {shown(reasons)}"
            raise AnnotationError(field_name, detail)
        for reason in reasons:
            check_text(field_name, reason, f"item {k}: 'reasons': ")


class ReasoningVqaTask(PairTask):
    name = FIELD
    fields = (FIELD,)
    max_new_tokens = REASONING_MAX_NEW_TOKENS
    thinks_first = True

    def check(self, annotations: Mapping[str, Any]) -> None:
        if annotations.get(FIELD) is not None:
            check_reasoning_vqa(annotations[FIELD])

    def pairs(self, source: TaskSource) -> list[Mapping[str, Any]]:
        return _triplets(source.annotations.get(FIELD) or [])

    def pair_question(self, pair: Mapping[str, Any]) -> str:
        return vqa_question(pair) + REASONING_SUFFIX

    def pair_answer(self, pair: Mapping[str, Any]) -> str:
        think = " ".join(str(r).strip() for r in pair["reasons"])
        return f"<think>{think}</think>{pair['answer'].strip().upper()}"

    def parse(self, text: str | None, scope: str = "three_class") -> str | None:
        """The option letter after `</think>`; None without a closed think block or a letter."""
        return parse_letter(reasoning_mode_answer(text))

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        """`reasoning_vqa/{n,acc}` (the letter after `</think>` against the reference's) and
        `imu_<on|off>/reasoning_vqa/...`, and `reasoning_vqa/no_trace_rate`."""
        from sce.tasks.scoring import per_imu_means

        said = [self.parse(i["prediction"]) for i in items]
        correct = [
            float(s is not None and s == self.parse(i["reference"]))
            for s, i in zip(said, items, strict=True)
        ]
        scalars = per_imu_means(self.name, {"acc": correct}, items)
        answers = [reasoning_mode_answer(i["prediction"]) for i in items]
        scalars[f"{self.name}/no_trace_rate"] = (
            sum(a is None for a in answers) / len(answers) if answers else math.nan
        )
        return TaskScores(scalars)

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Readable (a closed think block, then one letter) and right: the reference's letter."""
        said = self.parse(text)
        return graded_reward(said is not None, float(said == self.parse(item["reference"])))


REASONING_VQA = register_task(ReasoningVqaTask())
