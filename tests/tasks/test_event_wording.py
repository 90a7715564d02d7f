"""Each recipe asks the 3-way event question in its paper's words (issue 25, point 6): paper 001's
question as written (appendix A.3, its option order and words), sce's elsewhere; answers are read
in the item's wording, and option words of any wording read as their class."""

from __future__ import annotations

import random
import re

import pytest
from helpers.paths import REPO

from sce.common.labels import LABELS
from sce.tasks import MCQ, REASONING, TaskSource
from sce.tasks.events import (
    WORDINGS,
    event_answer,
    event_question,
    get_wording,
    label_order_probs,
    read_event,
)
from sce.tasks.scoring import event_probability, likelihood_metrics

PAPER001 = REPO.parent / "shared" / "papers" / "001_8744e2c966d5292e.txt"
# Paper 001, appendix A.3, as printed (its options are a markdown list there).
PAPER001_QUESTION = (
    "In this video, the ego vehicle's dashcam captures a driving event. "
    "What type of driving event occurs?\n"
    "A. The vehicle collides with another vehicle or object.\n"
    "B. The vehicle drives normally with no incident.\n"
    "C. The vehicle nearly collides but avoids an accident."
)


def test_paper001_question_is_the_papers_string():
    assert event_question(wording="paper001") == PAPER001_QUESTION
    if PAPER001.is_file():  # the paper's own lines (options printed as "- A. ...")
        text = PAPER001.read_text()
        for line in PAPER001_QUESTION.splitlines():
            assert re.search(rf"^(- )?{re.escape(line)}$", text, re.MULTILINE), line


def test_near_collision_is_letter_c_in_paper001_and_b_in_sce():
    source = TaskSource("near_collision", wording="paper001")
    item = MCQ.item(source, random.Random(0))
    assert item.question == PAPER001_QUESTION
    assert item.answer == "C. The vehicle nearly collides but avoids an accident."
    assert MCQ.item(TaskSource("near_collision"), random.Random(0)).answer == "B. near-collision"
    assert [get_wording("paper001").letter(lab) for lab in LABELS] == ["A", "C", "B"]
    # reasoning mode asks the same wording (the paper's think-trace prompt is this MCQ)
    think = REASONING.item(source, random.Random(0))
    assert think.question.startswith(PAPER001_QUESTION)
    assert think.answer.endswith(item.answer)


@pytest.mark.parametrize("wording", sorted(WORDINGS))
@pytest.mark.parametrize("label", LABELS)
def test_every_wording_round_trips(wording, label):
    answer = event_answer(label, wording=wording)
    letter, words = answer.split(". ", 1)
    assert read_event(answer, wording=wording).label == label  # letter and words
    assert read_event(letter, wording=wording).label == label  # the letter alone
    for other in WORDINGS:  # the option words alone, read with any wording
        assert read_event(words, wording=other).label == label, (words, other)
    assert MCQ.parse(answer, "three_class", wording) == label
    item = {"label": label, "label_scope": "three_class", "event_wording": wording}
    assert MCQ.reward(answer, item | {"reference": answer}) == pytest.approx(1.0)


def test_a_letter_is_read_in_its_items_wording():
    # "C" is normal driving in sce's wording and a near-collision in paper 001's
    assert read_event("C", wording="sce").label == "normal"
    assert read_event("C", wording="paper001").label == "near_collision"
    # paper 001's answer read with sce's letters contradicts its own words: invalid, not normal
    said = read_event("C. The vehicle nearly collides but avoids an accident.", wording="sce")
    assert not said.valid and "contradicts" in said.reason
    with pytest.raises(ValueError, match="unknown event wording 'paper9'"):
        event_question(wording="paper9")


def test_option_probabilities_are_kept_in_label_order():
    # letters A, B, C of paper 001 = collision, normal, near-collision
    assert label_order_probs([0.1, 0.2, 0.7], "three_class", "paper001") == [0.1, 0.7, 0.2]
    assert label_order_probs([0.1, 0.2, 0.7], "three_class", "sce") == [0.1, 0.2, 0.7]
    assert label_order_probs([0.6, 0.3, 0.1], "binary", "paper001") == [0.6, 0.3, 0.1]
    item = {"label": "near_collision", "label_scope": "three_class", "imu_on": True}
    item |= {"source": "s", "option_probs": [0.1, 0.7, 0.2]}
    assert event_probability(item) == pytest.approx(0.8)  # P(collision) + P(near-collision)
    normal = item | {"label": "normal", "option_probs": [0.1, 0.2, 0.7]}
    assert likelihood_metrics([item, normal])["ll/acc"] == 1.0
