"""closed_qa: paper 000's closed-ended questions "about the static scene whose answer is a single
word or yes/no" (`annotations.qa`, type "closed", written by `sce label`), every pair its own
item, so an evaluation scores every closed pair of each evaluated clip.

Scored by closed-QA accuracy (`closed_qa/acc`, paper 000 Tables I, IV and V: "accuracy on static
scene questions"), overall and per IMU setting: the normalized answer equals the reference or
starts with it as whole words (`sce.metrics.text.closed_qa_correct`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sce.tasks.base import (
    ScoringOptions,
    TaskScores,
    register_task,
)
from sce.tasks.qa import QaPairTask

KIND = "closed"


class ClosedQaTask(QaPairTask):
    name = "closed_qa"
    kind = KIND

    def parse(self, text: str | None, scope: str = "three_class") -> str | None:
        """The normalized answer (lower case, no punctuation or articles); None when empty."""
        from sce.metrics.text import normalize_answer

        return normalize_answer(text) or None

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        """`closed_qa/{n,acc}` over all items and `imu_<on|off>/closed_qa/...` per IMU setting."""
        from sce.tasks.scoring import closed_answer_scores

        return closed_answer_scores(self.name, items)

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Readable, then right by the closed-QA rule (the answer's words)."""
        from sce.tasks.scoring import closed_answer_reward

        return closed_answer_reward(self.parse(text) is not None, text, item["reference"])


CLOSED_QA = register_task(ClosedQaTask())
