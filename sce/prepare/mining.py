"""`sce data mine-events`: candidate safety-critical windows in long unlabeled recordings.

The IMU of each record (in the vehicle frame: the record's mounting rotation applied, see
`sce.data.alignment`) is scanned for paper 000's two signatures of a safety-critical event:

- hard braking (a near-collision's evasive action): a_x averaged over `brake_window_s`
  (0.3 s) at or below `brake_m_s2` (-3.5 m/s^2, about 0.36 g);
- impact (a collision): the horizontal acceleration magnitude averaged over
  `impact_window_s` (0.1 s) at or above `impact_m_s2` (7.5 m/s^2).

Paper 000 gives no thresholds: it locates the event as the peak |a_x| ("peak acceleration or
harsh braking") and shows a -11.3 m/s^2 deceleration spike for a collision. The defaults are
ours (common telematics harsh-braking levels of 0.3-0.45 g, and an impact level below the
paper's example but above any braking a car can do on its tyres, ~1 g); they are options.
Triggered samples closer than `merge_gap_s` form one candidate, whose event time is the
sample of largest |a_x| inside it (paper 000's t_e); the kind is "impact" when any sample
reached the impact level, else "hard_braking".

Each candidate is written as a record of the canonical schema for teacher labeling or human
review, never as ground truth: a chunk of its recording (`metadata.clip_start/clip_end` =
the [t_e - before, t_e + after] window inside the video, `event_time` relative to it), with
the recording's own label unchanged (mining sets no label) and `metadata.candidate` = {kind,
peak values, status "unreviewed", source id}. A reviewer or `sce label` decides what it is.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sce.data import video as video_lib
from sce.data.clip import DEFAULT_WINDOW, ClipError, chunk_bounds, load_record_imu
from sce.data.imu import ImuSignal, moving_mean
from sce.data.schema import ClipRecord, load_manifest, rebase_paths, write_manifest


@dataclass(frozen=True)
class Thresholds:
    """Detection settings (see the module docstring)."""

    brake_m_s2: float = -3.5
    brake_window_s: float = 0.3
    impact_m_s2: float = 7.5
    impact_window_s: float = 0.1
    merge_gap_s: float = 2.0


@dataclass(frozen=True)
class Candidate:
    """One detected event in a recording (times in the recording's seconds)."""

    time: float  # t_e: argmax |a_x| within the triggered samples
    start: float  # first triggered sample
    end: float  # last triggered sample
    kind: str  # "impact" | "hard_braking"
    peak_ax: float  # a_x at t_e, m/s^2
    peak_horizontal: float  # largest smoothed horizontal magnitude, m/s^2
    min_ax: float  # lowest smoothed a_x, m/s^2


def detect_events(
    imu: ImuSignal, thresholds: Thresholds = Thresholds(), span: tuple[float, float] | None = None
) -> list[Candidate]:
    """Candidates in the (vehicle-frame) IMU, optionally only inside `span` (s)."""
    keep = np.isfinite(imu.accel[:, :2]).all(axis=1)
    if span is not None:
        keep &= (imu.t >= span[0]) & (imu.t <= span[1])
    t, accel = imu.t[keep], imu.accel[keep]
    if len(t) < 2:
        return []
    ax = moving_mean(t, accel[:, 0], thresholds.brake_window_s)
    horizontal = np.hypot(
        moving_mean(t, accel[:, 0], thresholds.impact_window_s),
        moving_mean(t, accel[:, 1], thresholds.impact_window_s),
    )
    braking = ax <= thresholds.brake_m_s2
    impact = horizontal >= thresholds.impact_m_s2
    hits = np.flatnonzero(braking | impact)
    if hits.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(t[hits]) > thresholds.merge_gap_s)
    groups = np.split(hits, breaks + 1)
    candidates = []
    for group in groups:
        lo, hi = group[0], group[-1] + 1
        peak = lo + int(np.argmax(np.abs(accel[lo:hi, 0])))
        candidates.append(
            Candidate(
                time=float(t[peak]),
                start=float(t[lo]),
                end=float(t[hi - 1]),
                kind="impact" if impact[lo:hi].any() else "hard_braking",
                peak_ax=float(accel[peak, 0]),
                peak_horizontal=float(horizontal[lo:hi].max()),
                min_ax=float(ax[lo:hi].min()),
            )
        )
    return candidates


def candidate_record(
    record: ClipRecord,
    candidate: Candidate,
    index: int,
    span: tuple[float, float],
    before: float,
    after: float,
) -> ClipRecord:
    """The candidate as a chunk record of its recording, its window kept inside `span` (the
    record's part of the video; see the module docstring)."""
    lo, hi = span
    start = min(max(candidate.time - before, lo), max(hi - before - after, lo))
    end = min(start + before + after, hi)
    source = rebase_paths(record, None)  # absolute: the candidates may be written anywhere
    metadata = dict(source.metadata)
    metadata.update(
        clip_start=round(start, 6),
        clip_end=round(end, 6),
        candidate={
            "kind": candidate.kind,
            "status": "unreviewed",
            "source_id": record.id,
            "time_in_recording_s": round(candidate.time, 4),
            "peak_ax_m_s2": round(candidate.peak_ax, 3),
            "min_smoothed_ax_m_s2": round(candidate.min_ax, 3),
            "peak_horizontal_m_s2": round(candidate.peak_horizontal, 3),
        },
    )
    return ClipRecord(
        id=f"{record.id}_cand{index:03d}",
        video=source.video,
        label=record.label,  # the recording's label as given: mining labels nothing
        source=record.source,
        split=record.split,
        imu=source.imu,
        gps=source.gps,
        event_time=round(candidate.time - start, 6),
        metadata=metadata,
        label_scope=record.label_scope,
    )


@dataclass
class MiningReport:
    records: int = 0
    hours: float = 0.0
    candidates: list[ClipRecord] | None = None
    skipped: dict[str, str] | None = None  # record id -> why (no IMU, unreadable video)

    def summary(self) -> str:
        found = self.candidates or []
        kinds = {
            k: sum(c.metadata["candidate"]["kind"] == k for c in found)
            for k in ("impact", "hard_braking")
        }
        lines = [
            f"{self.records} recordings, {self.hours:.2f} h: {len(found)} candidates "
            f"({kinds['impact']} impact, {kinds['hard_braking']} hard_braking)"
        ]
        for c in found:
            info = c.metadata["candidate"]
            lines.append(
                f"  {c.id}: {info['kind']} at {info['time_in_recording_s']:.2f} s, a_x "
                f"{info['peak_ax_m_s2']:+.2f} m/s^2, |a_h| {info['peak_horizontal_m_s2']:.2f} m/s^2"
            )
        for rid, why in (self.skipped or {}).items():
            lines.append(f"  skipped {rid}: {why}")
        return "\n".join(lines)


def mine_manifest(
    manifest: str | Path,
    out: str | Path,
    thresholds: Thresholds = Thresholds(),
    before: float = DEFAULT_WINDOW.before,
    after: float = DEFAULT_WINDOW.after,
) -> MiningReport:
    """Scan every record of `manifest`; write the candidates to the manifest `out`."""
    report = MiningReport(candidates=[], skipped={})
    for record in load_manifest(manifest):
        report.records += 1
        imu, why = load_record_imu(record)
        if imu is None:
            report.skipped[record.id] = why
            continue
        try:
            span = chunk_bounds(record, video_lib.video_info(record.path("video")).duration)
        except (video_lib.VideoError, ClipError) as err:
            report.skipped[record.id] = str(err)
            continue
        report.hours += (span[1] - span[0]) / 3600
        found = detect_events(imu, thresholds, span=span)
        for i, candidate in enumerate(found):
            report.candidates.append(candidate_record(record, candidate, i, span, before, after))
    rows = []
    for record in report.candidates:
        data = record.to_json()
        for name in ("video", "imu", "gps"):
            if data[name] is not None:
                data[name] = str(Path(data[name]).absolute())
        rows.append(data)
    write_manifest(rows, out)  # absolute paths: the candidates may be written anywhere
    return report


def add_mine_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `sce data mine-events`."""
    defaults = Thresholds()
    parser.add_argument("manifest", help="manifest of long recordings (with IMU)")
    parser.add_argument("--out", required=True, type=Path, help="candidate manifest to write")
    parser.add_argument(
        "--brake", type=float, default=defaults.brake_m_s2, help="a_x level, m/s^2 (-3.5)"
    )
    parser.add_argument(
        "--brake-window", type=float, default=defaults.brake_window_s, help="s (0.3)"
    )
    parser.add_argument(
        "--impact", type=float, default=defaults.impact_m_s2, help="|a_h| level, m/s^2 (7.5)"
    )
    parser.add_argument(
        "--impact-window", type=float, default=defaults.impact_window_s, help="s (0.1)"
    )
    parser.add_argument("--merge-gap", type=float, default=defaults.merge_gap_s, help="s (2)")
    w = DEFAULT_WINDOW
    parser.add_argument(
        "--before", type=float, default=w.before, help=f"window before t_e, s ({w.before:g})"
    )
    parser.add_argument(
        "--after", type=float, default=w.after, help=f"window after t_e, s ({w.after:g})"
    )
    return parser


def mine_command(args: argparse.Namespace) -> int:
    """Run `sce data mine-events`; print what was found; 2 on a bad manifest."""
    thresholds = Thresholds(
        args.brake, args.brake_window, args.impact, args.impact_window, args.merge_gap
    )
    try:
        report = mine_manifest(args.manifest, args.out, thresholds, args.before, args.after)
    except (ValueError, OSError) as err:
        print(f"sce data mine-events: error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"wrote {args.out} (candidates for review or `sce label`, not ground truth)")
    return 0
