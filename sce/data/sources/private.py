"""Private fleet data (mp4 + IMU/GPS CSV folders) -> canonical manifest.

Layout::

    root/labels.csv         id,label[,event_time][,split]
    root/videos/<id>.mp4
    root/imu/<id>.csv       t,ax,ay,az,gx,gy,gz   (s, m/s^2, rad/s)
    root/gps/<id>.csv       t,speed               (s, m/s)

`labels.csv` drives the conversion: one record per row, id = the row's id (= the file stem).
Labels are "collision", "near_collision" or "normal" (case, spaces and hyphens are forgiven:
"Near-Collision" -> "near_collision"). An empty or absent `event_time` stays null (the dataset
derives it as argmax |a_x| from the IMU); an empty or absent `split` is assigned, seeded and
stratified by label. IMU/GPS files are optional unless `require_imu` / `require_gps`; their
header is checked here (the values are checked when the dataset loads them). Videos without a
labels row are left out and counted in `notes["unlabeled_video"]`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sce.data.schema import LABELS, ClipRecord
from sce.data.sources.base import (
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    ConversionReport,
    SourceError,
    check_split,
    finish,
    missing_file,
    parse_seconds,
    read_csv_rows,
)

IMU_COLUMNS = ("t", "ax", "ay", "az", "gx", "gy", "gz")
GPS_COLUMNS = ("t", "speed")


def normalize_label(value: str, where: str) -> str:
    """Map 'Near-Collision', 'near collision', ... to a canonical label, or raise."""
    label = value.strip().lower().replace("-", "_").replace(" ", "_")
    if label not in LABELS:
        raise SourceError(
            f"{where}: column 'label': unknown label {value!r}; expected one of {LABELS}"
        )
    return label


def check_header(path: Path, columns: tuple[str, ...]) -> None:
    """Raise SourceError naming the file and the first missing column of its header."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = [c.strip() for c in next(csv.reader(handle), [])]
    for name in columns:
        if name not in header:
            raise SourceError(f"{path}: missing column '{name}' (header: {header})")


def _telemetry(
    path: Path,
    columns: tuple[str, ...],
    required: bool,
    where: str,
    report: ConversionReport,
    skip_missing: bool,
    what: str,
) -> tuple[bool, Path | None]:
    """(skip the row?, path or None) for one optional telemetry file."""
    if path.is_file():
        check_header(path, columns)
        return False, path
    if required:
        missing_file(path, where, report, skip_missing, what)
        return True, None
    report.notes[f"no_{what}"] += 1
    return False, None


def convert_private(
    root: str | Path,
    out_manifest: str | Path,
    split: str | None = None,
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    *,
    skip_missing: bool = False,
    labels: str = "labels.csv",
    video_dir: str = "videos",
    imu_dir: str = "imu",
    gps_dir: str = "gps",
    video_ext: str = ".mp4",
    require_imu: bool = False,
    require_gps: bool = False,
) -> ConversionReport:
    """Convert the mp4 + IMU/GPS CSV folder layout (see the module docstring).

    Args:
        root: dataset folder.
        out_manifest: manifest to write; paths inside are relative to its folder.
        split: give every record this split (overrides the split column).
        seed, val_fraction, test_fraction: assignment of rows without a split.
        skip_missing: count and skip rows whose video (or required IMU/GPS) is missing.
        labels, video_dir, imu_dir, gps_dir: locations relative to root.
        video_ext: video file extension.
        require_imu, require_gps: treat a missing telemetry file like a missing video.
    """
    root = Path(root)
    ext = video_ext if video_ext.startswith(".") else f".{video_ext}"
    report = ConversionReport("private", Path(out_manifest))
    records: list[ClipRecord] = []
    first_line: dict[str, str] = {}
    for where, row in read_csv_rows(root / labels, ("id", "label")):
        clip_id = row["id"]
        if not clip_id:
            raise SourceError(f"{where}: column 'id': empty")
        if clip_id in first_line:
            raise SourceError(
                f"{where}: column 'id': duplicate id {clip_id!r} (first at {first_line[clip_id]})"
            )
        first_line[clip_id] = where
        label = normalize_label(row["label"], where)
        event_time = parse_seconds(row.get("event_time"), where, "event_time")
        row_split = check_split(row["split"], where) if row.get("split") else ""
        video = root / video_dir / f"{clip_id}{ext}"
        if missing_file(video, where, report, skip_missing):
            continue
        skip_imu, imu = _telemetry(
            root / imu_dir / f"{clip_id}.csv",
            IMU_COLUMNS,
            require_imu,
            where,
            report,
            skip_missing,
            "imu",
        )
        if skip_imu:
            continue
        skip_gps, gps = _telemetry(
            root / gps_dir / f"{clip_id}.csv",
            GPS_COLUMNS,
            require_gps,
            where,
            report,
            skip_missing,
            "gps",
        )
        if skip_gps:
            continue
        records.append(
            ClipRecord(
                id=clip_id,
                video=str(video),
                label=label,
                source="private",
                split=row_split,
                imu=None if imu is None else str(imu),
                gps=None if gps is None else str(gps),
                event_time=event_time,
            )
        )
    video_folder = root / video_dir
    if video_folder.is_dir():
        unlabeled = {p.stem for p in video_folder.glob(f"*{ext}")} - set(first_line)
        if unlabeled:
            report.notes["unlabeled_video"] += len(unlabeled)
    return finish(
        records,
        report,
        split=split,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
