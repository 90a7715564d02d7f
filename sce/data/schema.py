"""The canonical manifest: one JSON object per clip, validated on load.

Every source (synthetic, Nexar, BDD-X, LingoQA, private mp4 + CSV) is converted to this schema by
`sce data prepare`; everything downstream (dataset, labeling, evaluation) reads only this.

Record fields
-------------
id           str, unique within the manifest
video        str, path to the mp4 (relative to the manifest's folder, or absolute)
imu          str | null, CSV with columns t, ax, ay, az, gx, gy, gz (s, m/s^2, rad/s)
gps          str | null, CSV with columns t, speed (s, m/s)
label        "collision" | "near_collision" | "normal" (label_scope "three_class"), or
             "event" | "normal" (label_scope "binary")
label_scope  "three_class" (default) | "binary": what the source knows. A binary source (Nexar:
             target 1 = collision *or* near-collision) labels its clips "event" / "normal"; they
             are trained with the yes/no event question and scored only by the binary metrics,
             never as 3-class collisions. "event" is not a 3-class label, so a binary positive
             can never be counted as a collision.
event_time   float | null, seconds from the clip start (null: derived as argmax |a_x|)
source       str, e.g. "synthetic", "nexar", "bddx", "lingoqa", "private"
split        "train" | "val" | "test"
metadata     dict, free (weather, light, scene, other_agent, impact_side, ...); a
             `driver_video` path makes a dual-view clip (road on top, driver below; paper 003).
             The keys sce reads are checked on load (METADATA_CHECKS: clip_start/clip_end,
             driver_video, frames, frames_fps, imu_rotation, ...); under
             `on_bad_sample="skip"` a record with a malformed one is kept with its `problem`
             set, as for annotations.
annotations  dict: caption, vqa, mcq, reasoning, probability, instruction, and free keys
             (provenance, qa, ...). The fields the tasks read are checked on load, each by
             its task (`check_annotations`, sce.tasks): caption and instruction are strings,
             vqa a list of {question, answer[, options]} objects, reasoning a string or
             {think, ...}, probability a number in [0, 1]. Under `on_bad_sample="skip"` a record whose
             annotations are malformed is kept with its `problem` set, and the dataset skips
             (and counts) its samples.

An image-sequence clip (LingoQA) sets `metadata.frames` (image paths, in time order, at
`metadata.frames_fps`, default 1) and `video` to their folder.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

# The labels are defined once in sce.common.labels; re-exported here, where the manifest is read.
from sce.common.labels import (  # noqa: F401 (LABELS, BINARY_LABELS: re-exported)
    ALL_LABELS,
    BINARY_LABELS,
    LABEL_SCOPES,
    LABELS,
    SCOPE_LABELS,
)
from sce.tasks.base import TASKS, AnnotationError

SPLITS: tuple[str, ...] = ("train", "val", "test")
REQUIRED_FIELDS: tuple[str, ...] = ("id", "video", "label", "source", "split")
OnBadSample = Literal["error", "skip"]  # data.on_bad_sample


class ManifestError(ValueError):
    """A manifest record is malformed; the message names the file, line, record id and field.

    Errors raised for one record also carry their parts, so a report can group and print them
    without parsing the message: `where` (the line, and the id when it could be read), `field`
    and `detail` (what is wrong with the field).
    """

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        field: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.where = where
        self.field = field
        self.detail = detail


class OutsideRootsError(ManifestError):
    """A file of a record lies outside `data.allowed_roots` (checked on load and again each
    time a reader asks for the path to open it)."""


@dataclass
class ClipRecord:
    """One clip of the canonical manifest, with paths resolved against the manifest folder."""

    id: str
    video: str
    label: str
    source: str
    split: str
    imu: str | None = None
    gps: str | None = None
    event_time: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    label_scope: str = "three_class"
    root: str = ""  # folder of the manifest; not serialized
    problem: str = (
        ""  # why the record's samples are skipped (malformed annotations); not serialized
    )
    # data.allowed_roots the record was loaded under (not serialized): `path` checks them
    allowed_roots: tuple[str, ...] = ()

    def path(self, name: str) -> Path | None:
        """Absolute path of the `video`, `imu`, `gps` or `metadata.driver_video` field (None
        when unset), for a reader about to open it. With `allowed_roots` the path comes back
        resolved (symlinks, `..`) and checked now (`confined`), so a symlink retargeted after
        the manifest was loaded is refused here, and the reader opens the very file checked."""
        if name.startswith("metadata."):
            value = self.metadata.get(name.removeprefix("metadata.")) or None
        else:
            value = getattr(self, name)
        if value is None:
            return None
        p = Path(value)
        p = p if p.is_absolute() else Path(self.root) / p
        return confined(p, self.allowed_roots, f"sample {self.id!r}", name)

    def frame_paths(self) -> list[Path]:
        """The `metadata.frames` images of an image-sequence clip, each as `path` gives it."""
        root, where = Path(self.root), f"sample {self.id!r}"
        frames = self.metadata.get("frames") or []
        return [confined(root / f, self.allowed_roots, where, "metadata.frames") for f in frames]

    @property
    def class_index(self) -> int:
        """Index of the label among its scope's labels (LABELS or BINARY_LABELS)."""
        return SCOPE_LABELS[self.label_scope].index(self.label)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in NOT_SERIALIZED:
            data.pop(name)
        return data


NOT_SERIALIZED: tuple[str, ...] = (
    "root",
    "problem",
    "allowed_roots",
)  # ClipRecord fields no manifest holds


def readable_id(data: Any) -> str | None:
    """The record's id when it can be read (a non-empty string under "id"), else None."""
    record_id = data.get("id") if isinstance(data, dict) else None
    return record_id if isinstance(record_id, str) and record_id else None


def name_record(where: str, record_id: str | None) -> str:
    """`where` (e.g. "manifest.jsonl line 3") plus the record's id when known:
    "manifest.jsonl line 3, id 'clip_b'"; every record error is located through this."""
    return where if record_id is None else f"{where}, id {record_id!r}"


def _fail(where: str, field_name: str, message: str, kind=ManifestError) -> ManifestError:
    return kind(
        f"{where}: field '{field_name}': {message}", where=where, field=field_name, detail=message
    )


def _check_label(where: str, label: str, scope: Any) -> None:
    """The label must belong to the record's scope: a binary record cannot claim a 3-class
    collision, and "event" (collision or near-collision) needs label_scope "binary"."""
    if scope not in SCOPE_LABELS:
        raise _fail(
            where,
            "label_scope",
            f"unknown scope {scope!r}; expected one of {LABEL_SCOPES}",
        )
    allowed = SCOPE_LABELS[scope]
    if label in allowed:
        return
    if label in ALL_LABELS:
        other = next(s for s, labels in SCOPE_LABELS.items() if label in labels)
        raise _fail(
            where,
            "label",
            f"label {label!r} belongs to label_scope {other!r}, but the "
            f"record's label_scope is {scope!r} (labels {allowed})",
        )
    raise _fail(where, "label", f"unknown label {label!r}; expected one of {allowed}")


def check_annotations(where: str, annotations: dict[str, Any]) -> None:
    """Raise ManifestError naming the first malformed annotation field a task reads (each
    registered task checks its own fields, `sce.tasks`).

    A null field is absent. Other keys (provenance, qa, structured_caption, ...) are free.
    """
    for task in TASKS.values():
        try:
            task.check(annotations)
        except AnnotationError as err:
            raise _fail(where, err.field, err.detail) from None


def _number(low: float | None = None, positive: bool = False):
    """A check: a finite JSON number (not a bool), >= `low` / > 0 when asked."""

    def check(value: Any) -> str:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"expected a number, got {value!r}"
        if not math.isfinite(value) or (low is not None and value < low):
            return f"expected a finite number >= {low:g}, got {value!r}"
        if positive and not value > 0:
            return f"expected a positive number, got {value!r}"
        return ""

    return check


def _path_string(value: Any) -> str:
    return "" if isinstance(value, str) and value else f"expected a path string, got {value!r}"


def _path_list(value: Any) -> str:
    ok = isinstance(value, list) and all(isinstance(v, str) and v for v in value)
    return "" if ok else f"expected a list of image paths, got {value!r}"


def _matrix3(value: Any) -> str:
    number = _number()
    ok = (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(r, list) and len(r) == 3 and not any(map(number, r)) for r in value)
    )
    return "" if ok else f"expected a 3 x 3 matrix of numbers, got {value!r}"


def _rates(value: Any) -> str:
    ok = isinstance(value, dict) and all(not _number(positive=True)(v) for v in value.values())
    return "" if ok else f"expected an object of positive rates (Hz), got {value!r}"


def _kind(kind: type, name: str):
    def check(value: Any) -> str:
        ok = isinstance(value, kind) and (kind is not int or not isinstance(value, bool))
        return "" if ok else f"expected {name}, got {value!r}"

    return check


# The metadata keys sce reads (where), each with its check ("" when the value is sound).
METADATA_CHECKS: dict[str, Any] = {
    "clip_start": _number(low=0.0),  # a chunk's span in the video (sce.data.clip.chunk_bounds)
    "clip_end": _number(low=0.0),
    "driver_video": _path_string,  # dual view (paper 003)
    "frames": _path_list,  # an image sequence (LingoQA)
    "frames_fps": _number(positive=True),
    "imu_rotation": _matrix3,  # mounting (sce.data.alignment checks it is a rotation)
    "imu_alignment": _kind(dict, "an object"),  # sce data validate
    "nominal_rate_hz": _rates,  # sce data validate
    "can_speed": _path_string,  # comma2k19's CAN speed CSV
    "candidate": _kind(dict, "an object"),  # sce data mine-events
    "experts": _kind(dict, "an object"),  # sce label's expert outputs
    "detections": _kind(list, "a list"),
    "speed_at_event": _number(),  # sce label's structured caption
    "peak_decel_ms2": _number(),  # generic questions (synthetic)
    "ego_stopped": _kind(bool, "true or false"),
}


def check_metadata(where: str, metadata: dict[str, Any]) -> None:
    """Raise ManifestError naming the first malformed metadata key sce reads
    (METADATA_CHECKS; null counts as absent) and a chunk span whose start is not before its
    end. Other keys are free."""
    for key, check in METADATA_CHECKS.items():
        value = metadata.get(key)
        problem = "" if value is None else check(value)
        if problem:
            raise _fail(where, f"metadata.{key}", problem)
    start, end = metadata.get("clip_start"), metadata.get("clip_end")
    if start is not None and end is not None and not start < end:
        raise _fail(where, "metadata.clip_end", f"{end!r} is not after clip_start {start!r}")


def parse_record(
    data: Any,
    root: str | Path,
    where: str = "record",
    check_files: bool = True,
    on_bad_sample: OnBadSample = "error",
    allowed_roots: Sequence[str | Path] | None = None,
) -> ClipRecord:
    """Validate one decoded JSON object and return it as a ClipRecord.

    `where` locates the record in errors (e.g. "manifest.jsonl line 7"); every error adds the
    record's id to it when the id can be read ("manifest.jsonl line 7, id 'clip_b'").
    Malformed annotations or metadata (`check_metadata`) raise too, unless `on_bad_sample` is
    "skip": the record then comes back with `problem` set to that error's message, and the
    dataset skips and counts its samples.
    `allowed_roots` (opt-in): every file of the record must lie inside one of these folders.
    """
    where = name_record(where, readable_id(data))
    if not isinstance(data, dict):
        detail = f"expected a JSON object, got {type(data).__name__}"
        raise ManifestError(f"{where}: {detail}", where=where, detail=detail)
    for name in REQUIRED_FIELDS:
        if name not in data or data[name] in (None, ""):
            raise _fail(where, name, "missing")
    for name in ("id", "video", "source", "split", "label"):
        if not isinstance(data[name], str):
            raise _fail(where, name, f"expected a string, got {data[name]!r}")
    scope = data.get("label_scope", "three_class")
    _check_label(where, data["label"], scope)
    if data["split"] not in SPLITS:
        raise _fail(where, "split", f"unknown split {data['split']!r}; expected one of {SPLITS}")
    event_time = data.get("event_time")
    if event_time is not None:
        if not isinstance(event_time, (int, float)) or isinstance(event_time, bool):
            raise _fail(where, "event_time", f"expected seconds as a number, got {event_time!r}")
        if not math.isfinite(event_time) or event_time < 0:  # NaN, Infinity or negative
            raise _fail(where, "event_time", f"must be a non-negative number, got {event_time!r}")
    for name in ("imu", "gps"):  # Path(5) would raise a TypeError naming neither line nor field
        if data.get(name) is not None and not isinstance(data[name], str):
            raise _fail(where, name, f"expected a path string or null, got {data[name]!r}")
    for name in ("metadata", "annotations"):
        if not isinstance(data.get(name, {}), dict):
            raise _fail(where, name, "expected a JSON object")
    unknown = set(data) - (set(ClipRecord.__dataclass_fields__) - set(NOT_SERIALIZED))
    if unknown:
        raise _fail(where, sorted(unknown)[0], "unknown field")
    record = ClipRecord(
        id=data["id"],
        video=data["video"],
        label=data["label"],
        source=data["source"],
        split=data["split"],
        imu=data.get("imu"),
        gps=data.get("gps"),
        event_time=None if event_time is None else float(event_time),
        metadata=dict(data.get("metadata") or {}),
        annotations=dict(data.get("annotations") or {}),
        label_scope=scope,
        root=str(root),
    )
    try:
        check_metadata(where, record.metadata)
        check_annotations(where, record.annotations)
    except ManifestError as err:
        if on_bad_sample != "skip":
            raise
        record.problem = str(err)
    if allowed_roots:
        check_allowed_roots(record, allowed_roots, where)
        record.allowed_roots = tuple(str(r) for r in allowed_roots)
    if check_files:
        _check_files(record, where)
    return record


def record_paths(record: ClipRecord) -> list[tuple[str, Path]]:
    """(field, absolute path) of every file a record points to: video, imu, gps,
    metadata.driver_video and each metadata.frames image."""
    paths = [(name, record.path(name)) for name in ("video", "imu", "gps")]
    driver = record.metadata.get("driver_video")
    if isinstance(driver, str) and driver:
        paths.append(("metadata.driver_video", Path(record.root) / driver))  # absolute stays
    frames = record.metadata.get("frames")
    if isinstance(frames, list):
        paths += [("metadata.frames", Path(record.root) / f) for f in frames if isinstance(f, str)]
    return [(name, path) for name, path in paths if path is not None]


def check_allowed_roots(record: ClipRecord, roots: Sequence[str | Path], where: str) -> None:
    """Raise OutsideRootsError unless every file of the record lies inside one of `roots`
    (`confined`): the opt-in `data.allowed_roots` of shared services, where a manifest must
    not make the loader read arbitrary files (e.g. /etc/passwd as an IMU). Checked on load
    for an early error, and again by `ClipRecord.path` when a file is opened."""
    for name, path in record_paths(record):
        confined(path, roots, where, name)


def confined(path: Path, roots: Sequence[str | Path], where: str, field_name: str) -> Path:
    """`path` itself when `roots` is empty; else its real path (symlinks and `..` resolved),
    which must lie inside one of `roots`, or OutsideRootsError naming `where` and the field.
    The one check every reader goes through (`ClipRecord.path`, `frame_paths`). The real path
    is what the reader then opens: retargeting a symlink afterwards changes nothing (only a
    folder on the way swapped for a symlink in the instant between could still escape)."""
    if not roots:
        return path
    resolved = [Path(r).expanduser().resolve() for r in roots]
    real = path.resolve()
    if not any(real.is_relative_to(root) for root in resolved):
        detail = f"{path} is outside data.allowed_roots {[str(r) for r in resolved]}"
        raise _fail(where, field_name, detail, OutsideRootsError)
    return real


def add_allowed_roots_argument(parser) -> None:
    """`--allowed-root DIR` (repeatable) of the offline commands, as `data.allowed_roots`."""
    parser.add_argument(
        "--allowed-root",
        dest="allowed_roots",
        action="append",
        default=None,
        metavar="DIR",
        help="read only files inside DIR (repeatable; symlinks and '..' resolved when each "
        "file is opened), as data.allowed_roots in training",
    )


def _check_files(record: ClipRecord, where: str) -> None:
    """Every file of `record_paths` exists (the same list `rebase_paths` moves)."""
    frames = record.metadata.get("frames")
    # a malformed `frames` is check_metadata's (a skipped record under on_bad_sample=skip)
    for name, path in record_paths(record):
        if name == "video" and frames and path.is_dir():  # an image sequence: its folder
            continue
        if not path.is_file():
            raise _fail(where, name, f"file not found: {path}")


def rebase_paths(record: ClipRecord, folder: str | Path | None) -> ClipRecord:
    """The record with every path `record_paths` lists (video, imu, gps, metadata.driver_video,
    metadata.frames) relative to `folder`, a new manifest's folder (None: absolute), so that a
    record written elsewhere (`sce data chunk`, `sce data mine-events`) points at the same files."""

    def moved(value: str) -> str:
        path = Path(value) if Path(value).is_absolute() else Path(record.root) / value
        path = path.absolute()
        return str(path) if folder is None else os.path.relpath(path, Path(folder).absolute())

    fields = {
        n: None if getattr(record, n) is None else moved(getattr(record, n))
        for n in ("video", "imu", "gps")
    }
    metadata = dict(record.metadata)
    if isinstance(metadata.get("driver_video"), str) and metadata["driver_video"]:
        metadata["driver_video"] = moved(metadata["driver_video"])
    if isinstance(metadata.get("frames"), list):
        metadata["frames"] = [moved(f) if isinstance(f, str) else f for f in metadata["frames"]]
    root = str(Path(folder).absolute()) if folder is not None else record.root
    return replace(record, root=root, metadata=metadata, **fields)


def decode_line(raw: bytes, where: str) -> str:
    """One manifest line as text; invalid UTF-8 raises ManifestError "<where>: not valid UTF-8
    at byte N" (N counted from the line's start, 0-based, as `xxd` shows the line) instead of
    a bare UnicodeDecodeError naming neither file nor line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        detail = f"not valid UTF-8 at byte {err.start}"
        raise ManifestError(f"{where}: {detail}", where=where, detail=detail) from None


def load_manifest(
    path: str | Path,
    check_files: bool = True,
    splits: Iterable[str] | None = None,
    on_bad_sample: OnBadSample = "error",
    allowed_roots: Sequence[str | Path] | None = None,
) -> list[ClipRecord]:
    """Read and validate a manifest.jsonl; errors name the file, line and field.

    Args:
        path: the manifest file; relative paths inside it resolve against its folder.
        check_files: also check that the video/imu/gps files exist.
        splits: keep only these splits (None keeps all).
        on_bad_sample: "skip" keeps a record with malformed annotations, its `problem` set
            (the dataset skips and counts its samples); "error" raises.
        allowed_roots: folders every record's files must lie in (None: anywhere; datasets
            usually live outside the manifest's folder, so absolute and `..` paths are fine).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    keep = set(splits) if splits is not None else None
    records: list[ClipRecord] = []
    seen: dict[str, int] = {}
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path} line {line_no}"
            line = decode_line(raw, where)
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:  # no id can be read: the line alone
                detail = f"invalid JSON ({err.msg})"
                raise ManifestError(f"{where}: {detail}", where=where, detail=detail) from err
            record = parse_record(
                data, path.parent, where, check_files, on_bad_sample, allowed_roots
            )
            if record.id in seen:
                raise _fail(
                    name_record(where, record.id),
                    "id",
                    f"duplicate id {record.id!r} (first on line {seen[record.id]})",
                )
            seen[record.id] = line_no
            if keep is None or record.split in keep:
                records.append(record)
    return records


def write_manifest(records: Iterable[ClipRecord | dict[str, Any]], path: str | Path) -> Path:
    """Write records as JSON lines (atomically: a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as handle:
        for record in records:
            data = record.to_json() if isinstance(record, ClipRecord) else record
            handle.write(json.dumps(data, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
