"""Private fleet data (mp4 + IMU/GPS CSV folders) -> canonical manifest.

Layout (`sce data init --source private DIR` writes it, with a README.txt)::

    root/labels.csv         id,label[,event_time][,split][,caption][,instruction][,metadata.KEY...]
    root/videos/<id>.mp4
    root/imu/<id>.csv       t,ax,ay,az,gx,gy,gz   (s from the clip start, m/s², rad/s)
    root/gps/<id>.csv       t,speed               (s from the clip start, m/s)

`labels.csv` drives the conversion: one record per row, id = the row's id (= the file stem).
Labels are "collision", "near_collision" or "normal" (case, spaces and hyphens are forgiven:
"Near-Collision" -> "near_collision"). An empty or absent `event_time` stays null (the dataset
derives it as argmax |a_x| from the IMU); an empty or absent `split` is assigned, seeded and
stratified by label. `caption` and `instruction` become the record's annotations (the caption
and instruction tasks), each `metadata.KEY` column the record's metadata[KEY] (a number when
the cell is one); other columns are ignored and counted in the notes. IMU/GPS files are
optional unless `require_imu` / `require_gps`; their header is checked here (the values are
checked when the dataset loads them). Videos without a labels row are left out and counted in
`notes["unlabeled_video"]`.

Own annotations are columns, not a separate annotations file: the texts a person writes per clip
(a caption, an instruction) are one cell each, edited beside the label in any spreadsheet, and
cannot drift out of step with the clip list. Structured annotations (VQA lists, reasoning
traces) come from `sce label`, which writes them into the manifest.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sce.data.schema import LABELS, ClipRecord
from sce.prepare.sources.base import (
    ConversionReport,
    SourceContext,
    SourceError,
    SourceRecord,
    check_split,
    is_empty,
    missing_file,
    parse_seconds,
    read_csv_rows,
)
from sce.tasks import CAPTION_FIELD, INSTRUCTION_FIELD

IMU_COLUMNS = ("t", "ax", "ay", "az", "gx", "gy", "gz")
GPS_COLUMNS = ("t", "speed")
LABEL_COLUMNS = ("id", "label", "event_time", "split")
ANNOTATION_COLUMNS = (CAPTION_FIELD, INSTRUCTION_FIELD)  # free text -> annotations[column]
METADATA_PREFIX = "metadata."  # metadata.KEY -> metadata[KEY]


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


def own_annotations(
    row: dict[str, str], report: ConversionReport
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(annotations, metadata) of a labels.csv row: the `caption` / `instruction` cells and the
    `metadata.KEY` cells that are not empty; any other unknown column is counted in the notes
    (once per row) so a misspelt column name shows in the summary."""
    annotations = {c: row[c] for c in ANNOTATION_COLUMNS if not is_empty(row.get(c))}
    metadata: dict[str, Any] = {}
    for column, cell in row.items():
        if column.startswith(METADATA_PREFIX) and len(column) > len(METADATA_PREFIX):
            if not is_empty(cell):
                metadata[column[len(METADATA_PREFIX) :]] = _number_or_text(cell)
        elif column not in LABEL_COLUMNS + ANNOTATION_COLUMNS:
            report.notes[f"ignored_column '{column}'"] += 1
    return annotations, metadata


def _number_or_text(cell: str) -> float | int | str:
    """A metadata cell: a finite number when it reads as one ("48" -> 48, "9.5" -> 9.5)."""
    try:
        number = float(cell)
    except ValueError:
        return cell
    if not math.isfinite(number):
        return cell
    return int(number) if number.is_integer() and "." not in cell else number


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


def private_records(
    ctx: SourceContext,
    *,
    labels: str = "labels.csv",
    video_dir: str = "videos",
    imu_dir: str = "imu",
    gps_dir: str = "gps",
    video_ext: str = ".mp4",
    require_imu: bool = False,
    require_gps: bool = False,
) -> Iterator[SourceRecord]:
    """Convert the mp4 + IMU/GPS CSV folder layout (see the module docstring).

    `ctx.skip_missing` counts and skips rows whose video (or required IMU/GPS) is missing;
    a forced split overrides the split column. Options:
        labels, video_dir, imu_dir, gps_dir: locations relative to root.
        video_ext: video file extension.
        require_imu, require_gps: treat a missing telemetry file like a missing video.
    """
    root, report, skip_missing = ctx.root, ctx.report, ctx.skip_missing
    ext = video_ext if video_ext.startswith(".") else f".{video_ext}"
    labeled: set[str] = set()  # a repeated id is prepare's duplicate-id check
    for where, row in read_csv_rows(root / labels, ("id", "label")):
        clip_id = row["id"]
        if not clip_id:
            raise SourceError(f"{where}: column 'id': empty")
        labeled.add(clip_id)
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
        annotations, metadata = own_annotations(row, report)
        yield SourceRecord(
            ClipRecord(
                id=clip_id,
                video=str(video),
                label=label,
                source="private",
                split=row_split,
                imu=None if imu is None else str(imu),
                gps=None if gps is None else str(gps),
                event_time=event_time,
                metadata=metadata,
                annotations=annotations,
            ),
            where,
        )
    video_folder = root / video_dir
    if video_folder.is_dir():
        unlabeled = {p.stem for p in video_folder.glob(f"*{ext}")} - labeled
        if unlabeled:
            report.notes["unlabeled_video"] += len(unlabeled)


# ----------------------------------------------------------------------- sce data init
TEMPLATE_COLUMNS = (*LABEL_COLUMNS, *ANNOTATION_COLUMNS, "metadata.weather")

README_TEXT = """\
Own data for sce (the `private` layout). Put one row per clip in labels.csv, then:

    sce data prepare --source private --root {root} --out {root}/manifest.jsonl
    sce data validate --config experiments/demo.yaml --data.manifest={root}/manifest.jsonl
    sce fit --config experiments/demo.yaml --data.manifest={root}/manifest.jsonl

Files (<id> is the clip id of labels.csv, also the file name):

    videos/<id>.mp4   the dashcam clip (any frame rate; H.264 mp4; -o video_ext=.mov for others)
    imu/<id>.csv      optional; header t,ax,ay,az,gx,gy,gz
    gps/<id>.csv      optional; header t,speed

labels.csv columns (only id and label are required; leave a cell empty when unknown):

    id            clip id = the file stem of videos/<id>.mp4, imu/<id>.csv, gps/<id>.csv
    label         collision | near_collision | normal
    event_time    seconds from the clip start of the collision / closest approach; empty:
                  taken as the time of the largest |ax| in the IMU file (else the clip centre)
    split         train | val | test; empty: assigned (seeded, stratified by label; at least
                  one val and one test clip when there are 3 clips or more)
    caption       one or two sentences describing what happens (trains the caption task)
    instruction   a safe-driving instruction for the situation (paper 003's task)
    metadata.KEY  any number of free columns (metadata.weather, metadata.scene, ...): kept in the
                  record's metadata (numbers stay numbers)

Example rows:

    id,label,event_time,split,caption,instruction,metadata.weather
    trip12_0031,collision,7.4,,The ego car rear-ends a white van that brakes hard.,,rain
    trip12_0044,normal,,,,,clear

Telemetry columns and units (one row per sample, time strictly increasing):

    t        seconds from the clip start (0 = the first video frame): not milliseconds, not
             epoch or device-boot seconds
    ax ay az m/s² (x forward, y left, z up; gravity included is fine), ~100 Hz, and never a
             rate below the training frame rate (3 fps by default)
    gx gy gz rad/s (not deg/s)
    speed    m/s (not km/h), ~1 Hz

`sce data validate --config CFG` runs the training window plan on every clip and names the clip
and file of any time span, rate or unit that training would trip over.
"""


def init_private(root: str | Path) -> list[Path]:
    """Write the empty `private` layout under `root`: videos/, imu/, gps/, a labels.csv with
    every column's header and a README.txt explaining each column and unit. Refuses to
    overwrite an existing labels.csv or README.txt (SourceError naming it)."""
    root = Path(root)
    labels, readme = root / "labels.csv", root / "README.txt"
    for path in (labels, readme):
        if path.exists():
            raise SourceError(f"{path}: already exists; not overwritten")
    folders = [root / name for name in ("videos", "imu", "gps")]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    labels.write_text(",".join(TEMPLATE_COLUMNS) + "\n", encoding="utf-8")
    readme.write_text(README_TEXT.format(root=root.as_posix()), encoding="utf-8")
    return [*folders, labels, readme]


INIT_SOURCES = ("private",)


def add_init_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`sce data init --source private DIR`."""
    parser.add_argument("root", type=Path, help="folder to create (may exist; files are kept)")
    parser.add_argument(
        "--source", choices=INIT_SOURCES, default="private", help="layout to write (private)"
    )
    return parser


def init_command(args: argparse.Namespace) -> int:
    """Write the layout; print what was written and the next command; 2 on an error."""
    try:
        written = init_private(args.root)
    except (SourceError, OSError) as err:
        print(f"sce data init: error: {err}", file=sys.stderr)
        return 2
    print("\n".join(f"wrote {path}" for path in written))
    print(
        f"next: put clips in {args.root}/videos, fill {args.root}/labels.csv (columns: "
        f"{args.root}/README.txt), then sce data prepare --source private --root {args.root} "
        f"--out {args.root}/manifest.jsonl"
    )
    return 0
