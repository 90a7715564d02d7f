"""The teacher prompt of paper 000: frames interleaved with telemetry and the expert outputs M.

A teacher prompt is a system text plus an ordered list of parts (text or RGB frame). Backends turn
the parts into their own wire format (OpenAI content parts with JPEG data URLs, or a processor's
chat template). The user turn reads:

    clip header (window, frame rate, event time, telemetry legend)
    for every frame: "Frame k/T, t=... s (... s from the event): a=(...) m/s^2, heading ..., speed
                      ...; objects: car#3 at (0.42, 0.61), ..."  then the frame itself
                      (with the detector's boxes drawn on it when the metadata has detections)
    expert outputs M: crash detector, manoeuvre class, rule violations, tracked objects
                      (class, centroid, count)
    clip description: the metadata caption (`templates.structured_caption`: conditions and
                      telemetry peaks; its event sentence, which names the class, only with
                      `PromptOptions.reveal_label`) and, for the reasoning tasks, the scene
                      caption written by the teacher in the caption task
    the task instruction and its JSON answer format

Expert outputs come from the record's metadata (keys may sit under metadata["experts"] or at the
top level):
    crash_detected (bool), maneuver (str), violations (list of str),
    traffic_light_violation (bool), stop_sign_violation (bool or severity score),
    detections: list of {"t": seconds from the clip start, "class": str,
                         "box": [x1, y1, x2, y2] normalized to 0..1 (or "box_px" in pixels of the
                         source video), "track_id": int (optional), "score": float (optional)}
A detection is shown on the sampled frame nearest to its time, if within half a frame interval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sce.data.clip import DEFAULT_WINDOW
from sce.data.imu import FrameTelemetry
from sce.data.schema import ClipRecord
from sce.labeling.templates import TaskTemplate, structured_caption, structured_events


@dataclass
class TextPart:
    text: str


@dataclass
class ImagePart:
    image: np.ndarray  # uint8 [H, W, 3] RGB


@dataclass
class TeacherPrompt:
    """What a backend sends: a system text and the user turn as ordered text/image parts."""

    system: str
    parts: list[TextPart | ImagePart]

    @property
    def images(self) -> list[np.ndarray]:
        return [p.image for p in self.parts if isinstance(p, ImagePart)]

    @property
    def text(self) -> str:
        """The user turn's text with images as "<image>" (for logs and tests)."""
        return "".join(p.text if isinstance(p, TextPart) else "<image>" for p in self.parts)


@dataclass
class TeacherClipInputs:
    """Decoded inputs of one clip: the sampled frames and the telemetry synchronized to them.

    frames: uint8 [T, H, W, 3] (None when only text is needed); frame_times: [T] seconds from the
    clip start; telemetry: the student's per-frame telemetry (sce.data.imu.FrameTelemetry, the
    same values the student's prompt states), None when the IMU is unusable; event_time: seconds
    from the clip start; source_size: (W, H) of the source video, to scale pixel boxes; fps: the sampling
    rate; telemetry_reason: why there is no telemetry.
    """

    frame_times: np.ndarray
    frames: np.ndarray | None = None
    telemetry: FrameTelemetry | None = None
    event_time: float | None = None
    source_size: tuple[int, int] | None = None
    fps: float | None = None
    telemetry_reason: str = ""


@dataclass
class PromptOptions:
    """Switches of the teacher prompt.

    include_frames: None follows the template (uses_frames); draw_boxes: overlay detections on
    the frames; reveal_label: the metadata caption states the ground-truth event type (opt-in:
    paper 000's teacher sees video, telemetry and expert outputs only, and a revealed label puts
    the class into the reference captions the student is scored against); max_objects: objects
    listed per frame.
    """

    include_frames: bool | None = None
    draw_boxes: bool = True
    reveal_label: bool = False
    max_objects: int = 12


class LabelingInputError(ValueError):
    """A clip's inputs for labeling are unusable; the message names the clip and field."""


def load_clip_inputs(
    record: ClipRecord,
    fps: float = DEFAULT_WINDOW.fps,
    size: tuple[int, int] = (DEFAULT_WINDOW.width, DEFAULT_WINDOW.height),
    before: float = DEFAULT_WINDOW.before,
    after: float = DEFAULT_WINDOW.after,
    with_frames: bool = True,
    decoder: str = "decord",
) -> TeacherClipInputs:
    """The record's event window and synchronized telemetry, cut by `sce.data.clip.load_clip`
    (the same window, event time and telemetry as the student's dataset).

    with_frames=False drops the frames from the result (they are decoded all the same).
    Raises sce.data.clip.ClipError naming the sample for an unreadable video or a bad event time;
    unusable telemetry is not an error (telemetry None, `telemetry_reason` says why).
    """
    from sce.data.clip import ClipSpec, load_clip
    from sce.data.video import video_info

    spec = ClipSpec(
        fps=fps, before=before, after=after, width=size[0], height=size[1], decoder=decoder
    )
    clip = load_clip(record, spec)
    detections = _experts(record.metadata).get("detections") or []
    needs_size = any(isinstance(d, Mapping) and "box_px" in d for d in detections)
    return TeacherClipInputs(
        frame_times=np.asarray(clip.frame_times, dtype=float),
        frames=clip.frames if with_frames else None,
        telemetry=clip.telemetry,
        event_time=float(clip.event_time),
        source_size=tuple(video_info(record.path("video")).size) if needs_size else None,
        fps=fps,
        telemetry_reason=clip.imu_reason,
    )


# ---------------------------------------------------------------------------------------------
# Expert outputs M


@dataclass
class FrameObject:
    cls: str
    track_id: int | None
    box: tuple[float, float, float, float]  # normalized xyxy

    @property
    def centroid(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def name(self) -> str:
        return self.cls if self.track_id is None else f"{self.cls}#{self.track_id}"


def _experts(metadata: Mapping[str, Any]) -> dict[str, Any]:
    nested = metadata.get("experts")
    merged = dict(metadata)
    if isinstance(nested, Mapping):
        merged.update(nested)
    return merged


def _normalized_box(det: Mapping[str, Any], source_size: tuple[int, int] | None, where: str):
    if "box" in det:
        box = [float(v) for v in det["box"]]
    elif "box_px" in det:
        if source_size is None:
            raise LabelingInputError(f"{where}: field 'box_px' needs the source video size")
        w, h = source_size
        x1, y1, x2, y2 = (float(v) for v in det["box_px"])
        box = [x1 / w, y1 / h, x2 / w, y2 / h]
    else:
        raise LabelingInputError(f"{where}: a detection needs 'box' or 'box_px'")
    if len(box) != 4 or not all(np.isfinite(box)) or box[2] < box[0] or box[3] < box[1]:
        raise LabelingInputError(f"{where}: field 'box': expected finite x1<=x2, y1<=y2, got {box}")
    return tuple(min(max(v, 0.0), 1.0) for v in box)


def frame_objects(
    metadata: Mapping[str, Any],
    frame_times: np.ndarray,
    fps: float | None = None,
    source_size: tuple[int, int] | None = None,
    clip_id: str = "clip",
) -> list[list[FrameObject]]:
    """Detections of the metadata assigned to the nearest sampled frame (one list per frame)."""
    detections = _experts(metadata).get("detections") or []
    per_frame: list[list[FrameObject]] = [[] for _ in frame_times]
    if not len(frame_times):
        return per_frame
    step = 1.0 / fps if fps else (np.median(np.diff(frame_times)) if len(frame_times) > 1 else 1.0)
    for i, det in enumerate(detections):
        where = f"clip {clip_id!r} metadata.detections[{i}]"
        if not isinstance(det, Mapping) or "t" not in det:
            raise LabelingInputError(
                f"{where}: field 't': each detection needs its time in seconds"
            )
        k = int(np.argmin(np.abs(frame_times - float(det["t"]))))
        if abs(frame_times[k] - float(det["t"])) > step / 2 + 1e-6:
            continue  # between sampled frames: not on any frame the teacher sees
        cls = str(det.get("class", det.get("label", "object")))
        track = det.get("track_id")
        box = _normalized_box(det, source_size, where)
        per_frame[k].append(FrameObject(cls, None if track is None else int(track), box))
    return per_frame


def expert_summary(metadata: Mapping[str, Any], objects: Sequence[Sequence[FrameObject]]) -> str:
    """The text block of the expert outputs M (detectors, manoeuvre, violations, tracks)."""
    experts = _experts(metadata)
    lines = ["Outputs of the specialized models:"]
    crash = experts.get("crash_detected")
    if crash is not None:
        lines.append(f"- IMU crash detector: {'crash detected' if crash else 'no crash detected'}")
    maneuver = experts.get("maneuver", experts.get("manoeuvre"))
    if maneuver:
        lines.append(f"- harsh-manoeuvre classifier: {str(maneuver).replace('_', ' ')}")
    violations = [str(v).replace("_", " ") for v in experts.get("violations") or []]
    if experts.get("traffic_light_violation"):
        violations.append("traffic light violation")
    stop = experts.get("stop_sign_violation")
    if stop:
        score = "" if isinstance(stop, bool) else f" (severity {float(stop):.2f})"
        violations.append(f"stop sign violation{score}")
    if any(k in experts for k in ("violations", "traffic_light_violation", "stop_sign_violation")):
        lines.append("- violation detectors: " + (", ".join(violations) if violations else "none"))
    lines.extend(_track_lines(objects))
    return "\n".join(lines) if len(lines) > 1 else "Outputs of the specialized models: none."


def _track_lines(objects: Sequence[Sequence[FrameObject]]) -> list[str]:
    seen = [(k, o) for k, frame in enumerate(objects) for o in frame]
    if not seen:
        return []
    # Count distinct tracks per class; untracked detections count by their per-frame maximum.
    tracks: dict[tuple[str, int], list[tuple[int, FrameObject]]] = {}
    untracked: Counter[str] = Counter()
    for k, obj in seen:
        if obj.track_id is None:
            untracked[obj.cls] = max(
                untracked[obj.cls], sum(o.cls == obj.cls and o.track_id is None for o in objects[k])
            )
        else:
            tracks.setdefault((obj.cls, obj.track_id), []).append((k, obj))
    counts = Counter(cls for cls, _ in tracks) + untracked
    lines = [
        "- object detector, counts: " + ", ".join(f"{c} {n}" for c, n in sorted(counts.items()))
    ]
    for (cls, tid), hits in sorted(tracks.items(), key=lambda kv: kv[1][0][0]):
        (k0, first), (k1, last) = hits[0], hits[-1]
        lines.append(
            f"- track {cls}#{tid}: frames {k0 + 1}-{k1 + 1}, centroid "
            f"({first.centroid[0]:.2f}, {first.centroid[1]:.2f}) -> "
            f"({last.centroid[0]:.2f}, {last.centroid[1]:.2f})"
        )
    return lines


def draw_detections(frame: np.ndarray, objects: Sequence[FrameObject]) -> np.ndarray:
    """The frame with the objects' boxes and names drawn (torchvision draw_bounding_boxes)."""
    if not objects:
        return frame
    import torch
    from torchvision.utils import draw_bounding_boxes

    h, w = frame.shape[:2]
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    boxes = torch.tensor([o.box for o in objects], dtype=torch.float32) * scale
    image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
    drawn = draw_bounding_boxes(
        image, boxes, labels=[o.name for o in objects], colors="yellow", width=2
    )
    return drawn.permute(1, 2, 0).contiguous().numpy()


# ---------------------------------------------------------------------------------------------
# Telemetry text

TELEMETRY_LEGEND = (
    "Telemetry per frame, averaged over the frame interval: a = (a_x, a_y, a_z) acceleration in "
    "m/s^2 (a_x longitudinal, negative when braking; a_y lateral; a_z vertical), heading = yaw "
    "change since the previous frame in degrees, speed = GPS speed in m/s."
)


def frame_telemetry_text(telemetry: FrameTelemetry, k: int) -> str:
    """One frame's sensor text: 'a=(-6.50, +0.20, +9.80) m/s^2, heading +1.20 deg, speed 12.1'."""
    ax, ay, az = (float(v) for v in np.asarray(telemetry.accel)[k])
    heading = np.degrees(float(telemetry.yaw_delta[k]))
    text = f"a=({ax:+.2f}, {ay:+.2f}, {az:+.2f}) m/s^2, heading {heading:+.2f} deg"
    speed = telemetry.speed
    if speed is not None and np.isfinite(float(speed[k])):
        text += f", speed {float(speed[k]):.1f} m/s"
    return text


def _header(inputs: TeacherClipInputs, n_frames: int, with_frames: bool) -> str:
    times = inputs.frame_times
    fps = inputs.fps or (1.0 / float(np.median(np.diff(times))) if len(times) > 1 else None)
    lines = [
        f"Dashcam clip window t = {times[0]:.2f} s to {times[-1]:.2f} s, {n_frames} "
        + ("frames" if with_frames else "time steps")
        + (f" at {fps:g} fps." if fps else ".")
    ]
    if inputs.event_time is not None:
        lines.append(f"The candidate event time is t_e = {inputs.event_time:.2f} s.")
    if inputs.telemetry is not None:
        lines.append(TELEMETRY_LEGEND)
    else:
        reason = inputs.telemetry_reason or "no IMU data for this clip"
        lines.append(f"Telemetry: unavailable ({reason}).")
    return "\n".join(lines) + "\n"


def _frame_text(
    inputs: TeacherClipInputs, k: int, objects: Sequence[FrameObject], max_objects: int
) -> str:
    t = float(inputs.frame_times[k])
    rel = f" ({t - inputs.event_time:+.2f} s from t_e)" if inputs.event_time is not None else ""
    text = f"Frame {k + 1}/{len(inputs.frame_times)}, t = {t:.2f} s{rel}"
    if inputs.telemetry is not None:
        text += ": " + frame_telemetry_text(inputs.telemetry, k)
    if objects:
        shown = ", ".join(
            f"{o.name} at ({o.centroid[0]:.2f}, {o.centroid[1]:.2f})" for o in objects[:max_objects]
        )
        more = f" and {len(objects) - max_objects} more" if len(objects) > max_objects else ""
        text += f"; objects: {shown}{more}"
    return text + "\n"


def build_teacher_prompt(
    record: ClipRecord,
    inputs: TeacherClipInputs,
    template: TaskTemplate,
    options: PromptOptions | None = None,
    scene_caption: str | None = None,
) -> TeacherPrompt:
    """The teacher prompt of one clip for one task.

    Args:
        record: the clip (metadata, label).
        inputs: decoded frames, their times and the synchronized telemetry.
        template: the task template (system prompt, closing instruction).
        options: prompt switches.
        scene_caption: a free scene description (e.g. the teacher's own caption from the caption
            task) added next to the metadata caption, as paper 001 does for reasoning prompts.
    """
    options = options or PromptOptions()
    with_frames = template.uses_frames if options.include_frames is None else options.include_frames
    if with_frames and inputs.frames is None:
        raise LabelingInputError(
            f"clip {record.id!r}: task {template.task!r} needs frames, none decoded"
        )
    n = len(inputs.frame_times)
    if with_frames and len(inputs.frames) != n:
        raise LabelingInputError(
            f"clip {record.id!r}: {len(inputs.frames)} frames but {n} frame times"
        )
    objects = frame_objects(
        record.metadata, inputs.frame_times, inputs.fps, inputs.source_size, record.id
    )
    parts: list[TextPart | ImagePart] = [TextPart(_header(inputs, n, with_frames))]
    for k in range(n):
        parts.append(TextPart(_frame_text(inputs, k, objects[k], options.max_objects)))
        if with_frames:
            frame = inputs.frames[k]
            if options.draw_boxes and objects[k]:
                frame = draw_detections(frame, objects[k])
            parts.append(ImagePart(np.asarray(frame, dtype=np.uint8)))
    parts.append(TextPart("\n" + expert_summary(record.metadata, objects) + "\n"))
    caption = structured_caption(
        record.metadata,
        label=record.label if options.reveal_label else None,
        event_time=inputs.event_time,
        telemetry=inputs.telemetry,
    )
    context = f"\nWhat the clip shows: {caption}\n"
    if scene_caption:
        context += f"Scene description: {scene_caption}\n"
    if template.uses_events:
        context += structured_events(record.annotations, record.label, record.label_scope) + "\n"
    parts.append(TextPart(context))
    parts.append(TextPart("\n" + template.instruction))
    return TeacherPrompt(system=template.system, parts=_merge_text(parts))


def _merge_text(parts: list[TextPart | ImagePart]) -> list[TextPart | ImagePart]:
    merged: list[TextPart | ImagePart] = []
    for part in parts:
        if isinstance(part, TextPart) and merged and isinstance(merged[-1], TextPart):
            merged[-1] = TextPart(merged[-1].text + part.text)
        else:
            merged.append(part)
    return merged
