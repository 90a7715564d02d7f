"""Load one clip's model inputs: the event window's frames and its synchronized telemetry.

Shared by the training dataset, the teacher labeling pipeline and `sce infer`, so every consumer
cuts the same window and reads the same telemetry.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from sce.data import alignment as alignment_lib
from sce.data import imu as imu_lib
from sce.data import video as video_lib
from sce.data import windows as windows_lib
from sce.data.imu import FrameTelemetry
from sce.data.schema import ClipRecord
from sce.data.windows import keyframe_window, whole_clip_window
from sce.tasks import PROMPTS, PromptName

Layout = Literal["interleaved", "table"]  # data.window.layout (sce.data.prompts lays them out)
# data.window.channels: the per-frame inputs beside the frames (sce.data.channels renders them)
ChannelName = Literal["telemetry"]
CHANNEL_NAMES: tuple[str, ...] = get_args(ChannelName)
TelemetryAnchor = Literal["auto", "centered", "causal"]
WindowMode = Literal["event", "whole"]
LAYOUTS: tuple[str, ...] = get_args(Layout)
TELEMETRY_ANCHORS: tuple[str, ...] = get_args(TelemetryAnchor)
WINDOW_MODES: tuple[str, ...] = get_args(WindowMode)
assert TELEMETRY_ANCHORS[1:] == imu_lib.ANCHORS  # "auto" + the anchors sce.data.imu computes


class ClipError(ValueError):
    """A clip cannot be loaded; the message names the sample and the cause."""


@dataclass(frozen=True)
class WindowSpec:
    """The window: which frames of a clip a prompt shows, at what size and in what layout, what
    it shows beside them (the channels) and in whose wording (the prompt).

    One value (`data.window` in a config, `--data.window.fps=15` on the command line), recorded
    whole with an exported model (sce.train.record) and read back whole by `sce infer`, `sce
    budget`, `sce plan`, `sce data preview` and the temporal RoPE guard. Every default of the
    window is written here and nowhere else (paper 000: 3 fps, [-4 s, +2 s], 420x240).

    Args:
        fps: frames per second sampled from the window (paper 000: 3; paper 001: 30).
        before: seconds of the event window before the event time t_e (paper 000: 4).
        after: seconds of the event window after t_e (paper 000: 2; 6 s at 3 fps = 18 frames).
        width: frame width before the processor's resize to a multiple of 28 (paper 000: 420).
            Frames are decoded straight at the size the model sees (420x240 -> 420x252 for
            Qwen), one resize from the source instead of two; the token count is the same.
        height: frame height, as width (paper 000: 240).
        layout: "interleaved" (frame pairs, each followed by its frames' per-frame inputs) or
            "table" (one video block, then a table per input); see sce.data.prompts.
        mode: "event" (the [-before, +after] window) or "whole": the record's whole span at
            fps, or max_frames spread uniformly over a longer one at the true, lower rate
            (paper 003: 2 fps, at most 128 frames; before/after are then unused).
        max_frames: the most frames of a whole-clip window (even; required with "whole").
        max_pixels: per-frame pixel cap with Qwen's smart_resize rounding (paper 003: 16384);
            frames are decoded at the capped size (sce.data.video_processing.at_model_size).
            None: the processor's own limits only.
        scales: multi-scale keyframe windows ending at the event (paper 002: [6, 3, 1.5]); each
            record gives one item per scale, its keyframes sent as images. None: one window.
        keyframes: the fractions of a multi-scale window sampled as keyframes (paper 002: its
            start, middle and end).
        telemetry_anchor: where each frame's IMU block sits (sce.data.imu): "centered" on the
            frame (paper 000's window around the event), "causal" (the samples up to the frame,
            nothing after the last one), or "auto": causal exactly when the window ends at the
            event (multi-scale windows, or after = 0), so an anticipation prompt never sees the
            impact.
        channels: the per-frame inputs the model is given beside the frames (sce.data.channels):
            ["telemetry"] (paper 000: video and IMU/GPS) or [] (video only: papers 001, 002 and
            003, whose models never see the telemetry, even of a record that carries it).
        prompt: whose wording the prompt uses (sce.tasks.PromptName): "sce" (sce's system
            prompt and questions) or "paper002" (paper 002's prompt as written: no system turn,
            its analyst and scenario lines after the keyframes, its Task: and Note: lines; needs
            keyframe windows, `scales`, in the table layout).
    """

    fps: float = 3.0
    before: float = 4.0
    after: float = 2.0
    width: int = 420
    height: int = 240
    layout: Layout = "interleaved"
    mode: WindowMode = "event"
    max_frames: int | None = None
    max_pixels: int | None = None
    scales: tuple[float, ...] | None = None
    keyframes: tuple[float, ...] = (0.0, 0.5, 1.0)
    telemetry_anchor: TelemetryAnchor = "auto"
    channels: tuple[ChannelName, ...] = ("telemetry",)
    prompt: PromptName = "sce"

    def __post_init__(self) -> None:
        if self.scales is not None:  # a list from Python or a record: stored as the tuple it is
            object.__setattr__(self, "scales", tuple(float(x) for x in self.scales) or None)
        object.__setattr__(self, "keyframes", tuple(float(x) for x in self.keyframes))
        object.__setattr__(self, "channels", tuple(self.channels))
        self._check_choices()
        self._check_inputs()
        if self.mode == "whole":
            if self.max_frames is None or self.max_frames < 2 or self.max_frames % 2:
                raise ValueError(
                    "data.window.max_frames must be an even number >= 2 with "
                    "data.window.mode=whole (Qwen's temporal patch is 2; it bounds a long "
                    f"clip's frames), got {self.max_frames!r}"
                )
            if self.scales:
                raise ValueError(
                    "data.window.mode=whole cannot be combined with data.window.scales"
                )
        elif self.max_frames is not None:
            raise ValueError("data.window.max_frames applies to data.window.mode=whole only")
        if self.max_pixels is not None and self.max_pixels <= 0:
            raise ValueError(f"data.window.max_pixels must be positive, got {self.max_pixels}")
        if self.scales and any(not x > 0 for x in self.scales):
            raise ValueError(
                f"data.window.scales must be positive seconds, got {list(self.scales)}"
            )

    def _check_choices(self) -> None:
        for name, choices in (
            ("layout", LAYOUTS),
            ("mode", WINDOW_MODES),
            ("telemetry_anchor", TELEMETRY_ANCHORS),
        ):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"data.window.{name} must be one of {choices}, got {value!r}")

    def _check_inputs(self) -> None:
        unknown = [c for c in self.channels if c not in CHANNEL_NAMES]
        if unknown or len(set(self.channels)) != len(self.channels):
            raise ValueError(
                f"data.window.channels must be distinct names of {list(CHANNEL_NAMES)} "
                f"([] for video only), got {list(self.channels)}"
            )
        if self.prompt not in PROMPTS:
            raise ValueError(f"data.window.prompt must be one of {PROMPTS}, got {self.prompt!r}")
        if self.prompt == "paper002" and not (self.scales and self.layout == "table"):
            raise ValueError(
                "data.window.prompt=paper002 is paper 002's keyframe prompt: it needs "
                "data.window.scales (keyframe windows) and data.window.layout=table"
            )

    @property
    def telemetry(self) -> bool:
        """Whether the telemetry is one of the model's inputs (`channels`)."""
        return "telemetry" in self.channels

    @property
    def inputs(self) -> str:
        """The model's inputs in words: 'video + telemetry', 'video only'."""
        return " + ".join(("video", *self.channels)) if self.channels else "video only"

    @property
    def num_frames(self) -> int:
        """Frames of the event window; with mode "whole", the most a clip can get."""
        if self.mode == "whole":
            return int(self.max_frames)
        n = int(round((self.before + self.after) * self.fps))
        return n + (n % 2)

    @property
    def ends_at_event(self) -> bool:
        """The window stops at the event: multi-scale keyframe windows, or an event window
        with after = 0 (a whole-clip window covers the clip whatever `after` says)."""
        return bool(self.scales) or (self.mode == "event" and self.after == 0)

    @property
    def anchor(self) -> str:
        """The telemetry block anchor in effect ("centered" or "causal")."""
        if self.telemetry_anchor != "auto":
            return self.telemetry_anchor
        return "causal" if self.ends_at_event else "centered"

    def settings(self) -> dict[str, Any]:
        """The window as plain data (JSON / YAML ready: lists, not tuples)."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in asdict(self).items()
        }

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> WindowSpec:
        """The window of `settings` (from `settings()` or a record); missing keys take the
        defaults, unknown ones raise ValueError naming them."""
        unknown = set(settings) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown window setting(s) {sorted(unknown)}")
        return cls(**settings)


DEFAULT_WINDOW = WindowSpec()  # paper 000's window: what a setting left out means everywhere


@dataclass(frozen=True)
class ClipSpec(WindowSpec):
    """How one item's clip is loaded: its window (the `WindowSpec` fields), the decoder, and,
    for a multi-scale item, the one keyframe window it shows (`scale` s ending at the event,
    one of `scales`; paper 002). None: the event or whole-clip window."""

    decoder: video_lib.Backend = "decord"
    scale: float | None = None

    @classmethod
    def of(
        cls, window: WindowSpec, decoder: video_lib.Backend = "decord", scale: float | None = None
    ) -> ClipSpec:
        """The clip spec of `window` read with `decoder`, at keyframe window `scale`."""
        settings = {f.name: getattr(window, f.name) for f in fields(WindowSpec)}
        return cls(**settings, decoder=decoder, scale=scale)

    @property
    def window(self) -> WindowSpec:
        """The window alone (no decoder, no item scale)."""
        return WindowSpec(**{f.name: getattr(self, f.name) for f in fields(WindowSpec)})

    @property
    def ends_at_event(self) -> bool:
        if self.scale is not None:
            return True
        return self.mode == "event" and self.after == 0


@dataclass
class ClipInputs:
    frames: np.ndarray  # [T, H, W, 3] uint8
    frame_times: np.ndarray  # [T] s from the clip start
    telemetry: FrameTelemetry | None  # None when no usable IMU
    event_time: float
    event_time_source: str  # "manifest", "imu" or "center"
    imu_reason: str  # why telemetry is missing ("" when present)
    shifted: float  # seconds the window was shifted to stay inside the clip
    padded: float  # seconds of edge-frame padding
    fps: float = 0.0  # rate of the returned frames (the processor's temporal positions use it)
    # Seconds cut off the event window to fit a shorter record span (a 5 s chunk with a 6 s
    # window: 1 s); counted per batch as `window_shrunk` so a recipe's window never shrinks
    # silently.
    shrunk: float = 0.0
    # The frames are keyframes (paper 002): the prompt sends each as an image, not as a video.
    keyframes: bool = False
    # Why the GPS speed is missing ("" when usable), counted per batch as `gps_unavailable`.
    gps_reason: str = ""


def chunk_bounds(record: ClipRecord, duration: float) -> tuple[float, float]:
    """The span of the video this record covers: [0, duration], or a chunk's
    [metadata.clip_start, metadata.clip_end] (see sce.prepare.chunking)."""
    start = float(record.metadata.get("clip_start", 0.0))
    end = float(record.metadata.get("clip_end", duration))
    if not 0.0 <= start < end <= duration + 1e-3:
        raise ClipError(
            f"sample {record.id!r}: fields 'metadata.clip_start/clip_end' = [{start}, {end}] s "
            f"are not inside the video (0 to {duration:.3f} s)"
        )
    return start, min(end, duration)


def resolve_event_time(
    record: ClipRecord, duration: float, imu, offset: float = 0.0
) -> tuple[float, str]:
    """Manifest event time if given, else argmax |a_x| (paper 000), else the clip centre.

    Times are relative to the record's span; `offset` is the span's start in the video (chunks).
    The IMU peak is looked for inside the span only: a chunk after a collision must not find it.
    """
    if record.event_time is not None:
        if not 0.0 <= record.event_time <= duration + 1e-6:
            raise ClipError(
                f"sample {record.id!r}: field 'event_time' = {record.event_time:.3f} s is outside "
                f"the clip (0 to {duration:.3f} s, file {record.path('video')})"
            )
        return float(record.event_time), "manifest"
    if imu is not None:
        try:
            peak = imu_lib.event_time_from_imu(imu.between(offset, offset + duration)) - offset
            return float(np.clip(peak, 0.0, duration)), "imu"
        except imu_lib.ImuError:  # no finite a_x sample (all NaN): telemetry must not fail the clip
            pass
    return duration / 2.0, "center"


def load_record_imu(record: ClipRecord):
    """(Imu, "") or (None, why it is unavailable) for a record's IMU file."""
    path = record.path("imu")
    if path is None:
        return None, "no imu file in manifest"
    try:  # in the vehicle frame: a real device's mounting rotation applied (issue 16)
        return alignment_lib.align_record_imu(imu_lib.load_imu(path), record), ""
    except (ValueError, OSError) as err:  # ImuError, or UnicodeDecodeError for a binary file
        return None, f"imu unreadable: {err}"


def _load_gps(record: ClipRecord):
    """(Gps, "") or (None, why it is unavailable) for a record's GPS file."""
    path = record.path("gps")
    if path is None:
        return None, "no gps file in manifest"
    try:
        return imu_lib.load_gps(path), ""
    except (ValueError, OSError) as err:  # ImuError, or UnicodeDecodeError for a binary file
        return None, f"gps unreadable: {err}"


def load_image_sequence(record: ClipRecord, spec: WindowSpec) -> ClipInputs:
    """An image-sequence clip (`metadata.frames`, e.g. LingoQA): every image, resized, at
    `metadata.frames_fps` (default 1); the count is made even by repeating the last image."""
    from PIL import Image

    paths = record.frame_paths()  # data.allowed_roots checked as they open
    try:
        images = [Image.open(p).convert("RGB").resize((spec.width, spec.height)) for p in paths]
    except OSError as err:
        raise ClipError(f"sample {record.id!r}: field 'metadata.frames': {err}") from err
    frames = np.stack([np.asarray(im) for im in images])
    if len(frames) % 2:
        frames = np.concatenate([frames, frames[-1:]])
    fps = float(record.metadata.get("frames_fps", 1.0))
    times = np.arange(len(frames)) / fps
    return ClipInputs(
        frames=frames,
        frame_times=times,
        telemetry=None,
        event_time=float(times[len(times) // 2]),
        event_time_source="center",
        imu_reason="image sequence: no telemetry",
        gps_reason="image sequence: no telemetry",
        shifted=0.0,
        padded=0.0,
        fps=fps,
    )


@functools.cache
def plan_code_version() -> str:
    """Hash of the code that computes a window plan (this module, sce.data.windows, sce.data.imu,
    sce.data.video, sce.data.alignment).

    Part of every cached plan's key: after any change to the window, event-time or telemetry
    logic, plans cached by the older code are recomputed instead of silently reused (frames stay
    cached: their key does not include it).
    """
    digest = hashlib.sha256()
    for module in (sys.modules[__name__], windows_lib, imu_lib, video_lib, alignment_lib):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def load_clip(record: ClipRecord, spec: WindowSpec, cache=None) -> ClipInputs:
    """Frames of the event window and the telemetry synchronized to them.

    `spec` is a ClipSpec, or a WindowSpec read with the default decoder (no keyframe scale).

    Telemetry problems (missing file, long NaN gaps, short signal) do not fail the clip: the
    telemetry is None and `imu_reason` says why, so the caller can count it. Video problems
    raise ClipError naming the sample.

    With a FrameCache the decoded frames are cached per window, and the window plan (frame
    times, event time, synchronized telemetry) per record and window settings, so a cached clip
    neither opens the video nor parses the IMU/GPS files.
    """
    if record.metadata.get("frames"):
        return load_image_sequence(record, spec)
    spec = as_clip_spec(spec)
    clip = plan_window(record, spec) if cache is None else _cached_plan(record, spec, cache)
    clip.frames = _read_frames(record, record.path("video"), clip.frame_times, spec, cache)
    return clip


def as_clip_spec(spec: WindowSpec) -> ClipSpec:
    """`spec` itself when it is a ClipSpec, else its window read with the default decoder."""
    return spec if isinstance(spec, ClipSpec) else ClipSpec.of(spec)


def plan_window(record: ClipRecord, spec: WindowSpec) -> ClipInputs:
    """Everything of the clip but its pixels: frame times, event time and synchronized
    telemetry (`frames` is an empty placeholder)."""
    spec = as_clip_spec(spec)
    video_path = record.path("video")
    try:
        duration = video_lib.video_info(video_path)[0]
    except Exception as err:  # decoder errors come in many types
        raise ClipError(f"sample {record.id!r}: video {video_path} unreadable: {err}") from err
    start, end = chunk_bounds(record, duration)
    imu, imu_reason = load_record_imu(record)
    event_time, source = resolve_event_time(record, end - start, imu, offset=start)
    if spec.mode == "whole":
        window, times, fps = whole_clip_window(start, end, spec.fps, spec.max_frames)
    elif spec.scale is None:
        window = _event_window(record, end - start, event_time, spec)
        times = windows_lib.window_frame_times(window, spec.fps) + start
        fps = spec.fps
    else:
        window, times, fps = keyframe_window(event_time, end - start, spec.scale, spec.keyframes)
        times = times + start
    telemetry = None
    gps, gps_reason = _load_gps(record)
    if imu is not None:
        # the chunk's span bounds the telemetry as it bounds the frames
        try:
            synced = imu_lib.synchronize(
                imu, gps, times, fps, anchor=spec.anchor, span=(start, end)
            )
        except ValueError as err:  # an IMU slower than the frame rate: time stamps in ms?
            raise ClipError(
                f"sample {record.id!r}: file {record.path('imu')}: {err} (column 't' in ms? "
                "expected seconds from the clip start)"
            ) from err
        if gps is not None and synced.speed is None:
            gps_reason = f"gps unusable: {synced.gps_reason}"
        if synced.available:
            telemetry = FrameTelemetry(times, synced.accel, synced.yaw_delta, synced.speed)
        else:
            imu_reason = f"imu unusable: {synced.reason}"
    return ClipInputs(
        frames=np.empty((0, 0, 0, 3), dtype=np.uint8),
        frame_times=times,
        telemetry=telemetry,
        event_time=event_time + start,
        event_time_source=source,
        imu_reason=imu_reason,
        gps_reason=gps_reason,
        shifted=float(getattr(window, "shifted", 0.0)),
        padded=float(getattr(window, "padded_before", 0.0) + getattr(window, "padded_after", 0.0)),
        fps=fps,
        shrunk=float(getattr(window, "shrunk", 0.0)),
        keyframes=spec.scale is not None,
    )


def _event_window(
    record: ClipRecord, duration: float, event_time: float, spec: ClipSpec
) -> windows_lib.Window:
    """The [-before, +after] window inside the record's span (shrunk to an even frame count
    when the span is shorter, see `sce.data.windows.event_window`)."""
    try:
        return windows_lib.event_window(duration, event_time, spec.before, spec.after, fps=spec.fps)
    except windows_lib.WindowError as err:
        span = "metadata.clip_start/clip_end" if "clip_start" in record.metadata else "video"
        raise ClipError(
            f"sample {record.id!r}: field '{span}' (file {record.path('video')}): {err}"
        ) from err


def _cached_plan(record: ClipRecord, spec: ClipSpec, cache) -> ClipInputs:
    video = record.path("video")
    if not video.is_file():  # let the uncached path raise its error naming the sample
        return plan_window(record, spec)
    key = {
        "plan_code": plan_code_version(),
        "video": video,
        "imu": _file_key(record.path("imu")),
        "gps": _file_key(record.path("gps")),
        "event_time": record.event_time,
        "imu_rotation": record.metadata.get("imu_rotation"),
        "clip_start": record.metadata.get("clip_start"),
        "clip_end": record.metadata.get("clip_end"),
        "fps": spec.fps,
        "before": spec.before,
        "after": spec.after,
        "scale": spec.scale,
        "keyframes": list(spec.keyframes),
        "telemetry_anchor": spec.anchor,
        "window": spec.mode,
        "max_frames": spec.max_frames,
    }
    # An unreadable telemetry file (permissions) gives a plan without telemetry; not stored, so
    # fixing the permissions (which leaves mtime alone) brings the telemetry back.
    telemetry_files = [p for p in (record.path("imu"), record.path("gps")) if p and p.exists()]
    readable = all(os.access(p, os.R_OK) for p in telemetry_files)
    arrays = cache.get_or_compute_arrays(
        key, lambda: _plan_to_arrays(plan_window(record, spec)), store=readable
    )
    return _plan_from_arrays(arrays)


def _file_key(path: Path | None) -> Path | str | None:
    """A cache-key part for an optional file: its identity (path, mtime, size) when present."""
    if path is None:
        return None
    return path if path.is_file() else f"missing:{path}"


_PLAN_SCALARS = ("event_time", "shifted", "padded", "fps", "shrunk")
_PLAN_TEXTS = ("event_time_source", "imu_reason", "gps_reason")
_PLAN_FLAGS = ("keyframes",)


def _plan_to_arrays(clip: ClipInputs) -> dict[str, np.ndarray]:
    arrays = {"frame_times": np.asarray(clip.frame_times, dtype=np.float64)}
    arrays.update({name: np.float64(getattr(clip, name)) for name in _PLAN_SCALARS})
    arrays.update({name: np.str_(getattr(clip, name)) for name in _PLAN_TEXTS})
    arrays.update({name: np.bool_(getattr(clip, name)) for name in _PLAN_FLAGS})
    if clip.telemetry is not None:
        arrays["accel"] = clip.telemetry.accel
        arrays["yaw_delta"] = clip.telemetry.yaw_delta
        if clip.telemetry.speed is not None:
            arrays["speed"] = clip.telemetry.speed
    return arrays


def _plan_from_arrays(arrays: dict[str, np.ndarray]) -> ClipInputs:
    times = arrays["frame_times"]
    telemetry = None
    if "accel" in arrays:
        telemetry = FrameTelemetry(times, arrays["accel"], arrays["yaw_delta"], arrays.get("speed"))
    return ClipInputs(
        frames=np.empty((0, 0, 0, 3), dtype=np.uint8),
        frame_times=times,
        telemetry=telemetry,
        **{name: float(arrays[name]) for name in _PLAN_SCALARS},
        **{name: str(arrays[name]) for name in _PLAN_TEXTS},
        **{name: bool(arrays[name]) for name in _PLAN_FLAGS},
    )


def _driver_video(record: ClipRecord) -> Path | None:
    """The driver-facing video of a dual-view clip (`metadata.driver_video`, paper 003)."""
    path = record.path("metadata.driver_video")  # data.allowed_roots checked as it opens
    if path is None:
        return None
    if not path.is_file():
        raise ClipError(
            f"sample {record.id!r}: field 'metadata.driver_video': file not found: {path}"
        )
    return path


def _read_frames(record, video_path, times, spec: ClipSpec, cache) -> np.ndarray:
    size = (spec.width, spec.height)
    driver = _driver_video(record)

    def decode() -> np.ndarray:
        if driver is None:
            return video_lib.read_frames(video_path, times, size=size, backend=spec.decoder)
        # Dual view (paper 003): road on top, driver at the bottom, width x height overall.
        half = (spec.width, spec.height // 2)
        road = video_lib.read_frames(video_path, times, size=half, backend=spec.decoder)
        cabin = video_lib.read_frames(driver, times, size=half, backend=spec.decoder)
        return video_lib.stack_dual_view(road, cabin, size=size)

    try:
        if cache is None:
            return decode()
        # Path parts are keyed with mtime and size, so a re-encoded video invalidates its frames.
        key = cache.window_key(
            Path(video_path),
            times[0],
            times[-1],
            spec.fps,
            size,
            spec.decoder,
            driver=driver,
            scale=spec.scale,
            keyframes=list(spec.keyframes),
            # Every frame time: a change of sampling (e.g. keyframes no longer repeated) can
            # never be served stale frames of the same span.
            times=[float(t) for t in times],
            frame_rule=video_lib.FRAME_INDEX_RULE,
        )
        return cache.get_or_decode(key, decode)
    except Exception as err:
        raise ClipError(f"sample {record.id!r}: decoding {video_path} failed: {err}") from err
