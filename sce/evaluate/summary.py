"""Turn generated answers into the papers' metrics, per task, source and IMU setting.

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

The caller gathers every rank's items first, so the metric objects compute locally here
(`sync_on_compute` off): syncing again would count each item once per rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from sce.data.prompts import default_collision_probability
from sce.data.schema import BINARY_LABELS, LABELS
from sce.evaluate.figures import confusion_matrix_figure, figure_to_array, pr_curve_figure
from sce.metrics.calibration import CalibrationMetrics
from sce.metrics.classification import EventClassificationMetrics, GroupedMetrics
from sce.metrics.instruction import instruction_metrics
from sce.metrics.parsing import (
    ParsedAnswer,
    parse_binary_event,
    parse_event_class,
    parse_probability,
    reasoning_mode_answer,
)
from sce.metrics.text import bertscore_f1, closed_qa_correct, rouge_l_f1

EVENT_TASKS = ("mcq",)


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


def _local(obj):
    """Disable cross-rank sync in every torchmetrics Metric inside obj (items are gathered)."""
    modules = obj.modules() if isinstance(obj, torch.nn.Module) else [obj]
    for module in modules:
        if isinstance(module, Metric):
            module.sync_on_compute = False
    return obj


def _groups(items: list[dict]) -> dict[str, list[str]]:
    """The group dimensions of the per-group metrics. The source dimension only when the items
    come from more than one source: with one, `source_<s>/acc` would repeat `acc`. The IMU
    dimension always (the compact table and paper 000 Table V read `imu_on/...`)."""
    groups = {"imu": ["on" if i["imu_on"] else "off" for i in items]}
    sources = [str(i["source"]) for i in items]
    if len(set(sources)) > 1:
        groups["source"] = sources
    return groups


def _declared(items: Iterable[dict]) -> dict[str, list[str]]:
    items = list(items)
    groups = _groups(items)
    return {dim: sorted(set(values)) for dim, values in groups.items()}


def _scope(item: dict) -> str:
    return item.get("label_scope") or ("binary" if item["label"] == "event" else "three_class")


def parse_item(item: dict) -> ParsedAnswer:
    """The event answer of an item, read in its record's label scope."""
    if _scope(item) == "binary":
        return parse_binary_event(item["prediction"])
    return parse_event_class(item["prediction"])


def event_metrics(items: list[dict], prefix: str = "") -> tuple[dict[str, float], Any]:
    """3-class + binary metrics of generated answers, overall and per source / IMU setting, and
    the [3, 4] confusion matrix (true class x predicted class + "invalid")."""
    grouped = _local(GroupedMetrics(EventClassificationMetrics, _declared(items)))
    preds = [parse_item(i).label for i in items]
    targets, scopes = [i["label"] for i in items], [_scope(i) for i in items]
    grouped.update(preds, targets, scopes, groups=_groups(items))
    scalars = _flatten(grouped.compute(), prefix)
    # the invalid column keeps each row summing to the class support, so the matrix agrees with
    # the logged recall (an invalid answer counts against recall)
    return scalars, grouped["all"].confusion_matrix(include_invalid=True)


def likelihood_metrics(items: list[dict]) -> dict[str, float]:
    """The same metrics with the class chosen by option log-likelihood (no parsing)."""
    scored = [i for i in items if i.get("option_probs")]
    if not scored:
        return {}
    grouped = _local(GroupedMetrics(EventClassificationMetrics, _declared(scored)))
    preds = [_likeliest(i) for i in scored]
    targets, scopes = [i["label"] for i in scored], [_scope(i) for i in scored]
    grouped.update(preds, targets, scopes, groups=_groups(scored))
    return _flatten(grouped.compute(), "ll/") | alarm_metrics(scored)


def event_probability(item: dict) -> float:
    """P(event) of the binary alarm from the option probabilities: P(collision) +
    P(near_collision) (letters A + B) of a 3-class item, P(A = event) of a binary one."""
    probs = item["option_probs"]
    return float(probs[0] if _scope(item) == "binary" else probs[0] + probs[1])


def alarm_scores(items: list[dict]) -> tuple[list[int], list[float]] | None:
    """(targets, scores) of the binary alarm: 1 for collision / near-collision / event, 0 for
    normal, scored by `event_probability`; over the items with option probabilities. None when
    one class is absent (no ranking metric is defined)."""
    scored = [i for i in items if i.get("option_probs")]
    targets = [int(i["label"] != "normal") for i in scored]
    if len(set(targets)) < 2:
        return None
    return targets, [event_probability(i) for i in scored]


def alarm_metrics(items: list[dict]) -> dict[str, float]:
    """Threshold-free metrics of the binary alarm (event vs normal) from the option
    probabilities: `alarm/auroc` and `alarm/ap` (average precision). A safety detector is
    chosen by its operating point; these rank every one. Empty when one class is absent."""
    from torchmetrics.functional.classification import binary_auroc, binary_average_precision

    alarm = alarm_scores(items)
    if alarm is None:
        return {}
    target = torch.tensor(alarm[0])
    scores = torch.tensor(alarm[1], dtype=torch.float64)
    return {
        "alarm/auroc": float(binary_auroc(scores, target)),
        "alarm/ap": float(binary_average_precision(scores, target)),
    }


def alarm_pr_curve(targets: list[int], scores: list[float]) -> dict[str, list[float]]:
    """The alarm's precision-recall curve (torchmetrics' BinaryPrecisionRecallCurve, exact
    thresholds): `precision` and `recall` at each distinct score taken as threshold (an item
    alarms when its score >= threshold), ascending, then the (recall 0, precision 1) end point;
    `thresholds` has one value fewer."""
    from torchmetrics.classification import BinaryPrecisionRecallCurve

    metric = _local(BinaryPrecisionRecallCurve(thresholds=None))
    metric.update(torch.tensor(scores, dtype=torch.float64), torch.tensor(targets))
    precision, recall, thresholds = metric.compute()
    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "thresholds": thresholds.tolist(),
    }


def _likeliest(item: dict) -> str:
    """The option with the highest letter probability: A, B, C of the 3-way question, or A, B
    (event, normal) of the binary one (the probabilities are over the letters A, B, C; the
    argmax over the first two is the binary question's answer)."""
    probs = item["option_probs"]
    if _scope(item) == "binary":
        return BINARY_LABELS[int(np.argmax(probs[: len(BINARY_LABELS)]))]
    return LABELS[int(np.argmax(probs))]


def _flatten(results: dict[str, dict[str, float]], prefix: str) -> dict[str, float]:
    out = {}
    for group, values in results.items():
        head = prefix if group == "all" else f"{prefix}{group}/"
        out.update({f"{head}{name}": value for name, value in values.items()})
    return out


def _imu_subsets(items: list[dict]) -> list[tuple[str, list[int]]]:
    """("", every item) and ("imu_<on|off>/", its items) for each IMU setting present: the same
    groups as the event metrics' `imu_on/...` keys (paper 000 Table V: with IMU / video only)."""
    settings = ["on" if i["imu_on"] else "off" for i in items]
    subsets = [("", list(range(len(items))))]
    for setting in sorted(set(settings)):
        subsets.append((f"imu_{setting}/", [k for k, s in enumerate(settings) if s == setting]))
    return subsets


def _mean(values: list[float], index: list[int]) -> float:
    return sum(values[k] for k in index) / len(index) if index else math.nan


def caption_metrics(
    items: list[dict], bertscore_model: str | None, bertscore_layer: int | None = None
) -> dict[str, float]:
    """`caption/{n,rougeL,bertscore_f1}` over all items and `imu_<on|off>/caption/...` per IMU
    setting. Each pair is scored once (ROUGE-L and BERTScore F1 of a pair do not depend on the
    other pairs); a group's value is the mean over its pairs (torchmetrics' ROUGEScore and
    CaptionMetrics average the same way)."""
    preds, refs = [i["prediction"] for i in items], [i["reference"] for i in items]
    per_pair = {"rougeL": rouge_l_f1(preds, refs)}
    bert = bertscore_f1(preds, refs, bertscore_model, bertscore_layer)
    if bert is not None:
        per_pair["bertscore_f1"] = bert
    out: dict[str, float] = {}
    for head, index in _imu_subsets(items):
        out[f"{head}caption/n"] = float(len(index))
        out.update({f"{head}caption/{k}": _mean(v, index) for k, v in per_pair.items()})
    return out


def closed_qa_metrics(items: list[dict]) -> dict[str, float]:
    """`closed_qa/{n,acc}` over all items and `imu_<on|off>/closed_qa/...` per IMU setting."""
    correct = [float(closed_qa_correct(i["prediction"], i["reference"])) for i in items]
    out: dict[str, float] = {}
    for head, index in _imu_subsets(items):
        out[f"{head}closed_qa/n"] = float(len(index))
        out[f"{head}closed_qa/acc"] = _mean(correct, index)
    return out


def reasoning_metrics(items: list[dict]) -> dict[str, float]:
    """Paper 001's reasoning-mode accuracy (Table 9): the event question asked with the
    reasoning instruction, scored on the answer after `</think>` only (`reasoning_mode_answer`).

    A response without a closed think block is invalid (counted wrong): Table 9 reports n/a
    for the model that "fails to respond with reasoning traces, even when prompted", so an
    answer given without a trace is not a reasoning-mode answer. Keys: every event-metric key
    under `reasoning/` (`reasoning/acc`, `reasoning/f1/<class>`, `reasoning/binary/acc`,
    `reasoning/imu_on/acc`, ...) and `reasoning/no_trace_rate` (responses without a closed
    think block)."""
    answers = [reasoning_mode_answer(i["prediction"]) for i in items]
    scored = [{**item, "prediction": a} for item, a in zip(items, answers, strict=True)]
    scalars, _ = event_metrics(scored, "reasoning/")
    scalars["reasoning/no_trace_rate"] = (
        sum(a is None for a in answers) / len(answers) if answers else math.nan
    )
    return scalars


def calibration_metrics(items: list[dict]) -> tuple[dict[str, float], Any]:
    metric = _local(CalibrationMetrics())
    metric.update(
        [parse_probability(i["prediction"]) for i in items],
        [default_collision_probability(i["label"]) for i in items],
    )
    scalars = {f"calibration/{k}": v for k, v in metric.compute().items()}
    return scalars, metric.figure("Collision probability: reliability")


def summarize(
    results: list[dict[str, Any]],
    bertscore_model: str | None = None,
    max_samples: int = 64,
    bertscore_layer: int | None = None,
) -> Summary:
    """Metrics of every task present in `results` (see the module docstring for the keys).

    bertscore_model / bertscore_layer: the local BERTScore encoder and its layer (None: no
    BERTScore; layer None: bert-score's recommended layer, see sce.metrics.text)."""
    by_task: dict[str, list[dict]] = {}
    for item in results:
        by_task.setdefault(item["task"], []).append(item)
    scalars: dict[str, float] = {"items": float(len(results))}
    figures: dict[str, Any] = {}
    confusion = None
    alarm = None
    if "mcq" in by_task:
        event, matrix = event_metrics(by_task["mcq"])
        scalars.update(event)
        scalars.update(likelihood_metrics(by_task["mcq"]))
        confusion = matrix.int().tolist()
        figures["confusion_matrix"] = confusion_matrix_figure(matrix, LABELS)
        alarm = alarm_scores(by_task["mcq"])
        if alarm is not None:
            curve = alarm_pr_curve(*alarm)
            ap = scalars["alarm/ap"]
            figures["alarm_pr_curve"] = pr_curve_figure(curve["precision"], curve["recall"], ap)
    if "reasoning" in by_task:
        scalars.update(reasoning_metrics(by_task["reasoning"]))
    if "caption" in by_task:
        scalars.update(caption_metrics(by_task["caption"], bertscore_model, bertscore_layer))
    if "instruction" in by_task:
        scalars.update(
            instruction_metrics(by_task["instruction"], bertscore_model, bertscore_layer)
        )
    if "vqa" in by_task:
        scalars.update(closed_qa_metrics(by_task["vqa"]))
    if "probability" in by_task:
        calibration, figure = calibration_metrics(by_task["probability"])
        scalars.update(calibration)
        figures["reliability"] = figure
    samples = [
        {
            k: item.get(k)
            for k in (
                "id",
                "task",
                "label",
                "source",
                "imu_on",
                "reference",
                "prediction",
                "option_probs",
            )
        }
        for item in results[:max_samples]
    ]
    return Summary(
        scalars=scalars,
        confusion=confusion,
        samples=samples,
        figures=figures,
        alarm=alarm,
        sources=sorted({str(item["source"]) for item in results}),
    )
