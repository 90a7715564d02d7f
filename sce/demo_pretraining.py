"""Generic questions for the demo's warm-up: a stand-in for a VLM's pretraining (issue 17).

A real run starts from a pretrained VLM that already reads the prompt, the telemetry text and
the video; the demo's random tiny kit does not. Captions alone teach it little of that, and
low-rank adapters cannot steer a base that reads nothing. This module asks each synthetic clip
multiple-choice questions about what can be seen (weather, light, scene, road, the agent and its
colour) and read (the peak deceleration, whether the ego vehicle stops), all from the clip's
generator metadata, as `annotations.vqa`. It never asks the event question itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sce.data.schema import load_manifest, write_manifest
from sce.prepare.synthetic import AGENT_COLORS, AGENT_SIZES, LIGHTS, SCENES, WEATHERS

# (metadata field, question, options in letter order)
SEEN_QUESTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("weather", "What is the weather in this clip?", WEATHERS),
    ("light", "What is the light condition?", LIGHTS),
    ("scene", "Which kind of road scene is this?", SCENES),
    ("road", "Is the road dry or wet?", ("dry", "wet")),
    ("other_agent", "Which road user is ahead of the ego vehicle?", tuple(AGENT_SIZES)),
    ("agent_color", "What colour is the road user ahead?", tuple(AGENT_COLORS)),
)
DECEL_QUESTION = "What is the peak deceleration in the telemetry?"
DECEL_OPTIONS = ("under 2 m/s²", "2 to 7 m/s²", "over 7 m/s²")
STOP_QUESTION = "Does the ego vehicle come to a stop?"


def _letter(options: tuple[str, ...], value: str) -> str:
    return f"{chr(65 + options.index(value))}. {value}"


def _decel_option(peak_decel_ms2: float) -> str:
    magnitude = -peak_decel_ms2
    return DECEL_OPTIONS[0] if magnitude < 2 else DECEL_OPTIONS[1 + (magnitude > 7)]


def generic_vqa(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The generic questions a synthetic clip's metadata answers, as `annotations.vqa` items
    (question, lettered options, answer 'B. rain'); fields a clip lacks are skipped."""
    items = [
        {"question": q, "options": list(opts), "answer": _letter(opts, str(metadata[key]))}
        for key, q, opts in SEEN_QUESTIONS
        if metadata.get(key) in opts
    ]
    if "peak_decel_ms2" in metadata:
        option = _decel_option(float(metadata["peak_decel_ms2"]))
        items.append(
            {
                "question": DECEL_QUESTION,
                "options": list(DECEL_OPTIONS),
                "answer": _letter(DECEL_OPTIONS, option),
            }
        )
    if "ego_stopped" in metadata:
        answer = "yes" if metadata["ego_stopped"] else "no"
        opts = ("yes", "no")
        items.append(
            {"question": STOP_QUESTION, "options": list(opts), "answer": _letter(opts, answer)}
        )
    return items


def pretraining_manifest(manifest: Path, out: Path) -> Path:
    """A copy of `manifest` (written to `out`, in the same folder so relative paths hold) whose
    records also carry the generic questions as `annotations.vqa`."""
    records = load_manifest(manifest, check_files=False)
    for record in records:
        record.annotations = {**record.annotations, "vqa": generic_vqa(record.metadata)}
    return write_manifest(records, out)
