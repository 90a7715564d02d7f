"""caption: describe the safety-critical event; the answer is `annotations.caption`.

Scored by ROUGE-L F1 and (with a local encoder) BERTScore F1, overall and per IMU setting.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

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

FIELD = "caption"  # the annotation the answer is
CAPTION_QUESTION = "Describe the safety-critical event in this clip, if any."


def read_text(text: str | None) -> str | None:
    """A free-text answer: the text after a closed think block, stripped; None when empty or
    inside an unclosed think block."""
    if not isinstance(text, str):
        return None
    _, answer, valid = split_reasoning(text)
    return answer if valid and answer else None


class CaptionTask(Task):
    """A free-text description of the clip read from one annotation field (`prompt` asks for
    it); scored by ROUGE-L and BERTScore under the task's name. `structured_caption` is the same
    task on the metadata caption."""

    name = "caption"
    fields = (FIELD,)
    uses_bertscore = True
    prompt = CAPTION_QUESTION

    def check(self, annotations: Mapping[str, Any]) -> None:
        (field,) = self.fields
        if annotations.get(field) is not None:
            check_text(f"annotations.{field}", annotations[field])

    def question(self, source: TaskSource, rng: random.Random) -> str:
        return self.prompt

    def answer(self, source: TaskSource, rng: random.Random) -> str:
        return str(source.annotations[self.fields[0]])

    def parse(self, text: str | None, scope: str = "three_class") -> str | None:
        return read_text(text)

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        """`<name>/{n,rougeL,bertscore_f1}` over all items and `imu_<on|off>/<name>/...` per IMU
        setting (`sce.tasks.scoring.text_metrics`), on the prediction as generated."""
        from sce.tasks.scoring import text_metrics

        preds = [i["prediction"] for i in items]
        return TaskScores(text_metrics(self.name, items, options, preds))

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Readable (non-empty, no unclosed think block), then ROUGE-L F1 to the reference."""
        from sce.metrics.text import rouge_l_f1

        said = self.parse(text)
        overlap = rouge_l_f1([said], [item["reference"]])[0] if said is not None else 0.0
        return graded_reward(said is not None, overlap)


CAPTION = register_task(CaptionTask())
