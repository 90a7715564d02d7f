"""Nexar dashcam collision prediction dataset -> canonical manifest (Kaggle and Hugging Face).

Kaggle layout (`nexar_records`)::

    root/train.csv            id,time_of_event,time_of_alert,target
    root/train/00822.mp4      video of id 822 (zero-padded to 5 digits)

Hugging Face layout (`nexar_hf_records`)::

    root/train/positive/metadata.csv   file_name,time_of_event,time_of_alert,
    root/train/negative/metadata.csv   light_conditions,weather,scene
    root/train/positive/00822.mp4      (file_name is relative to the metadata.csv folder)

Labels: Nexar is binary. target 1 means a collision *or* a near-collision, so every record gets
`label_scope="binary"` and the label "event" (target 1) or "normal" (target 0), with
`metadata["nexar_target"]` (0/1) kept. No 3-class label is invented: the dataset trains these
records with the yes/no event question and evaluation scores them only in the binary SCE metrics
(paper 000 Table II: "Nexar ... lacking explicit near-collision annotations").
`event_time` = time_of_event (seconds from the video start; empty for negatives, hence null);
`metadata["time_of_alert"]` keeps the earliest time the event could be predicted.

Record ids are `nexar_<5-digit id>` in both layouts (`nexar_<subset>_<stem>` for HF subsets
other than "train"), so the two layouts of the same video agree and ids never collide with other
sources in a merged manifest.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sce.data.schema import ClipRecord
from sce.prepare.sources.base import (
    ConversionReport,
    SourceContext,
    SourceError,
    SourceRecord,
    missing_file,
    parse_seconds,
    read_csv_rows,
)

KAGGLE_COLUMNS = ("id", "time_of_event", "time_of_alert", "target")
HF_COLUMNS = ("file_name", "time_of_event", "time_of_alert")
HF_METADATA_COLUMNS = ("light_conditions", "weather", "scene")
HF_CLASS_FOLDERS = {"positive": 1, "negative": 0}


def _record(
    record_id: str,
    video: Path,
    target: int,
    row: dict[str, str],
    where: str,
    report: ConversionReport,
    extra: dict[str, Any] | None = None,
) -> ClipRecord:
    """One Nexar record from a parsed row (shared by both layouts)."""
    event_time = parse_seconds(row["time_of_event"], where, "time_of_event")
    alert = parse_seconds(row["time_of_alert"], where, "time_of_alert")
    if target == 1 and event_time is None:
        report.notes["positive_without_event_time"] += 1
    metadata: dict[str, Any] = {"nexar_target": target, "time_of_alert": alert}
    metadata.update(extra or {})
    return ClipRecord(
        id=record_id,
        video=str(video),
        label="event" if target == 1 else "normal",
        label_scope="binary",
        source="nexar",
        split="",
        event_time=event_time,
        metadata=metadata,
    )


def _parse_target(value: str, where: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise SourceError(f"{where}: column 'target': not a number: {value!r}") from None
    if number not in (0.0, 1.0):
        raise SourceError(f"{where}: column 'target': expected 0 or 1, got {value!r}")
    return int(number)


def _parse_id(value: str, where: str) -> int:
    try:
        number = float(value)  # pandas round-trips sometimes write "822.0"
    except ValueError:
        number = math.nan
    if not number.is_integer() or number < 0:
        raise SourceError(f"{where}: column 'id': not a non-negative integer: {value!r}")
    return int(number)


def nexar_records(
    ctx: SourceContext,
    *,
    csv_name: str = "train.csv",
    video_dir: str = "train",
) -> Iterator[SourceRecord]:
    """Convert the Kaggle layout (`root/train.csv`, `root/train/{id:05d}.mp4`).

    `ctx.root` is the dataset folder; `csv_name`, `video_dir`: the CSV and the video folder,
    relative to it. `ctx.skip_missing` counts and skips rows whose video is missing.
    """
    root, report = ctx.root, ctx.report
    for where, row in read_csv_rows(root / csv_name, KAGGLE_COLUMNS):
        clip_id = _parse_id(row["id"], where)  # a repeated id: prepare's duplicate-id check
        target = _parse_target(row["target"], where)
        video = root / video_dir / f"{clip_id:05d}.mp4"
        if missing_file(video, where, report, ctx.skip_missing):
            continue
        yield SourceRecord(
            _record(f"nexar_{clip_id:05d}", video, target, row, where, report), where
        )


def nexar_hf_records(
    ctx: SourceContext,
    *,
    subset: str = "train",
) -> Iterator[SourceRecord]:
    """Convert the Hugging Face layout (`root/<subset>/{positive,negative}/metadata.csv`).

    As `nexar_records`; `subset` is the folder under root ("train", "test-public", ...).
    Light conditions, weather and scene go into the metadata. At least one of the two class
    folders must have a metadata.csv.
    """
    base, report = ctx.root / subset, ctx.report
    csvs = {name: base / name / "metadata.csv" for name in HF_CLASS_FOLDERS}
    if not any(path.is_file() for path in csvs.values()):
        raise SourceError(f"no metadata.csv in {base}/positive or {base}/negative")
    prefix = "nexar_" if subset == "train" else f"nexar_{subset}_"
    for name, path in csvs.items():
        if not path.is_file():
            report.notes[f"no_{name}_folder"] += 1
            continue
        for where, row in read_csv_rows(path, HF_COLUMNS):
            if not row["file_name"]:
                raise SourceError(f"{where}: column 'file_name': empty")
            video = path.parent / row["file_name"]
            if missing_file(video, where, report, ctx.skip_missing):
                continue
            extra = {k: row[k] for k in HF_METADATA_COLUMNS if row.get(k)}
            extra["nexar_subset"] = subset
            rec = _record(
                prefix + Path(row["file_name"]).stem,
                video,
                HF_CLASS_FOLDERS[name],
                row,
                where,
                report,
                extra,
            )
            yield SourceRecord(rec, where)
