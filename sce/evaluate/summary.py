"""Turn generated answers into the papers' metrics, per task, source and IMU setting.

Each task scores its own items (`Task.metrics`, sce.tasks); this module runs them over one
evaluation's items and draws what they return (confusion matrix, alarm PR curve).

Input: one dict per evaluated item, as `SceModule.generate_batch` returns them (id, task, label,
source, imu_on, reference, prediction, option_probs). Output: a `Summary` with flat scalars
(e.g. `acc`, `f1/collision`, `binary/recall`, `source_nexar/binary/acc`, `imu_off/acc`, `ll/acc`,
`caption/rougeL`, `instruction/bleu4`, `calibration/ece`, `reasoning/acc`, `closed_qa/acc`), figures
and sample rows. Event, caption and closed-QA keys also exist per IMU setting present in the items
(`imu_on/acc`, `imu_off/caption/rougeL`, `imu_on/closed_qa/acc`: paper 000 Table V); the
reasoning-mode keys (paper 001 Table 9) are the event keys under `reasoning/`.

Items of binary-scope records (`label_scope` "binary", Nexar) are read with the binary parser
("A. yes" / "B. no") and scored only in the binary SCE metrics (`binary/*`); the 3-class keys
(`acc`, `f1/<class>`, confusion matrix) count 3-class items only, and a group without 3-class
items (e.g. `source_nexar`) has none of them, only `n` (0) and `binary/*`, among them
`binary/invalid_rate`. `Summary.to_json` is strict JSON: undefined values are null.

The caller gathers every rank's items first, so the metric objects compute locally
(`sync_on_compute` off, sce.tasks.scoring): syncing again would count each item once per rank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sce.data.schema import LABELS
from sce.evaluate.figures import confusion_matrix_figure, figure_to_array, pr_curve_figure
from sce.tasks import TASKS
from sce.tasks.base import ScoringOptions, TaskScores
from sce.tasks.scoring import local


@dataclass
class Summary:
    """Everything one evaluation produced."""

    scalars: dict[str, float]
    confusion: list[list[int]] | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # name -> matplotlib Figure
    # the binary alarm's (targets, scores) (`alarm_scores`), for TensorBoard's PR curve
    alarm: tuple[list[int], list[float]] | None = None
    # every source evaluated: with one, no `source_<s>/` keys are logged (they would repeat the
    # overall ones), so readers such as `sce report` learn the source from here
    sources: list[str] = field(default_factory=list)

    def images(self) -> dict[str, np.ndarray]:
        """Figures as HWC uint8 arrays for TensorBoard's add_image."""
        return {name: figure_to_array(fig) for name, fig in self.figures.items()}

    def samples_markdown(self, n: int = 8) -> str:
        """A markdown table of sample generations, reference next to prediction."""
        rows = ["| id | task | imu | reference | prediction |", "|---|---|---|---|---|"]
        for item in self.samples[:n]:
            cells = [
                item["id"],
                item["task"],
                "on" if item["imu_on"] else "off",
                item["reference"],
                item["prediction"],
            ]
            rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        return "\n".join(rows)

    def to_json(self) -> dict[str, Any]:
        """Strict-JSON-ready dict: undefined (non-finite) values are None (see `json_safe`)."""
        return json_safe(
            {
                "scalars": {k: float(v) for k, v in self.scalars.items()},
                "confusion_matrix": self.confusion,
                "labels": list(LABELS),
                "sources": self.sources,
                "samples": self.samples,
            }
        )


def json_safe(value: Any) -> Any:
    """`value` with every NaN / ±Infinity replaced by None (JSON null), numpy and 0-d torch
    scalars made Python numbers, tuples made lists: `json.dumps(..., allow_nan=False)` accepts
    it. Null rather than dropping the key: an undefined metric (recall of a class absent from
    the targets) stays visible as undefined, and every reader sees the same keys."""
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)) and np.ndim(value) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cell(value: Any) -> str:
    return str(value).replace("|", "/").replace("\n", " ")[:200]


def alarm_pr_curve(targets: list[int], scores: list[float]) -> dict[str, list[float]]:
    """The alarm's precision-recall curve (torchmetrics' BinaryPrecisionRecallCurve, exact
    thresholds): `precision` and `recall` at each distinct score taken as threshold (an item
    alarms when its score >= threshold), ascending, then the (recall 0, precision 1) end point;
    `thresholds` has one value fewer."""
    from torchmetrics.classification import BinaryPrecisionRecallCurve

    metric = local(BinaryPrecisionRecallCurve(thresholds=None))
    metric.update(torch.tensor(scores, dtype=torch.float64), torch.tensor(targets))
    precision, recall, thresholds = metric.compute()
    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "thresholds": thresholds.tolist(),
    }


def summarize(
    results: list[dict[str, Any]],
    bertscore_model: str | None = None,
    max_samples: int = 64,
    bertscore_layer: int | None = None,
) -> Summary:
    """Metrics of every task present in `results`, each scored by its task (`Task.metrics`, in
    registry order; see the module docstring for the keys).

    bertscore_model / bertscore_layer: the local BERTScore encoder and its layer (None: no
    BERTScore; layer None: bert-score's recommended layer, see sce.metrics.text)."""
    by_task: dict[str, list[dict]] = {}
    for item in results:
        by_task.setdefault(item["task"], []).append(item)
    options = ScoringOptions(bertscore_model, bertscore_layer)
    summary = Summary(
        # n: the items and clips scored (a paper table gives its n, sce report prints it)
        scalars={
            "items": float(len(results)),
            "clips": float(len({item.get("id") for item in results})),
        },
        samples=[_sample(item) for item in results[:max_samples]],
        sources=sorted({str(item["source"]) for item in results}),
    )
    for name, task in TASKS.items():
        if name in by_task:
            _add_scores(summary, task.metrics(by_task[name], options))
    return summary


def _add_scores(summary: Summary, scores: TaskScores) -> None:
    """A task's scores into the summary, with the figures of its confusion matrix and alarm."""
    summary.scalars.update(scores.scalars)
    if scores.confusion is not None:
        summary.confusion = scores.confusion.int().tolist()
        summary.figures["confusion_matrix"] = confusion_matrix_figure(scores.confusion, LABELS)
    if scores.alarm is not None:
        summary.alarm = scores.alarm
        curve = alarm_pr_curve(*scores.alarm)
        ap = summary.scalars["alarm/ap"]
        summary.figures["alarm_pr_curve"] = pr_curve_figure(curve["precision"], curve["recall"], ap)
    summary.figures.update(scores.figures)


SAMPLE_FIELDS = (
    "id",
    "task",
    "label",
    "source",
    "imu_on",
    "reference",
    "prediction",
    "option_probs",
)


def _sample(item: dict[str, Any]) -> dict[str, Any]:
    """An item's fields shown in the sample table and written to the evaluation JSON."""
    return {k: item.get(k) for k in SAMPLE_FIELDS}
