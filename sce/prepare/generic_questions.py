"""Generic questions for the demo's warm-up: a stand-in for a VLM's pretraining (issue 17).

A real run starts from a pretrained VLM that already reads the prompt, the telemetry text and
the video; the demo's random tiny kit does not. Captions alone teach it little of that, and
low-rank adapters cannot steer a base that reads nothing. This module asks each synthetic clip
multiple-choice questions about what can be seen (weather, light, scene, road, the agent and its
colour) and read (the peak deceleration, whether the ego vehicle stops), all from the clip's
generator metadata, as `annotations.vqa`, plus read-back questions ("Which option is listed as
B?") over phrases of the project's vocabulary, the label names among them. It never asks the
event question itself, and no answer depends on the clip's label.

Why read-back: a pretrained base can already write every word of its vocabulary. The random
kit's output rows for words its warm-up never writes are pushed down by every softmax step, and
frozen rows cannot be steered back by low-rank adapters: after a captions-only warm-up the
answer tokens " near" and "-collision" cost 8.2 and 10.7 nats, and DoRA's event-question
validation loss stopped at 1.76 at every learning rate tried (1e-3, 5e-3, 2e-2).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from sce.common.labels import LABEL_TEXT, LABELS
from sce.data.schema import load_manifest, write_manifest
from sce.prepare.synthetic import AGENT_COLORS, AGENT_SIZES, LIGHTS, SCENES, WEATHERS
from sce.tasks import VQA_FIELD

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
# Read-back: the phrases a pretrained base can write (every option above and the label names).
READ_BACK_PHRASES: tuple[str, ...] = tuple(
    dict.fromkeys(
        [phrase for _, _, options in SEEN_QUESTIONS for phrase in options]
        + [LABEL_TEXT[label] for label in LABELS]
    )
)
READ_BACK_QUESTION = "Which option is listed as {letter}?"
READ_BACK_ITEMS = 4  # per clip
READ_BACK_OPTIONS = 3


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


def read_back_vqa(rng: random.Random) -> list[dict[str, Any]]:
    """READ_BACK_ITEMS questions that ask which phrase an option letter lists, each over
    READ_BACK_OPTIONS phrases drawn by `rng` (seeded by the clip's id, never by its label)."""
    items = []
    for _ in range(READ_BACK_ITEMS):
        options = tuple(rng.sample(READ_BACK_PHRASES, READ_BACK_OPTIONS))
        answer = _letter(options, options[rng.randrange(READ_BACK_OPTIONS)])
        question = READ_BACK_QUESTION.format(letter=answer[0])
        items.append({"question": question, "options": list(options), "answer": answer})
    return items


def pretraining_manifest(manifest: Path, out: Path) -> Path:
    """A copy of `manifest` (written to `out`, in the same folder so relative paths hold) whose
    records also carry the generic and read-back questions as `annotations.vqa`."""
    records = load_manifest(manifest, check_files=False)
    for record in records:
        questions = generic_vqa(record.metadata) + read_back_vqa(random.Random(record.id))
        record.annotations = {**record.annotations, VQA_FIELD: questions}
    return write_manifest(records, out)
