"""mcq: the event question with lettered options, the clip's class as the answer ("B.
near-collision"); a binary-scope record (Nexar) is asked the yes/no question instead ("A. yes").

Scored by the event metrics (accuracy, per-class P/R/F1, binary SCE metrics, per source and IMU
setting), the same metrics with the class chosen by option log-likelihood (`ll/`), and the binary
alarm (`alarm/auroc`, `alarm/ap`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from sce.tasks.base import (
    ScoringOptions,
    Task,
    TaskScores,
    TaskSource,
    graded_reward,
    register_task,
    scope_of,
)
from sce.tasks.events import DEFAULT_WORDING, event_answer, event_question, read_event, wording_of


class McqTask(Task):
    name = "mcq"
    every_record = True

    def question(self, source: TaskSource, rng: random.Random) -> str:
        return event_question(source.scope, source.wording)

    def answer(self, source: TaskSource, rng: random.Random) -> str:
        return event_answer(source.label, source.scope, source.wording)

    def parse(
        self, text: str | None, scope: str = "three_class", wording: str = DEFAULT_WORDING
    ) -> str | None:
        """The class the answer names (a label of the scope; letters in `wording`'s order),
        None when invalid."""
        return read_event(text, scope, wording).label

    def metrics(self, items: list[dict], options: ScoringOptions) -> TaskScores:
        from sce.tasks.scoring import alarm_scores, event_metrics, likelihood_metrics

        scalars, matrix = event_metrics(items)
        scalars.update(likelihood_metrics(items))
        return TaskScores(scalars, confusion=matrix, alarm=alarm_scores(items))

    def reward(self, text: str | None, item: Mapping[str, Any]) -> float:
        """Readable (one class named) and right: the record's label."""
        said = self.parse(text, scope_of(item), wording_of(item))
        return graded_reward(said is not None, float(said == item["label"]))


MCQ = register_task(McqTask())
