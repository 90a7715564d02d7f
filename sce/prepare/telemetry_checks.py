"""Device clocks and rates of a record's telemetry, for `sce data validate` (issue 16 point 3).

Real telemetry is stamped by the device's own clock: a converter that forgets to subtract the
first frame's clock time leaves an IMU file at t = 46,408 s against a 60 s video, which the
loader silently treats as "no telemetry here". Checked per record and per file (IMU, GPS):

- overlap (a problem when there is none): the file's time range against the record's span of
  the video (a chunk's [clip_start, clip_end], else [0, duration]); the message gives the
  offset measured (first telemetry stamp - span start), which is the clock offset to subtract
  when the file is a copy of the device clock;
- late start (a note): the first stamp more than `MAX_LATE_START_S` after the span's start (a
  short end is the validator's own "imu shorter than video" problem);
- rate (a note when off): measured rate 1 / median interval against the nominal rate, which
  is `metadata.nominal_rate_hz.{imu,gps}` when the converter knows the device, else paper
  000's inputs (IMU 100 Hz, GPS 1 Hz); also the mean rate and the jitter (standard deviation
  of the intervals) and the gaps (intervals over twice the median).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sce.data import imu as imu_lib
from sce.data.clip import ClipError, chunk_bounds
from sce.data.schema import ClipRecord

PAPER_NOMINAL_HZ = {"imu": 100.0, "gps": 1.0}  # paper 000: 100 Hz IMU, 1 Hz GPS
RATE_TOLERANCE = 0.02  # measured rate within 2% of nominal passes silently
MAX_JITTER = 0.10  # interval standard deviation above 10% of the median interval is noted
MAX_LATE_START_S = 1.0  # the same 1 s slack the validator allows at the end


@dataclass(frozen=True)
class ClockStats:
    """Time range and rates of one telemetry file (times on the file's own axis, seconds)."""

    start: float
    end: float
    median_rate: float  # 1 / median interval, Hz
    mean_rate: float  # (N - 1) / (end - start), Hz
    jitter_ms: float  # standard deviation of the intervals
    gaps: int  # intervals over twice the median

    def describe(self, nominal: float) -> str:
        """'nominal 100 Hz, measured 104.36 Hz (mean 104.26 Hz), jitter 0.014 ms, 0 gaps'."""
        return (
            f"nominal {nominal:g} Hz, measured {self.median_rate:.2f} Hz (mean "
            f"{self.mean_rate:.2f} Hz), jitter {self.jitter_ms:.3f} ms, {self.gaps} gaps"
        )


def clock_stats(t: np.ndarray) -> ClockStats:
    """Range, rates, jitter and gaps of strictly increasing time stamps (>= 2)."""
    dt = np.diff(t)
    median = float(np.median(dt))
    return ClockStats(
        start=float(t[0]),
        end=float(t[-1]),
        median_rate=1.0 / median,
        mean_rate=float((len(t) - 1) / (t[-1] - t[0])),
        jitter_ms=float(dt.std() * 1e3),
        gaps=int((dt > 2.0 * median).sum()),
    )


def nominal_rate(record: ClipRecord, kind: str) -> float:
    """The record's declared nominal rate for `kind` ("imu"/"gps"), else paper 000's."""
    declared: Any = (record.metadata.get("nominal_rate_hz") or {}).get(kind)
    return (
        float(declared)
        if isinstance(declared, (int, float)) and declared > 0
        else PAPER_NOMINAL_HZ[kind]
    )


def check_clock(
    record: ClipRecord, kind: str, t: np.ndarray, span: tuple[float, float], report
) -> None:
    """Overlap, coverage, rate and jitter of one file's stamps `t` against the video `span`;
    problems and notes go to `report` (a `sce.prepare.validate.ValidationReport`)."""
    stats = clock_stats(t)
    lo, hi = span
    overlap = min(stats.end, hi) - max(stats.start, lo)
    offset = stats.start - lo
    where = f"{kind} {stats.start:.3f} to {stats.end:.3f} s, video {lo:.3f} to {hi:.3f} s"
    if overlap <= 0:
        report.add(
            record.id,
            f"{kind} time range does not overlap the video (clock offset?)",
            f"{where}: offset {offset:+.3f} s (stamps must be seconds from the first frame)",
        )
        return
    if offset > MAX_LATE_START_S:
        covered = overlap / (hi - lo)
        detail = f"{where}: offset {offset:+.3f} s, {covered:.0%} of the video covered"
        report.note(record.id, f"{kind} starts after the video", detail)
    nominal = nominal_rate(record, kind)
    if abs(stats.median_rate / nominal - 1.0) > RATE_TOLERANCE:
        report.note(record.id, f"{kind} rate differs from nominal", stats.describe(nominal))
    if stats.jitter_ms * 1e-3 * stats.median_rate > MAX_JITTER or stats.gaps:
        report.note(record.id, f"{kind} time stamps jitter or gap", stats.describe(nominal))


def check_telemetry_clocks(record: ClipRecord, duration: float, report) -> None:
    """`check_clock` for the record's IMU and GPS files against its span of a `duration` s
    video; unreadable files are left to the validator's own IMU/GPS checks (they report them)."""
    try:
        span = chunk_bounds(record, duration)
    except ClipError:  # bounds outside the video: validate reports that; use the whole video
        span = (0.0, duration)
    for kind, loader in (("imu", imu_lib.load_imu), ("gps", imu_lib.load_gps)):
        path = record.path(kind)
        if path is None:
            continue
        try:
            t = loader(path).t
        except (ValueError, OSError):
            continue
        check_clock(record, kind, t, span, report)
