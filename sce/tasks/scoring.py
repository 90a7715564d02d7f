"""Scoring helpers over evaluated items that several tasks share: the event metrics (3-class and
binary, overall and per source / IMU setting), the option log-likelihood metrics and the binary
alarm, the per-IMU-setting subsets of the text metrics.

The caller gathers every rank's items first, so the metric objects compute locally here
(`sync_on_compute` off): syncing again would count each item once per rank. The tasks import
this module inside their `metrics`, so reading a task (dataloader workers, `sce --help`) loads
no torchmetrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from sce.common.labels import BINARY_LABELS, LABELS
from sce.metrics.classification import EventClassificationMetrics, GroupedMetrics
from sce.metrics.parsing import ParsedAnswer
from sce.metrics.text import closed_qa_correct
from sce.tasks.base import TaskScores, graded_reward, scope_of
from sce.tasks.events import read_event, wording_of


def local(obj):
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


def parse_item(item: Mapping[str, Any]) -> ParsedAnswer:
    """The event answer of an item, read in its record's label scope."""
    return read_event(item["prediction"], scope_of(item), wording_of(item))


def event_metrics(items: list[dict], prefix: str = "") -> tuple[dict[str, float], Any]:
    """3-class + binary metrics of generated answers, overall and per source / IMU setting, and
    the [3, 4] confusion matrix (true class x predicted class + "invalid")."""
    grouped = local(GroupedMetrics(EventClassificationMetrics, _declared(items)))
    preds = [parse_item(i).label for i in items]
    targets, scopes = [i["label"] for i in items], [scope_of(i) for i in items]
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
    grouped = local(GroupedMetrics(EventClassificationMetrics, _declared(scored)))
    preds = [_likeliest(i) for i in scored]
    targets, scopes = [i["label"] for i in scored], [scope_of(i) for i in scored]
    grouped.update(preds, targets, scopes, groups=_groups(scored))
    return _flatten(grouped.compute(), "ll/") | alarm_metrics(scored)


def event_probability(item: dict) -> float:
    """P(event) of the binary alarm from the option probabilities (in label order,
    `sce.tasks.events.label_order_probs`): P(collision) + P(near_collision) of a 3-class item,
    P(A = event) of a binary one."""
    probs = item["option_probs"]
    return float(probs[0] if scope_of(item) == "binary" else probs[0] + probs[1])


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


def _likeliest(item: dict) -> str:
    """The option with the highest probability: a LABELS class of the 3-way question (the
    probabilities are in label order whatever the wording), or A, B (event, normal) of the
    binary one (the argmax over the first two is the binary question's answer)."""
    probs = item["option_probs"]
    if scope_of(item) == "binary":
        return BINARY_LABELS[int(np.argmax(probs[: len(BINARY_LABELS)]))]
    return LABELS[int(np.argmax(probs))]


def _flatten(results: dict[str, dict[str, float]], prefix: str) -> dict[str, float]:
    out = {}
    for group, values in results.items():
        head = prefix if group == "all" else f"{prefix}{group}/"
        out.update({f"{head}{name}": value for name, value in values.items()})
    return out


def imu_subsets(items: list[dict]) -> list[tuple[str, list[int]]]:
    """("", every item) and ("imu_<on|off>/", its items) for each IMU setting present: the same
    groups as the event metrics' `imu_on/...` keys (paper 000 Table V: with IMU / video only)."""
    settings = ["on" if i["imu_on"] else "off" for i in items]
    subsets = [("", list(range(len(items))))]
    for setting in sorted(set(settings)):
        subsets.append((f"imu_{setting}/", [k for k, s in enumerate(settings) if s == setting]))
    return subsets


def mean_over(values: list[float], index: list[int]) -> float:
    """The mean of `values` at `index` (NaN for none)."""
    return sum(values[k] for k in index) / len(index) if index else math.nan


def per_imu_means(
    name: str, per_item: Mapping[str, list[float]], items: list[dict]
) -> dict[str, float]:
    """`<name>/n` and `<name>/<metric>` (the mean of its per-item values) over every item and
    `imu_<on|off>/<name>/...` per IMU setting (paper 000 Table V)."""
    out: dict[str, float] = {}
    for head, index in imu_subsets(items):
        out[f"{head}{name}/n"] = float(len(index))
        out.update({f"{head}{name}/{k}": mean_over(v, index) for k, v in per_item.items()})
    return out


def text_metrics(
    name: str, items: list[dict], options: Any, texts: list[str | None]
) -> dict[str, float]:
    """ROUGE-L F1 and (with a local encoder, `options.bertscore_model`) BERTScore F1 of the
    free-text answers `texts` (None: unreadable, scores 0 on ROUGE-L) against the items'
    references, under `<name>/` (`per_imu_means`). Each pair is scored once (ROUGE-L and
    BERTScore F1 of a pair do not depend on the other pairs); a group's value is the mean over
    its pairs (torchmetrics' ROUGEScore and CaptionMetrics average the same way)."""
    from sce.metrics.text import bertscore_f1, rouge_l_f1

    refs = [i["reference"] for i in items]
    per_item = {"rougeL": rouge_l_f1(texts, refs)}
    bert = bertscore_f1(texts, refs, options.bertscore_model, options.bertscore_layer)
    if bert is not None:
        per_item["bertscore_f1"] = bert
    return per_imu_means(name, per_item, items)


def closed_answer_scores(name: str, items: list[dict]) -> TaskScores:
    """`<name>/{n,acc}` over all items and per IMU setting, by the closed-QA rule: the
    normalized answer equals the reference or starts with it as whole words (vqa, closed_qa)."""
    correct = [float(closed_qa_correct(i["prediction"], i["reference"])) for i in items]
    return TaskScores(per_imu_means(name, {"acc": correct}, items))


def closed_answer_reward(readable: bool, text: str | None, reference: str) -> float:
    """Readable, then right by the closed-QA rule."""
    return graded_reward(readable, float(readable and closed_qa_correct(text, reference)))
