"""Scoring primitives: answers against references -> numbers. One floor above `sce.common`, so
tasks (`sce.tasks`) can score themselves; running an evaluation is `sce.evaluate`.

- parsing         generated text -> event class, letter, probability, reasoning split,
                  instruction answer parts (events, instruction)
- classification  per-class P/R/F1, accuracy, confusion (torchmetrics), grouped by source / IMU
- text            ROUGE-L, BERTScore, closed-QA accuracy
- instruction     paper 003's metrics: BERTScore of the event part and the instruction, BLEU
- calibration     Brier, ECE, MAE and reliability bins of probability answers

Typical use in an evaluation callback::

    parsed = [parse_event_class(text) for text in generations]  # parse_binary_event: Nexar
    grouped = GroupedMetrics(EventClassificationMetrics, {"source": sources, "imu": ["on", "off"]})
    grouped.update([p.label for p in parsed], labels, scopes, groups={"source": ..., "imu": ...})
    logger.log_metrics(grouped.compute_flat("val"))

Names are imported lazily, so `from sce.metrics.parsing import parse_event_class` (dataloader
workers) does not load torchmetrics or matplotlib. OPTION_LETTERS and BINARY_OPTION_LETTERS are
re-exported from sce.common.labels, where they are defined.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "sce.metrics.parsing": (
        "BINARY_OPTION_LETTERS",
        "OPTION_LETTERS",
        "ParsedAnswer",
        "parse_binary_event",
        "parse_event_class",
        "parse_letter",
        "parse_probability",
        "reasoning_mode_answer",
        "split_reasoning",
    ),
    "sce.metrics.classification": (
        "SCE_LABELS",
        "EventClassificationMetrics",
        "GroupedMetrics",
        "group_key",
        "labels_from_option_scores",
        "option_probabilities",
        "sce_probability",
    ),
    "sce.metrics.calibration": (
        "CalibrationMetrics",
        "brier_score",
        "calibration_bins",
        "expected_calibration_error",
        "mean_absolute_error",
        "reliability_diagram",
    ),
    "sce.metrics.text": (
        "BERTSCORE_MODEL_ENV",
        "BERTScoreEncoder",
        "BERTScoreF1",
        "CaptionMetrics",
        "ClosedQAAccuracy",
        "bertscore_f1",
        "closed_qa_accuracy",
        "closed_qa_correct",
        "normalize_answer",
        "recommended_layer",
        "resolve_bertscore_encoder",
        "rouge_l_f1",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'sce.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)


def __dir__() -> list[str]:
    return __all__
