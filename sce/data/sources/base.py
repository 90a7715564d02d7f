"""Shared pieces of the source converters: report, CSV/number parsing, splits, manifest writing.

Every converter builds `ClipRecord`s with *absolute* paths and `split=""` where the source has no
split, then calls `finish`, which assigns the missing splits (seeded, stratified by label, by
group so that records cut from one video never straddle splits), rewrites the paths relative to
the manifest's folder, validates every record against the schema and writes the manifest.
"""

from __future__ import annotations

import csv
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sce.data.schema import (
    ALL_LABELS,
    SPLITS,
    ClipRecord,
    ManifestError,
    parse_record,
    write_manifest,
)
from sce.data.splits import empty_split_warning, fill_empty_splits, split_fractions_asked

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

    def skip(self, reason: str) -> None:
        """Count one skipped source unit."""
        self.reasons[reason] += 1
        self.n_skipped += 1

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


# ----------------------------------------------------------------------------- splits


def assign_splits(
    groups: dict[str, str], seed: int, val_fraction: float, test_fraction: float
) -> dict[str, str]:
    """Seeded split per group, stratified by the group's label.

    Within each label the groups are sorted, shuffled with `Random(f"{seed}:{label}")`, and the
    first round(n * test_fraction) go to test, the next round(n * val_fraction) to val, the rest
    to train (round half up). One label's assignment does not depend on the other labels,
    except on small sets: a split with a positive fraction that comes out empty takes one group
    when there are at least as many groups as asked splits (`sce.data.splits.fill_empty_splits`:
    6 clips at 90/5/5 give train 4, val 1, test 1 instead of 6, 0, 0).
    """
    check_fractions(val_fraction, test_fraction)
    by_label: dict[str, list[str]] = defaultdict(list)
    for group, label in groups.items():
        by_label[label].append(group)
    result: dict[str, str] = {}
    order: list[str] = []
    for label, members in sorted(by_label.items()):
        members.sort()
        random.Random(f"{seed}:{label}").shuffle(members)
        order += members
        n_test = math.floor(len(members) * test_fraction + 0.5)
        n_val = min(math.floor(len(members) * val_fraction + 0.5), len(members) - n_test)
        for i, group in enumerate(members):
            result[group] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    fill_empty_splits(result, groups, order, split_fractions_asked(val_fraction, test_fraction))
    return result


def _fill_splits(
    records: list[ClipRecord],
    group_of: dict[str, str],
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> None:
    """Give every record with split "" the split of its group (group = record id by default)."""
    pending = [r for r in records if not r.split]
    if not pending:
        return
    group_labels: dict[str, str] = {}
    for record in pending:
        group = group_of.get(record.id, record.id)
        previous = group_labels.get(group)
        # a group's label is its most severe record label (ALL_LABELS order)
        if previous is None or ALL_LABELS.index(record.label) < ALL_LABELS.index(previous):
            group_labels[group] = record.label
    splits = assign_splits(group_labels, seed, val_fraction, test_fraction)
    for record in pending:
        record.split = splits[group_of.get(record.id, record.id)]


# ----------------------------------------------------------------------------- writing


def relative_to(path: str | Path, folder: Path) -> str:
    """`path` relative to `folder` (both made absolute first), with forward slashes."""
    return Path(os.path.relpath(Path(path).absolute(), folder.absolute())).as_posix()


def finish(
    records: list[ClipRecord],
    report: ConversionReport,
    *,
    split: str | None,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    group_of: dict[str, str] | None = None,
) -> ConversionReport:
    """Assign splits, relativize paths, validate and write `report.manifest`.

    `split` (when given) overrides every record's split; otherwise records with split ""
    get a seeded stratified split by group (`group_of`: record id -> group, default the id).
    """
    if split is not None:
        check_split(split, "argument", "split")
        for record in records:
            record.split = split
    _fill_splits(records, group_of or {}, seed, val_fraction, test_fraction)
    folder = report.manifest.absolute().parent
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    for record in records:
        if record.id in seen:
            raise SourceError(f"{report.source}: duplicate record id {record.id!r}")
        seen.add(record.id)
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
    if split is None:  # a forced split empties the others on purpose
        per_split = Counter(record.split for record in records)
        asked = split_fractions_asked(val_fraction, test_fraction)
        if warning := empty_split_warning(per_split, asked):
            report.warnings.append(warning)
    return report


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
