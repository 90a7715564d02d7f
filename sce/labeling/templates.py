"""Metadata-to-text captions and the versioned teacher task templates.

Two kinds of text live here:

* `structured_caption`: a deterministic caption built from a clip's metadata (weather, light,
  scene, road, agents, impact sides, blame, ego motion) and its telemetry peaks, the way paper 001
  turns Nexar metadata into "metadata-derived captions". No model is involved.
* `TaskTemplate`s: the instructions sent to the teacher for each generation task. They follow
  paper 000 (a system prompt that asks for an SCE-focused description plus questions) and the
  appendix prompts of paper 001 (understanding VQA, reasoning VQA, think traces for the 3-way
  event MCQ), reworded. Every template carries a version; results are keyed by
  (clip id, task, version), so editing a template means bumping its version, and a re-run then
  labels every clip again with the new wording while keeping the old results on disk.

Recognized metadata keys (all optional; aliases in parentheses):
    weather, light (lighting, time_of_day), scene (scene_type, location_type),
    road (road_condition, road_surface), road_type, traffic (traffic_density),
    other_agent (other_agents, agents): a string, a list of strings, or a list of
        {"type", "motion", "impact_side", "role"} objects,
    other_motion, impact_side (ego_impact_side), other_impact_side, blame (fault),
    ego_motion (ego_action), vru_action (pedestrian_action), evasive_action, crossing_from,
    agent_color, min_distance_m (min_distance),
    peak_decel (peak_decel_ms2) / peak_accel (peak_accel_ms2) in m/s^2, heading_change_deg,
    speed_at_event (m/s) / ego_speed_kmh: used when no telemetry is given.
(The keys of sce.prepare.synthetic's metadata are covered.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sce.common.labels import OPTION_LETTERS
from sce.data.imu import FrameTelemetry
from sce.data.schema import ALL_LABELS
from sce.tasks import (
    CAPTION,
    INSTRUCTION,
    REASONING,
    REASONING_VQA,
    STRUCTURED_CAPTION,
    VQA,
    TaskSource,
)
from sce.tasks.instruction import DRIVING_EVENTS, EVENTS_FIELD, clip_events

# The 3-way event question of paper 001 as the teacher is asked it, with the student's letters
# (sce.common.labels.OPTION_LETTERS), so a kept think trace and the answer the dataset appends to it
# agree. Paper 001 orders the options collision / normal / near-collision; the order carries no
# meaning. The teacher's options describe each event in a sentence (the student's name it).
_OPTION_TEXT: dict[str, str] = {
    "collision": "The ego vehicle hits another vehicle, a person or an object.",
    "near_collision": "The ego vehicle almost hits something but the impact is avoided.",
    "normal": "The ego vehicle keeps driving normally and nothing happens.",
}
TEACHER_EVENT_QUESTION = (
    "The dashcam of the ego vehicle records a driving event in this clip. "
    "Which kind of event takes place?"
)
# (letter, label, option sentence) of the teacher's event question, in option order.
TEACHER_EVENT_OPTIONS: tuple[tuple[str, str, str], ...] = tuple(
    (letter, label, _OPTION_TEXT[label]) for letter, label in OPTION_LETTERS.items()
)

_ALIASES: dict[str, tuple[str, ...]] = {
    "weather": ("weather",),
    "light": ("light", "lighting", "time_of_day"),
    "scene": ("scene", "scene_type", "location_type"),
    "road": ("road", "road_condition", "road_surface"),
    "road_type": ("road_type",),
    "traffic": ("traffic", "traffic_density"),
    "other_agent": ("other_agent", "other_agents", "agents"),
    "other_motion": ("other_motion",),
    "impact_side": ("impact_side", "ego_impact_side"),
    "other_impact_side": ("other_impact_side",),
    "blame": ("blame", "fault"),
    "ego_motion": ("ego_motion", "ego_action"),
    "vru_action": ("vru_action", "pedestrian_action"),
    "evasive_action": ("evasive_action",),
    "crossing_from": ("crossing_from",),
    "agent_color": ("agent_color",),
    "ego_speed_kmh": ("ego_speed_kmh",),
    "min_distance_m": ("min_distance_m", "min_distance"),
    "peak_decel": ("peak_decel", "peak_decel_ms2"),
    "peak_accel": ("peak_accel", "peak_accel_ms2"),
    "heading_change_deg": ("heading_change_deg",),
}

_BLAME_PHRASES: dict[str, str] = {
    "ego": "the ego driver is responsible for the incident",
    "ego_vehicle": "the ego driver is responsible for the incident",
    "other": "the other road user is responsible for the incident",
    "third_party": "the other road user is responsible for the incident",
    "other_vehicle": "the other road user is responsible for the incident",
    "road": "the road conditions are the main cause of the incident",
    "shared": "the responsibility is shared between the ego driver and the other road user",
}


def meta_value(metadata: Mapping[str, Any], key: str) -> Any:
    """The first non-empty value among the aliases of a canonical metadata key (None if absent)."""
    for name in _ALIASES.get(key, (key,)):
        value = metadata.get(name)
        if value not in (None, "", [], "unknown", "none", "n/a"):
            return value
    return None


def _text(value: Any) -> str:
    return str(value).replace("_", " ").strip()


def _agents(metadata: Mapping[str, Any]) -> list[dict[str, str]]:
    """Other agents as dicts with type/motion/impact_side/role (strings), in metadata order."""
    raw = meta_value(metadata, "other_agent")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    agents = []
    for item in items:
        if isinstance(item, Mapping):
            agent = {
                k: _text(item[k]) for k in ("type", "motion", "impact_side", "role") if item.get(k)
            }
            if "type" not in agent and item.get("class"):
                agent["type"] = _text(item["class"])
        else:
            agent = {"type": _text(item)}
        agents.append(agent)
    if agents:  # top-level keys describe the first (main) agent
        main = agents[0]
        for key, name in (("other_motion", "motion"), ("other_impact_side", "impact_side")):
            if meta_value(metadata, key) is not None and name not in main:
                main[name] = _text(meta_value(metadata, key))
        crossing = meta_value(metadata, "crossing_from")
        if crossing is not None and "motion" not in main:
            main["motion"] = f"crossing from the {_text(crossing)}"
        color = meta_value(metadata, "agent_color")
        if color is not None and "type" in main:
            main["type"] = f"{_text(color)} {main['type']}"
    return agents


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def telemetry_peaks(
    telemetry: FrameTelemetry | None, event_time: float | None = None
) -> dict[str, float]:
    """Peaks of a clip's per-frame telemetry (None: no usable IMU), in SI units.

    Returns any of: peak_long_accel (signed m/s^2 with the largest |a_x|) and its time
    peak_long_time (s), peak_lat_accel (largest |a_y|), heading_change_deg (sum of yaw deltas),
    speed_start / speed_end / speed_at_event (m/s). Missing signals are left out.
    """
    if telemetry is None:
        return {}
    peaks: dict[str, float] = {}
    times = np.asarray(telemetry.frame_times, dtype=float)
    accel = telemetry.accel
    if len(accel):
        accel = np.asarray(accel, dtype=float)
        k = int(np.nanargmax(np.abs(accel[:, 0])))
        peaks["peak_long_accel"] = float(accel[k, 0])
        peaks["peak_long_time"] = float(times[k])
        peaks["peak_lat_accel"] = float(np.nanmax(np.abs(accel[:, 1])))
    yaw = telemetry.yaw_delta
    if len(yaw):
        peaks["heading_change_deg"] = float(np.degrees(np.nansum(np.asarray(yaw, dtype=float))))
    speed = telemetry.speed
    if speed is not None and len(speed):
        speed = np.asarray(speed, dtype=float)
        peaks["speed_start"] = float(speed[0])
        peaks["speed_end"] = float(speed[-1])
        if event_time is not None:
            peaks["speed_at_event"] = float(speed[int(np.argmin(np.abs(times - event_time)))])
    return peaks


_WEATHER = {"rain": "rainy", "snow": "snowy", "fog": "foggy", "sun": "sunny", "cloud": "cloudy"}
_LIGHT = {
    "day": "it is daytime",
    "daylight": "it is daytime",
    "night": "it is night",
    "dusk": "it is dusk",
    "dawn": "it is dawn",
}


def _conditions_sentence(metadata: Mapping[str, Any]) -> str | None:
    scene, road_type = meta_value(metadata, "scene"), meta_value(metadata, "road_type")
    road, weather = meta_value(metadata, "road"), meta_value(metadata, "weather")
    light, traffic = meta_value(metadata, "light"), meta_value(metadata, "traffic")
    where = []
    if road_type is not None or road is not None:
        surface = f"{_text(road)} " if road is not None else ""
        kind = _text(road_type) if road_type is not None else "road"
        where.append(f"on {_article(surface + kind)}")
    if scene is not None:
        where.append(f"in {_article(_text(scene))} setting")
    if traffic is not None:
        where.append(f"with {_text(traffic)} traffic")
    when = []
    if weather is not None:
        text = _text(weather)
        when.append(f"the weather is {_WEATHER.get(text.lower(), text)}")
    if light is not None:
        text = _text(light)
        when.append(_LIGHT.get(text.lower(), f"the light is {text}"))
    if not where and not when:
        return None
    sentence = (
        "The ego vehicle is driving " + " ".join(where) if where else "The ego vehicle is driving"
    )
    if when:
        sentence += "; " + " and ".join(when)
    return sentence + "."


def _event_sentences(
    metadata: Mapping[str, Any], label: str, event_time: float | None
) -> list[str]:
    ego_motion = meta_value(metadata, "ego_motion")
    agents = _agents(metadata)
    at = f" at about t = {event_time:.1f} s" if event_time is not None else ""
    while_ego = f", while {_text(ego_motion)}," if ego_motion is not None else ""
    main = agents[0] if agents else {}
    other = _article(main.get("type", "road user"))
    if main.get("motion"):
        other += f" that is {main['motion']}"
    out = []
    if label == "collision":
        out.append(
            f"A collision happens{at}: the ego vehicle{while_ego} makes contact with {other}."
        )
        side, other_side = meta_value(metadata, "impact_side"), main.get("impact_side")
        if side is not None:
            out.append(f"The ego vehicle is struck on its {_text(side)} side.")
        if other_side:
            out.append(
                f"The {main.get('type', 'other road user')} is struck on its {other_side} side."
            )
    elif label == "event":  # a binary-scope record (Nexar): collision or near-collision, no more
        out.append(
            f"A collision or a near-collision happens{at}: the ego vehicle{while_ego} comes "
            f"dangerously close to or into contact with {other}."
        )
    elif label == "near_collision":
        evasive = meta_value(metadata, "evasive_action")
        how = f" thanks to {_text(evasive)}" if evasive is not None else ""
        out.append(
            f"A near-collision happens{at}: the ego vehicle{while_ego} comes dangerously close "
            f"to {other}, but no contact is made{how}."
        )
        gap = meta_value(metadata, "min_distance_m")
        if gap is not None:
            out.append(f"The smallest gap between them is {float(gap):.1f} m.")
    else:
        motion = f" ({_text(ego_motion)})" if ego_motion is not None else ""
        out.append(f"The ego vehicle drives normally{motion} and no incident takes place.")
        if agents:
            out.append(f"Nearby there is {other}.")
    for agent in agents[1:]:
        extra = _article(agent.get("type", "road user"))
        if agent.get("motion"):
            extra += f" that is {agent['motion']}"
        out.append(f"Also involved: {extra}.")
    vru = meta_value(metadata, "vru_action")
    if vru is not None:
        out.append(f"A pedestrian or cyclist is {_text(vru)}.")
    blame = meta_value(metadata, "blame")
    if blame is not None and label != "normal":
        key = str(blame).lower().replace(" ", "_").replace("-", "_")
        phrase = _BLAME_PHRASES.get(key, f"responsibility: {_text(blame)}")
        out.append(phrase[0].upper() + phrase[1:] + ".")
    return out


def _telemetry_sentences(metadata: Mapping[str, Any], peaks: Mapping[str, float]) -> list[str]:
    out = []
    long_accel = peaks.get("peak_long_accel")
    if long_accel is None:  # fall back to peaks stored in the metadata
        decel, accel = meta_value(metadata, "peak_decel"), meta_value(metadata, "peak_accel")
        long_accel = -abs(float(decel)) if decel is not None else accel
    if long_accel is not None:
        kind = "deceleration" if long_accel < 0 else "acceleration"
        when = f" at t = {peaks['peak_long_time']:.1f} s" if "peak_long_time" in peaks else ""
        out.append(f"The strongest longitudinal {kind} is {float(long_accel):+.1f} m/s^2{when}.")
    heading = peaks.get("heading_change_deg", meta_value(metadata, "heading_change_deg"))
    if heading is not None:
        out.append(f"The heading changes by {float(heading):+.0f} degrees over the clip.")
    if "speed_start" in peaks:
        out.append(
            f"The speed goes from {peaks['speed_start']:.1f} m/s to {peaks['speed_end']:.1f} m/s."
        )
    speed_event = peaks.get("speed_at_event", metadata.get("speed_at_event"))
    if speed_event is not None:
        out.append(f"At the moment of the event the speed is {float(speed_event):.1f} m/s.")
    elif meta_value(metadata, "ego_speed_kmh") is not None:
        kmh = float(meta_value(metadata, "ego_speed_kmh"))
        out.append(f"At the moment of the event the speed is {kmh:.0f} km/h.")
    return out


def structured_caption(
    metadata: Mapping[str, Any],
    label: str | None = None,
    event_time: float | None = None,
    telemetry: FrameTelemetry | None = None,
) -> str:
    """A caption built programmatically from a clip's metadata (paper 001's detailed captions).

    Args:
        metadata: the record's metadata (keys in the module docstring; unknown keys are ignored).
        label: the ground-truth event label; when given, the caption states the event type.
        event_time: seconds from the clip start of the event, mentioned in the event sentence.
        telemetry: the per-frame telemetry (None: no usable IMU); its peaks (braking, heading, speed) are added.
    """
    if label is not None and label not in ALL_LABELS:
        raise ValueError(
            f"structured_caption: unknown label {label!r}; expected one of {ALL_LABELS}"
        )
    sentences = []
    conditions = _conditions_sentence(metadata)
    if conditions:
        sentences.append(conditions)
    if label is not None:
        sentences.extend(_event_sentences(metadata, label, event_time))
    sentences.extend(_telemetry_sentences(metadata, telemetry_peaks(telemetry, event_time)))
    if not sentences:
        return "No metadata is available for this clip."
    return " ".join(sentences)


@dataclass(frozen=True)
class TaskTemplate:
    """One versioned teacher task.

    task: the task name (also the results key); version: bump it whenever the text changes;
    system: the system prompt; instruction: the text closing the user prompt (what to produce
    and in which JSON form); uses_frames: whether the frames are sent (paper 001 prompts an LLM
    with text only; paper 000 sends the frames); uses_events: the prompt lists the clip's
    structured events (`structured_events`, paper 003's annotations).
    """

    task: str
    version: str
    system: str
    instruction: str
    uses_frames: bool = True
    uses_events: bool = False  # the prompt states the clip's structured events (paper 003)

    @property
    def key(self) -> str:
        return f"{self.task}/{self.version}"


_OBSERVE_NOTE = (
    "Write as someone who watches the footage: state responsibility, surroundings and impact "
    "areas as things seen in the video; never mention metadata, expert models, 'blame "
    "assessment' or the fact that a description was supplied."
)

CAPTION_V1 = TaskTemplate(
    task=CAPTION.name,
    version="v1",
    system=(
        "You are an expert analyst of dashcam footage and vehicle telemetry. You receive the frames "
        "of a short clip recorded by a windshield camera, the acceleration, heading change and speed "
        "synchronized with every frame, and the outputs of specialized detectors (crash detector, "
        "manoeuvre classifier, traffic-rule violation detectors, object tracker). Describe the scene "
        "and, above all, the safety-critical event if there is one: how it develops over time, which "
        "road users take part, what the ego vehicle does, and how the telemetry confirms it. If "
        "nothing dangerous happens, say so plainly. Then write questions about the clip with their "
        "answers: open-ended ones about the event and its causes, and closed-ended ones about the "
        "static scene whose answer is a single word or yes/no. Use only what the inputs support."
    ),
    instruction=(
        "Reply with one JSON object and nothing else, of the form\n"
        '{"caption": "<4 to 8 sentences focused on the safety-critical event>", '
        '"questions": [{"type": "open", "question": "...", "answer": "..."}, '
        '{"type": "closed", "question": "...", "answer": "..."}]}\n'
        "Give 3 to 8 questions, at least one open and one closed."
    ),
)

VQA_V1 = TaskTemplate(
    task=VQA.name,
    version="v1",
    system=(
        "You are a visual assistant watching one dashcam video. Together with the video you get a "
        "detailed description of what it shows; treat that content as what you see yourself and ask "
        "about it as a viewer would. Your job is to write multiple-choice questions, each with its "
        "options and the single correct answer, that show a thorough understanding of the clip: "
        "actions, context, causes, responsibility and surroundings. Stay faithful to the video and "
        "the description and never add facts that are not there. " + _OBSERVE_NOTE
    ),
    instruction=(
        "Write 5 to 7 question/options/answer triplets, each about a different dimension, chosen "
        "among: weather, visibility and light; road and surroundings; how the ego vehicle and other "
        "vehicles move; which sides of the vehicles are hit; who or what is responsible (driver, "
        "road, another party); what pedestrians or cyclists do; kinds and roles of the vehicles; "
        "scene context such as traffic density or type of area.\n"
        "One question is compulsory: it asks whether the clip shows a collision, a near collision or "
        "normal driving, and its options or answer should hint at the visual reason (contact, hard "
        'braking, an evasive swerve, ...). Give that question the dimension "event_type".\n'
        "Each question has 3 or 4 options; exactly one is right and the answer is its letter. Do not "
        "reuse the wording of the description; rephrase it as an observation.\n"
        "Reply with one JSON object and nothing else, of the form\n"
        '{"items": [{"dimension": "<dimension>", "question": "<question>", '
        '"options": ["<option A>", "<option B>", "<option C>", "<option D>"], "answer": "<A/B/C/D>"}]}'
    ),
)

REASONING_VQA_V1 = TaskTemplate(
    task=REASONING_VQA.name,
    version="v1",
    system=(
        "You are a strong reasoning model looking at a video from the dashcam of a vehicle. From "
        "what you observe, write one hard multiple-choice question that can only be answered by "
        "chaining several inference steps and by analysing the clip carefully. The question is "
        "about the goals and intentions of the road users and must centre on the driving event. "
        + _OBSERVE_NOTE
    ),
    instruction=(
        "Give four options (A to D), the letter of the right one, and the reasoning steps that lead "
        "to it, as many as needed (at least three).\n"
        "Reply with one JSON object and nothing else, of the form\n"
        '{"question": "<question>", "options": ["<A>", "<B>", "<C>", "<D>"], '
        '"answer": "<A/B/C/D>", "reasons": ["<step 1>", "<step 2>", "<step 3>"]}'
    ),
)

_EVENT_MCQ = (
    TEACHER_EVENT_QUESTION
    + "\n"
    + "\n".join(f"{letter}. {text}" for letter, _, text in TEACHER_EVENT_OPTIONS)
)

REASONING_V1 = TaskTemplate(
    task=REASONING.name,
    version="v1",
    system=(
        "You are a strong reasoning model watching a video from the dashcam of a vehicle; decide "
        "which type of driving event it shows. Think step by step about what happens, then commit "
        "to one option; in your reasoning name the event types in words, not by their letters. "
        + _OBSERVE_NOTE
    ),
    instruction=(
        "Answer this question as someone watching the video:\n"
        + _EVENT_MCQ
        + "\nReply with one JSON object and nothing else, of the form\n"
        '{"think": "<your step-by-step reasoning>", "answer": "<A/B/C>"}'
    ),
)


def structured_events(annotations: Mapping[str, Any], label: str, scope: str) -> str:
    """The structured annotation paper 003's gold answers are written from: the clip's events
    (`annotations.driving_events`, else its label's event), each with the camera that shows
    it, and the taxonomy's other names; for the teacher's prompt."""
    events = clip_events(TaskSource(label, annotations, scope))
    listed = [f"{e} ({DRIVING_EVENTS[e].view} camera: {DRIVING_EVENTS[e].words})" for e in events]
    return (
        f"Annotated events ({EVENTS_FIELD}): {', '.join(listed) or 'none (good driving)'}.\n"
        f"Event names: {', '.join(DRIVING_EVENTS)}."
    )


# Paper 003: GPT-4o writes chain-of-thought gold answers (the events, then the instruction)
# from the dataset's structured annotations, and experts review them. The clip is a dual-view
# video (road camera on top, driver camera below).
INSTRUCTION_V1 = TaskTemplate(
    task=INSTRUCTION.name,
    version="v1",
    system=(
        "You are a driving instructor reviewing a dual-view recording: the road camera on top, "
        "the driver camera below. From the annotated events of the clip, first state which "
        "driver and road events occur, then give the driver one short instruction for driving "
        "safely that addresses them. If no event is annotated, say the driving is good and give "
        "a short encouraging instruction. Use only the annotated events. " + _OBSERVE_NOTE
    ),
    instruction=(
        "Reply with one JSON object and nothing else, of the form\n"
        '{"events": ["<event name>", ...], "instruction": "<one or two sentences>"}\n'
        "List the annotated events by their event names, in the order given ([] for none)."
    ),
    uses_frames=False,
    uses_events=True,
)

# Task name -> version -> template. The newest version of a task is its default.
TEMPLATES: dict[str, dict[str, TaskTemplate]] = {
    t.task: {t.version: t}
    for t in (CAPTION_V1, VQA_V1, REASONING_VQA_V1, REASONING_V1, INSTRUCTION_V1)
}
# Tasks computed locally from metadata; they need no teacher.
LOCAL_TASKS: dict[str, str] = {STRUCTURED_CAPTION.name: "v1"}
TASKS: tuple[str, ...] = (STRUCTURED_CAPTION.name, *TEMPLATES)
# Tasks whose answers are written knowing the label whatever `--reveal-label` says: the metadata
# caption states it, and a template listing the clip's structured events states the label's
# event among them (paper 003 writes its answers from those annotations by design).
LABEL_STATED: frozenset[str] = frozenset(LOCAL_TASKS) | {
    t.task for versions in TEMPLATES.values() for t in versions.values() if t.uses_events
}


def get_template(task: str, version: str | None = None) -> TaskTemplate:
    """The template of `task` at `version` (default: the newest one)."""
    if task not in TEMPLATES:
        raise KeyError(f"unknown teacher task {task!r}; expected one of {tuple(TEMPLATES)}")
    versions = TEMPLATES[task]
    if version is None:
        return versions[sorted(versions)[-1]]
    if version not in versions:
        raise KeyError(
            f"task {task!r} has no template version {version!r}; have {sorted(versions)}"
        )
    return versions[version]


def task_version(task: str, versions: Mapping[str, str] | None = None) -> str:
    """The template version a run uses for `task` (local tasks included)."""
    wanted = (versions or {}).get(task)
    if task in LOCAL_TASKS:
        if wanted not in (None, LOCAL_TASKS[task]):
            raise KeyError(f"task {task!r} has no version {wanted!r}; have {LOCAL_TASKS[task]!r}")
        return LOCAL_TASKS[task]
    return get_template(task, wanted).version


def parse_tasks(spec: str | Sequence[str]) -> list[str]:
    """Task names from "caption,vqa" or a list, validated and de-duplicated in order."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        if name not in TASKS:
            raise ValueError(f"unknown labeling task {name!r}; expected some of {TASKS}")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("no labeling task given")
    return out
