"""The event question (3-way, or yes/no for a binary-scope record), its answers and how an
answer is read in its record's label scope: shared by the mcq and reasoning tasks."""

from __future__ import annotations

from sce.common.labels import (
    BINARY_OPTION_LETTERS,
    BINARY_OPTION_TEXT,
    LABEL_TEXT,
    LETTER_OF_LABEL,
    OPTION_LETTERS,
)
from sce.metrics.parsing import ParsedAnswer, parse_binary_event, parse_event_class

EVENT_QUESTION = (
    "Which event occurs in this clip?\n"
    + "\n".join(f"{letter}. {LABEL_TEXT[label]}" for letter, label in OPTION_LETTERS.items())
    + "\nAnswer with the letter."
)
BINARY_EVENT_QUESTION = (
    "Does a safety-critical event (a collision or a near-collision) occur in this clip?\n"
    + "\n".join(
        f"{letter}. {BINARY_OPTION_TEXT[label]}" for letter, label in BINARY_OPTION_LETTERS.items()
    )
    + "\nAnswer with the letter."
)


def mcq_answer(label: str) -> str:
    """Answer to the event question, e.g. 'B. near-collision'."""
    return f"{LETTER_OF_LABEL[label]}. {LABEL_TEXT[label]}"


def mcq_options() -> list[str]:
    """All answers of the event question, in option order (for log-likelihood scoring)."""
    return [mcq_answer(label) for label in OPTION_LETTERS.values()]


def binary_answer(label: str) -> str:
    """Answer to the binary event question: 'A. yes' (event) or 'B. no' (normal)."""
    letter = {v: k for k, v in BINARY_OPTION_LETTERS.items()}[label]
    return f"{letter}. {BINARY_OPTION_TEXT[label]}"


def event_question(scope: str = "three_class") -> str:
    """The event question a record of this label scope can answer."""
    return BINARY_EVENT_QUESTION if scope == "binary" else EVENT_QUESTION


def event_answer(label: str, scope: str = "three_class") -> str:
    """The answer to `event_question(scope)`; a label outside the scope raises ValueError (a
    binary record's "event" is never turned into a 3-class collision)."""
    options = BINARY_OPTION_LETTERS if scope == "binary" else OPTION_LETTERS
    if label not in options.values():
        raise ValueError(
            f"label {label!r} is not a {scope!r} label; expected one of {tuple(options.values())}"
        )
    return binary_answer(label) if scope == "binary" else mcq_answer(label)


def read_event(text: str | None, scope: str = "three_class") -> ParsedAnswer:
    """An event answer read with the parser of its question's scope ("A. yes" / "B. no" for a
    binary-scope record, the 3-way classes otherwise)."""
    return parse_binary_event(text) if scope == "binary" else parse_event_class(text)
