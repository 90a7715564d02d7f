"""Answer parsing: letters, label words, free text, reasoning traces, probabilities, garbage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sce.common import labels
from sce.labeling.templates import TEACHER_EVENT_OPTIONS
from sce.metrics.parsing import (
    BINARY_OPTION_LETTERS,
    OPTION_LETTERS,
    ParsedAnswer,
    parse_binary_event,
    parse_event_class,
    parse_letter,
    parse_probability,
    split_reasoning,
)
from sce.tasks import events


def label(text: str | None, mode: str = "auto") -> str | None:
    return parse_event_class(text, mode).label


def test_one_label_definition_drives_the_prompts_and_the_parser():
    assert OPTION_LETTERS == {"A": "collision", "B": "near_collision", "C": "normal"}
    assert BINARY_OPTION_LETTERS == {"A": "event", "B": "normal"}
    # the parser, the prompts and the teacher use the sce.common.labels objects, not copies
    assert OPTION_LETTERS is labels.OPTION_LETTERS
    assert BINARY_OPTION_LETTERS is labels.BINARY_OPTION_LETTERS
    # the prompt's option lines are the letters and display names of sce.common.labels
    assert events.EVENT_QUESTION.splitlines()[1:4] == [
        "A. collision",
        "B. near-collision",
        "C. normal driving",
    ]
    assert events.BINARY_EVENT_QUESTION.splitlines()[1:3] == ["A. yes", "B. no"]
    assert [letter for letter, _, _ in TEACHER_EVENT_OPTIONS] == ["A", "B", "C"]
    assert [label for _, label, _ in TEACHER_EVENT_OPTIONS] == list(labels.LABELS)
    # each training target parses back to its own class, by letter and by the whole answer
    assert [events.mcq_answer(c) for c in labels.LABELS] == [
        "A. collision",
        "B. near-collision",
        "C. normal driving",
    ]
    for cls in labels.LABELS:
        assert label(events.mcq_answer(cls), mode="letter") == cls
        assert label(events.mcq_answer(cls)) == cls
        assert label(labels.LABEL_TEXT[cls], mode="strict") == cls  # the display name alone
    assert [events.binary_answer(c) for c in labels.BINARY_LABELS] == ["A. yes", "B. no"]
    for cls in labels.BINARY_LABELS:
        assert parse_binary_event(events.binary_answer(cls), "letter").label == cls
        assert parse_binary_event(events.binary_answer(cls)).label == cls
        assert parse_binary_event(labels.BINARY_OPTION_TEXT[cls]).label == cls  # "yes" / "no"


def _letter_label_maps(tree: ast.AST) -> list[int]:
    """Lines of dict literals that map an option letter to a label ({"A": "collision", ...})."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        and node.keys
        and all(
            isinstance(k, ast.Constant) and isinstance(k.value, str) and len(k.value) == 1
            for k in node.keys
        )
        and all(isinstance(v, ast.Constant) and v.value in labels.ALL_LABELS for v in node.values)
    ]


def test_labels_and_option_letters_are_defined_only_in_sce_labels():
    package = Path(labels.__file__).parent
    copies = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lines = _letter_label_maps(tree)
        lines += [  # a tuple literal of the three classes in their option order
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Tuple)
            and [getattr(e, "value", None) for e in node.elts] == list(labels.LABELS)
        ]
        if lines and path != Path(labels.__file__):
            copies[str(path.relative_to(package))] = lines
    assert copies == {}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A", "event"),
        ("(B)", "normal"),
        ("Yes, a near-collision.", "event"),
        ("no", "normal"),
        ("A. collision or near-collision", "event"),  # both event classes: one side
        ("The car hits the barrier.", "event"),
        ("Collision.", "event"),
        ("Neither a collision nor a near miss.", "normal"),
        ("<think>It brakes hard.</think>B. no", "normal"),
        ("A. yes, normal driving", None),  # contradicted
        ("B. no, the car hits a pole", None),
        ("C", None),  # not an option of the binary question
        ("", None),
    ],
)
def test_binary_event_answers(text: str, expected: str | None) -> None:
    assert parse_binary_event(text).label == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("B", "near_collision"),
        ("B.", "near_collision"),
        ("(B)", "near_collision"),
        ("b", "near_collision"),
        ("Answer: B", "near_collision"),
        ("**C**", "normal"),
        ("The answer is A because the car hits the barrier.", "collision"),
        ("A. collision", "collision"),
        ("B. near-collision", "near_collision"),
        ("C) normal driving", "normal"),
        ("<answer>C</answer>", "normal"),
        ("B\nThe ego vehicle stops just short of the van.", "near_collision"),
        ("b) near-collision", "near_collision"),
        ("(c) normal driving", "normal"),
    ],
)
def test_letters(text, expected):
    parsed = parse_event_class(text)
    assert parsed == ParsedAnswer(expected, True, parsed.reason)
    assert parsed.reason.startswith("letter")


@pytest.mark.parametrize(
    "text, reason_part",
    [
        ("D", "not one of the options"),
        ("A. near-collision", "contradicts"),  # letter and label disagree
        ("A. No collision.", "negated"),
        ("(A) or (B)", "several option letters"),
    ],
)
def test_bad_letters_are_invalid(text, reason_part):
    parsed = parse_event_class(text)
    assert not parsed.valid and parsed.label is None
    assert reason_part in parsed.reason


@pytest.mark.parametrize(
    "text, expected",
    [
        ("collision", "collision"),
        ("Crash", "collision"),
        ("near-collision", "near_collision"),
        ("near_collision", "near_collision"),
        ("Near collision", "near_collision"),
        ("near miss", "near_collision"),
        ("It was a close call.", "near_collision"),
        ("normal driving", "normal"),
        ("Normal", "normal"),
        ("No event.", "normal"),
        ("nothing unusual", "normal"),
        ("The answer is a collision", "collision"),  # the article is not option A
        ("Collision was narrowly avoided.", "near_collision"),
        ("The car avoided a collision.", "near_collision"),
    ],
)
def test_label_words(text, expected):
    assert label(text, mode="strict") == expected
    assert label(text) == expected


def test_near_collision_is_never_read_as_collision():
    for text in ("near-collision", "a near collision occurred", "near collisions", "Near-crash"):
        assert label(text) == "near_collision", text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("No collision.", "normal"),
        ("The collision did not occur.", "normal"),
        ("No collision or near-collision.", "normal"),
        ("Neither a collision nor a near miss.", "normal"),
        ("Normal driving, no collision.", "normal"),
        ("A collision, not a near miss.", "collision"),
        ("Not a collision, it was a near miss.", "near_collision"),
        ("Near-collision. No collision occurred.", "near_collision"),
        ("There was no near-miss; the ego car crashed into the wall.", "collision"),
    ],
)
def test_negations(text, expected):
    assert label(text) == expected


@pytest.mark.parametrize("text", ["No near-collision.", "Not normal.", "no near miss"])
def test_ambiguous_negations_are_invalid(text):
    parsed = parse_event_class(text)
    assert not parsed.valid
    assert "ambiguous negation" in parsed.reason


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The ego vehicle brakes hard and narrowly avoids the truck", "near_collision"),
        ("The ego vehicle almost hits a pedestrian crossing the road.", "near_collision"),
        ("There was no collision, but the ego vehicle nearly hit a cyclist.", "near_collision"),
        ("The ego car collides with a parked van.", "collision"),
        ("The ego vehicle rear-ended the car ahead at the light.", "collision"),
        ("The ego vehicle slams into the guardrail.", "collision"),
        ("U.S. 101: the ego car collides with a truck.", "collision"),  # "U." is no option letter
        ("e.g. a crash", "collision"),
        # weak cues decide only when nothing stronger is said
        ("The ego vehicle brakes hard and swerves to the right.", "near_collision"),
        ("The ego vehicle drives smoothly along the highway.", "normal"),
    ],
)
def test_free_text_cues(text, expected):
    assert label(text) == expected


def test_free_text_needs_auto_mode():
    text = "The ego car collides with a parked van."
    assert label(text) == "collision"
    assert not parse_event_class(text, mode="strict").valid
    assert not parse_event_class(text, mode="letter").valid
    assert parse_event_class("B. near-collision", mode="letter").label == "near_collision"


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "   ",
        "asdf qwerty",
        "I don't know.",
        "The weather is sunny.",
        "The driver hits the brakes and stops at the light.",  # "hits the brakes" is no impact
        "collision or near-collision",
        "Collision/near-collision",
        "Normal driving until the truck crashes into the ego vehicle",
        "Collision. The ego vehicle nearly hits the truck but stops.",  # answer vs its own text
    ],
)
def test_garbage_and_ambiguous_answers_are_invalid(text):
    parsed = parse_event_class(text)
    assert parsed.label is None and not parsed.valid and parsed.reason


def test_mode_is_checked():
    with pytest.raises(ValueError, match="mode"):
        parse_event_class("A", mode="fuzzy")


# ---------------------------------------------------------------------------- reasoning traces


def test_split_reasoning():
    assert split_reasoning("B. near-collision") == (None, "B. near-collision", True)
    assert split_reasoning("<think> brakes hard </think>\nB") == ("brakes hard", "B", True)
    # template put <think> in the prompt: only the closing tag is generated
    assert split_reasoning("the car swerves</think>B") == ("the car swerves", "B", True)
    assert split_reasoning("<think>a</think>x<think>b</think> C ") == (
        "a</think>x<think>b",
        "C",
        True,
    )
    assert split_reasoning("<think>the car is") == ("the car is", "", False)
    assert split_reasoning("<think>a</think>B<think>more") == ("a", "", False)


def test_reasoning_answers():
    closed = (
        "<think>The truck cuts in; the ego car brakes and stops 1 m short.</think>B. near-collision"
    )
    assert parse_event_class(closed) == ParsedAnswer("near_collision", True, "letter B")
    # the reasoning's own words never decide: only the answer after </think> counts
    assert label("<think>no collision at all, normal</think>A") == "collision"
    unclosed = parse_event_class("<think>The truck cuts in and the ego car")
    assert unclosed == ParsedAnswer(None, False, "unclosed <think> block")
    assert parse_event_class("<think>x</think>").reason == "empty answer after reasoning"


# ---------------------------------------------------------------------------- probabilities


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Collision Probability: 0.872", 0.872),
        ("collision probability = 87%", 0.87),
        ("Collision Probability: 0.87.", 0.87),
        ("Probability of collision is .25", 0.25),
        ("Collision Probability: 1", 1.0),
        ("0.3", 0.3),
        ("45 %", 0.45),
        ("<think>depth drops fast</think>Collision Probability: 0.10", 0.10),
        ("Collision Probability: 0.6 (Collision Probability: 0.6)", 0.6),
    ],
)
def test_parse_probability(text, expected):
    assert parse_probability(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "Collision Probability: 1.2",  # out of range: not clamped
        "Collision Probability: 87",  # no percent sign: out of range
        "Collision Probability: -0.1",
        "Collision Probability: 0.2, no wait, Collision Probability: 0.4",
        "high",
        "<think>Collision Probability: 0.3",
    ],
)
def test_parse_probability_invalid(text):
    assert parse_probability(text) is None


# ---------------------------------------------------------------------------- closed-QA letters


@pytest.mark.parametrize(
    "text, options, expected",
    [
        ("C", "ABCD", "C"),
        ("d)", "ABCD", "D"),
        ("<think>two lanes</think>The answer is (C).", "ABCD", "C"),
        ("Option B: a white truck", "ABCD", "B"),
        ("Answer: I think it is B", "ABCD", None),  # "I" is not a letter; "it is B" is not said
        ("B or C", "ABCD", None),
        ("(B) and (C)", "ABCD", None),
        ("E", "ABCD", None),
        ("E", "ABCDE", "E"),
        ("<think>(A)", "ABCD", None),
        (None, "ABCD", None),
    ],
)
def test_parse_letter(text, options, expected):
    assert parse_letter(text, options) == expected
