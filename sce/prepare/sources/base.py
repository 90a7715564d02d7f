"""Shared pieces of the source converters: report, CSV/number parsing, splits, manifest writing.

Every converter yields `SourceRecord`s: a `ClipRecord` with *absolute* paths and `split=""`
where the source has no split, where it came from and its split group. `sce.prepare.sources.prepare`
drives them: it checks the ids are unique, assigns the missing splits (`fill_splits`: seeded,
stratified by label, by group so that records cut from one video never straddle splits) and
writes the manifest (`write_records`: paths relative to the manifest's folder, every record
validated against the schema).
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sce.data.schema import (
    ALL_LABELS,
    LABELS,
    SPLITS,
    ClipRecord,
    ManifestError,
    parse_record,
    write_manifest,
)
from sce.prepare.splits import assign_splits

MAX_MISSING_S = 1.0  # telemetry may start or end this much inside the video (validate's slack)
DEFAULT_VAL_FRACTION = 0.05  # paper 000 uses a 90/5/5 split
DEFAULT_TEST_FRACTION = 0.05
_EMPTY = {"", "nan", "NaN", "NAN", "null", "None", "NA", "N/A"}


class SourceError(ManifestError):
    """Malformed source data; the message names the file, row and column."""


@dataclass
class ConversionReport:
    """What a conversion wrote and what it left out.

    `reasons` counts skipped source units (a clip, a CSV row or a segment) by why they were
    skipped; `notes` counts things that did not cost a record (no IMU file, ambiguous split).
    """

    source: str
    manifest: Path
    n_records: int = 0
    n_skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (split, label) -> records
    warnings: list[str] = field(default_factory=list)  # printed last by `summary`
    # the first messages (naming the file) of each skip reason, printed by `summary`
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def skip(self, reason: str, detail: str = "") -> None:
        """Count one skipped source unit; `detail` (the message naming its file) is kept for
        the first three of each reason."""
        self.reasons[reason] += 1
        self.n_skipped += 1
        if detail and len(self.examples[reason]) < 3:
            self.examples[reason].append(detail)

    def summary(self) -> str:
        """A plain-text table: records per split x label, then skips and notes by reason.

        The columns are the 3-class labels plus "event" when the source is binary (Nexar)."""
        labels = [c for c in ALL_LABELS if c != "event" or any(k[1] == c for k in self.counts)]
        header = ["split", *labels, "total"]
        table = [[self.counts[(split, label)] for label in labels] for split in SPLITS]
        table.append([sum(column) for column in zip(*table, strict=True)])
        rows = [header] + [
            [name, *map(str, cells), str(sum(cells))]
            for name, cells in zip((*SPLITS, "total"), table, strict=True)
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"{self.source}: wrote {self.n_records} records to {self.manifest}"]
        lines += [
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        lines.append(f"skipped {self.n_skipped}" + _format_counter(self.reasons))
        lines += [
            f"  {reason}: {text}" for reason, texts in self.examples.items() for text in texts
        ]
        if self.notes:
            lines.append("notes" + _format_counter(self.notes))
        lines += [f"warning: {text}" for text in self.warnings]
        return "\n".join(lines)


def _format_counter(counter: Counter[str]) -> str:
    if not counter:
        return ""
    return ": " + ", ".join(f"{key}={n}" for key, n in sorted(counter.items()))


# ----------------------------------------------------------------------------- parsing


def is_empty(value: Any) -> bool:
    """True for a missing CSV cell (empty, 'nan', 'NA', None or a float NaN)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return str(value).strip() in _EMPTY


def parse_seconds(value: Any, where: str, column: str) -> float | None:
    """A non-negative, finite number of seconds, or None for an empty cell."""
    if is_empty(value):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        raise SourceError(f"{where}: column '{column}': not a number: {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise SourceError(f"{where}: column '{column}': expected seconds >= 0, got {value!r}")
    return number


def read_csv_rows(
    path: Path, required: Sequence[str], skip_blank: bool = True
) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield (where, row) for each data row, cells stripped; `where` reads '<file> line <n>'.

    Raises SourceError naming the file and the first missing column. Rows whose cells are all
    empty are left out unless `skip_blank` is False.
    """
    if not path.is_file():
        raise SourceError(f"file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        for name in required:
            if name not in columns:
                raise SourceError(f"{path}: missing column '{name}' (columns: {columns})")
        for row in reader:
            cells = {k: v.strip() if isinstance(v, str) else "" for k, v in row.items() if k}
            if skip_blank and not any(cells.values()):
                continue
            yield f"{path} line {reader.line_num}", cells


def check_split(value: str, where: str, column: str = "split") -> str:
    """Validate a split name from the source."""
    if value not in SPLITS:
        raise SourceError(f"{where}: column '{column}': unknown split {value!r}; expected {SPLITS}")
    return value


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Both in [0, 1) and leaving something for train."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
        )


# ----------------------------------------------------------------------------- records


@dataclass
class SourceRecord:
    """One record a converter yields: the record (absolute paths, split "" when the source has
    none), where it came from ('<file> line <n>') and its split group (records of one group,
    e.g. the actions cut from one video, share a split; None: the record is its own group)."""

    record: ClipRecord
    where: str
    group: str | None = None


@dataclass
class SourceContext:
    """What `prepare` hands a converter: the input, the manifest it will write, the report to
    count skips in, and the shared options (a converter reads `split` only to ignore its own
    split files when a split is forced; the synthetic generator reads the fractions)."""

    root: Path
    out_manifest: Path
    report: ConversionReport
    split: str | None = None
    seed: int = 0
    val_fraction: float | None = None
    test_fraction: float | None = None
    skip_missing: bool = False
    # record folders written under a temporary name until the whole conversion succeeds
    staged: dict[Path, Path] = field(default_factory=dict)

    def stage(self, folder: Path) -> Path:
        """A fresh `<folder>.partial` for one record's files (`commit_staged` moves it to
        `folder` once every record converted; `discard` and `discard_staged` remove it), so a
        conversion stopped or a unit skipped halfway leaves no orphan files, and a failed
        rerun leaves the previous run's files alone."""
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        self.staged[folder] = partial
        return partial

    def discard(self, folder: Path) -> None:
        """Remove the staged files of one record (a skipped unit)."""
        shutil.rmtree(self.staged.pop(folder), ignore_errors=True)

    def discard_staged(self) -> None:
        """Remove every staged folder (the conversion failed)."""
        for folder in list(self.staged):
            self.discard(folder)

    def commit_staged(self) -> None:
        """Move every staged folder into place (replacing an earlier run's)."""
        for folder, partial in self.staged.items():
            shutil.rmtree(folder, ignore_errors=True)
            partial.replace(folder)
        self.staged.clear()

    def skip_unit(self, folder: Path, reason: str, err: SourceError) -> None:
        """Under `skip_missing`, count a unit that could not be converted (its message, which
        names the file, goes to the summary) and drop its staged files; else drop nothing
        and re-raise `err` (`prepare` then removes every staged folder)."""
        if not self.skip_missing:
            raise err
        self.discard(folder)
        self.report.skip(reason, str(err))

    def output_folder(self, out_dir: str | Path | None, name: str) -> Path:
        """Where a converter that writes files (comma2k19's mp4s, CSVs) puts them: `out_dir`,
        else `<name>/` beside the manifest."""
        return Path(out_dir) if out_dir is not None else self.out_manifest.absolute().parent / name


def check_label(label: str) -> str:
    """A 3-class label given as an option (every record of a telemetry source gets it)."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    return label


# ----------------------------------------------------------------------------- splits


def check_unique_ids(records: Sequence[SourceRecord], source: str) -> None:
    """Raise SourceError naming both records (and where each came from) of a repeated id."""
    first: dict[str, SourceRecord] = {}
    for item in records:
        earlier = first.setdefault(item.record.id, item)
        if earlier is not item:
            raise SourceError(
                f"{source}: {item.where}, id {item.record.id!r}: duplicate record id "
                f"(first at {earlier.where})"
            )


def fill_splits(
    records: Sequence[SourceRecord], seed: int, val_fraction: float, test_fraction: float
) -> None:
    """Give every record with split "" its group's seeded, stratified split
    (`sce.prepare.splits.assign_splits`; a group's label is its most severe record label)."""
    check_fractions(val_fraction, test_fraction)
    pending = [item for item in records if not item.record.split]
    if not pending:
        return
    group_labels: dict[str, str] = {}
    for item in pending:
        group = item.group or item.record.id
        previous = group_labels.get(group)
        label = item.record.label
        if previous is None or ALL_LABELS.index(label) < ALL_LABELS.index(previous):
            group_labels[group] = label
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    groups = list(group_labels)
    names = assign_splits([group_labels[g] for g in groups], fractions, seed, keys=groups)
    split_of = dict(zip(groups, names, strict=True))
    for item in pending:
        item.record.split = split_of[item.group or item.record.id]


# ----------------------------------------------------------------------------- writing


def relative_to(path: str | Path, folder: Path) -> str:
    """`path` relative to `folder` (both made absolute first), with forward slashes."""
    return Path(os.path.relpath(Path(path).absolute(), folder.absolute())).as_posix()


def write_records(records: Sequence[SourceRecord], report: ConversionReport) -> None:
    """Relativize the paths, validate every record and write `report.manifest`."""
    folder = report.manifest.absolute().parent
    rows: list[dict[str, Any]] = []
    for record in (item.record for item in records):
        for name in ("video", "imu", "gps"):
            value = getattr(record, name)
            if value is not None:
                setattr(record, name, relative_to(value, folder))
        if "frames" in record.metadata:
            record.metadata["frames"] = [relative_to(p, folder) for p in record.metadata["frames"]]
        data = record.to_json()
        # parse_record adds the record's id: "nexar record, id 'x': field ...".
        parse_record(data, folder, where=f"{report.source} record", check_files=False)
        rows.append(data)
        report.counts[(record.split, record.label)] += 1
    write_manifest(rows, report.manifest)
    report.n_records = len(rows)


def short_telemetry(
    ctx: SourceContext, folder: Path, t: np.ndarray, duration: float, where: str
) -> bool:
    """True (the unit skipped, counted 'short_telemetry') when the IMU stamps `t` (s, video
    time base) start or end more than MAX_MISSING_S inside the `duration` s video and
    `skip_missing` is set; without it the record is kept and a warning names the file and
    the span (a file whose second half was never written: 5 s of telemetry, 10.5 s video)."""
    t = t[np.isfinite(t)]
    start, end = (float(t[0]), float(t[-1])) if t.size else (math.nan, math.nan)
    if start <= MAX_MISSING_S and end >= duration - MAX_MISSING_S:
        return False
    detail = f"{where}: IMU covers {start:.2f} to {end:.2f} s of the {duration:.2f} s video"
    if ctx.skip_missing:
        ctx.discard(folder)
        ctx.report.skip("short_telemetry", detail)
        return True
    ctx.report.notes["short_telemetry"] += 1
    ctx.report.warnings.append(f"{detail} (converted; --skip-missing skips such files)")
    return False


def missing_file(
    path: Path, where: str, report: ConversionReport, skip_missing: bool, what: str = "video"
) -> bool:
    """True (and one counted skip 'missing_<what>') when `path` is not a file and skipping is
    allowed; raises SourceError naming `where` when it is not; False when the file exists."""
    if path.is_file():
        return False
    if skip_missing:
        report.skip(f"missing_{what}")
        return True
    raise SourceError(f"{where}: {what} not found: {path} (skip_missing=True skips such entries)")
