"""The demo's generic warm-up questions (issue 17): what a clip shows and its telemetry reads,
taken from the generator's metadata, never the event question."""

from __future__ import annotations

import json

from sce.common.labels import LABEL_TEXT, LABELS
from sce.data.schema import load_manifest
from sce.prepare.generic_questions import (
    READ_BACK_PHRASES,
    generic_vqa,
    pretraining_manifest,
    read_back_vqa,
)
from sce.studies.demo import DemoConfig
from sce.tasks import available_tasks
from sce.tasks.events import EVENT_QUESTION

META = {
    "weather": "rain",
    "light": "night",
    "scene": "urban",
    "road": "wet",
    "other_agent": "truck",
    "agent_color": "teal",
    "peak_decel_ms2": -9.7,
    "ego_stopped": True,
}


def test_generic_questions_answer_from_the_metadata():
    answers = [item["answer"] for item in generic_vqa(META)]
    assert answers == [
        "B. rain",
        "C. night",
        "A. urban",
        "B. wet",
        "B. truck",
        "E. teal",
        "C. over 7 m/s²",
        "A. yes",
    ]
    assert generic_vqa({**META, "peak_decel_ms2": -0.4})[6]["answer"] == "A. under 2 m/s²"
    assert generic_vqa({**META, "peak_decel_ms2": -4.8})[6]["answer"] == "B. 2 to 7 m/s²"


def test_generic_questions_never_ask_the_event():
    for item in generic_vqa(META):
        assert item["question"] != EVENT_QUESTION
        assert "collision" not in item["question"] + item["answer"]


def test_pretraining_manifest_adds_vqa_and_keeps_the_rest(tmp_path):
    record = {
        "id": "c0",
        "video": "videos/c0.mp4",
        "label": "collision",
        "source": "synthetic",
        "split": "train",
        "metadata": META,
        "annotations": {"caption": "A truck."},
    }
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps(record) + "\n")
    out = pretraining_manifest(manifest, tmp_path / "pretraining_manifest.jsonl")
    (copy,) = load_manifest(out, check_files=False)
    assert copy.annotations["caption"] == "A truck."
    assert len(copy.annotations["vqa"]) == 8 + 4  # generic + read-back
    assert copy.annotations["vqa"][:8] == generic_vqa(META)
    assert "vqa" in available_tasks(copy.label, copy.annotations)
    # no question depends on the label: the same clip labelled normal gets the same questions
    manifest.write_text(json.dumps({**record, "label": "normal"}) + "\n")
    (normal,) = load_manifest(
        pretraining_manifest(manifest, tmp_path / "p2.jsonl"), check_files=False
    )
    assert normal.annotations["vqa"] == copy.annotations["vqa"]


def test_read_back_asks_which_phrase_a_letter_lists():
    import random

    items = read_back_vqa(random.Random("c0"))
    assert len(items) == 4
    for item in items:
        letter = item["question"].removeprefix("Which option is listed as ").removesuffix("?")
        options = item["options"]
        assert len(options) == len(set(options)) == 3
        assert item["answer"] == f"{letter}. {options[ord(letter) - 65]}"
        assert item["question"] != EVENT_QUESTION
    # the pool holds every label name, so the kit can write them as a pretrained base can
    assert {LABEL_TEXT[label] for label in LABELS} <= set(READ_BACK_PHRASES)
    assert read_back_vqa(random.Random("c0")) == items  # seeded by the clip id


def test_default_warm_up_stays_captions_only():
    assert DemoConfig().warmup_task_weights == {"caption": 1.0}
