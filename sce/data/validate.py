"""`sce data validate MANIFEST`: check every record before a multi-hour run finds the bad one.

Checks per record: the JSON and its fields (schema), that the video exists and decodes at the
event window's start and end, that its duration covers the event window (an image sequence,
e.g. LingoQA, instead: that every `metadata.frames` image exists and opens), the IMU file's
columns, units and monotonic time, GPS columns, the label, and that the event time lies inside
the clip. Prints one table of problems with
counts and the first samples of each, every sample named by its manifest line and, wherever it
could be read, its id ("line 3, id 'clip_b'"); exits non-zero when any record has an error. Also counts,
as a note (not an error), the records whose event window at `--fps` the loader would shrink to
fit their span (a chunk's [clip_start, clip_end], else the video): `window_shrunk`.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sce.data import imu as imu_lib
from sce.data import video as video_lib
from sce.data.clip import ClipError, chunk_bounds
from sce.data.schema import ClipRecord, ManifestError, decode_line, name_record, parse_record
from sce.data.telemetry_checks import check_telemetry_clocks

# The physical bounds training applies when it loads telemetry (sce.data.imu); validate loads
# unbounded to report the largest value.
MAX_ABS_ACCEL = imu_lib.MAX_ABS_ACCEL
MAX_ABS_GYRO = imu_lib.MAX_ABS_GYRO
MAX_SPEED = imu_lib.MAX_SPEED


@dataclass
class ValidationReport:
    records: int = 0
    problems: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    bad_records: set[str] = field(default_factory=set)
    # Notes: intended behaviour worth knowing (e.g. shrunk windows); they do not fail the check.
    notes: Counter = field(default_factory=Counter)
    note_examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # Manifest line of each parsed record's id: examples name both ("line 3, id 'clip_b'").
    lines: dict[str, int] = field(default_factory=dict)

    def note(self, sample: str, note: str, detail: str = "") -> None:
        self.notes[note] += 1
        if len(self.note_examples[note]) < 3:
            self.note_examples[note].append(self._example(sample, detail))

    def add(self, sample: str, problem: str, detail: str = "") -> None:
        """Count `problem` for `sample`: a parsed record's id, or the manifest line that did
        not parse into a record ("line 2", "line 3, id 'clip_b'")."""
        self.problems[problem] += 1
        self.bad_records.add(sample)
        if len(self.examples[problem]) < 3:
            self.examples[problem].append(self._example(sample, detail))

    def _example(self, sample: str, detail: str) -> str:
        if sample in self.lines:
            sample = name_record(f"line {self.lines[sample]}", sample)
        return f"{sample}{': ' + detail if detail else ''}"

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        return "\n".join([self._problem_table(), *self._note_lines()])

    def _problem_table(self) -> str:
        if self.ok:
            return f"{self.records} records checked: no problems"
        width = max(len(p) for p in self.problems)
        lines = [f"{'problem':<{width}}  count  examples", "-" * (width + 40)]
        for problem, count in self.problems.most_common():
            lines.append(f"{problem:<{width}}  {count:>5}  {'; '.join(self.examples[problem])}")
        lines.append(f"{len(self.bad_records)} of {self.records} records have problems")
        return "\n".join(lines)

    def _note_lines(self) -> list[str]:
        return [
            f"note: {note}: {count} of {self.records} records ({'; '.join(self.note_examples[note])})"
            for note, count in self.notes.most_common()
        ]


def check_imu(record: ClipRecord, duration: float, report: ValidationReport) -> None:
    path = record.path("imu")
    if path is None:
        return
    try:
        imu = imu_lib.load_imu(path, bounded=False)
    except (ValueError, OSError) as err:  # ImuError, or UnicodeDecodeError for a binary file
        report.add(record.id, "imu unreadable", str(err))
        return
    finite = imu.accel[np.isfinite(imu.accel)]
    if finite.size and np.abs(finite).max() > MAX_ABS_ACCEL:
        report.add(
            record.id, "imu accel out of range (units?)", f"max |a| {np.abs(finite).max():.1f}"
        )
    gyro = imu.gyro[np.isfinite(imu.gyro)]
    if gyro.size and np.abs(gyro).max() > MAX_ABS_GYRO:
        report.add(record.id, "imu gyro out of range (deg/s?)", f"max |w| {np.abs(gyro).max():.1f}")
    nan_rows = int((np.isnan(imu.accel).any(axis=1) | np.isnan(imu.gyro).any(axis=1)).sum())
    if nan_rows:
        report.add(record.id, "imu has NaN samples", f"{nan_rows} rows")
    if imu.t[-1] < duration - 1.0:
        report.add(record.id, "imu shorter than video", f"{imu.t[-1]:.1f} s of {duration:.1f} s")


def check_gps(record: ClipRecord, report: ValidationReport) -> None:
    path = record.path("gps")
    if path is None:
        return
    try:
        gps = imu_lib.load_gps(path, bounded=False)
    except (ValueError, OSError) as err:  # ImuError, or UnicodeDecodeError for a binary file
        report.add(record.id, "gps unreadable", str(err))
        return
    if np.isnan(gps.speed).any():
        report.add(record.id, "gps has NaN samples", f"{int(np.isnan(gps.speed).sum())} rows")
    speed = gps.speed[np.isfinite(gps.speed)]
    if speed.size and speed.max() > MAX_SPEED:
        report.add(record.id, "gps speed out of range (km/h?)", f"max {speed.max():.1f}")


def _image_sequence(data: object) -> bool:
    """True for an image-sequence record (LingoQA): `metadata.frames` set, `video` a folder."""
    return isinstance(data, dict) and bool((data.get("metadata") or {}).get("frames"))


def check_image_sequence(record: ClipRecord, report: ValidationReport, decode: bool) -> None:
    """Every `metadata.frames` image exists (and, with decode, opens with PIL)."""
    from PIL import Image

    frames = record.metadata["frames"]
    if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
        report.add(record.id, "metadata.frames: not a list of image paths")
        return
    bad: list[str] = []
    for name in frames:
        path = Path(record.root) / name
        try:
            if not path.is_file():
                raise FileNotFoundError("file not found")
            if decode:
                with Image.open(path) as image:
                    image.load()  # decode fully: a truncated image fails here, not in training
        except (OSError, SyntaxError, ValueError) as err:  # PIL raises these for bad images
            bad.append(f"{path}: {err}")
    if bad:
        detail = f"field 'metadata.frames': {len(bad)} of {len(frames)} images, first {bad[0]}"
        report.add(record.id, "image missing or unreadable", detail)
    fps = float(record.metadata.get("frames_fps") or 1.0)  # schema default: 1 image per second
    check_imu(record, len(frames) / fps, report)
    check_gps(record, report)


def window_check_times(
    record: ClipRecord, duration: float, before: float, after: float
) -> np.ndarray:
    """Video times of the event window's start and end, clipped to the clip, for the decode check.

    Without a usable event time (none given, or outside the clip) the first and last frames,
    which bound any window the loader may pick.
    """
    try:
        start, end = chunk_bounds(record, duration)  # a chunk's span in the video
    except ClipError:  # bounds outside the video: check the whole video
        start, end = 0.0, duration
    span = end - start
    try:
        if record.event_time is None:
            raise video_lib.WindowError("no event time")
        window = video_lib.event_window(span, record.event_time, before, after, record.id)
        bounds = np.array([window.start, window.end])
    except video_lib.WindowError:
        bounds = np.array([0.0, span])
    return np.clip(bounds, 0.0, span) + start


def check_window_fits(
    record: ClipRecord, duration: float, before: float, after: float, fps: float,
    report: ValidationReport,
) -> None:  # fmt: skip
    """Note a record whose event window the loader would shrink to fit its span (the same
    `event_window` the loader runs; the shrink depends on the span's length only)."""
    try:
        start, end = chunk_bounds(record, duration)
        span = end - start
        window = video_lib.event_window(span, span / 2.0, before, after, record.id, fps=fps)
    except (ClipError, video_lib.WindowError) as err:
        report.add(record.id, "window does not fit the span", str(err))
        return
    if window.shrunk > 0:
        lost = round(window.shrunk * fps)
        detail = (
            f"{window.length:.2f} s of {window.length + window.shrunk:.2f} s, {lost} frames lost"
        )
        report.note(record.id, "window_shrunk", detail)


def check_record(
    record: ClipRecord,
    report: ValidationReport,
    before: float,
    after: float,
    decode: bool,
    fps: float = 3.0,
) -> None:
    if record.metadata.get("frames"):
        check_image_sequence(record, report, decode)
        return
    try:
        info = video_lib.video_info(record.path("video"))
        if decode:
            times = window_check_times(record, info.duration, before, after)
            video_lib.read_frames(record.path("video"), times, size=None)
    except Exception as err:  # any decoder failure is a problem of this record
        report.add(record.id, "video does not decode", str(err))
        return
    duration = info.duration
    if duration < before + after:
        report.add(
            record.id, "clip shorter than window", f"{duration:.1f} s < {before + after:.1f} s"
        )
    if record.event_time is not None and not 0 <= record.event_time <= duration:
        report.add(
            record.id, "event_time outside clip", f"{record.event_time:.2f} s of {duration:.2f} s"
        )
    check_window_fits(record, duration, before, after, fps, report)
    check_imu(record, duration, report)
    check_gps(record, report)
    check_telemetry_clocks(record, duration, report)  # device clocks and rates (issue 16)


def validate_manifest(
    path: str | Path,
    before: float = 4.0,
    after: float = 2.0,
    decode: bool = True,
    fps: float = 3.0,
) -> ValidationReport:
    """Check every line of a manifest; never stops at the first problem."""
    path = Path(path)
    report = ValidationReport()
    lines = path.read_bytes().split(b"\n")
    for line_no, raw in enumerate(tqdm(lines, desc="validate", unit="clip"), start=1):
        if not raw.strip():
            continue
        report.records += 1
        where = f"line {line_no}"  # the manifest is named on the command line
        try:
            text = decode_line(raw, where)
        except ManifestError as err:  # no id can be read: the line alone
            report.add(where, "not valid UTF-8", err.detail or "")
            continue
        try:
            data = json.loads(text)
            # An image sequence's files are checked per image in check_record, naming the sample.
            record = parse_record(data, path.parent, where, check_files=not _image_sequence(data))
        except json.JSONDecodeError as err:  # no id can be read: the line alone
            report.add(where, "invalid JSON", err.msg)
            continue
        except ManifestError as err:  # err.where: the line, and the id when it could be read
            report.add(err.where or where, f"schema: {err.field or 'record'}", err.detail or "")
            continue
        if record.id in report.lines:
            first = f"first on line {report.lines[record.id]}"
            report.add(name_record(where, record.id), "schema: duplicate id", first)
            continue
        report.lines[record.id] = line_no
        check_record(record, report, before, after, decode, fps)
    return report


def add_validate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("manifest", help="manifest.jsonl to check")
    parser.add_argument("--before", type=float, default=4.0, help="seconds before the event (4)")
    parser.add_argument("--after", type=float, default=2.0, help="seconds after the event (2)")
    parser.add_argument("--fps", type=float, default=3.0, help="window frame rate (3)")
    parser.add_argument("--no-decode", action="store_true", help="skip decoding test frames")
    return parser


def validate_command(args: argparse.Namespace) -> int:
    if not Path(args.manifest).is_file():
        print(f"manifest not found: {args.manifest}")
        return 2
    report = validate_manifest(
        args.manifest, args.before, args.after, decode=not args.no_decode, fps=args.fps
    )
    print(report.table())
    return 0 if report.ok else 1
