"""BDD-X (Berkeley DeepDrive eXplanation) -> canonical manifest.

Layout::

    root/BDD-X-Annotations_v1.csv   Input.Video, then for k = 1..15: Answer.{k}start,
                                    Answer.{k}end, Answer.{k}action, Answer.{k}justification
    root/train.txt, val.txt, test.txt   (optional) lines "<row>_<videoid>"
    root/videos/<videoid>.mov | .mp4

`Input.Video` is a URL or a file name; its basename stem is the video id. Start/end are seconds
from the video start; action cells are empty when an annotator wrote fewer than 15 actions.

BDD-X has no safety-critical events: every record is "normal". One record per (CSV row,
action k), id `bddx_<row>_<videoid>_<k>`, with `annotations["caption"]` = "<action> because
<justification>" (plus the raw `action` and `justification`), `metadata` start/end seconds, and
`event_time` = the middle of the action segment (None when start or end is empty), so the
dataset cuts its window around the action. All records of a row share the row's video.

Splits: the split files, when present, decide; lines are matched on "<row>_<videoid>" with row
the 1-based data-row index of the CSV, falling back to the video id alone, because the original
preprocessing numbered rows with a counter over the rows it kept. A video listed in several split
files takes the most held-out one (test, then val) and is counted in `notes["ambiguous_split"]`;
rows absent from every split file are skipped as "not_in_split". Without split files, splits are
assigned per video (all rows of one video in one split), seeded.

Skipped and counted: rows without a video name ("no_video_name"), rows without any action
("no_actions"), blank rows ("empty_row"), and rows whose video is missing ("missing_video") when
skip_missing=True (otherwise a missing video raises, naming the row).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

from sce.data.schema import ClipRecord
from sce.prepare.sources.base import (
    ConversionReport,
    SourceContext,
    SourceError,
    SourceRecord,
    parse_seconds,
    read_csv_rows,
)
from sce.tasks import CAPTION_FIELD

VIDEO_COLUMN = "Input.Video"
MAX_ACTIONS = 15
SPLIT_PRIORITY = ("test", "val", "train")  # a video listed twice goes to the most held-out split


def video_id_of(value: str) -> str:
    """The basename stem of a URL or a file name ('https://.../06d501fd-a9ffc960.mov' ->
    '06d501fd-a9ffc960')."""
    path = urlparse(value).path if "://" in value else value
    return Path(path.rstrip("/")).stem


def make_caption(action: str, justification: str) -> str:
    """'<action> because <justification>' without a doubled 'because' or a stray period."""
    action = action.strip().rstrip(".").strip()
    justification = re.sub(r"^because\s+", "", justification.strip(), flags=re.IGNORECASE)
    return f"{action} because {justification}" if justification else action


def read_split_files(
    folder: Path,
) -> tuple[dict[tuple[int, str], str], dict[str, set[str]]]:
    """Parse train/val/test.txt in `folder`: ({(row, videoid): split}, {videoid: {splits}}).

    Both maps are empty when no split file exists.
    """
    exact: dict[tuple[int, str], str] = {}
    by_video: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        path = folder / f"{split}.txt"
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            prefix, sep, video = line.partition("_")
            if sep and prefix.isdigit():
                exact[(int(prefix), video)] = split
            else:
                video = line
            by_video.setdefault(video, set()).add(split)
    return exact, by_video


def _split_of(
    row_index: int,
    video: str,
    exact: dict[tuple[int, str], str],
    by_video: dict[str, set[str]],
    report: ConversionReport,
) -> str | None:
    if (row_index, video) in exact:
        return exact[(row_index, video)]
    splits = by_video.get(video)
    if not splits:
        return None
    if len(splits) > 1:
        report.notes["ambiguous_split"] += 1
    return next(s for s in SPLIT_PRIORITY if s in splits)


def _find_video(folder: Path, video: str, extensions: Sequence[str]) -> Path | None:
    for ext in extensions:
        path = folder / f"{video}{ext}"
        if path.is_file():
            return path
    return None


def _row_records(
    row: dict[str, str], where: str, row_index: int, video: str, path: Path, max_actions: int
) -> list[ClipRecord]:
    """The records of one CSV row, one per non-empty action."""
    records = []
    for k in range(1, max_actions + 1):
        action = row.get(f"Answer.{k}action", "")
        if not action:
            continue
        start = parse_seconds(row.get(f"Answer.{k}start"), where, f"Answer.{k}start")
        end = parse_seconds(row.get(f"Answer.{k}end"), where, f"Answer.{k}end")
        if start is not None and end is not None and end < start:
            raise SourceError(
                f"{where}: column 'Answer.{k}end': end {end:g} s is before start {start:g} s"
            )
        justification = row.get(f"Answer.{k}justification", "")
        event_time = None if start is None or end is None else (start + end) / 2
        records.append(
            ClipRecord(
                id=f"bddx_{row_index}_{video}_{k}",
                video=str(path),
                label="normal",
                source="bddx",
                split="",
                event_time=event_time,
                metadata={
                    "video_id": video,
                    "bddx_row": row_index,
                    "action_index": k,
                    "start": start,
                    "end": end,
                },
                annotations={
                    CAPTION_FIELD: make_caption(action, justification),
                    "action": action,
                    "justification": justification,
                },
            )
        )
    return records


def bddx_records(
    ctx: SourceContext,
    *,
    csv_name: str = "BDD-X-Annotations_v1.csv",
    video_dir: str = "videos",
    video_ext: str | Sequence[str] = (".mov", ".mp4"),
    split_dir: str | None = None,
    max_actions: int = MAX_ACTIONS,
) -> Iterator[SourceRecord]:
    """Convert BDD-X (see the module docstring for layout, records and splits).

    A forced `ctx.split` ignores the split files; `ctx.skip_missing` counts and skips rows
    whose video is missing instead of raising. Options:
        csv_name: the annotation CSV, relative to root.
        video_dir: the video folder, relative to root.
        video_ext: extension(s) tried in order for `<videoid><ext>`.
        split_dir: folder of train/val/test.txt relative to root (default: root).
        max_actions: action slots per row.
    """
    root, report = ctx.root, ctx.report
    extensions = [video_ext] if isinstance(video_ext, str) else list(video_ext)
    extensions = [e if e.startswith(".") else f".{e}" for e in extensions]
    forced = ctx.split is not None
    exact, by_video = ({}, {}) if forced else read_split_files(root / (split_dir or ""))
    rows = read_csv_rows(root / csv_name, [VIDEO_COLUMN], skip_blank=False)
    for row_index, (where, row) in enumerate(rows, start=1):
        where = f"{where} (row {row_index})"
        if not any(row.values()):
            report.skip("empty_row")
            continue
        if not row[VIDEO_COLUMN]:
            report.skip("no_video_name")
            continue
        if not any(row.get(f"Answer.{k}action") for k in range(1, max_actions + 1)):
            report.skip("no_actions")
            continue
        video = video_id_of(row[VIDEO_COLUMN])
        row_split = ""
        if by_video:
            row_split = _split_of(row_index, video, exact, by_video, report) or ""
            if not row_split:
                report.skip("not_in_split")
                continue
        path = _find_video(root / video_dir, video, extensions)
        if path is None:
            if ctx.skip_missing:
                report.skip("missing_video")
                continue
            tried = ", ".join(str(root / video_dir / f"{video}{e}") for e in extensions)
            raise SourceError(f"{where}: video not found (tried {tried}); skip_missing=True skips")
        for record in _row_records(row, where, row_index, video, path, max_actions):
            record.split = row_split
            yield SourceRecord(record, where, group=video)
