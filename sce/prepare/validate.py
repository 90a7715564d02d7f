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

import dataclasses
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sce.data import imu as imu_lib
from sce.data import video as video_lib
from sce.data import windows as windows_lib
from sce.data.alignment import ALIGNMENT_KEY, alignment_problem
from sce.data.clip import DEFAULT_WINDOW, ClipError, chunk_bounds
from sce.data.schema import (
    ALL_LABELS,
    SPLITS,
    ClipRecord,
    ManifestError,
    decode_line,
    name_record,
    parse_record,
)
from sce.prepare.telemetry_checks import check_telemetry_clocks, clock_stats

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
    # Findings about the manifest as a whole (splits, task weights) that do not fail the check.
    warnings: list[str] = field(default_factory=list)
    # The records per (split, label), printed as a table.
    split_counts: Counter = field(default_factory=Counter)

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

    def add_dataset(self, problem: str, detail: str) -> None:
        """Count a problem of the manifest as a whole (an empty split, a task weight no record
        serves): an error that names no single record."""
        self.problems[problem] += 1
        if len(self.examples[problem]) < 3:
            self.examples[problem].append(detail)

    def _example(self, sample: str, detail: str) -> str:
        if sample in self.lines:
            sample = name_record(f"line {self.lines[sample]}", sample)
        return f"{sample}{': ' + detail if detail else ''}"

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        """The problems with counts and examples, then the notes."""
        return "\n".join([self._problem_table(), *self._note_lines()])

    def overview(self) -> str:
        """Records per split and class, then the warnings (printed before `table`)."""
        return "\n".join([*self._split_lines(), *(f"warning: {w}" for w in self.warnings)])

    def _problem_table(self) -> str:
        if self.ok:
            warned = f"; {len(self.warnings)} warning(s) above" if self.warnings else ""
            return f"{self.records} records checked: no problems{warned}"
        width = max(len(p) for p in self.problems)
        lines = [f"{'problem':<{width}}  count  examples", "-" * (width + 40)]
        for problem, count in self.problems.most_common():
            lines.append(f"{problem:<{width}}  {count:>5}  {'; '.join(self.examples[problem])}")
        lines.append(f"{len(self.bad_records)} of {self.records} records have problems")
        return "\n".join(lines)

    def _split_lines(self) -> list[str]:
        """Records per split and class, the table `sce data prepare` prints."""
        if not self.split_counts:
            return []
        labels = [c for c in ALL_LABELS if any(label == c for _, label in self.split_counts)]
        rows = [["split", *labels, "total"]]
        for split in SPLITS:
            cells = [self.split_counts[(split, label)] for label in labels]
            rows.append([split, *map(str, cells), str(sum(cells))])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return [
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]

    def _note_lines(self) -> list[str]:
        return [
            f"note: {note}: {count} of {self.records} records ({'; '.join(self.note_examples[note])})"
            for note, count in self.notes.most_common()
        ]


CLOCK_HINT = "timestamps in ms, or epoch seconds? expected seconds from the clip start"


def telemetry_clock_problems(
    t: np.ndarray, duration: float, kind: str, fps: float | None = None
) -> list[tuple[str, str]]:
    """(problem, detail) pairs for the clock mistakes that break or silently degrade training
    and that `sce.prepare.telemetry_checks.check_telemetry_clocks` (no overlap with the video,
    late start, rate off nominal, jitter; run beside this) lets through:

    - a span more than twice the video plus 1 s: a 100 Hz file stamped in ms spans 1,000x its
      video yet overlaps it from t = 0, so no overlap check sees it;
    - for the IMU, a rate below the frame rate `fps`: each frame's block needs
      W = floor(fs / fps) >= 1 samples, and training stops on the clip.
    """
    stats = clock_stats(t)
    problems: list[tuple[str, str]] = []
    length = stats.end - stats.start
    if length > 2.0 * duration + 1.0:
        detail = f"t {stats.start:.3f} to {stats.end:.3f} s ({length:.1f} s) for a {duration:.2f} s video"
        problems.append((f"{kind} time span far longer than the video", f"{detail}: {CLOCK_HINT}"))
    if kind == "imu" and fps is not None and stats.median_rate < fps:
        detail = f"{stats.median_rate:.3g} Hz < {fps:g} fps (each frame needs an IMU sample)"
        problems.append(("imu rate below the frame rate", f"{detail}: {CLOCK_HINT}"))
    return problems


def report_clock(
    record: ClipRecord, t: np.ndarray, duration: float, kind: str, fps: float | None,
    report: ValidationReport,
) -> None:  # fmt: skip
    """Add `telemetry_clock_problems` of one file to the report, naming the file."""
    for problem, text in telemetry_clock_problems(t, duration, kind, fps):
        report.add(record.id, problem, f"{record.path(kind)}: {text}")


def check_imu(
    record: ClipRecord, duration: float, report: ValidationReport, fps: float | None = None
) -> None:
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
    if imu.t[-1] < duration - 1.0 and imu.t[0] < duration:  # else: the clock is wrong
        report.add(record.id, "imu shorter than video", f"{imu.t[-1]:.1f} s of {duration:.1f} s")
    report_clock(record, imu.t, duration, "imu", fps, report)
    check_mounting(record, report)


def check_mounting(record: ClipRecord, report: ValidationReport) -> None:
    """An estimated mounting whose forward axis failed its correlation threshold: a problem
    when it was stored as "estimated" (the loader applies it), a note when it is not applied
    (device axes) or was applied on request (`sce.data.alignment.alignment_problem`)."""
    detail = alignment_problem(record.metadata)
    if not detail:
        return
    if record.metadata[ALIGNMENT_KEY].get("method") == "estimated":
        report.add(record.id, "imu mounting estimate below its threshold", detail)
    else:
        report.note(record.id, "imu mounting not resolved", detail)


def check_gps(record: ClipRecord, report: ValidationReport, duration: float | None = None) -> None:
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
    if duration is not None:
        report_clock(record, gps.t, duration, "gps", None, report)


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
            raise windows_lib.WindowError("no event time")
        window = windows_lib.event_window(span, record.event_time, before, after, record.id)
        bounds = np.array([window.start, window.end])
    except windows_lib.WindowError:
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
        window = windows_lib.event_window(span, span / 2.0, before, after, record.id, fps=fps)
    except (ClipError, windows_lib.WindowError) as err:
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
    fps: float = DEFAULT_WINDOW.fps,
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
    check_imu(record, duration, report, fps)
    check_gps(record, report, duration)
    check_telemetry_clocks(record, duration, report)  # device clocks and rates (issue 16)


def check_splits(records: list[ClipRecord], report: ValidationReport, for_fit: bool) -> None:
    """Records per (split, label). An empty train or val split beside records in the other is
    an error `for_fit` (`sce data validate --config`: `sce fit` stops on it), else a warning (a
    manifest may serve labeling or evaluation only); an empty test split and a split that lacks
    a class the manifest has (never trained on, or no per-class metric there) are warnings."""
    report.split_counts.update((r.split, r.label) for r in records)
    per_split = Counter(r.split for r in records)
    shown = ", ".join(f"{split} {per_split[split]}" for split in SPLITS)
    for empty, other in (("val", "train"), ("train", "val")):
        if per_split[other] and not per_split[empty]:
            detail = f"no {empty} records ({shown}): sce fit needs {empty} records"
            if for_fit:
                report.add_dataset("split empty", detail)
            else:
                report.warnings.append(f"split {empty!r} is empty: {detail}")
    if per_split["train"] and not per_split["test"]:
        report.warnings.append(f"split 'test' is empty ({shown}): sce test needs test records")
    labels = Counter(r.label for r in records)
    for split in SPLITS:
        have = {r.label for r in records if r.split == split}
        missing = [label for label in ALL_LABELS if labels[label] and label not in have]
        if have and missing:
            counts = ", ".join(f"{label} {labels[label]}" for label in missing)
            report.warnings.append(
                f"split {split!r} has no {' / '.join(missing)} record (manifest: {counts})"
            )


def validate_manifest(
    path: str | Path,
    before: float = DEFAULT_WINDOW.before,
    after: float = DEFAULT_WINDOW.after,
    decode: bool = True,
    fps: float = DEFAULT_WINDOW.fps,
    datamodule=None,
) -> ValidationReport:
    """Check every line of a manifest, then its splits; never stops at the first problem.

    With `datamodule` (the SceDataModule `sce fit` builds, `sce data validate --config`) also
    what training will do with each record (`check_training_plan`)."""
    path = Path(path)
    report = ValidationReport()
    records: list[ClipRecord] = []
    lines = path.read_bytes().split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()  # the newline ending the last record: no line of its own (the bar counts lines)
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
        records.append(record)
        check_record(record, report, before, after, decode, fps)
    check_splits(records, report, for_fit=datamodule is not None)
    if datamodule is not None:
        check_training_plan(records, datamodule, report)
    return report


# --------------------------------------------------------------------- --config: training
def check_training_plan(records: list[ClipRecord], datamodule, report: ValidationReport) -> None:
    """What `sce fit` with this data module does with each record: its window plan
    (`sce.data.clip.plan_window`: window times, frame indices, event time, telemetry sync; the
    video is opened for its duration only, never decoded) at every window scale, and which
    tasks its task weights and evaluation tasks can find. Records that already have a problem
    are not planned again."""
    from sce.data.clip import plan_window

    hparams = datamodule.hparams
    check_loadable(datamodule, report)
    scales = list(datamodule.window.scales or [None])
    for record in records:
        if record.id in report.bad_records or record.metadata.get("frames"):
            continue
        for scale in scales:
            spec = dataclasses.replace(datamodule.spec, scale=scale)
            try:
                plan = plan_window(record, spec)
            except Exception as err:  # what training would stop on: ClipError, or a crash
                report.add(record.id, "window plan fails (sce fit stops here)", str(err))
                break
            if record.imu is not None and plan.telemetry is None:
                report.add(record.id, "imu dropped by the window plan", plan.imu_reason)
            if record.gps is not None and plan.gps_reason:
                report.add(record.id, "gps dropped by the window plan", plan.gps_reason)
    check_tasks(records, hparams.task_weights, hparams.eval_tasks, report)


def check_loadable(datamodule, report: ValidationReport) -> None:
    """The load `sce fit` runs per split (data.allowed_roots, data.on_bad_sample)."""
    from sce.data.schema import load_manifest

    hparams = datamodule.hparams
    try:
        load_manifest(
            datamodule.manifest,
            on_bad_sample=hparams.on_bad_sample,
            allowed_roots=hparams.allowed_roots,
        )
    except ManifestError as err:
        report.add_dataset("manifest load fails (sce fit stops here)", str(err))


def check_tasks(
    records: list[ClipRecord],
    task_weights: dict[str, float] | None,
    eval_tasks: list[str],
    report: ValidationReport,
) -> None:
    """An error for each task with a training weight that no train record can serve and each
    evaluation task no val record can be asked (e.g. a caption weight without captions)."""
    from sce.tasks import DEFAULT_TASK_MIX, available_tasks, evaluation_tasks

    asked = {
        ("train", "data.task_weights", available_tasks): {
            task: weight
            for task, weight in (task_weights or DEFAULT_TASK_MIX).items()
            if weight > 0
        },
        ("val", "data.eval_tasks", evaluation_tasks): {task: None for task in eval_tasks},
    }
    for (split, option, serves), tasks in asked.items():
        chosen = [r for r in records if r.split == split]
        for task in tasks if chosen else ():
            if not any(task in serves(r.label, r.annotations, r.label_scope) for r in chosen):
                weight = "" if tasks[task] is None else f" = {tasks[task]:g}"
                report.add_dataset(
                    f"{option}: no record serves the task",
                    f"{option} {task!r}{weight}, but none of the {len(chosen)} {split} records "
                    f"has annotations.{task}",
                )
