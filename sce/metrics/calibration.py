"""Probability answers ("Collision Probability: 0.872", paper 002): MAE, Brier, ECE, P/R/F1.

Targets are binary (1 = the event the probability is about, e.g. collision). A probability of
None is an invalid answer (`parse_probability` could not read one): it is counted in
`invalid_rate`, left out of MAE / Brier / ECE (they need a number), and counted as wrong in the
thresholded precision / recall / F1 / accuracy (put on the wrong side of its target, as in
`sce.metrics.classification`).

ECE uses equal-width bins (15 by default, as torchmetrics) and the probability of the positive
class as the confidence: sum_b (n_b / n) * |mean(target in b) - mean(p in b)|. This is
torchmetrics' BinaryCalibrationError with one difference: torchmetrics gives p == 1.0 a bin of its
own (bucketize(right=True) - 1 lands on index n_bins); here the last bin is closed, [1 - 1/n, 1],
the usual definition. Both agree whenever no probability is exactly 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

ProbabilityLike = Tensor | Sequence[float | None]
TargetLike = Tensor | Sequence[int | bool | float]


def _valid_pairs(probs: ProbabilityLike, targets: TargetLike) -> tuple[Tensor, Tensor, int]:
    """(valid probabilities, their targets, number of invalid answers) as float tensors."""
    if len(probs) != len(targets):
        raise ValueError(f"{len(probs)} probabilities but {len(targets)} targets")
    t = (
        torch.as_tensor(targets, dtype=torch.float64)
        if not isinstance(targets, Tensor)
        else targets
    )
    if isinstance(probs, Tensor):
        p = probs.to(torch.float64)
        valid = ~torch.isnan(p)
    else:
        valid = torch.tensor([x is not None and not math.isnan(x) for x in probs], dtype=torch.bool)
        p = torch.tensor([x if v else 0.0 for x, v in zip(probs, valid.tolist(), strict=True)])
        p = p.to(torch.float64)
    p, t = p[valid.to(p.device)], t.to(p.device, torch.float64)[valid.to(p.device)]
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"probabilities must lie in [0, 1]; got min {p.min()} max {p.max()}")
    if not torch.isin(t, torch.tensor([0.0, 1.0], device=t.device, dtype=t.dtype)).all():
        raise ValueError("binary targets must be 0 or 1")
    return p, t, int((~valid).sum())


def mean_absolute_error(probs: ProbabilityLike, targets: TargetLike) -> float:
    """mean |p - y| over valid probabilities (NaN when none)."""
    p, t, _ = _valid_pairs(probs, targets)
    return float((p - t).abs().mean()) if len(p) else math.nan


def brier_score(probs: ProbabilityLike, targets: TargetLike) -> float:
    """mean (p - y)^2 over valid probabilities (NaN when none)."""
    p, t, _ = _valid_pairs(probs, targets)
    return float(((p - t) ** 2).mean()) if len(p) else math.nan


def calibration_bins(
    probs: ProbabilityLike, targets: TargetLike, n_bins: int = 15
) -> dict[str, Tensor]:
    """Per equal-width bin: count, mean probability ("confidence") and observed positive rate
    ("accuracy"); the last two are NaN in empty bins. Also "edges" [n_bins + 1]."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p, t, _ = _valid_pairs(probs, targets)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=p.dtype, device=p.device)
    index = (torch.bucketize(p, edges, right=True) - 1).clamp(0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=p.dtype, device=p.device).scatter_add_(
        0, index, torch.ones_like(p)
    )
    conf = torch.zeros_like(count).scatter_add_(0, index, p) / count
    acc = torch.zeros_like(count).scatter_add_(0, index, t) / count
    return {"count": count, "confidence": conf, "accuracy": acc, "edges": edges}


def expected_calibration_error(
    probs: ProbabilityLike, targets: TargetLike, n_bins: int = 15
) -> float:
    """ECE with equal-width bins over valid probabilities (NaN when none)."""
    bins = calibration_bins(probs, targets, n_bins)
    count = bins["count"]
    if count.sum() == 0:
        return math.nan
    gap = torch.nan_to_num((bins["accuracy"] - bins["confidence"]).abs())
    return float((count / count.sum() * gap).sum())


def _threshold_metrics(p: Tensor, t: Tensor, threshold: float) -> dict[str, float]:
    """P/R/F1/acc with NaN probabilities (invalid) put on the wrong side of their target."""
    pred = torch.where(torch.isnan(p), 1 - t, (p >= threshold).to(t.dtype))
    tp = float((pred * t).sum())
    fp = float((pred * (1 - t)).sum())
    fn = float(((1 - pred) * t).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else math.nan  # undefined without positive targets
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fn else math.nan
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "acc": float((pred == t).to(t.dtype).mean()),
    }


class CalibrationMetrics(Metric):
    """Synced metrics of probability answers: n, invalid_rate, mae, brier, ece (valid answers),
    precision / recall / f1 / acc at `threshold` (invalid answers count as wrong)."""

    full_state_update = False
    higher_is_better = None

    def __init__(self, n_bins: int = 15, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_bins = n_bins
        self.threshold = threshold
        # NaN stands for an invalid answer inside the synced state
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, probs: ProbabilityLike, targets: TargetLike) -> None:  # type: ignore[override]
        """probs: floats in [0, 1] or None (invalid); targets: 0/1."""
        if len(probs) != len(targets):
            raise ValueError(f"{len(probs)} probabilities but {len(targets)} targets")
        if isinstance(probs, Tensor):
            p = probs.to(self.device, torch.float32)
        else:
            p = torch.tensor(
                [math.nan if x is None else float(x) for x in probs], device=self.device
            )
        t = torch.as_tensor(targets, dtype=torch.float32, device=self.device).reshape(-1)
        _valid_pairs(p, t)  # validate range and targets now, with the batch at hand
        self.probs.append(p.reshape(-1))
        self.targets.append(t)

    def _states(self) -> tuple[Tensor, Tensor]:
        if isinstance(self.probs, list) and not self.probs:
            return torch.zeros(0), torch.zeros(0)
        return dim_zero_cat(self.probs), dim_zero_cat(self.targets)

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        p, t = self._states()
        n = len(p)
        if n == 0:
            return {"n": 0} | {k: math.nan for k in self.metric_names()[1:]}
        invalid = torch.isnan(p)
        valid_p = [
            None if bad else float(x) for x, bad in zip(p.tolist(), invalid.tolist(), strict=True)
        ]
        targets = t.tolist()
        out = {
            "n": n,
            "invalid_rate": float(invalid.double().mean()),
            "mae": mean_absolute_error(valid_p, targets),
            "brier": brier_score(valid_p, targets),
            "ece": expected_calibration_error(valid_p, targets, self.n_bins),
        }
        return out | _threshold_metrics(p.double(), t.double(), self.threshold)

    @staticmethod
    def metric_names() -> list[str]:
        """Every key compute() returns, in a stable order."""
        return ["n", "invalid_rate", "mae", "brier", "ece", "precision", "recall", "f1", "acc"]

    def figure(self, title: str | None = None) -> Figure:
        """Reliability diagram of everything accumulated (call after the eval loop)."""
        p, t = self._states()
        probs = [None if math.isnan(x) else x for x in p.tolist()]
        return reliability_diagram(probs, t.tolist(), self.n_bins, title=title)


def reliability_diagram(
    probs: ProbabilityLike,
    targets: TargetLike,
    n_bins: int = 15,
    title: str | None = None,
) -> Figure:
    """Observed positive rate per probability bin (bars, count above each), mean predicted
    probability per bin (dots), the diagonal of perfect calibration, and ECE / n / invalid in the
    title. A matplotlib Figure on the Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    bins = {k: v.cpu() for k, v in calibration_bins(probs, targets, n_bins).items()}
    n_invalid = _valid_pairs(probs, targets)[2]
    ece = expected_calibration_error(probs, targets, n_bins)
    count = bins["count"].numpy()
    edges = bins["edges"].numpy()
    filled = count > 0
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    left, width = edges[:-1][filled], np.diff(edges)[filled]
    accuracy = bins["accuracy"].numpy()[filled]
    ax.bar(
        left,
        accuracy,
        width=width,
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="observed rate",
    )
    centers = left + width / 2
    ax.plot(
        centers, bins["confidence"].numpy()[filled], "o", color="tab:red", label="mean predicted"
    )
    for x, y, c in zip(centers, accuracy, count[filled], strict=True):
        ax.text(x, min(y + 0.02, 0.97), str(int(c)), ha="center", va="bottom", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed positive rate")
    n = int(count.sum())
    ece_text = "nan" if math.isnan(ece) else f"{ece:.3f}"
    ax.set_title(title or f"ECE {ece_text}  n={n}  invalid={n_invalid}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return fig
