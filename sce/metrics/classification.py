"""Event classification metrics: 3-class per-class P/R/F1 and binary SCE, synced by torchmetrics.

Label scopes: an item whose record has label_scope "binary" (Nexar: "event" / "normal", the
source knows no more) counts only in the binary SCE metrics, never in the 3-class accuracy,
per-class scores or confusion matrix; a 3-class item counts in both, collapsed to event (collision
or near-collision) vs normal for the binary ones (paper 000's binary SCE). `n` counts the
3-class items, `binary/n` every item.

Invalid answers (prediction None: the parser could not read a class) always count as wrong:

- 3-class: they go to an extra "invalid" prediction column (index 3). They lower the recall of
  their true class and the accuracy, never the precision of a real class.
  `confusion_matrix()` gives the [3, 3] matrix of valid predictions and
  `confusion_matrix(include_invalid=True)` the [3, 4] matrix with the invalid column.
- binary SCE (collision + near_collision vs normal): an invalid answer is put on the wrong side
  of its target (a false negative for an SCE clip, a false positive for a normal clip).

Undefined values: precision of a class never predicted is 0 (torchmetrics' zero_division=0, as
the papers report "0 precision" for a class a model never outputs); recall and F1 of a class
absent from the targets are NaN (e.g. near_collision on Nexar, which has no such label), and so
are binary recall and F1 without any SCE target. The macro averages run over the classes present
in the targets.

Keys present: `n` and `binary/n` always (counts); the 3-class keys (acc, macro_*, per-class
scores, support, invalid_rate) only when n > 0, the other `binary/*` keys only when binary/n > 0.
A group of binary-scope items only (e.g. source_nexar) therefore has no 3-class keys at all
rather than NaN placeholders for metrics it cannot have. `binary/invalid_rate` is the share of
every item (3-class and binary) whose answer did not parse, so a binary item's invalid answer
is counted in an invalid rate too.

Every metric object is a torchmetrics Metric (or a module of them): `compute()` syncs the states
across ranks. Under DDP every rank must call `compute()` on the same objects; `GroupedMetrics`
therefore creates all its groups up front.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection, SumMetric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    BinaryStatScores,
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from sce.common.labels import BINARY_LABELS, LABELS
from sce.metrics.parsing import ParsedAnswer

SCE_LABELS: tuple[str, ...] = ("collision", "near_collision")
INVALID = "invalid"


def _quiet_compute(metric: Any) -> Any:
    # torchmetrics warns when compute() runs before update(); an empty group is expected here and
    # still has to take part in the cross-rank sync.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
        return metric.compute()


class EventClassificationMetrics(nn.Module):
    """3-class and binary SCE metrics over parsed answers.

    update(pred_labels, target_labels, scopes=None): predictions are class names, ParsedAnswer or
    None (invalid answer); targets are class names; scopes the targets' label scopes
    ("three_class" or "binary"; None: "binary" for an "event" target, else "three_class").
    compute() returns a flat dict of floats.
    """

    def __init__(
        self, labels: Sequence[str] = LABELS, positive: Sequence[str] = SCE_LABELS
    ) -> None:
        super().__init__()
        self.labels = tuple(labels)
        unknown = [p for p in positive if p not in self.labels]
        if unknown:
            raise ValueError(f"positive classes {unknown} are not among the labels {self.labels}")
        self.positive = tuple(positive)
        k = len(self.labels) + 1  # + the "invalid" prediction column
        self.multiclass = MetricCollection(
            {
                "precision": MulticlassPrecision(k, average=None),
                "recall": MulticlassRecall(k, average=None),
                "f1": MulticlassF1Score(k, average=None),
                "acc": MulticlassAccuracy(k, average="micro"),
            }
        )
        self.confmat = MulticlassConfusionMatrix(k)
        self.binary = MetricCollection(
            {
                "precision": BinaryPrecision(),
                "recall": BinaryRecall(),
                "f1": BinaryF1Score(),
                "acc": BinaryAccuracy(),
                "stats": BinaryStatScores(),  # [tp, fp, tn, fn, support]
            }
        )
        self.binary_invalid = SumMetric()  # items whose answer did not parse (any scope)

    @property
    def device(self) -> torch.device:
        return self.confmat.device

    def _index(self, label: str, role: str, i: int) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(
                f"{role} label {label!r} at position {i} is not one of {self.labels}"
            ) from None

    def _pred_index(self, pred: str | ParsedAnswer | None, i: int) -> int:
        if isinstance(pred, ParsedAnswer):
            pred = pred.label
        return len(self.labels) if pred is None else self._index(pred, "predicted", i)

    def _is_event(self, label: str, role: str, i: int) -> bool:
        if label in BINARY_LABELS:
            return label != "normal"
        return self.labels[self._index(label, role, i)] in self.positive

    def update(
        self,
        pred_labels: Sequence[str | ParsedAnswer | None],
        target_labels: Sequence[str],
        scopes: Sequence[str | None] | None = None,
    ) -> None:
        """Add a batch of predictions (None = invalid answer), their true classes and (optionally)
        the targets' label scopes; binary-scope items update only the binary metrics."""
        n = len(target_labels)
        if len(pred_labels) != n:
            raise ValueError(f"{len(pred_labels)} predictions but {n} targets")
        scopes = [None] * n if scopes is None else list(scopes)
        if len(scopes) != n:
            raise ValueError(f"{len(scopes)} label scopes for {n} targets")
        if not n:
            return
        preds = [p.label if isinstance(p, ParsedAnswer) else p for p in pred_labels]
        pairs = enumerate(zip(target_labels, scopes, strict=True))
        binary = [self._is_binary(t, s, i) for i, (t, s) in pairs]
        three = [i for i in range(n) if not binary[i]]
        if three:
            t = torch.tensor([self._index(target_labels[i], "target", i) for i in three])
            p = torch.tensor([self._pred_index(preds[i], i) for i in three])
            self.multiclass.update(p.to(self.device), t.to(self.device))
            self.confmat.update(p.to(self.device), t.to(self.device))
        t_bin = [self._is_event(t, "target", i) for i, t in enumerate(target_labels)]
        p_bin = [  # an invalid answer lands on the wrong side of its target
            (not t_bin[i]) if p is None else self._is_event(p, "predicted", i)
            for i, p in enumerate(preds)
        ]
        self.binary.update(
            torch.tensor(p_bin, device=self.device).long(),
            torch.tensor(t_bin, device=self.device).long(),
        )
        self.binary_invalid.update(torch.tensor(float(preds.count(None)), device=self.device))

    def _is_binary(self, target: str, scope: str | None, i: int) -> bool:
        if scope not in (None, "three_class", "binary"):
            raise ValueError(
                f"label scope {scope!r} at position {i} is not 'three_class' or 'binary'"
            )
        binary = scope == "binary" or (scope is None and target == "event")
        allowed = BINARY_LABELS if binary else self.labels
        if target not in allowed:
            raise ValueError(
                f"target label {target!r} at position {i} is not one of {allowed} "
                f"(label scope {'binary' if binary else 'three_class'})"
            )
        return binary

    def reset(self) -> None:
        self.multiclass.reset()
        self.confmat.reset()
        self.binary.reset()
        self.binary_invalid.reset()

    def confusion_matrix(self, include_invalid: bool = False) -> Tensor:
        """Counts, rows = true class, columns = predicted class (+ "invalid" column on request)."""
        cm = _quiet_compute(self.confmat)[: len(self.labels)]
        return cm if include_invalid else cm[:, : len(self.labels)]

    def compute(self) -> dict[str, float]:
        """acc, macro_{precision,recall,f1}, {precision,recall,f1,support}/<class>, invalid_rate
        and n over the 3-class items; binary/{precision,recall,f1,acc,invalid_rate,n} over every
        item. Only the keys of a scope with items are returned (see the module doc)."""
        # both computes run whatever the counts: every rank takes part in every sync
        return self._multiclass_scalars() | self._binary_scalars()

    def _multiclass_scalars(self) -> dict[str, float]:
        multi = _quiet_compute(self.multiclass)
        cm = self.confusion_matrix(include_invalid=True).double()
        n = int(cm.sum())
        k = len(self.labels)
        support = cm.sum(dim=1)
        out: dict[str, float] = {"n": n}  # n and support are ints (counts)
        if n == 0:  # no 3-class item: no 3-class metric (not NaN placeholders)
            return out
        present = support > 0
        for name in ("precision", "recall", "f1"):
            values = multi[name][:k].double().cpu()
            if name != "precision":
                values = torch.where(present, values, torch.nan)
            for label, value in zip(self.labels, values.tolist(), strict=True):
                out[f"{name}/{label}"] = value
            out[f"macro_{name}"] = float(values[present].mean())
        out |= {f"support/{label}": int(s) for label, s in zip(self.labels, support, strict=True)}
        out["acc"] = float(multi["acc"])
        out["invalid_rate"] = float(cm[:, k].sum() / n)
        return out

    def _binary_scalars(self) -> dict[str, float]:
        binary = _quiet_compute(self.binary)
        invalid = int(_quiet_compute(self.binary_invalid))
        tp, fp, tn, fn, positives = (int(v) for v in binary.pop("stats").tolist())
        n = tp + fp + tn + fn
        if n == 0:  # no item at all
            return {"binary/n": n}
        out: dict[str, float] = {f"binary/{name}": float(v) for name, v in binary.items()}
        if not positives:
            out["binary/recall"] = out["binary/f1"] = math.nan  # no SCE target: undefined
        return out | {"binary/invalid_rate": invalid / n, "binary/n": n}

    def metric_names(self) -> list[str]:
        """Every key compute() can return, in a stable order (for tables)."""
        names = ["n", "acc", "macro_precision", "macro_recall", "macro_f1", "invalid_rate"]
        for name in ("precision", "recall", "f1", "support"):
            names += [f"{name}/{label}" for label in self.labels]
        binary = ("precision", "recall", "f1", "acc", "invalid_rate", "n")
        return names + [f"binary/{m}" for m in binary]


# ---------------------------------------------------------------------------- grouping


def _take(value: Any, index: list[int]) -> Any:
    if isinstance(value, Tensor):
        return value[torch.as_tensor(index, dtype=torch.long, device=value.device)]
    return [value[i] for i in index]


def group_key(dimension: str, value: Any) -> str:
    """Name of one group, safe as a module key and a TensorBoard tag: "source_nexar"."""
    return re.sub(r"[^\w\-]", "_", f"{dimension}_{value}")


def _has_items(result: Mapping[str, float]) -> bool:
    """A group scored something: 3-class items (n) or binary-only items (binary/n, Nexar).
    What it reports is then limited to the scopes it has items of (see the module doc)."""
    return result.get("n", 1) > 0 or result.get("binary/n", 0) > 0


class GroupedMetrics(nn.Module):
    """One metric object per group plus "all", e.g. per source and per IMU on/off.

    factory: builds a fresh metric (anything with update/compute/reset, e.g.
    EventClassificationMetrics, CalibrationMetrics, CaptionMetrics).
    groups: the dimensions and every value they can take, e.g.
    {"source": ["synthetic", "nexar"], "imu": ["on", "off"]}. All groups exist from the start so
    every rank computes (and syncs) the same objects; an undeclared value raises.

    update(*args, groups={"source": [...], "imu": [...]}): the positional args go to every metric,
    sliced per group (lists or tensors with the batch first); each dimension gives one value per
    sample. A dimension may be left out of a batch.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        groups: Mapping[str, Sequence[Any]] | None = None,
        overall: str = "all",
    ) -> None:
        super().__init__()
        self.overall = overall
        self.dimensions = {dim: tuple(values) for dim, values in (groups or {}).items()}
        keys = [overall] + [group_key(d, v) for d, vs in self.dimensions.items() for v in vs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"group names collide: {keys}")
        self.metrics = nn.ModuleDict({key: factory() for key in keys})

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def keys(self) -> list[str]:
        return list(self.metrics.keys())

    def update(self, *args: Any, groups: Mapping[str, Sequence[Any]] | None = None) -> None:
        """Update "all" with the whole batch and each group with its samples."""
        n = len(args[0]) if args else 0
        groups = groups or {}
        for dim, values in groups.items():  # check everything before touching any state
            if dim not in self.dimensions:
                raise KeyError(f"group dimension {dim!r} was not declared: {list(self.dimensions)}")
            if len(values) != n:
                raise ValueError(f"group {dim!r} has {len(values)} values for {n} samples")
            unknown = [v for v in dict.fromkeys(values) if v not in self.dimensions[dim]]
            if unknown:
                raise ValueError(
                    f"group {dim}={unknown[0]!r} was not declared; declared: {self.dimensions[dim]}"
                )
        self.metrics[self.overall].update(*args)
        for dim, values in groups.items():
            for value in dict.fromkeys(values):
                index = [i for i, v in enumerate(values) if v == value]
                self.metrics[group_key(dim, value)].update(*(_take(a, index) for a in args))

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()

    def compute(self, skip_empty: bool = True) -> dict[str, dict[str, float]]:
        """{group: metric dict}. Every group is computed (cross-rank sync); groups with n == 0
        are then dropped when skip_empty."""
        results = {key: metric.compute() for key, metric in self.metrics.items()}
        if skip_empty:
            results = {k: r for k, r in results.items() if k == self.overall or _has_items(r)}
        return results

    def compute_flat(self, prefix: str = "", skip_empty: bool = True) -> dict[str, float]:
        """{"<prefix>/<group>/<metric>": value}, ready for `log_dict`."""
        head = f"{prefix}/" if prefix else ""
        return {
            f"{head}{group}/{name}": value
            for group, values in self.compute(skip_empty).items()
            for name, value in values.items()
        }


# ---------------------------------------------------------------------------- option scoring


def option_probabilities(logprobs: Tensor) -> Tensor:
    """Normalise per-option log-likelihoods [B, n_options] into probabilities (softmax).

    The scores can be sums of token log-probabilities of each full option answer; -inf marks an
    impossible option. A row that is all -inf or holds NaN raises.
    """
    if logprobs.ndim != 2:
        raise ValueError(
            f"expected option scores of shape [B, n_options], got {tuple(logprobs.shape)}"
        )
    if torch.isnan(logprobs).any():
        raise ValueError("option scores contain NaN")
    if (logprobs == -torch.inf).all(dim=-1).any():
        raise ValueError("an answer has -inf log-likelihood for every option")
    return torch.softmax(logprobs.double(), dim=-1).to(logprobs.dtype)


def labels_from_option_scores(scores: Tensor, labels: Sequence[str] = LABELS) -> list[str]:
    """The class of the best option per row (scores: probabilities or log-likelihoods, in the
    option order of `labels`, i.e. OPTION_LETTERS A, B, C)."""
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"expected scores of shape [B, {len(labels)}], got {tuple(scores.shape)}")
    return [labels[i] for i in scores.argmax(dim=-1).tolist()]


def sce_probability(
    option_probs: Tensor, labels: Sequence[str] = LABELS, positive: Sequence[str] = SCE_LABELS
) -> Tensor:
    """P(safety-critical event) per row: the summed probability of the positive options [B]."""
    columns = [list(labels).index(c) for c in positive]
    return option_probs[:, columns].sum(dim=-1)
