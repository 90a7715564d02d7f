"""Teacher-style annotations of a synthetic clip, written from its label, metadata and event time
so that every student task has data: paper 000's open and closed QA pairs (`annotations.qa`),
paper 001's reasoning VQA (`annotations.reasoning_vqa`) and its metadata-derived caption
(`annotations.structured_caption`, through `sce label`'s own rule-based template).

Nothing here draws a random number: the clip's generator (scenario, IMU, GPS, pictures) is left
exactly as before, so the clips, their captions and the demo's training are unchanged. The
answers are what the scenario made happen, the way a teacher that saw it would state them.
"""

from __future__ import annotations

from typing import Any

from sce.labeling.templates import structured_caption
from sce.tasks import QA_FIELD, REASONING_VQA_FIELD, STRUCTURED_CAPTION_FIELD

OPTION_LETTERS = "ABCD"


def _agent(meta: dict[str, Any]) -> str:
    return f"the {meta['agent_color']} {meta['other_agent']}"


def _reaction(label: str, meta: dict[str, Any], event_time: float) -> str:
    """What the ego vehicle does about the agent: the answer of the open event question."""
    agent = _agent(meta)
    if label == "collision":
        side = meta["impact_side"]
        return (
            f"It cannot stop in time and hits {agent} at {event_time:.1f} s ({side} impact), "
            f"braking at {meta['peak_decel_ms2']:.1f} m/s²."
        )
    if label == "near_collision":
        return (
            f"It avoids {agent} by {meta['evasive_action']} at {event_time:.1f} s and keeps a "
            f"gap of {meta['min_distance_m']:.1f} m."
        )
    return f"It keeps following {agent} at about {meta['lead_distance_m']:.0f} m; nothing forces a reaction."


def _why(label: str, meta: dict[str, Any]) -> str:
    """Why the clip is (or is not) safety-critical: the answer of the open cause question."""
    agent = _agent(meta)
    if label == "collision":
        return f"The gap to {agent} closes faster than the ego vehicle can brake, so they collide."
    if label == "near_collision":
        who = (
            f"{agent} crossing from the {meta['crossing_from']}" if meta["crossing_from"] else agent
        )
        return f"The ego vehicle closes in on {who}; only the hard reaction prevents contact."
    return f"The distance to {agent} stays steady and no braking beyond normal driving occurs."


def make_qa(label: str, meta: dict[str, Any], event_time: float) -> list[dict[str, str]]:
    """Paper 000's teacher QA of a clip: open questions about the event and its cause, closed
    ones about the static scene answered by one word or yes/no (`annotations.qa`)."""
    agent = meta["other_agent"]
    return [
        {"type": "open", "question": f"How does the ego vehicle react to the {agent}?",
         "answer": _reaction(label, meta, event_time)},
        {"type": "open", "question": "Why is this clip safety-critical or not?",
         "answer": _why(label, meta)},
        {"type": "closed", "question": "What is the weather?", "answer": meta["weather"]},
        {"type": "closed", "question": "Is it night?",
         "answer": "yes" if meta["light"] == "night" else "no"},
        {"type": "closed", "question": "Which road user is ahead of the ego vehicle?",
         "answer": agent},
        {"type": "closed", "question": f"What colour is the {agent}?",
         "answer": meta["agent_color"]},
    ]  # fmt: skip


def _intentions(label: str, meta: dict[str, Any]) -> tuple[list[str], int]:
    """The four intentions (the first three one per class) and the index of the clip's."""
    agent = _agent(meta)
    options = [
        f"To hold a steady distance behind {agent}, with nothing forcing a reaction",
        f"To avoid {agent} by {meta['evasive_action'] or 'hard braking'}, which succeeds",
        f"To stop in time for {agent}, which fails: the vehicles collide",
        f"To overtake {agent} on the left",
    ]
    return options, {"normal": 0, "near_collision": 1, "collision": 2}[label]


def make_reasoning_vqa(label: str, meta: dict[str, Any], event_time: float) -> dict[str, Any]:
    """Paper 001's reasoning VQA of a clip (its Fig. A.2: a goal-and-intention question with four
    options, the answer's letter and the reasoning steps). The options rotate by the clip's
    initial speed, so the right letter varies over clips without a random draw."""
    options, right = _intentions(label, meta)
    shift = int(round(meta["initial_speed_kmh"] * 10)) % len(options)
    order = options[shift:] + options[:shift]
    reasons = [
        f"The {meta['other_agent']} ahead is {meta['agent_color']}, on a {meta['road']} "
        f"{meta['scene']} road.",
        f"The strongest longitudinal acceleration is {meta['peak_accel_ms2']:+.1f} m/s² "
        f"around {event_time:.1f} s.",
        _why(label, meta),
    ]
    return {
        "question": f"What is the ego driver trying to do around {event_time:.1f} s, and does it work?",
        "options": order,
        "answer": OPTION_LETTERS[order.index(options[right])],
        "reasons": reasons,
    }


def teacher_annotations(label: str, meta: dict[str, Any], event_time: float) -> dict[str, Any]:
    """The clip's teacher-style annotations beside its caption: QA pairs, reasoning VQA and the
    metadata caption (`sce label`'s rule-based template, which states the label)."""
    return {
        STRUCTURED_CAPTION_FIELD: structured_caption(meta, label, event_time),
        QA_FIELD: make_qa(label, meta, event_time),
        REASONING_VQA_FIELD: make_reasoning_vqa(label, meta, event_time),
    }
