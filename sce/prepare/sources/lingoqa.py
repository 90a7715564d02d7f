"""LingoQA (driving VQA over short image sequences) -> canonical manifest.

Layout: one or more parquet files with columns `question_id, segment_id, images, question,
answer`, where `images` is a list of image paths relative to the parquet's folder (the frames of
the segment, in time order). Several rows (questions) share a segment.

Representation (a choice, since the manifest was made for videos):

- one record per `segment_id`, id `lingoqa_<segment_id>`, label "normal", source "lingoqa";
- `video` = the folder of the segment's first image (relative to the manifest, like every path),
  and `metadata["frames"]` = the list of image paths (relative to the manifest's folder), taken
  from the segment's first row. **Readers must load such records from `metadata["frames"]`**,
  not decode `video`: it is a folder, not an mp4. `load_manifest(check_files=True)` rejects these
  records until the schema learns about frame sequences; load them with check_files=False;
- `annotations["qa"]` = [{"type": "open", "question_id", "question", "answer"}] in row order: free-
  text questions, asked and scored by the open_qa task (ROUGE-L and BERTScore, paper 000 Table
  III), never by exact match; a question_id that appears on several rows (LingoQA's evaluation
  set has several reference answers) is one entry whose "answer" is the first (the reference
  scored) and whose "answers" lists them all;
- no event time (`event_time` null): LingoQA segments are everyday driving without events.

Segments with a missing image are skipped ("missing_frames") when skip_missing=True, else raise.
LingoQA has no split column: pass `split` (e.g. "test" for the evaluation parquet), or let the
splits be assigned per segment, seeded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sce.data.schema import ClipRecord
from sce.prepare.sources.base import (
    SourceContext,
    SourceError,
    SourceRecord,
    is_empty,
)
from sce.tasks import QA_FIELD

COLUMNS = ("question_id", "segment_id", "images", "question", "answer")


def _parquet_files(root: Path, parquet: str | Sequence[str] | None) -> list[Path]:
    if root.is_file():
        return [root]
    if parquet is None:
        files = sorted(root.glob("*.parquet"))
        if not files:
            raise SourceError(f"no *.parquet file in {root}")
        return files
    names = [parquet] if isinstance(parquet, str) else list(parquet)
    return [root / name for name in names]


def _text(value: Any, where: str, column: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SourceError(f"{where}: column '{column}': expected a non-empty string, got {value!r}")
    return value.strip()


def _ident(value: Any, where: str, column: str) -> str:
    """An id cell (string or integer) as a string."""
    if is_empty(value):
        raise SourceError(f"{where}: column '{column}': empty")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return _text(value, where, column)


def _images(value: Any, where: str) -> list[str]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise SourceError(
            f"{where}: column 'images': expected a non-empty list of paths, got {value!r}"
        )
    for item in value:
        if not isinstance(item, str) or not item:
            raise SourceError(f"{where}: column 'images': expected path strings, got {item!r}")
    return list(value)


def _read_segments(path: Path, segments: dict[str, dict[str, Any]]) -> None:
    """Group the rows of one parquet by segment into `segments` (in first-seen order)."""
    if not path.is_file():
        raise SourceError(f"file not found: {path}")
    table = pd.read_parquet(path)
    for column in COLUMNS:
        if column not in table.columns:
            raise SourceError(f"{path}: missing column '{column}' (columns: {list(table.columns)})")
    for index, row in enumerate(table[list(COLUMNS)].itertuples(index=False)):
        where = f"{path} row {index} (0-based)"
        segment = _ident(row.segment_id, where, "segment_id")
        question = _text(row.question, where, "question")
        answer = _text(row.answer, where, "answer")
        question_id = _ident(row.question_id, where, "question_id")
        entry = segments.setdefault(
            segment,
            {
                "frames": [path.parent / p for p in _images(row.images, where)],
                "where": where,
                "questions": {},
            },
        )
        qa = entry["questions"].get(question_id)
        if qa is None:
            entry["questions"][question_id] = {
                "type": "open",  # free text: the open_qa task's pairs
                "question_id": question_id,
                "question": question,
                "answer": answer,
            }
        else:
            qa.setdefault("answers", [qa["answer"]]).append(answer)


def lingoqa_records(
    ctx: SourceContext,
    *,
    parquet: str | Sequence[str] | None = None,
) -> Iterator[SourceRecord]:
    """Convert LingoQA parquet(s) (see the module docstring for the record layout).

    `ctx.root` is a parquet file, or a folder holding them; `ctx.skip_missing` counts and
    skips segments with a missing image instead of raising. Option:
        parquet: file name(s) relative to root (default: every *.parquet in root).
    """
    root, report = ctx.root, ctx.report
    segments: dict[str, dict[str, Any]] = {}
    for path in _parquet_files(root, parquet):
        _read_segments(path, segments)
    for segment, entry in segments.items():
        missing = next((p for p in entry["frames"] if not p.is_file()), None)
        if missing is not None:
            if ctx.skip_missing:
                report.skip("missing_frames")
                continue
            raise SourceError(
                f"{entry['where']}: segment {segment!r}: image not found: {missing} "
                "(skip_missing=True skips such segments)"
            )
        yield SourceRecord(
            ClipRecord(
                id=f"lingoqa_{segment}",
                video=str(entry["frames"][0].parent),
                label="normal",
                source="lingoqa",
                split="",
                metadata={"frames": [str(p) for p in entry["frames"]], "segment_id": segment},
                annotations={QA_FIELD: list(entry["questions"].values())},
            ),
            entry["where"],
        )
