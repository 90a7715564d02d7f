"""`sce data chunk`: cut long videos (e.g. 40 s) into short clips for training (paper 001).

Each source record becomes one record per chunk, pointing at the same video and telemetry files
with `metadata.clip_start` / `metadata.clip_end` (seconds in the source video). The chunk that
contains the event gets the clip's label and its event time (relative to the chunk start); the
other chunks are normal, with the chunk centre as their window centre; a chunk that cuts the
event (event within `margin` of an edge) is dropped unless `keep_cut`. A collision or
near-collision record without `event_time` takes t_e = argmax |a_x| of its IMU (paper 000);
without a usable IMU it raises ValueError naming the sample and 'event_time'. The clip loader
(`sce.data.clip.load_clip`) reads only the chunk's span: frames, IMU/GPS samples and the IMU
event time; a window longer than the chunk (the default 6 s in 5 s chunks) shrinks to the
largest even frame count that fits (`sce.data.windows.event_window`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from sce.data import video as video_lib
from sce.data.clip import load_record_imu, resolve_event_time
from sce.data.schema import ClipRecord, load_manifest, write_manifest
from sce.data.windows import sliding_chunks


def record_event_time(record: ClipRecord, duration: float) -> float | None:
    """The manifest event time, else argmax |a_x| of the IMU (paper 000) for a non-normal record.

    Normal records keep None. A collision / near-collision record with neither raises ValueError
    naming the sample and the field, rather than silently chunking it as all-normal.
    """
    if record.event_time is not None or record.label == "normal":
        return record.event_time
    imu, reason = load_record_imu(record)
    event_time, source = resolve_event_time(record, duration, imu)  # the loader's own rule
    if source != "imu":
        why = reason or "no finite a_x sample in the imu"
        raise ValueError(
            f"sample {record.id!r}: field 'event_time': missing for a {record.label} record and "
            f"not derivable from the imu ({why})"
        )
    return event_time


def chunk_record(
    record: ClipRecord, duration: float, chunk: float, stride: float, margin: float, keep_cut: bool
) -> list[ClipRecord]:
    """The chunks of one record, as records of their own."""
    event_time = record_event_time(record, duration)
    chunks = sliding_chunks(
        duration,
        chunk=chunk,
        stride=stride,
        event_time=event_time,
        label=record.label,
        min_event_margin=margin,
        drop_cut=not keep_cut,
    )
    out = []
    for k, piece in enumerate(chunks):
        span = piece.end - piece.start
        event = event_time - piece.start if piece.has_event else span / 2.0
        metadata = {
            **record.metadata,
            "clip_start": round(piece.start, 6),
            "clip_end": round(piece.end, 6),
            "source_id": record.id,
            "chunk_cut": piece.cut,
        }
        annotations = record.annotations if piece.has_event else {}
        out.append(
            dataclasses.replace(
                record,
                id=f"{record.id}_c{k:02d}",
                label=piece.label,
                event_time=round(event, 6),
                metadata=metadata,
                annotations=annotations,
            )
        )
    return out


def chunk_manifest(
    manifest: str | Path,
    out: str | Path,
    chunk: float = 5.0,
    stride: float = 2.5,
    margin: float = 0.5,
    keep_cut: bool = False,
) -> Counter:
    """Write the chunked manifest; returns counts per label (and 'source clips')."""
    records = load_manifest(manifest)
    out = Path(out)
    chunked: list[ClipRecord] = []
    for record in tqdm(records, desc="chunk", unit="clip"):
        duration = video_lib.video_info(record.path("video")).duration
        chunked.extend(chunk_record(record, duration, chunk, stride, margin, keep_cut))
    rebased = [_rebase(r, out.parent) for r in chunked]
    write_manifest(rebased, out)
    counts = Counter(r.label for r in chunked)
    counts["source clips"] = len(records)
    return counts


def _rebase(record: ClipRecord, folder: Path) -> ClipRecord:
    """Paths relative to the new manifest's folder."""
    import os

    paths = {}
    for name in ("video", "imu", "gps"):
        path = record.path(name)
        paths[name] = None if path is None else os.path.relpath(path, folder)
    return dataclasses.replace(record, root=str(folder), **paths)


def add_chunk_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("manifest", help="manifest of long videos")
    parser.add_argument("--out", required=True, help="chunked manifest to write")
    parser.add_argument("--chunk", type=float, default=5.0, help="chunk length in s (5)")
    parser.add_argument("--stride", type=float, default=2.5, help="stride in s (2.5)")
    parser.add_argument("--margin", type=float, default=0.5, help="event margin to an edge (0.5)")
    parser.add_argument("--keep-cut", action="store_true", help="keep chunks that cut the event")
    return parser


def chunk_command(args: argparse.Namespace) -> int:
    try:
        counts = chunk_manifest(
            args.manifest, args.out, args.chunk, args.stride, args.margin, args.keep_cut
        )
    except ValueError as err:  # names the sample and the field; nothing was written
        print(f"sce data chunk: {args.manifest}: {err}")
        return 1
    sources = counts.pop("source clips")
    print(
        f"{sources} clips -> {sum(counts.values())} chunks: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    print(f"wrote {args.out}")
    return 0
