"""Paper 003's chain-of-thought answers (issue 25, point 10): the events first (driver and road
events of the paper's taxonomy), then the instruction, two parts a parser separates, each scored
with BERTScore (paper: 0.897 event detection, 0.894 instruction)."""

from __future__ import annotations

import random

import pytest
from helpers.encoders import build_tiny_encoder

from sce.evaluate.summary import summarize
from sce.metrics.instruction import event_part, instruction_part
from sce.metrics.parsing import split_answer
from sce.tasks import INSTRUCTION, TaskSource
from sce.tasks.base import AnnotationError
from sce.tasks.instruction import DRIVING_EVENTS, InstructionAnswer

ADVICE = "Put the phone away and slow down before turning."
PHONE_TURN = {"driving_events": ["phone_use", "harsh_turn"], "instruction": ADVICE}


def test_the_taxonomy_holds_the_papers_driver_and_road_events():
    paper = {k: (e.view, e.words) for k, e in DRIVING_EVENTS.items() if e.origin == "paper 003"}
    assert paper == {
        "phone_use": ("driver", "mobile phone use"),
        "harsh_turn": ("road", "harsh turn"),
        "speeding_in_turn": ("road", "excessive speed during a turn"),
    }


def test_answer_gives_the_events_then_the_instruction_and_splits_back():
    item = INSTRUCTION.item(TaskSource("normal", PHONE_TURN), random.Random(0))
    assert item.answer == f"Events: mobile phone use; harsh turn.\nInstruction: {ADVICE}"
    assert split_answer(item.answer) == ("mobile phone use; harsh turn.", ADVICE)
    assert (event_part(item.answer), instruction_part(item.answer)) == split_answer(item.answer)
    assert INSTRUCTION.parse(item.answer) == InstructionAnswer(
        frozenset({"phone_use", "harsh_turn"}), ADVICE
    )
    # without structured events: the label's event, or none for normal driving
    crash = INSTRUCTION.item(TaskSource("collision", {"instruction": "Brake."}), random.Random(0))
    calm = INSTRUCTION.item(TaskSource("normal", {"instruction": "Go on."}), random.Random(0))
    assert crash.answer == "Events: collision.\nInstruction: Brake."
    assert calm.answer == "Events: no risky event.\nInstruction: Go on."
    assert INSTRUCTION.parse(calm.answer) == InstructionAnswer(frozenset(), "Go on.")
    # one part missing, or an event outside the taxonomy: unreadable
    assert INSTRUCTION.parse("Events: harsh turn.") is None
    assert INSTRUCTION.parse(f"Events: drifting.\nInstruction: {ADVICE}") is None


def test_events_annotation_is_checked():
    with pytest.raises(AnnotationError, match="annotations.driving_events.*'drifting'"):
        INSTRUCTION.check({"driving_events": ["drifting"], "instruction": ADVICE})
    with pytest.raises(AnnotationError, match="annotations.driving_events.*a list"):
        INSTRUCTION.check({"driving_events": "phone_use", "instruction": ADVICE})


def test_reward_splits_between_events_and_instruction():
    gold = INSTRUCTION.item(TaskSource("normal", PHONE_TURN), random.Random(0)).answer
    item = {"reference": gold, "label": "normal"}
    assert INSTRUCTION.reward(gold, item) == pytest.approx(1.0)
    half_events = f"Events: mobile phone use.\nInstruction: {ADVICE}"  # Jaccard 1/2
    assert INSTRUCTION.reward(half_events, item) == pytest.approx(0.2 + 0.8 * (0.25 + 0.5))


def test_event_part_bertscore_is_reported_beside_the_instructions(tmp_path):
    encoder = build_tiny_encoder(tmp_path / "bert")
    gold = "Events: collision.\nInstruction: the ego car brakes hard at the red light"
    wrong_events = "Events: near-collision.\nInstruction: the ego car brakes hard at the red light"
    base = {"task": "instruction", "label": "collision", "source": "s", "imu_on": True}
    items = [
        base | {"id": "a", "reference": gold, "prediction": gold},
        base | {"id": "b", "reference": gold, "prediction": wrong_events},
    ]
    scalars = summarize(items, bertscore_model=str(encoder)).scalars
    assert scalars["instruction/bertscore_f1"] == pytest.approx(1.0, abs=1e-5)  # same advice
    assert scalars["instruction/event_bertscore_f1"] < 1.0 - 1e-3  # one event part differs
    exact = summarize(items[:1], bertscore_model=str(encoder)).scalars
    assert exact["instruction/event_bertscore_f1"] == pytest.approx(1.0, abs=1e-5)


def test_reading_tasks_loads_no_torchmetrics():
    """The answer split lives in sce.metrics.parsing: importing the tasks (dataloader workers,
    `sce label`'s child processes) does not load the metric libraries (when it did, a labeling
    child took 3x as long to start)."""
    import subprocess
    import sys

    from helpers.paths import REPO

    code = "import sys, sce.tasks, sce.labeling.templates; sys.exit('torchmetrics' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
