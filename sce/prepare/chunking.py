"""`sce data chunk`: cut long videos (e.g. 40 s) into short clips for training (paper 001).

Each source record becomes one record per chunk, pointing at the same files (video, telemetry,
`metadata.driver_video`, rebased to the new manifest's folder) with `metadata.clip_start` /
`metadata.clip_end` (seconds in the video). Chunks are cut inside the record's own span: the
whole video, or the [clip_start, clip_end] of a record that is already a chunk (a chunked
manifest, `sce data mine-events` candidates), whose `event_time` counts from its clip_start.

Labels (paper 001: each 40 s video yields "6-7 overlapping segments", "only one of which
typically contains the anomalous event"; the defaults, 6 s every 6 s, give 7 chunks of 6 s, so
paper 001's 6 s window keeps its 180 frames at 30 fps):
- An event (a collision / near-collision record) shows in its band: event_time +- `margin` (the
  guard band) joined with its IMU excursion (`sce.data.imu.event_excursion`: the braking or
  impact around the event, in the record's span).
- Every event yields exactly one event chunk, which holds the band (a grid chunk, else one placed
  on the band: `metadata.chunk_placed`); when the band is longer than a chunk it holds the guard
  band and as much of the rest as fits, and the summary warns with the count.
- Any other chunk that overlaps the band is never normal: dropped and counted, or with
  `keep_cut` kept with the event's label and `metadata.chunk_cut`.
- The rest are normal, with the chunk centre as their window centre.
A collision or near-collision record without `event_time` takes t_e = argmax |a_x| of its IMU
in its span (paper 000); without a usable IMU it raises ValueError naming the sample and
'event_time'. The clip loader (`sce.data.clip.load_clip`) reads only a chunk's span.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from sce.data import video as video_lib
from sce.data.clip import chunk_bounds, load_record_imu, resolve_event_time
from sce.data.imu import ImuSignal, event_excursion
from sce.data.schema import (
    ClipRecord,
    add_allowed_roots_argument,
    load_manifest,
    rebase_paths,
    write_manifest,
)
from sce.data.windows import Chunk, event_band, sliding_chunks

DEFAULT_CHUNK_S = 6.0
DEFAULT_STRIDE_S = 6.0
DEFAULT_MARGIN_S = 0.5
MIN_CHUNK_FRAMES = 2  # a chunk shorter than two frames holds no frame pair (Qwen's temporal patch)
EXCURSION_SEARCH_S = 0.5  # the event's IMU peak is looked for within this of its event time


@dataclass(frozen=True)
class ChunkSettings:
    """`sce data chunk`'s options, checked: chunk and stride finite and > 0, margin finite and
    >= 0, chunk longer than twice the margin (else no chunk can hold an event's guard band)."""

    chunk: float = DEFAULT_CHUNK_S
    stride: float = DEFAULT_STRIDE_S
    margin: float = DEFAULT_MARGIN_S
    keep_cut: bool = False

    def __post_init__(self) -> None:
        for name, value, least in (("chunk", self.chunk, 0), ("stride", self.stride, 0)):
            if not (math.isfinite(value) and value > least):
                raise ValueError(f"--{name}: must be a finite number of seconds > 0, got {value}")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(
                f"--margin: must be a finite number of seconds >= 0, got {self.margin}"
            )
        if self.chunk <= 2 * self.margin:
            raise ValueError(
                f"--chunk {self.chunk:g} s must be longer than twice --margin ({self.margin:g} s): "
                "no chunk could hold an event with its guard band, every event would vanish"
            )


@dataclass
class ChunkSummary:
    """What `chunk_manifest` wrote and dropped, with the warnings to print."""

    records: int = 0
    labels: Counter = field(default_factory=Counter)  # chunks written, per label
    events: int = 0  # event records (each gives exactly one event chunk)
    placed: int = 0  # event chunks placed on the event (no grid chunk held its band)
    partial: list[str] = field(default_factory=list)  # events whose band is longer than a chunk
    dropped: int = 0  # chunks that overlap an event's band, dropped (not normal)
    kept_cut: int = 0  # ... kept with the event's label (keep_cut)
    short: list[str] = field(default_factory=list)  # records whose chunks are under 2 frames

    def add(self, record_id: str, plan: ChunkPlan, fps: float) -> None:
        """Count one record's plan (`fps`: its video's frame rate)."""
        self.labels.update(c.label for c in plan.chunks)
        shortest = min(c.end - c.start for c in plan.chunks)
        if fps > 0 and shortest < MIN_CHUNK_FRAMES / fps:
            self.short.append(record_id)
        if plan.event_time is None:
            return
        self.events += 1
        self.placed += plan.event_chunk.placed
        self.partial += [record_id] if plan.partial else []
        self.dropped += plan.dropped
        self.kept_cut += sum(c.cut for c in plan.chunks)

    def lines(self) -> list[str]:
        """The summary printed by `sce data chunk`."""
        labels = ", ".join(f"{k} {v}" for k, v in sorted(self.labels.items()))
        out = [f"{self.records} clips -> {sum(self.labels.values())} chunks: {labels}"]
        out.append(
            f"{self.events} events -> {self.events} event chunks ({self.placed} placed on the "
            f"event); chunks showing part of an event: {self.dropped} dropped, "
            f"{self.kept_cut} kept as cut"
        )
        return out

    def warnings(self) -> list[str]:
        """Settings under which events lose what shows them, with counts."""
        out = []
        if self.partial:
            out.append(
                f"{len(self.partial)} of {self.events} event chunks hold only part of their event "
                f"(guard band + IMU excursion longer than --chunk), e.g. {self.partial[:3]}"
            )
        if self.short:
            out.append(
                f"{len(self.short)} of {self.records} clips give chunks shorter than "
                f"{MIN_CHUNK_FRAMES} video frames (no frame pair), e.g. {self.short[:3]}"
            )
        return out


def record_event_time(
    record: ClipRecord, span: tuple[float, float], imu: ImuSignal | None, imu_reason: str = ""
) -> float | None:
    """The event time in the video's seconds: the manifest's (relative to the span's start),
    else argmax |a_x| of the record's `imu` in the span (paper 000) for a non-normal record.

    Normal records give None. A collision / near-collision record with neither raises
    ValueError naming the sample and the field, rather than silently chunking it as all-normal.
    """
    if record.label == "normal":
        return None
    if record.event_time is not None:
        return span[0] + record.event_time
    length = span[1] - span[0]
    event_time, source = resolve_event_time(record, length, imu, offset=span[0])
    if source != "imu":
        why = imu_reason or "no finite a_x sample in the imu"
        raise ValueError(
            f"sample {record.id!r}: field 'event_time': missing for a {record.label} record and "
            f"not derivable from the imu ({why})"
        )
    return span[0] + event_time


@dataclass(frozen=True)
class ChunkPlan:
    """One record's chunks (times in the video's seconds) and what was left out."""

    chunks: list[Chunk]
    event_time: float | None  # None: no event (a normal record)
    band: tuple[float, float] | None  # the event's guard band + IMU excursion
    dropped: int  # chunks showing part of the event, dropped (keep_cut False)

    @property
    def event_chunk(self) -> Chunk | None:
        return next((c for c in self.chunks if c.has_event), None)

    @property
    def partial(self) -> bool:
        """The event chunk holds only part of the band (the band is longer than a chunk)."""
        event, band = self.event_chunk, self.band
        if event is None or band is None:
            return False
        return event.start > band[0] + 1e-6 or event.end < band[1] - 1e-6


def plan_chunks(record: ClipRecord, duration: float, settings: ChunkSettings) -> ChunkPlan:
    """The chunks of one record inside its span (`duration`: the video's length)."""
    span = chunk_bounds(record, duration)
    imu, reason = (None, "") if record.label == "normal" else load_record_imu(record)
    event_time = record_event_time(record, span, imu, reason)
    signature = None
    if event_time is not None and imu is not None:  # its IMU excursion, inside the span
        signature = event_excursion(imu.between(*span), event_time, EXCURSION_SEARCH_S)
    chunks = sliding_chunks(
        span[1] - span[0],
        chunk=settings.chunk,
        stride=settings.stride,
        event_time=event_time,
        label=record.label,
        min_event_margin=settings.margin,
        drop_cut=False,  # counted here, then dropped
        signature=signature,
        offset=span[0],
    )
    kept = [c for c in chunks if settings.keep_cut or not c.cut]
    band = None if event_time is None else event_band(event_time, settings.margin, signature, span)
    return ChunkPlan(kept, event_time, band, len(chunks) - len(kept))


def chunk_record(
    record: ClipRecord,
    duration: float,
    chunk: float = DEFAULT_CHUNK_S,
    stride: float = DEFAULT_STRIDE_S,
    margin: float = DEFAULT_MARGIN_S,
    keep_cut: bool = False,
) -> list[ClipRecord]:
    """The chunks of one record (inside its span), as records of their own."""
    plan = plan_chunks(record, duration, ChunkSettings(chunk, stride, margin, keep_cut))
    return chunk_records(record, plan)


def chunk_records(record: ClipRecord, plan: ChunkPlan) -> list[ClipRecord]:
    """The plan's chunks as records: the event chunk keeps the record's label, event time and
    annotations; a normal chunk's event time is its centre (its window's centre)."""
    out = []
    for k, piece in enumerate(plan.chunks):
        span = piece.end - piece.start
        if plan.event_time is None or piece.label == "normal":
            event = span / 2.0
        else:  # a kept cut chunk may not hold t_e: its nearest moment
            event = min(max(plan.event_time - piece.start, 0.0), span)
        metadata = {
            **record.metadata,
            "clip_start": round(piece.start, 6),
            "clip_end": round(piece.end, 6),
            "source_id": record.id,
            "chunk_cut": piece.cut,
            "chunk_placed": piece.placed,
        }
        out.append(
            dataclasses.replace(
                record,
                id=f"{record.id}_c{k:02d}",
                label=piece.label,
                event_time=round(event, 6),
                metadata=metadata,
                annotations=record.annotations if piece.has_event else {},
            )
        )
    return out


def chunk_manifest(
    manifest: str | Path,
    out: str | Path,
    settings: ChunkSettings = ChunkSettings(),
    allowed_roots: list[str] | None = None,
) -> ChunkSummary:
    """Write the chunked manifest (paths rebased to its folder); returns what was written.
    `allowed_roots`: as data.allowed_roots (every file read must lie inside one)."""
    records = load_manifest(manifest, allowed_roots=allowed_roots)
    out = Path(out)
    summary = ChunkSummary(records=len(records))
    chunked: list[ClipRecord] = []
    for record in tqdm(records, desc="chunk", unit="clip"):
        info = video_lib.video_info(record.path("video"))
        plan = plan_chunks(record, info.duration, settings)
        summary.add(record.id, plan, info.fps)
        chunked.extend(chunk_records(record, plan))
    write_manifest([rebase_paths(r, out.parent) for r in chunked], out)
    return summary


def _seconds(option: str, least: float = 0.0, strict: bool = True):
    """An argparse type: a finite number of seconds above (or at) `least`, else the option's
    error (`--chunk nan` -> "argument --chunk: ...")."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value > least if strict else value >= least)
        if not ok:
            bound = f"> {least:g}" if strict else f">= {least:g}"
            raise argparse.ArgumentTypeError(
                f"expected a finite number of seconds {bound}, got {text!r}"
            )
        return value

    return parse


def add_chunk_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("manifest", help="manifest of long videos (or of chunks: cut inside each)")
    parser.add_argument("--out", required=True, help="chunked manifest to write")
    parser.add_argument(
        "--chunk", type=_seconds("--chunk"), default=DEFAULT_CHUNK_S,
        help=f"chunk length in s ({DEFAULT_CHUNK_S:g}; paper 001's 6 s window needs >= 6)",
    )  # fmt: skip
    parser.add_argument(
        "--stride", type=_seconds("--stride"), default=DEFAULT_STRIDE_S,
        help=f"stride in s ({DEFAULT_STRIDE_S:g}: 7 chunks per 40 s video)",
    )  # fmt: skip
    parser.add_argument(
        "--margin", type=_seconds("--margin", strict=False), default=DEFAULT_MARGIN_S,
        help=f"guard band around the event time in s ({DEFAULT_MARGIN_S:g})",
    )  # fmt: skip
    parser.add_argument(
        "--keep-cut", action="store_true",
        help="keep chunks that show part of an event, with its label (default: drop them)",
    )  # fmt: skip
    add_allowed_roots_argument(parser)
    return parser


def chunk_command(args: argparse.Namespace) -> int:
    try:
        settings = ChunkSettings(args.chunk, args.stride, args.margin, args.keep_cut)
        roots = getattr(args, "allowed_roots", None)  # None from a hand-made Namespace
        summary = chunk_manifest(args.manifest, args.out, settings, roots)
    except ValueError as err:  # names the option, or the sample and the field; nothing written
        print(f"sce data chunk: {args.manifest}: {err}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    for line in summary.warnings():
        print(f"warning: {line}", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0
