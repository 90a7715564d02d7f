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
    name = "caption"
    fields = (FIELD,)
    uses_bertscore = True

    def check(self, annotations: Mapping[str, Any]) -> None:
        if annotations.get(FIELD) is not None:
            check_text(f"annotations.{FIELD}", annotations[FIELD])

    def question(self, source: TaskSource, rng: random.Random) -> str:
        return CAPTION_QUESTION

    def answer(self, source: TaskSource, rng: random.Random) -> str:
        return str(source.annotations[FIELD])

    def parse(self, text: str | None, scope: str = "three_class") -> str | None:
        return read_text(text)

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        """`caption/{n,rougeL,bertscore_f1}` over all items and `imu_<on|off>/caption/...` per
        IMU setting. Each pair is scored once (ROUGE-L and BERTScore F1 of a pair do not depend
        on the other pairs); a group's value is the mean over its pairs (torchmetrics'
        ROUGEScore and CaptionMetrics average the same way)."""
        from sce.metrics.text import bertscore_f1, rouge_l_f1
        from sce.tasks.scoring import imu_subsets, mean_over

        preds, refs = [i["prediction"] for i in items], [i["reference"] for i in items]
        per_pair = {"rougeL": rouge_l_f1(preds, refs)}
        bert = bertscore_f1(preds, refs, options.bertscore_model, options.bertscore_layer)
        if bert is not None:
            per_pair["bertscore_f1"] = bert
        out: dict[str, float] = {}
        for head, index in imu_subsets(items):
            out[f"{head}caption/n"] = float(len(index))
            out.update({f"{head}caption/{k}": mean_over(v, index) for k, v in per_pair.items()})
        return TaskScores(out)

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Readable (non-empty, no unclosed think block), then ROUGE-L F1 to the reference."""
        from sce.metrics.text import rouge_l_f1

        said = self.parse(text)
        overlap = rouge_l_f1([said], [item["reference"]])[0] if said is not None else 0.0
        return graded_reward(said is not None, overlap)


CAPTION = register_task(CaptionTask())
