"""open_qa: paper 000's open-ended questions "about the event and its causes" (`annotations.qa`,
type "open", written by `sce label`), every pair its own item; also LingoQA's free-text
questions (paper 000 Table III), which its converter writes there.

Scored as paper 000 scores free text (Tables I and III): ROUGE-L F1 and (with a local encoder)
BERTScore F1 under `open_qa/`, overall and per IMU setting, never exact match. A LingoQA
question with several reference answers is scored against the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sce.tasks.base import (
    ScoringOptions,
    TaskScores,
    graded_reward,
    register_task,
)
from sce.tasks.caption import read_text
from sce.tasks.qa import QaPairTask

KIND = "open"


class OpenQaTask(QaPairTask):
    name = "open_qa"
    kind = KIND
    uses_bertscore = True

    def parse(self, text: str | None, scope: str = "three_class") -> str | None:
        """The free-text answer (after a closed think block); None when empty."""
        return read_text(text)

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        """`open_qa/{n,rougeL,bertscore_f1}` and `imu_<on|off>/open_qa/...`
        (`sce.tasks.scoring.text_metrics`)."""
        from sce.tasks.scoring import text_metrics

        texts = [i["prediction"] for i in items]
        return TaskScores(text_metrics(self.name, items, options, texts))

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Readable (non-empty, no unclosed think block), then ROUGE-L F1 to the reference."""
        from sce.metrics.text import rouge_l_f1

        said = self.parse(text)
        overlap = rouge_l_f1([said], [item["reference"]])[0] if said is not None else 0.0
        return graded_reward(said is not None, overlap)


OPEN_QA = register_task(OpenQaTask())
