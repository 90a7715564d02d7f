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

What is searched is said per drive (`DriveCoverage`): each channel (a_x, a_y) is used where
its samples are finite and not stuck, a stuck run being `stuck_s` (1 s) or more of exactly
repeated values in a device axis feeding it (a live sensor's noise never repeats that long:
10 ms at most on the comma2k19 and GoPro recordings); a channel stuck throughout is "dead".
Braking is searched on a_x, impacts on the horizontal magnitude where both channels are
usable and on the one usable channel's |a| elsewhere (a lower bound). Every drive ends in the
summary as mined (with the hours covered), partly covered (which channel, how much, why) or
skipped with its reason (no IMU, unreadable video, a_x all NaN / dead / stuck, or under
`min_covered_s` of usable a_x), never silently as 0 candidates.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sce.data import video as video_lib
from sce.data.alignment import rotation_from_metadata
from sce.data.clip import DEFAULT_WINDOW, ClipError, chunk_bounds, load_record_imu
from sce.data.imu import ImuSignal, moving_mean
from sce.data.schema import (
    ClipRecord,
    add_allowed_roots_argument,
    load_manifest,
    rebase_paths,
    write_manifest,
)


@dataclass(frozen=True)
class Thresholds:
    """Detection settings (see the module docstring)."""

    brake_m_s2: float = -3.5
    brake_window_s: float = 0.3
    impact_m_s2: float = 7.5
    impact_window_s: float = 0.1
    merge_gap_s: float = 2.0
    stuck_s: float = 1.0  # exactly repeated values this long: a stuck channel, not data
    stuck_zero_s: float = 30.0  # the same for exact zeros (a stopped car in noise-free data)
    min_covered_s: float = 1.0  # less usable a_x than this: the drive is skipped


MAX_BRIDGE_S = 0.1  # a hole between usable samples longer than this splits a run
COVERED_FULLY = 0.99  # a channel usable over this fraction of the span counts as complete


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


def stuck_mask(t: np.ndarray, x: np.ndarray, seconds: float, zero_seconds: float) -> np.ndarray:
    """True at the samples of runs of exactly repeated finite values lasting >= `seconds`
    (>= `zero_seconds` for a run of zeros: the synthetic drives and filtered exports read an
    exact 0 while the car stands, 2.1 s after a synthetic collision, which is no fault)."""
    same = np.concatenate([[False], (x[1:] == x[:-1]) & np.isfinite(x[1:])])
    run_id = np.cumsum(~same)  # samples of one run of equal values share an id
    first = np.flatnonzero(~same)
    last = np.append(first[1:] - 1, len(x) - 1)
    limit = np.where(x[first] == 0, zero_seconds, seconds)
    long_run = (t[last] - t[first]) >= limit
    finite = x[np.isfinite(x)]
    if finite.size > 1 and (finite == finite[0]).all():  # one value throughout: dead
        return np.isfinite(x)
    return long_run[run_id - 1] & np.isfinite(x)


def usable_channels(
    imu: ImuSignal, rotation: np.ndarray | None, thresholds: Thresholds
) -> tuple[np.ndarray, list[str]]:
    """[N, 2] usable masks of the vehicle-frame a_x and a_y, and what is wrong ("a_x: stuck
    at -4 for 10.0 s", ...). A vehicle channel is unusable where it is not finite or where a
    device axis feeding it (|R[k, j]| > 0.05; `imu` is in the vehicle frame, R its rotation)
    is stuck; the device axes are recovered as a_vehicle @ R."""
    rotation = np.eye(3) if rotation is None else rotation
    device = imu.accel @ rotation
    stuck = np.stack(
        [
            stuck_mask(imu.t, device[:, j], thresholds.stuck_s, thresholds.stuck_zero_s)
            for j in range(3)
        ],
        axis=1,
    )
    usable = np.empty((len(imu.t), 2), dtype=bool)
    problems = []
    for k, name in enumerate(("a_x", "a_y")):
        feeds = np.flatnonzero(np.abs(rotation[k]) > 0.05)
        finite = np.isfinite(imu.accel[:, k])
        usable[:, k] = finite & ~stuck[:, feeds].any(axis=1)
        axes = [(device[:, j], stuck[:, j]) for j in feeds]
        problems += _channel_problems(name, imu.t, finite, axes)
    return usable, problems


def _channel_problems(
    name: str, t: np.ndarray, finite: np.ndarray, axes: list[tuple[np.ndarray, np.ndarray]]
) -> list[str]:
    """Words for what makes channel `name` unusable: all NaN, dead (a device axis feeding it
    stuck wherever it is finite), stuck runs (value and seconds), NaN rows. `axes`: (values,
    stuck mask) of each device axis feeding the channel."""
    if not finite.any():
        return [f"{name}: all NaN"]
    for values, stuck in axes:
        if stuck[finite].all():
            return [f"{name}: dead (constant {values[finite][0]:g} throughout)"]
    problems = [
        f"{name}: stuck for {np.diff(t)[stuck[1:] & stuck[:-1]].sum():.1f} s (first at "
        f"{t[stuck][0]:.1f} s, value {values[stuck][0]:g})"
        for values, stuck in axes
        if stuck.any()
    ]
    if not finite.all():
        problems.append(f"{name}: {int((~finite).sum())} NaN rows")
    return problems


def smoothed(t: np.ndarray, x: np.ndarray, usable: np.ndarray, width: float) -> np.ndarray:
    """`moving_mean` of x over each run of usable samples (runs split where a sample is
    unusable or stamps lie more than MAX_BRIDGE_S apart); NaN at the unusable samples, so no
    mean reaches across a hole."""
    out = np.full(len(t), np.nan)
    idx = np.flatnonzero(usable)
    if idx.size == 0:
        return out
    breaks = np.flatnonzero((np.diff(idx) > 1) | (np.diff(t[idx]) > MAX_BRIDGE_S)) + 1
    for run in np.split(idx, breaks):
        if run.size >= 2:
            out[run] = moving_mean(t[run], x[run], width)
    return out


def covered_seconds(t: np.ndarray, usable: np.ndarray) -> float:
    """Seconds between consecutive usable samples up to MAX_BRIDGE_S apart."""
    dt = np.diff(t)
    return float(dt[usable[1:] & usable[:-1] & (dt <= MAX_BRIDGE_S)].sum())


def detect_events(
    imu: ImuSignal,
    thresholds: Thresholds = Thresholds(),
    span: tuple[float, float] | None = None,
    usable: np.ndarray | None = None,
) -> list[Candidate]:
    """Candidates in the (vehicle-frame) IMU, optionally only inside `span` (s). `usable`
    ([N, 2] masks of a_x, a_y; default: the finite samples) says where each channel is read:
    braking needs a_x, an impact is the horizontal magnitude where both channels are usable,
    the one usable channel's |a| where only one is (see the module docstring)."""
    if usable is None:
        usable = np.isfinite(imu.accel[:, :2])
    if span is not None:
        usable = usable & ((imu.t >= span[0]) & (imu.t <= span[1]))[:, None]
    t, accel = imu.t, imu.accel
    ax = smoothed(t, accel[:, 0], usable[:, 0], thresholds.brake_window_s)
    short = [smoothed(t, accel[:, k], usable[:, k], thresholds.impact_window_s) for k in (0, 1)]
    both = np.hypot(*short)
    horizontal = np.where(np.isnan(both), np.fmax(np.abs(short[0]), np.abs(short[1])), both)
    braking = ax <= thresholds.brake_m_s2  # NaN compares False
    impact = horizontal >= thresholds.impact_m_s2
    hits = np.flatnonzero(braking | impact)
    if hits.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(t[hits]) > thresholds.merge_gap_s)
    return [_candidate(t, accel, ax, horizontal, impact, g) for g in np.split(hits, breaks + 1)]


def _candidate(t, accel, ax, horizontal, impact, group: np.ndarray) -> Candidate:
    """One candidate of a group of triggered samples: t_e at its largest usable |a_x| (the
    largest horizontal magnitude when a_x is unusable there)."""
    group = np.arange(group[0], group[-1] + 1)  # every sample from the first hit to the last
    peak_ax = np.where(np.isnan(ax[group]), np.nan, np.abs(accel[group, 0]))
    inner = np.nanargmax(peak_ax) if np.isfinite(peak_ax).any() else np.nanargmax(horizontal[group])
    peak = int(group[inner])
    return Candidate(
        time=float(t[peak]),
        start=float(t[group[0]]),
        end=float(t[group[-1]]),
        kind="impact" if impact[group].any() else "hard_braking",
        peak_ax=float(accel[peak, 0]),
        peak_horizontal=float(np.nanmax(horizontal[group])),
        min_ax=float(np.nanmin(ax[group])) if np.isfinite(ax[group]).any() else float("nan"),
    )


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


@dataclass(frozen=True)
class DriveCoverage:
    """What was searched of one drive (see the module docstring)."""

    status: str  # "mined" | "partly covered" | "skipped"
    span_s: float  # the record's span of the video (0 when it could not be read)
    covered_s: float = 0.0  # seconds of usable a_x inside the span
    reason: str = ""  # skipped: why; partly covered: which channel, how much, why

    def line(self, record_id: str) -> str:
        hours = f"{self.covered_s / 3600:.3f} h"
        if self.status == "mined":
            return f"  mined {record_id}: {hours} covered"
        if self.status == "partly covered":
            return f"  partly covered {record_id}: {hours} of {self.span_s / 3600:.3f} h ({self.reason})"
        return f"  skipped {record_id}: {self.reason}"


@dataclass
class MiningReport:
    records: int = 0
    hours: float = 0.0  # the drives' spans
    candidates: list[ClipRecord] = field(default_factory=list)
    drives: dict[str, DriveCoverage] = field(default_factory=dict)  # record id -> coverage

    @property
    def covered_hours(self) -> float:
        """Hours of usable a_x searched, over every drive."""
        return sum(d.covered_s for d in self.drives.values()) / 3600

    @property
    def skipped(self) -> dict[str, str]:
        """Record id -> why, for the drives not searched at all."""
        return {rid: d.reason for rid, d in self.drives.items() if d.status == "skipped"}

    def summary(self) -> str:
        found = self.candidates
        kinds = {
            k: sum(c.metadata["candidate"]["kind"] == k for c in found)
            for k in ("impact", "hard_braking")
        }
        status = Counter(d.status for d in self.drives.values())
        lines = [
            f"{self.records} recordings, {self.hours:.2f} h ({self.covered_hours:.2f} h covered; "
            f"{status['mined']} mined, {status['partly covered']} partly covered, "
            f"{status['skipped']} skipped): {len(found)} candidates "
            f"({kinds['impact']} impact, {kinds['hard_braking']} hard_braking)"
        ]
        for c in found:
            info = c.metadata["candidate"]
            lines.append(
                f"  {c.id}: {info['kind']} at {info['time_in_recording_s']:.2f} s, a_x "
                f"{info['peak_ax_m_s2']:+.2f} m/s^2, |a_h| {info['peak_horizontal_m_s2']:.2f} m/s^2"
            )
        lines += [drive.line(rid) for rid, drive in self.drives.items()]
        return "\n".join(lines)


def mine_record(
    record: ClipRecord, thresholds: Thresholds
) -> tuple[list[Candidate], DriveCoverage, tuple[float, float]]:
    """The candidates of one drive, what of it was searched, and its span (s)."""
    imu, why = load_record_imu(record)
    if imu is None:
        return [], DriveCoverage("skipped", 0.0, reason=why), (0.0, 0.0)
    try:
        span = chunk_bounds(record, video_lib.video_info(record.path("video")).duration)
    except (video_lib.VideoError, ClipError) as err:
        return [], DriveCoverage("skipped", 0.0, reason=str(err)), (0.0, 0.0)
    usable, problems = usable_channels(imu, rotation_from_metadata(record.metadata), thresholds)
    usable &= ((imu.t >= span[0]) & (imu.t <= span[1]))[:, None]
    covered = [covered_seconds(imu.t, usable[:, k]) for k in (0, 1)]
    length = span[1] - span[0]
    detail = f"usable a_x {covered[0]:.1f} s, a_y {covered[1]:.1f} s of {length:.1f} s"
    detail += f": {'; '.join(problems)}" if problems else ""
    if covered[0] < thresholds.min_covered_s:
        detail += f" (under {thresholds.min_covered_s:g} s of a_x)" if not problems else ""
        return [], DriveCoverage("skipped", length, covered[0], detail), span
    found = detect_events(imu, thresholds, span, usable)
    complete = min(covered) >= COVERED_FULLY * length and not problems
    status = "mined" if complete else "partly covered"
    return found, DriveCoverage(status, length, covered[0], "" if complete else detail), span


def mine_manifest(
    manifest: str | Path,
    out: str | Path,
    thresholds: Thresholds = Thresholds(),
    before: float = DEFAULT_WINDOW.before,
    after: float = DEFAULT_WINDOW.after,
    allowed_roots: Sequence[str | Path] | None = None,
) -> MiningReport:
    """Scan every record of `manifest`; write the candidates to the manifest `out`.
    `allowed_roots`: as `data.allowed_roots` (every file read must lie inside one)."""
    report = MiningReport()
    for record in load_manifest(manifest, allowed_roots=allowed_roots):
        report.records += 1
        found, drive, span = mine_record(record, thresholds)
        report.drives[record.id] = drive
        report.hours += drive.span_s / 3600
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
    add_allowed_roots_argument(parser)
    return parser


def mine_command(args: argparse.Namespace) -> int:
    """Run `sce data mine-events`; print what was found; 2 on a bad manifest."""
    thresholds = Thresholds(
        args.brake, args.brake_window, args.impact, args.impact_window, args.merge_gap
    )
    try:
        report = mine_manifest(
            args.manifest, args.out, thresholds, args.before, args.after, args.allowed_roots
        )
    except (ValueError, OSError) as err:
        print(f"sce data mine-events: error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"wrote {args.out} (candidates for review or `sce label`, not ground truth)")
    return 0
