"""Figures and console tables for evaluation results.

Figures are built on matplotlib's Agg canvas directly (no pyplot, no global figure state, nothing
to close), so they work headless and inside DDP workers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sce.common.labels import LABELS


def _as_numpy(matrix: Any) -> np.ndarray:
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    return np.asarray(matrix, dtype=np.float64)


# The confusion matrix is read in a TensorBoard image card (about 400 px wide, the image scaled
# to fit): a small canvas with large text. Cell text in pixels = CELL_FONT_PT * DPI / 72.
CONFUSION_DPI = 100
CONFUSION_INCHES_PER_CELL = (0.95, 0.7)  # (width, height) of one cell
CELL_FONT_PT = 12
TICK_FONT_PT = 10


def confusion_matrix_figure(
    cm: Any,
    labels: Sequence[str] = LABELS,
    title: str | None = None,
    col_labels: Sequence[str] | None = None,
) -> Figure:
    """Confusion matrix (rows = true, columns = predicted), each cell its count and its share
    of the true class ("12" over "40%"), sized to be read at TensorBoard's card size (no colour
    bar; 4 columns x 3 rows render 400 x 300 px with 17 px cell text).

    Colours are normalised per row (the fraction of each true class), so a rare class reads as
    clearly as a common one. A matrix with one extra column gets the column label "invalid".
    """
    counts = _as_numpy(cm)
    if counts.ndim != 2 or counts.shape[0] != len(labels):
        raise ValueError(
            f"confusion matrix of shape {counts.shape} does not fit {len(labels)} labels"
        )
    if col_labels is None:
        col_labels = list(labels) + ["invalid"] * (counts.shape[1] - len(labels))
    if counts.shape[1] != len(col_labels):
        raise ValueError(
            f"confusion matrix has {counts.shape[1]} columns for {len(col_labels)} labels"
        )
    rows = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    cell_w, cell_h = CONFUSION_INCHES_PER_CELL
    size = (cell_w * counts.shape[1] + 0.2, cell_h * counts.shape[0] + 0.9)
    fig = Figure(figsize=size, dpi=CONFUSION_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            colour = "white" if fraction[i, j] > 0.5 else "black"
            text = f"{int(counts[i, j])}\n{100 * fraction[i, j]:.0f}%"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=CELL_FONT_PT)
    short = [_short_label(c) for c in col_labels]
    ax.set_xticks(range(len(col_labels)), labels=short, fontsize=TICK_FONT_PT)
    ax.set_yticks(range(len(labels)), labels=[_short_label(r) for r in labels])
    ax.tick_params(axis="y", labelsize=TICK_FONT_PT)
    ax.xaxis.tick_top()
    ax.set_title(title or f"true (rows) vs predicted, n={int(counts.sum())}", fontsize=TICK_FONT_PT)
    fig.tight_layout(pad=0.3)
    return fig


def _short_label(label: str) -> str:
    """A class name that fits a cell: "near_collision" -> "near-coll."."""
    return {"near_collision": "near-coll.", "collision": "collision"}.get(label, label)


def pr_curve_figure(
    precision: Sequence[float], recall: Sequence[float], ap: float, title: str | None = None
) -> Figure:
    """Precision (y) against recall (x) of the binary alarm, as a step curve (average precision
    is the area under it, in the legend)."""
    fig = Figure(figsize=(4.5, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.step(list(recall), list(precision), where="post", label=f"AP = {ap:.3f}")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("recall (collision or near-collision)")
    ax.set_ylabel("precision")
    ax.set_title(title or "alarm: P(collision) + P(near-collision)", fontsize=10)
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a figure to an RGB image [H, W, 3] uint8 (TensorBoard add_image with dataformats
    "HWC")."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _cell(value: Any, float_format: str) -> tuple[str, bool]:
    """(text, right-aligned)."""
    if value is None:
        return "-", True
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, int | np.integer):
        return str(int(value)), True
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isnan(value):
            return "nan", True
        return format(value, float_format), True
    return str(value), False


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    float_format: str = ".3f",
    column_formats: Mapping[str, str] | None = None,
) -> str:
    """Plain-text table, one line per row: text left-aligned, numbers right-aligned, "-" for a
    missing value. columns default to every key, in order of first appearance;
    `column_formats` gives some columns their own float format (e.g. "+.3f" for a change)."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    formats = {col: (column_formats or {}).get(col, float_format) for col in columns}
    cells = [[_cell(row.get(col), formats[col]) for col in columns] for row in rows]
    widths = [max([len(col)] + [len(r[i][0]) for r in cells]) for i, col in enumerate(columns)]
    right = [all(r[i][1] for r in cells) if cells else False for i in range(len(columns))]

    def line(texts: Sequence[str]) -> str:
        parts = [
            t.rjust(w) if r else t.ljust(w) for t, w, r in zip(texts, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(columns)), "  ".join("-" * w for w in widths)]
    out += [line([text for text, _ in r]) for r in cells]
    return "\n".join(out)


def group_rows(
    results: Mapping[str, Mapping[str, float]], group_column: str = "group"
) -> list[dict[str, Any]]:
    """Rows for `format_table` from `GroupedMetrics.compute()`: one row per group."""
    return [{group_column: group, **values} for group, values in results.items()]


# The compact evaluation table: what a researcher reads first after a run (sce fit, sce test,
# sce demo). Each metric is read per IMU setting: `imu_on/<key>` (`ll/imu_on/<rest>` for the
# log-likelihood `ll/<rest>`).
COMPACT_METRICS = (
    "acc",
    "ll/acc",
    "macro_f1",
    "binary/acc",
    "invalid_rate",
    "f1/collision",
    "f1/near_collision",
    "f1/normal",
)
IMU_SETTINGS = {"on": "IMU", "off": "video"}
CHANGE_COLUMN = "video - IMU"


def imu_setting_value(scalars: Mapping[str, float], imu: str, key: str) -> float | None:
    """A metric of one IMU setting ("on" / "off"); None when the evaluation lacks it."""
    head, sep, rest = key.partition("/")
    name = f"ll/imu_{imu}/{rest}" if head == "ll" and sep else f"imu_{imu}/{key}"
    value = scalars.get(name)
    return None if value is None else float(value)


def compact_table(
    evaluations: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] = COMPACT_METRICS,
    change: bool = True,
) -> str:
    """Metrics (rows) of one or more evaluations' scalars, one column per evaluation and IMU
    setting it has ("<name> IMU", "<name> video"), plus (with `change`) the last evaluation's
    video-only change vs with IMU (paper 000 Table V) when it has both settings. Missing values
    print "-"."""
    columns: list[tuple[str, str, str]] = []  # (header, evaluation, imu)
    for name, scalars in evaluations.items():
        for imu, label in IMU_SETTINGS.items():
            if any(imu_setting_value(scalars, imu, key) is not None for key in metrics):
                columns.append((f"{name} {label}".strip(), name, imu))
    last = list(evaluations)[-1] if evaluations else None
    with_change = change and {(last, "on"), (last, "off")} <= {(c[1], c[2]) for c in columns}
    rows = []
    for key in metrics:
        row: dict[str, Any] = {"metric": key}
        for header, name, imu in columns:
            row[header] = imu_setting_value(evaluations[name], imu, key)
        if with_change:
            on = imu_setting_value(evaluations[last], "on", key)
            off = imu_setting_value(evaluations[last], "off", key)
            row[CHANGE_COLUMN] = None if on is None or off is None else off - on
        rows.append(row)
    headers = ["metric", *(c[0] for c in columns)] + ([CHANGE_COLUMN] if with_change else [])
    return format_table(rows, headers, column_formats={CHANGE_COLUMN: "+.3f"})
