"""`sce report`: a paper's tables filled from run folders, next to the paper's published rows.

    sce report runs/zero_shot runs/paper000 --paper 000 [--name zero-shot --name DoRA] [--out DIR]

Each folder argument gives one row (a `sce fit`/`sce test` run folder), one row per stage (the
demo folder `runs/demo`: untrained, trained) or one row per variant (a `sce sweep` folder, the
one holding sweep.json: paper 001's ablation Tables 3-8 and paper 000's Table IV come from
sweeps; with seeds a row is the mean of the variant's seed runs). The tables have the paper's rows and columns, in the
paper's own units (paper 000 prints ROUGE-L as 0.44 but accuracy as 87.7), one row per run, then
the paper's rows ("paper: ...", figures copied from the paper, table cited in the title). The
markdown goes to stdout, one CSV per table to `--out` (default: `report_paper<P>/` inside the
first folder). A value a run does not have prints "-" and a note under the table says why.

Where the numbers come from (the scalar keys `GenerationEvaluation` writes, sce/evaluate/summary.py):
- A run folder holds `metrics.json` (the latest evaluation) and `evaluations/<split>_step<N>.json`
  in the trainer's log dir, `runs/<x>/tensorboard/version_<k>/` with the shipped experiment
  configs, so the folder given and two levels below it are searched (sce.evaluate.run_folder
  reads them). The test split is preferred
  (the last `evaluations/test_step*.json`), then `metrics.json`; the notes say which was used.
  Lightning writes the run's config there too (`config.yaml` by LightningCLI, `hparams.yaml` by the
  TensorBoard logger): model size, adapter rank and fps come from it.
- "With IMU" columns read `imu_on/<key>`, "video only" `imu_off/<key>`. The pooled `<key>` stands
  for a setting only when the run evaluated that setting alone (it has `imu_on/` keys and no
  `imu_off/` keys, or the reverse); otherwise the cell is missing rather than mixed.

Imports nothing heavy (no torch): `sce --help` builds this parser.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from sce.common.labels import LABELS
from sce.evaluate.run_folder import (
    METRICS_FILE,
    SEARCH_DEPTH,
    RunFolder,
    RunFolderError,
    SweepVariant,
    log_dirs,
    read_json,
    sweep_variants,
)
from sce.tasks import CAPTION, DEFAULT_TASK_MIX, MCQ, VQA

Paper = Literal["000", "001", "002", "003"]
PAPERS: tuple[str, ...] = get_args(Paper)
CLASSES = LABELS  # the 3-class table columns, in option order


class ReportError(ValueError):
    """A run folder or metrics file `sce report` cannot read (the message names the file)."""


# --- runs ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One row: an evaluation's scalars, the run's config (may be empty) and where they came from."""

    name: str
    scalars: dict[str, float | None]
    config: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def setting(self, section: str, key: str) -> Any:
        """A config value from LightningCLI's nested config.yaml (`model: {rank: 32}`) or the
        logger's flat hparams.yaml (`rank: 32`); None when absent."""
        nested = self.config.get(section)
        if isinstance(nested, Mapping):
            return nested.get(key)
        return self.config.get(key)


def load_runs(folders: Sequence[str | Path], names: Sequence[str] = ()) -> list[Run]:
    """The rows of every folder, in order; `names[i]` renames folder i's row(s)."""
    if len(names) > len(folders):
        raise ReportError(f"{len(names)} --name values for {len(folders)} folders")
    runs: list[Run] = []
    for i, folder in enumerate(folders):
        runs.extend(load_folder(Path(folder), names[i] if i < len(names) else None))
    return runs


def load_folder(folder: Path, name: str | None = None) -> list[Run]:
    """A run folder's row, or a demo folder's rows (one per stage key of its metrics.json)."""
    if folder.is_file():
        folder = folder.parent
    top = folder / METRICS_FILE
    if top.is_file() and _is_demo(data := _read_json(top)):
        return _demo_runs(folder, data, name)
    variants = _reported(lambda: sweep_variants(folder))
    if variants is not None:
        return [_variant_run(variant, name) for variant in variants]
    return [_run_row(folder, name or folder.resolve().name)]


def _run_row(folder: Path, name: str) -> Run:
    """The row of one run folder: its preferred evaluation and config."""
    run, others = _find_log_dir(folder)
    path, split_note = _preferred_evaluation(run)
    record = _read_json(path)
    source = f"{path} ({split_note})"
    if others:
        source += f"; also found, not used: {', '.join(str(o) for o in others)}"
    return Run(name, _scalars(record, path), _config(run), source)


def _variant_run(variant: SweepVariant, prefix: str | None) -> Run:
    """A sweep variant's row: its run, or the mean of its seed runs (each scalar over the seeds
    that have it); a run that left no metrics.json (it failed) adds nothing, and a variant
    without any gives an empty row whose source says why."""
    name = f"{prefix} {variant.name}" if prefix else variant.name
    rows = [_run_row(path, name) for path in variant.runs if log_dirs(path, METRICS_FILE)]
    if not rows:
        where = ", ".join(str(p) for p in variant.runs)
        return Run(name, {}, {}, f"no {METRICS_FILE} in {where} (sweep.json: {variant.status})")
    if len(variant.runs) == 1:
        return rows[0]
    source = f"mean of {len(rows)} of {len(variant.runs)} seed runs: " + "; ".join(
        r.source for r in rows
    )
    return Run(name, _mean_scalars([r.scalars for r in rows]), rows[0].config, source)


def _mean_scalars(runs: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Each key's mean over the runs where it is a number (None where it is in none)."""
    keys = dict.fromkeys(k for scalars in runs for k in scalars)
    out: dict[str, float | None] = {}
    for key in keys:
        values = [v for scalars in runs if (v := scalars.get(key)) is not None]
        out[key] = sum(values) / len(values) if values else None
    return out


def _is_demo(data: Any) -> bool:
    """`sce demo`'s metrics.json: {"untrained": {"scalars": ...}, "trained": {...}, "seconds"}."""
    return (
        isinstance(data, dict)
        and "scalars" not in data
        and any(isinstance(v, dict) and "scalars" in v for v in data.values())
    )


def _demo_runs(folder: Path, data: dict, name: str | None) -> list[Run]:
    path = folder / METRICS_FILE
    runs = []
    for stage, record in data.items():
        if not (isinstance(record, dict) and "scalars" in record):
            continue  # "seconds"
        stage_dir = folder / "tensorboard" / stage
        runs.append(
            Run(
                f"{name} {stage}" if name else stage,
                _scalars(record, path, f"{stage}.scalars"),
                _config(RunFolder(stage_dir)),
                f'{path} [stage "{stage}"]',
            )
        )
    return runs


def _find_log_dir(folder: Path) -> tuple[RunFolder, list[Path]]:
    """The log folder holding the evaluation to report (test preferred, then the newest), and
    the other candidates found."""
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such run folder")
    found = log_dirs(folder, METRICS_FILE)
    if not found:
        raise ReportError(
            f"{folder}: no {METRICS_FILE} in the folder or {SEARCH_DEPTH} levels below it "
            "(GenerationEvaluation writes it to the trainer's log dir)"
        )
    ranked = sorted(
        found, key=lambda d: (_has_test(RunFolder(d)), (d / METRICS_FILE).stat().st_mtime)
    )
    best = ranked[-1]
    return RunFolder(best), [d for d in found if d != best]


def _has_test(run: RunFolder) -> bool:
    if run.evaluations("test"):
        return True
    data = _reported(run.metrics)
    return isinstance(data, dict) and data.get("split") == "test"


def _preferred_evaluation(run: RunFolder) -> tuple[Path, str]:
    """The last test evaluation, else metrics.json (the latest evaluation, val during fit)."""
    tests = run.evaluations("test")
    if tests:
        step, path = tests[-1]
        return path, f"split test, step {step}"
    data = _reported(run.metrics)
    split = data.get("split", "?") if isinstance(data, dict) else "?"
    note = f"split {split}, step {data.get('step', '?')}" if isinstance(data, dict) else ""
    if split != "test":
        note += ": no test evaluation in the folder"
    return run.metrics_path, note


def _reported(read: Callable[[], Any]) -> Any:
    """A run folder read, its RunFolderError as the report's own error."""
    try:
        return read()
    except RunFolderError as err:
        raise ReportError(str(err)) from err


def _read_json(path: Path) -> Any:
    return _reported(lambda: read_json(path))


def _scalars(record: Any, path: Path, field_name: str = "scalars") -> dict[str, float | None]:
    scalars = record.get("scalars") if isinstance(record, dict) else None
    if not isinstance(scalars, dict):
        raise ReportError(f"{path}: field {field_name!r} missing or not an object")
    bad = [k for k, v in scalars.items() if v is not None and not isinstance(v, (int, float))]
    if bad:
        raise ReportError(f"{path}: field {field_name}[{bad[0]!r}] is not a number or null")
    values = {k: (None if v is None else float(v)) for k, v in scalars.items()}
    return values | _single_source_scalars(values, record.get("sources"))


def _single_source_scalars(
    scalars: dict[str, float | None], sources: Any
) -> dict[str, float | None]:
    """`source_<s>/<key>` for an evaluation of one source s, which logs no per-source copies
    (they would repeat the overall keys): a Nexar-only test run still fills Table II's Nexar
    row. Groups (`imu_on/...`) are not sources and are left out."""
    if not (isinstance(sources, list) and len(sources) == 1):
        return {}
    if any(k.startswith("source_") for k in scalars):
        return {}
    prefix = f"source_{sources[0]}/"
    return {prefix + k: v for k, v in scalars.items() if not k.startswith("imu_")}


def _config(run: RunFolder) -> dict[str, Any]:
    return _reported(run.config)


# --- cells -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One table cell: a number in the paper's units (or a text such as "7B"), or None with the
    reason it is missing; `change` is Table V's change vs with IMU, printed in parentheses."""

    value: float | str | None
    decimals: int = 1
    change: float | None = None
    why_missing: str | None = None

    def text(self) -> str:
        """The markdown cell: "87.7", "74.5 (-13.2)", "-"."""
        if self.value is None:
            return "-"
        if self.change is None:
            return self.number()
        return f"{self.number()} ({_signed(self.change, self.decimals)})"

    def number(self) -> str:
        """The value alone (the CSV cell): "" when missing."""
        if self.value is None:
            return ""
        if isinstance(self.value, str):
            return self.value
        return f"{self.value:.{self.decimals}f}"

    def change_text(self) -> str:
        return "" if self.change is None else _signed(self.change, self.decimals)


def _signed(value: float, decimals: int) -> str:
    text = f"{value:+.{decimals}f}"
    return text[1:] if float(text) == 0 else text  # "0.0", never "-0.0" / "+0.0"


def missing(why: str) -> Cell:
    return Cell(None, why_missing=why)


@dataclass(frozen=True)
class Metric:
    """A scalar key shown in paper units: fraction x scale, `decimals` places."""

    key: str
    scale: float = 1.0
    decimals: int = 2
    absent: str = ""  # why a run lacks the key (the note under the table); default "no <key>"


IMU_GROUP = {"on": "imu_on", "off": "imu_off"}
IMU_WORDS = {"on": "with IMU", "off": "video only"}


def scalar_cell(run: Run, metric: Metric, imu: Literal["on", "off"] | None = None) -> Cell:
    """The run's value of `metric` (for one IMU setting when `imu` is set), or why it is missing."""
    key = metric.key if imu is None else _imu_key(run, metric.key, imu)
    if key is None:
        return missing(_imu_absent(run, metric, imu))
    if key not in run.scalars:
        return missing(metric.absent or f"no {key} in the run")
    value = run.scalars[key]
    if value is None:
        return missing(f"{key} is undefined in the run (null: e.g. no positive answers)")
    return Cell(value * metric.scale, metric.decimals)


def _imu_key(run: Run, key: str, imu: Literal["on", "off"]) -> str | None:
    """`imu_on/<key>`, or the pooled `<key>` when the run evaluated only this IMU setting."""
    grouped = f"{IMU_GROUP[imu]}/{key}"
    if grouped in run.scalars:
        return grouped
    other = IMU_GROUP["off" if imu == "on" else "on"]
    only_this = _has_group(run, IMU_GROUP[imu]) and not _has_group(run, other)
    return key if only_this and key in run.scalars else None


def _has_group(run: Run, group: str) -> bool:
    return any(k.startswith(group + "/") for k in run.scalars)


def _imu_absent(run: Run, metric: Metric, imu: Literal["on", "off"]) -> str:
    group = IMU_GROUP[imu]
    if not _has_group(run, group):
        return f"no {IMU_WORDS[imu]} evaluation ({group}/* keys; data.eval_imu lists the settings)"
    if metric.key in run.scalars:
        return f"no {group}/{metric.key}: the run's {metric.key} pools both IMU settings"
    return metric.absent or f"no {group}/{metric.key} in the run"


def change_cell(video_only: Cell, with_imu: Cell) -> Cell:
    """Table V's cell: the video-only value with its change vs with IMU (computed, never typed)."""
    if video_only.value is None or with_imu.value is None:
        return video_only
    change = float(video_only.value) - float(with_imu.value)
    return Cell(video_only.value, video_only.decimals, change=change)


NO_CONFIG = "no config (config.yaml / hparams.yaml) in the run folder"


def size_cell(run: Run) -> Cell:
    """Model size from the config's model path ("Qwen/Qwen2.5-VL-7B-Instruct" -> "7B")."""
    path = run.setting("model", "model_path")
    if path is None:
        return missing(NO_CONFIG)
    match = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)B(?![A-Za-z])", str(path))
    return Cell(f"{match.group(1)}B") if match else missing(f"no size in model_path {path!r}")


def rank_cell(run: Run) -> Cell:
    finetuning = run.setting("model", "finetuning")
    if finetuning is None:
        return missing(NO_CONFIG)
    if finetuning not in ("lora", "dora", "qlora"):
        return missing(f"finetuning {finetuning!r} has no adapter rank")
    return Cell(str(run.setting("model", "rank")))


def fps_cell(run: Run) -> Cell:
    window = run.setting("data", "window")
    # data.window.fps; a run from before the window was one value has the flat data.fps
    fps = window.get("fps") if isinstance(window, Mapping) else run.setting("data", "fps")
    if fps is None:
        return missing(NO_CONFIG)
    return Cell(f"{float(fps):g}")


def _number(value: Any, key: str) -> float:
    """A config value read as a number; ReportError naming the key when it is not one (the
    setting cells turn it into a missing cell whose note says so)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ReportError(f"config key {key} = {value!r} is not a number") from None


def _setting(read: Callable[[Run], Cell]) -> Callable[[Run], Cell]:
    """A setting cell that is missing, with the reason, when the config holds a bad value."""

    def cell(run: Run) -> Cell:
        try:
            return read(run)
        except ReportError as err:
            return missing(str(err))

    cell.__doc__ = read.__doc__
    return cell


@_setting
def lr_cell(run: Run) -> Cell:
    """model.lr as the paper prints it: "1e-05"."""
    lr = run.setting("model", "lr")
    return Cell(f"{_number(lr, 'model.lr'):g}") if lr is not None else missing(NO_CONFIG)


def _window(run: Run) -> Mapping[str, Any] | None:
    window = run.setting("data", "window")
    return window if isinstance(window, Mapping) else None


@_setting
def duration_cell(run: Run) -> Cell:
    """The event window's length, data.window.before + after: "6 sec"."""
    window = _window(run)
    if window is None:
        return missing(NO_CONFIG)
    if window.get("mode") == "whole":
        return missing("whole-clip window (data.window.mode: whole): each clip's own length")
    before = _number(window.get("before", 0.0), "data.window.before")
    seconds = before + _number(window.get("after", 0.0), "data.window.after")
    return Cell(f"{seconds:g} sec")


def resolution_cell(run: Run) -> Cell:
    """data.window.width x height in pixels: "448x252"."""
    window = _window(run)
    if window is None or window.get("width") is None:
        return missing(NO_CONFIG)
    return Cell(f"{window['width']}x{window['height']}")


@_setting
def balancing_cell(run: Run) -> Cell:
    """data.class_factors: "Unbalanced", or "Balanced (mcq: collision x15, near_collision x2)"."""
    if not run.config:
        return missing(NO_CONFIG)
    factors = run.setting("data", "class_factors")
    if not factors:
        return Cell("Unbalanced")
    return Cell(f"Balanced ({_factors_text(factors)})")


def _factors_text(factors: Mapping[str, Any]) -> str:
    parts = []
    for key, value in factors.items():
        if isinstance(value, Mapping):  # per task: {mcq: {collision: 15}}
            parts.append(f"{key}: {_factors_text(value)}")
        else:
            parts.append(f"{key} x{_number(value, f'data.class_factors.{key}'):g}")
    return ", ".join(parts)


def mix_cells(run: Run, columns: Mapping[str, tuple[str, ...]]) -> list[Cell]:
    """A check mark per column whose tasks the run trains (data.task_weights > 0; without
    weights, the default mix), an empty cell otherwise."""
    if not run.config:
        return [missing(NO_CONFIG)] * len(columns)
    weights = run.setting("data", "task_weights") or DEFAULT_TASK_MIX
    try:
        trained = {t for t, w in weights.items() if _number(w, f"data.task_weights.{t}") > 0}
    except ReportError as err:
        return [missing(str(err))] * len(columns)
    return [Cell(CHECK if trained & set(tasks) else "") for tasks in columns.values()]


CHECK = "\u2713"  # the papers' check mark

# --- tables ----------------------------------------------------------------------------------


@dataclass
class Table:
    """A paper table: `columns` after the row-name column, rows of cells, notes under it.
    `transposed`: the paper puts metrics in rows and models in columns (paper 002 Table III)."""

    slug: str
    title: str
    units: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    name_header: str = "Model"
    transposed: bool = False

    def add(self, name: str, cells: Sequence[Cell]) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.slug}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append((name, list(cells)))

    def missing_notes(self) -> list[str]:
        """One line per reason and rows: "ROUGE-L, BERTScore (a, b): no captions evaluated ..."."""
        rows_by_cell: dict[tuple[str, str], list[str]] = {}
        for name, cells in self.rows:
            for column, cell in zip(self.columns, cells, strict=True):
                if cell.value is None and cell.why_missing:
                    names = rows_by_cell.setdefault((column, cell.why_missing), [])
                    names += [] if name in names else [name]
        columns_by_reason: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for (column, why), names in rows_by_cell.items():
            columns_by_reason.setdefault((why, tuple(names)), []).append(column)
        return [
            f"{', '.join(columns)} ({', '.join(names)}): {why}"
            for (why, names), columns in columns_by_reason.items()
        ]

    def grid(self, cell_text: Callable[[Cell], str]) -> list[list[str]]:
        """Header row then body rows, as the paper lays them out."""
        grid = [[self.name_header, *self.columns]]
        grid += [[name, *(cell_text(c) for c in cells)] for name, cells in self.rows]
        return [list(r) for r in zip(*grid, strict=True)] if self.transposed else grid

    def markdown(self) -> str:
        grid = self.grid(Cell.text)
        widths = [max(len(row[i]) for row in grid) for i in range(len(grid[0]))]
        lines = [f"### {self.title}", "", self.units, ""]
        lines.append(_md_row(grid[0], widths))
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        lines += [_md_row(row, widths) for row in grid[1:]]
        notes = self.notes + self.missing_notes()
        if notes:
            lines += ["", *(f"- {n}" for n in notes)]
        return "\n".join(lines)

    def csv_rows(self) -> list[list[str]]:
        """The CSV: the same figures without the markdown decoration; a value with a change
        (Table V) gets a second column "<column> change"; missing values are empty."""
        if self.transposed or not any(c.change is not None for _, cs in self.rows for c in cs):
            return self.grid(Cell.number)
        changed = [
            any(cs[i].change is not None for _, cs in self.rows) for i in range(len(self.columns))
        ]
        header = [self.name_header]
        for column, has_change in zip(self.columns, changed, strict=True):
            header += [column, f"{column} change"] if has_change else [column]
        body = []
        for name, cells in self.rows:
            row = [name]
            for cell, has_change in zip(cells, changed, strict=True):
                row += [cell.number(), cell.change_text()] if has_change else [cell.number()]
            body.append(row)
        return [header, *body]


def _md_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def published(name: str) -> str:
    """A published row's name: "paper: DoRA Adapted (Ours)"."""
    return f"paper: {name}"


def _numbers(values: Iterable[float | None], decimals: int, why: str = "") -> list[Cell]:
    """Published figures as printed: `decimals` places, more where the paper prints more
    (paper 001's recall 0.0075 among 3-decimal figures)."""
    return [
        Cell(v, _printed_decimals(v, decimals)) if v is not None else missing(why) for v in values
    ]


def _printed_decimals(value: float, decimals: int) -> int:
    while round(value, decimals) != value and decimals < 6:
        decimals += 1
    return decimals


# --- paper 000 (Verizon Connect): Tables I, II, IV, V ----------------------------------------

P0_UNITS_I = (
    "Units as in the paper: ROUGE-L and BERTScore F1 as fractions (0-1), Closed QA and SCE "
    "(3-class) accuracy in percent. Runs: the with-IMU evaluation (imu_on/...)."
)
# Paper 000 Table I (video + IMU): (model, size, ROUGE-L, BERTScore, Closed QA, SCE 3-class).
P0_TABLE_I: tuple[tuple[str, str, float, float, float, float], ...] = (
    ("Nova Pro", "-", 0.17, 0.19, 87.5, 53.8),
    ("Sonnet 4.5", "-", 0.18, 0.17, 93.4, 53.9),
    ("Molmo 2", "8B", 0.19, 0.19, 85.5, 59.2),
    ("InternVL 3.5", "8B", 0.15, 0.19, 90.8, 49.2),
    ("MiniCPM-V 4.5", "8B", 0.18, 0.22, 88.1, 49.2),
    ("QwenVL 3.5", "8B", 0.18, 0.18, 88.5, 56.9),
    ("QwenVL-2.5", "7B", 0.18, 0.16, 83.2, 46.1),
    ("DoRA Adapted (Ours)", "7B", 0.44, 0.51, 92.7, 87.7),
)
# Paper 000 Table II, binary SCE (collision + near-collision vs normal): (model, size,
# Private precision, recall, accuracy (video + IMU), Nexar precision, recall, accuracy).
P0_TABLE_II: tuple[tuple[str, str, float, float, float, float, float, float], ...] = (
    ("Nova Pro", "-", 96.1, 35.2, 63.8, 64.0, 21.1, 54.3),
    ("Sonnet 4.5", "-", 81.8, 63.3, 72.3, 75.0, 35.5, 61.5),
    ("Molmo 2", "8B", 76.5, 69.0, 71.5, 58.8, 92.1, 63.6),
    ("InternVL 3.5", "8B", 81.8, 25.3, 56.1, 85.7, 7.9, 52.9),
    ("MiniCPM-V 4.5", "8B", 91.6, 31.0, 60.8, 58.3, 18.4, 52.3),
    ("QwenVL 3.5", "8B", 81.6, 63.3, 72.2, 79.2, 25.0, 58.9),
    ("QwenVL 2.5", "7B", 72.7, 45.0, 60.7, 77.7, 27.6, 59.6),
    ("DoRA Adapted (Ours)", "7B", 93.3, 87.3, 90.0, 85.6, 63.1, 76.1),
)
# Paper 000 Table IV (DoRA rank x model size): (size, rank, ROUGE-L, BERTScore, Closed QA, SCE).
P0_TABLE_IV: tuple[tuple[str, int, float, float, float, float], ...] = (
    ("3B", 8, 0.41, 0.48, 91.0, 76.2),
    ("3B", 16, 0.42, 0.49, 92.0, 79.9),
    ("3B", 32, 0.42, 0.50, 92.1, 83.8),
    ("7B", 8, 0.43, 0.51, 91.5, 81.4),
    ("7B", 16, 0.43, 0.51, 92.1, 88.5),
    ("7B", 32, 0.44, 0.51, 92.7, 87.7),
    ("7B", 64, 0.43, 0.51, 92.1, 84.6),
)
# Paper 000 Table V (video only): (model, size, Closed QA, SCE 3-class, SCE 2-class), without the
# printed changes: those are computed against Table I (Closed QA, SCE) and Table II's Private
# accuracy (SCE 2-class), which reproduces 22 of the 24 printed changes exactly.
P0_TABLE_V: tuple[tuple[str, str, float, float, float], ...] = (
    ("Nova Pro", "-", 85.0, 54.6, 59.5),
    ("Sonnet 4.5", "-", 92.1, 53.7, 56.7),
    ("Molmo 2", "8B", 83.1, 55.3, 68.8),
    ("InternVL 3.5", "8B", 86.0, 39.7, 46.1),
    ("MiniCPM-V 4.5", "8B", 81.8, 41.8, 50.4),
    ("QwenVL 3.5", "8B", 84.8, 47.5, 53.1),
    ("QwenVL-2.5", "7B", 78.8, 44.7, 59.6),
    ("DoRA Adapted (Ours)", "7B", 92.0, 74.5, 80.9),
)
P0_TABLE_V_SIGN_NOTE = (
    "Paper rows: the changes are computed from the paper's figures (video only minus Table I; "
    "SCE (2-cls.) minus Table II's Private Acc.). 22 of 24 match the printed parentheses; the "
    "paper prints SCE (2-cls.) Nova Pro 59.5 (+4.3) and DoRA Adapted 80.9 (+9.1), where "
    "59.5 - 63.8 = -4.3 and 80.9 - 90.0 = -9.1: read as sign typos (the text says every task "
    "drops without IMU), so -4.3 and -9.1 are printed."
)

ROUGE = Metric(
    "caption/rougeL",
    1.0,
    2,
    "no captions evaluated (no caption/* keys; add caption to data.eval_tasks)",
)
BERTSCORE = Metric(
    "caption/bertscore_f1",
    1.0,
    2,
    "no BERTScore encoder configured (no caption/bertscore_f1), or no captions evaluated",
)
# Closed QA: the closed_qa task's accuracy over every closed static-scene pair of the teacher's
# QA (annotations.qa) of each evaluated clip, never the vqa task's MCQ items.
CLOSED_QA = Metric(
    "closed_qa/acc",
    100.0,
    1,
    "no closed-QA items evaluated (no closed_qa/acc; add closed_qa to data.eval_tasks, on "
    "records whose annotations.qa has closed pairs: `sce label --tasks caption`)",
)
SCE3 = Metric("acc", 100.0, 1, "no 3-class event items evaluated (no acc)")
BINARY = {
    name: Metric(f"binary/{name}", 100.0, 1, "no binary SCE items evaluated (no binary/* keys)")
    for name in ("precision", "recall", "acc")
}


def _p0_table_i_cells(run: Run) -> list[Cell]:
    return [
        size_cell(run),
        *(scalar_cell(run, m, "on") for m in (ROUGE, BERTSCORE, CLOSED_QA, SCE3)),
    ]


def paper000_table_i(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper000_table1",
        "Paper 000, Table I: evaluation on the private dataset (video + IMU input)",
        P0_UNITS_I,
        ["Size", "ROUGE-L", "BERTScore", "Closed QA", "SCE"],
    )
    for run in runs:
        table.add(run.name, _p0_table_i_cells(run))
    for name, size, *values in P0_TABLE_I:
        table.add(published(name), [Cell(size), *_p0_values(values)])
    return table


def _p0_values(values: Sequence[float]) -> list[Cell]:
    """ROUGE-L, BERTScore (2 decimals), Closed QA, SCE (1 decimal)."""
    rouge, bert, closed_qa, sce = values
    return [Cell(rouge, 2), Cell(bert, 2), Cell(closed_qa, 1), Cell(sce, 1)]


def paper000_table_ii(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper000_table2",
        "Paper 000, Table II: binary SCE (collision/near-collision vs normal), Private (video + "
        "IMU) and Nexar (video only)",
        "Units as in the paper: precision and recall of the positive class (y = 1) and accuracy, "
        "in percent. Runs: Private = items with IMU (imu_on/binary/...), Nexar = "
        "source_nexar/binary/... .",
        ["Data", "Size", "Prec. (y = 1)", "Rec. (y = 1)", "Acc."],
    )
    nexar_absent = "no Nexar items evaluated (no source_nexar/binary/* keys)"
    for run in runs:
        cells = [scalar_cell(run, BINARY[m], "on") for m in ("precision", "recall", "acc")]
        table.add(run.name, [Cell("Private"), size_cell(run), *cells])
    for name, size, *values in P0_TABLE_II:
        table.add(published(name), [Cell("Private"), Cell(size), *_numbers(values[:3], 1)])
    for run in runs:
        cells = [
            scalar_cell(run, Metric(f"source_nexar/binary/{m}", 100.0, 1, nexar_absent))
            for m in ("precision", "recall", "acc")
        ]
        table.add(run.name, [Cell("Nexar"), size_cell(run), *cells])
    for name, size, *values in P0_TABLE_II:
        table.add(published(name), [Cell("Nexar"), Cell(size), *_numbers(values[3:], 1)])
    return table


# Paper 000 Table III (LingoQA, open-ended QA): (model, size, ROUGE-L, BERTScore F1).
P0_TABLE_III: tuple[tuple[str, str, float, float], ...] = (
    ("Nova Pro", "-", 0.25, 0.38),
    ("Sonnet 4.5", "-", 0.16, 0.23),
    ("Molmo 2", "8B", 0.19, 0.27),
    ("InternVL 3.5", "8B", 0.25, 0.33),
    ("MiniCPM-V 4.5", "8B", 0.23, 0.35),
    ("QwenVL 3.5", "8B", 0.32, 0.32),
    ("QwenVL-2.5", "7B", 0.25, 0.24),
    ("DoRA Adapted (Ours)", "7B", 0.28, 0.31),
)
LINGOQA_SOURCE = "lingoqa"  # the records' source (sce.prepare.sources.lingoqa)
# LingoQA's free-text answers scored as open QA (ROUGE-L and BERTScore F1 of the answer against
# its references), read from the LingoQA items alone: a test run on the LingoQA manifest (one
# source: its keys count as source_lingoqa/...), or a run logging per-source open-QA keys.
LINGOQA_ABSENT = (
    "no LingoQA open-QA scores (no source_lingoqa/open_qa/* keys: test on the LingoQA manifest "
    "alone, with its free-text questions scored as open QA)"
)
LINGOQA_ROUGE = Metric(f"source_{LINGOQA_SOURCE}/open_qa/rougeL", 1.0, 2, LINGOQA_ABSENT)
LINGOQA_BERTSCORE = Metric(
    f"source_{LINGOQA_SOURCE}/open_qa/bertscore_f1",
    1.0,
    2,
    "no BERTScore encoder configured, or " + LINGOQA_ABSENT,
)


def paper000_table_iii(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper000_table3",
        "Paper 000, Table III: LingoQA, open-ended QA (ROUGE-L and BERTScore)",
        "Units as in the paper: ROUGE-L and BERTScore F1 as fractions (0-1). Runs: the LingoQA "
        "items' open-QA scores (source_lingoqa/open_qa/...; LingoQA has no telemetry).",
        ["Size", "ROUGE-L", "BERTScore"],
    )
    for run in runs:
        cells = [scalar_cell(run, LINGOQA_ROUGE), scalar_cell(run, LINGOQA_BERTSCORE)]
        table.add(run.name, [size_cell(run), *cells])
    for name, size, rouge, bert in P0_TABLE_III:
        table.add(published(name), [Cell(size), Cell(rouge, 2), Cell(bert, 2)])
    return table


def paper000_table_iv(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper000_table4",
        "Paper 000, Table IV: DoRA rank across model scales",
        P0_UNITS_I + " Size and rank come from the run's config.",
        ["Size", "Rank", "ROUGE-L", "BERTScore", "Closed QA", "SCE"],
    )
    for run in runs:
        size, *metrics = _p0_table_i_cells(run)
        table.add(run.name, [size, rank_cell(run), *metrics])
    for size, rank, *values in P0_TABLE_IV:
        table.add(published("DoRA Adapted"), [Cell(size), Cell(str(rank)), *_p0_values(values)])
    return table


def paper000_table_v(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper000_table5",
        "Paper 000, Table V: video only (IMU excluded from the prompt), change vs with IMU in "
        "parentheses",
        "Units as in the paper: accuracy in percent; (change) = video only minus with IMU, "
        "computed from each row's two evaluations (runs: imu_off/... minus imu_on/...).",
        ["Size", "Closed QA", "SCE (3-cls.)", "SCE (2-cls.)"],
    )
    for run in runs:
        pairs = [
            (scalar_cell(run, m, "off"), scalar_cell(run, m, "on"))
            for m in (CLOSED_QA, SCE3, BINARY["acc"])
        ]
        table.add(run.name, [size_cell(run), *(change_cell(off, on) for off, on in pairs)])
    with_imu = {row[0]: (row[4], row[5]) for row in P0_TABLE_I}
    private_acc = dict(zip((r[0] for r in P0_TABLE_I), (r[4] for r in P0_TABLE_II), strict=True))
    for name, size, closed_qa, sce3, sce2 in P0_TABLE_V:
        on_qa, on_sce3 = with_imu[name]
        cells = [
            change_cell(Cell(closed_qa, 1), Cell(on_qa, 1)),
            change_cell(Cell(sce3, 1), Cell(on_sce3, 1)),
            change_cell(Cell(sce2, 1), Cell(private_acc[name], 1)),
        ]
        table.add(published(name), [Cell(size), *cells])
    table.notes.append(P0_TABLE_V_SIGN_NOTE)
    if any("source_nexar/binary/n" in run.scalars for run in runs):
        table.notes.append(
            "Runs with Nexar items: SCE (2-cls.) video only pools every item without IMU, Nexar's "
            "included (the scalars have no source x IMU group); the paper's is private data only."
        )
    return table


# --- paper 001 (VLM-AutoDrive): Tables 2, 3, 9 -------------------------------------------------

P1_UNITS = (
    "Units as in the paper: precision, recall and F1 as fractions (0-1), accuracy in percent. "
    "Runs: pooled over every evaluated item (paper 001 has no telemetry)."
)
# Paper 001 Table 2: (model, collision P, R, F1, near-collision P, R, F1, normal P, R, F1, acc %).
P1_TABLE_2: tuple[tuple[str, tuple[float, ...]], ...] = (
    (
        "Cosmos-Reason1 Zero-shot",
        (0.000, 0.000, 0.000, 0.454, 0.0075, 0.129, 0.347, 0.984, 0.513, 35.35),
    ),
    (
        "Cosmos-Reason1 Fine-tuned",
        (0.947, 0.545, 0.692, 0.696, 0.833, 0.758, 0.765, 0.939, 0.843, 77.27),
    ),
    ("NVILA Zero-shot", (0.000, 0.000, 0.000, 0.250, 0.500, 0.333, 0.500, 0.667, 0.571, 38.89)),
    ("NVILA Fine-tuned", (0.901, 0.696, 0.786, 0.782, 0.924, 0.847, 0.927, 0.969, 0.948, 86.36)),
)
P1_TABLE_2_NOTE = (
    "Paper row Cosmos-Reason1 Zero-shot: Near-Collision recall is printed 0.0075, but its F1 "
    "0.129 with precision 0.454 needs recall 0.075 (2PR/(P+R) = 0.129); printed as in the paper."
)
# Paper 001 Table 3 (frame rate): (fps, F1 collision, F1 near-collision, F1 normal, accuracy %).
P1_TABLE_3: tuple[tuple[int, float, float, float, float], ...] = (
    (1, 0.341, 0.029, 0.536, 40.91),
    (15, 0.537, 0.634, 0.733, 65.66),
    (30, 0.640, 0.757, 0.849, 76.26),
)
# Paper 001 Table 9 (Cosmos-Reason1 fine-tuned on MCQ + caption + VQA, plus the reasoning data
# named): (training data, accuracy reasoning off %, accuracy reasoning on % or None for "n/a").
P1_TABLE_9: tuple[tuple[str, float, float | None], ...] = (
    ("CR1 MCQ, Caption, VQA", 74.75, None),
    ("CR1 + Reasoning MCQ", 75.25, 52.75),
    ("CR1 + Reasoning MCQ x2", 73.73, 61.11),
    ("CR1 + Reasoning MCQ x2 + Reasoning VQA", 77.27, 63.13),
)
# Paper 001 Table 4 (model size): (model, size, accuracy %).
P1_TABLE_4: tuple[tuple[str, str, float], ...] = (
    ("NVILA-8B", "8B", 83.83),
    ("NVILA-33B", "33B", 80.30),
)
# Paper 001 Table 5 (learning rate): (lr, F1 collision, near-collision, normal, accuracy %).
P1_TABLE_5: tuple[tuple[float, float, float, float, float], ...] = (
    (1e-06, 0.567, 0.271, 0.674, 55.55),
    (2e-05, 0.646, 0.725, 0.802, 73.73),
    (1e-05, 0.640, 0.757, 0.849, 76.26),
)
# Paper 001 Table 6: (duration s, resolution as printed, F1 C, NC, N, accuracy %).
P1_TABLE_6: tuple[tuple[int, str, float, float, float, float], ...] = (
    (6, "32x4", 0.500, 0.702, 0.820, 70.20),
    (6, "128x32", 0.640, 0.757, 0.849, 76.26),
    (4, "128x32", 0.672, 0.744, 0.845, 76.26),
    (4, "192x48", 0.711, 0.748, 0.857, 77.77),
)
P1_TABLE_6_NOTE = (
    'Paper rows: the paper gives resolutions as "32x4" to "192x48" without units (not pixels of '
    "a 16:9 frame, nor tokens stated); run rows give data.window.width x height in pixels. Video "
    "duration of a run is its event window (data.window.before + after); a chunk shorter than it "
    "shrinks the window (data/*_window_shrunk)."
)
# Paper 001 Table 7 (data balancing): (distribution, F1 C, NC, N, accuracy %).
P1_TABLE_7: tuple[tuple[str, float, float, float, float], ...] = (
    ("Unbalanced", 0.00, 0.603, 0.748, 56.57),
    ("Balanced", 0.640, 0.757, 0.849, 76.26),
)
# Paper 001 Table 8 (NVILA, incremental data): (MCQ, Caption, VQA, accuracy %).
P1_TABLE_8: tuple[tuple[bool, bool, bool, float], ...] = (
    (True, False, False, 80.30),
    (True, True, False, 83.83),
    (True, True, True, 86.36),
)
# Table 8's columns and the sce tasks that train each kind of data (Caption: the captions of
# annotations.caption; a metadata-caption task joins this tuple when it exists).
P1_MIX_COLUMNS: dict[str, tuple[str, ...]] = {
    "MCQ": (MCQ.name,),
    "Caption": (CAPTION.name,),
    "VQA": (VQA.name,),
}
# Paper 001's binary anomaly accuracy (normal vs collision or near-collision), given in its
# conclusion for the fine-tuned Cosmos-Reason1 (Table 2's 77.27% row): 87.9%.
P1_BINARY: tuple[str, float, float] = ("Cosmos-Reason1 Fine-tuned", 77.27, 87.9)
P1_CLASS_HEADERS = {
    "collision": "Collision",
    "near_collision": "Near-Collision",
    "normal": "Normal Driving",
}
P1_SHORT = {"collision": "C", "near_collision": "NC", "normal": "N"}
ACC_P1 = Metric("acc", 100.0, 2, "no 3-class event items evaluated (no acc)")


def _per_class(kind: str, label: str) -> Metric:
    return Metric(f"{kind}/{label}", 1.0, 3, "no 3-class event items evaluated")


def paper001_table_2(runs: Sequence[Run]) -> Table:
    columns = [f"{P1_CLASS_HEADERS[c]} {m}" for c in CLASSES for m in ("Prec.", "Rec.", "F1")]
    table = Table(
        "paper001_table2",
        "Paper 001, Table 2: per-class precision, recall and F1, and accuracy",
        P1_UNITS,
        [*columns, "Accuracy"],
    )
    for run in runs:
        cells = [
            scalar_cell(run, _per_class(k, c))
            for c in CLASSES
            for k in ("precision", "recall", "f1")
        ]
        table.add(run.name, [*cells, scalar_cell(run, ACC_P1)])
    for name, values in P1_TABLE_2:
        table.add(published(name), [*_numbers(values[:9], 3), Cell(values[9], 2)])
    table.notes.append(P1_TABLE_2_NOTE)
    return table


def paper001_table_3(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper001_table3",
        "Paper 001, Table 3: effect of frame rate (FPS)",
        P1_UNITS
        + " FPS: the run's data.window.fps (from its config)."
        + P1_SWEEP.format(ablation="experiments/ablations/fps.yaml"),
        ["FPS", *(f"F1 {P1_SHORT[c]}" for c in CLASSES), "Overall Accuracy"],
    )
    for run in runs:
        f1 = [scalar_cell(run, _per_class("f1", c)) for c in CLASSES]
        table.add(run.name, [fps_cell(run), *f1, scalar_cell(run, ACC_P1)])
    for fps, *f1, acc in P1_TABLE_3:
        table.add(published("VLM-AutoDrive"), [Cell(str(fps)), *_numbers(f1, 3), Cell(acc, 2)])
    return table


def _p1_f1_acc(run: Run) -> list[Cell]:
    """Per-class F1 (collision, near-collision, normal) and accuracy: Tables 3 and 5-7."""
    return [*(scalar_cell(run, _per_class("f1", c)) for c in CLASSES), scalar_cell(run, ACC_P1)]


def _p1_published(*values: float) -> list[Cell]:
    """Published F1s (3 decimals) and accuracy (2)."""
    *f1, acc = values
    return [*_numbers(f1, 3), Cell(acc, 2)]


P1_F1_COLUMNS = [*(f"F1 {P1_SHORT[c]}" for c in CLASSES), "Overall Accuracy"]
P1_SWEEP = " One row per run, or per variant of a sweep folder (`sce sweep {ablation}`)."


def paper001_table_4(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper001_table4",
        "Paper 001, Table 4: effect of model size",
        "Units as in the paper: accuracy in percent. Model size: from the run's model_path."
        + P1_SWEEP.format(ablation="experiments/ablations/model_size.yaml"),
        ["Model Size", "Overall Accuracy"],
    )
    for run in runs:
        table.add(run.name, [size_cell(run), scalar_cell(run, ACC_P1)])
    for name, size, acc in P1_TABLE_4:
        table.add(published(name), [Cell(size), Cell(acc, 2)])
    return table


def paper001_table_5(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper001_table5",
        "Paper 001, Table 5: effect of learning rate",
        P1_UNITS
        + " Learning rate: the run's model.lr."
        + P1_SWEEP.format(ablation="experiments/ablations/lr.yaml"),
        ["Learning Rate", *P1_F1_COLUMNS],
    )
    for run in runs:
        table.add(run.name, [lr_cell(run), *_p1_f1_acc(run)])
    for lr, *values in P1_TABLE_5:
        table.add(published("VLM-AutoDrive"), [Cell(f"{lr:g}"), *_p1_published(*values)])
    return table


def paper001_table_6(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper001_table6",
        "Paper 001, Table 6: video duration and spatial resolution",
        P1_UNITS
        + " Duration and resolution: the run's data.window."
        + P1_SWEEP.format(ablation="experiments/ablations/duration.yaml or resolution.yaml"),
        ["Video Duration", "Spatial Resolution", *P1_F1_COLUMNS],
    )
    for run in runs:
        table.add(run.name, [duration_cell(run), resolution_cell(run), *_p1_f1_acc(run)])
    for seconds, resolution, *values in P1_TABLE_6:
        cells = [Cell(f"{seconds} sec"), Cell(resolution), *_p1_published(*values)]
        table.add(published("VLM-AutoDrive"), cells)
    table.notes.append(P1_TABLE_6_NOTE)
    return table


def paper001_table_7(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper001_table7",
        "Paper 001, Table 7: effect of data balancing",
        P1_UNITS
        + " Data distribution: the run's data.class_factors (none: unbalanced)."
        + P1_SWEEP.format(ablation="experiments/ablations/balancing.yaml"),
        ["Data Distribution", *P1_F1_COLUMNS],
    )
    for run in runs:
        table.add(run.name, [balancing_cell(run), *_p1_f1_acc(run)])
    for name, *values in P1_TABLE_7:
        table.add(published("VLM-AutoDrive"), [Cell(name), *_p1_published(*values)])
    return table


def paper001_table_8(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper001_table8",
        "Paper 001, Table 8: accuracy with incremental data inclusion (MCQ, captions, VQA)",
        "Units as in the paper: accuracy in percent. Data: the tasks the run trains "
        "(data.task_weights > 0; without weights, the event question alone)."
        + P1_SWEEP.format(ablation="experiments/ablations/data_mix.yaml"),
        [*P1_MIX_COLUMNS, "Accuracy"],
    )
    for run in runs:
        table.add(run.name, [*mix_cells(run, P1_MIX_COLUMNS), scalar_cell(run, ACC_P1)])
    for *used, acc in P1_TABLE_8:
        table.add(published("NVILA"), [*(Cell(CHECK if u else "") for u in used), Cell(acc, 2)])
    return table


def paper001_binary(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper001_binary",
        "Paper 001: binary anomaly detection accuracy (normal vs collision or near-collision)",
        "Units as in the paper: accuracy in percent. Runs: binary/acc (an answer's class "
        "collapsed to anomaly / normal; an unreadable answer counts as wrong). The paper gives "
        "87.9% in its text (no table), for the fine-tuned Cosmos-Reason1 of Table 2.",
        ["Overall Accuracy", "Binary Accuracy"],
    )
    binary = Metric("binary/acc", 100.0, 2, "no event items evaluated (no binary/acc)")
    for run in runs:
        table.add(run.name, [scalar_cell(run, ACC_P1), scalar_cell(run, binary)])
    name, acc, binary_acc = P1_BINARY
    table.add(published(name), [Cell(acc, 2), Cell(binary_acc, 1)])
    return table


def paper001_table_9(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper001_table9",
        "Paper 001, Table 9: accuracy with reasoning off and on (the paper's training-data "
        "columns are in the paper rows' names)",
        "Units as in the paper: accuracy in percent. Reasoning on: the event question asked with "
        "the reasoning instruction, scored on the answer after </think> (reasoning/acc).",
        ["Accuracy (Reasoning Off)", "Accuracy (Reasoning On)"],
    )
    reasoning = Metric("reasoning/acc", 100.0, 2, "no reasoning-mode evaluation (no reasoning/acc)")
    for run in runs:
        table.add(run.name, [scalar_cell(run, ACC_P1), scalar_cell(run, reasoning)])
    for name, off, on in P1_TABLE_9:
        on_cell = (
            Cell(on, 2) if on is not None else missing("n/a in the paper (no reasoning traces)")
        )
        table.add(published(name), [Cell(off, 2), on_cell])
    return table


# --- paper 002 (collision risk): Table III -----------------------------------------------------

# Paper 002 Table III, in percent: (config, precision, recall, F1, MAE, Brier, ECE).
P2_TABLE_III: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("Baseline SFT", (92.86, 43.33, 59.09, 31.45, 30.02, 29.72)),
    ("Enhanced FT", (94.05, 46.34, 64.41, 29.98, 28.22, 27.21)),
)
P2_METRICS = (
    ("Precision", "precision"),
    ("Recall", "recall"),
    ("F1-score", "f1"),
    ("MAE", "mae"),
    ("Brier Score", "brier"),
    ("ECE", "ece"),
)
P2_NOTE = (
    "Paper column Enhanced FT: F1 64.41 is not 2PR/(P+R) of its precision 94.05 and recall "
    "46.34 (= 62.09; Baseline SFT's 59.09 is); printed as in the paper."
)


def paper002_table_iii(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper002_table3",
        "Paper 002, Table III: collision probability, Baseline SFT and Enhanced FT",
        "Units as in the paper: percent (precision, recall and F1 at threshold 0.5; MAE, Brier "
        "score and ECE of the probability, x100). Runs: calibration/...; metrics in rows, models "
        "in columns like the paper.",
        [label for label, _ in P2_METRICS],
        name_header="Metric",
        transposed=True,
    )
    absent = "no probability-task evaluation (no calibration/* keys)"
    for run in runs:
        table.add(
            run.name,
            [scalar_cell(run, Metric(f"calibration/{k}", 100.0, 2, absent)) for _, k in P2_METRICS],
        )
    for name, values in P2_TABLE_III:
        table.add(published(name), _numbers(values, 2))
    table.notes.append(P2_NOTE)
    return table


# --- paper 003 (safe driving instruction): BERTScore / BLEU -------------------------------------

P3_NOTE = (
    "Paper 003 (as stored here) has no results table: the figures are from its text (fine-tuned "
    'Qwen2.5-VL-7B: BERTScore F1 0.897 event detection, 0.894 instruction; BLEU "~10-13", a range, '
    "not printed as a figure; 3B fine-tuned is said to be more diverse (lower self-BLEU), no figure)."
)


def paper003_results(runs: Sequence[Run]) -> Table:
    table = Table(
        "paper003_results",
        "Paper 003: event detection and instruction generation (BERTScore F1, BLEU)",
        "Units as in the paper: BERTScore F1 as a fraction (0-1), BLEU-4 x100; distinct-4 and "
        "self-BLEU-4 (sce's language-bias measures) as fractions. Runs: instruction/... (the "
        "answer's event part and its instruction, each scored on its own).",
        [
            "Event detection BERTScore F1",
            "Instruction BERTScore F1",
            "BLEU-4",
            "distinct-4",
            "self-BLEU-4",
        ],
    )
    absent = "no instruction-task evaluation (no instruction/* keys)"
    metrics = [
        Metric(
            "instruction/event_bertscore_f1",
            1.0,
            3,
            "no BERTScore encoder configured (no instruction/event_bertscore_f1), or " + absent,
        ),
        Metric(
            "instruction/bertscore_f1",
            1.0,
            3,
            "no BERTScore encoder configured (no instruction/bertscore_f1), or " + absent,
        ),
        Metric("instruction/bleu4", 1.0, 1, absent),
        Metric("instruction/distinct4", 1.0, 3, absent),
        Metric("instruction/self_bleu4", 1.0, 3, absent),
    ]
    for run in runs:
        table.add(run.name, [scalar_cell(run, m) for m in metrics])
    not_given = missing("not given as a figure in the paper")
    table.add(
        published("Qwen2.5-VL-7B fine-tuned"),
        [Cell(0.897, 3), Cell(0.894, 3), not_given, not_given, not_given],
    )
    table.notes.append(P3_NOTE)
    return table


TABLES: dict[str, tuple[Callable[[Sequence[Run]], Table], ...]] = {
    "000": (
        paper000_table_i,
        paper000_table_ii,
        paper000_table_iii,
        paper000_table_iv,
        paper000_table_v,
    ),
    "001": (
        paper001_table_2,
        paper001_table_3,
        paper001_table_4,
        paper001_table_5,
        paper001_table_6,
        paper001_table_7,
        paper001_table_8,
        paper001_table_9,
        paper001_binary,
    ),
    "002": (paper002_table_iii,),
    "003": (paper003_results,),
}


def paper_tables(paper: Paper, runs: Sequence[Run]) -> list[Table]:
    """Every table `sce report` prints for `paper`, filled from `runs`, each with its n."""
    tables = [build(runs) for build in TABLES[paper]]
    for table in tables:
        table.notes.append(n_note(runs))
    return tables


def n_note(runs: Sequence[Run]) -> str:
    """What each row was scored on: "n: DoRA 912 clips (1,824 items); ..." (the evaluation's
    `clips` and `items`; test evaluations score the whole test split)."""
    parts = []
    for run in runs:
        clips, items = run.scalars.get("clips"), run.scalars.get("items")
        if clips is not None and items is not None:
            parts.append(f"{run.name} {int(clips):,} clips ({int(items):,} items)")
        elif items is not None:
            parts.append(f"{run.name} {int(items):,} items")
        else:
            parts.append(f"{run.name} not recorded")
    return "n: " + "; ".join(parts)


def render_report(paper: Paper, runs: Sequence[Run]) -> tuple[str, list[Table]]:
    """The markdown report (sources, then each table) and its tables."""
    tables = paper_tables(paper, runs)
    lines = [f"## sce report: paper {paper}", "", "Rows from runs:"]
    lines += [f"- {run.name}: {run.source}" for run in runs]
    for table in tables:
        lines += ["", table.markdown()]
    return "\n".join(lines) + "\n", tables


def write_csvs(tables: Iterable[Table], out_dir: Path) -> list[Path]:
    """One CSV per table (`<slug>.csv`) in out_dir; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in tables:
        path = out_dir / f"{table.slug}.csv"
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows(table.csv_rows())
        paths.append(path)
    return paths


# --- CLI -------------------------------------------------------------------------------------


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folders",
        nargs="+",
        help="run folders (a `sce fit`/`sce test` run or its log dir; runs/demo gives one row "
        "per stage)",
    )
    parser.add_argument(
        "--paper",
        required=True,
        choices=PAPERS,
        help="whose tables to print (runs side by side without a paper: sce compare RUN...)",
    )
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        help="row name of the N-th folder (repeatable, in folder order; default: folder name)",
    )
    parser.add_argument(
        "--out", default=None, help="CSV folder (default: report_paper<P>/ in the first folder)"
    )


def report_command(args: argparse.Namespace) -> int:
    try:
        runs = load_runs(args.folders, args.name)
    except ReportError as err:
        print(f"sce report: error: {err}", file=sys.stderr)
        return 2
    markdown, tables = render_report(args.paper, runs)
    print(markdown, end="")
    first = Path(args.folders[0])
    out_dir = (
        Path(args.out)
        if args.out
        else (first.parent if first.is_file() else first) / f"report_paper{args.paper}"
    )
    paths = write_csvs(tables, out_dir)
    print(f"\nwrote CSV: {', '.join(str(p) for p in paths)}")
    return 0
