"""The event question (3-way, or yes/no for a binary-scope record), its answers and how an
answer is read in its record's label scope: shared by the mcq and reasoning tasks.

Each recipe asks the 3-way question in its paper's words (`data.event_wording`): the option
order and words are part of what a fine-tuned model learns, so they are an `EventWording`, not
free text. "sce" is sce's own wording (A collision, B near-collision, C normal driving);
"paper001" is paper 001's (VLM-AutoDrive, appendix A.3: A collides, B drives normally, C nearly
collides). A letter is read with the item's wording (`C` is normal driving in one and a
near-collision in the other); option words of any wording read as their class with every
wording (`read_event`, held by tests/tasks/test_tasks.py for every wording). Option
probabilities (`option_probs`) are kept in label order (LABELS) whatever the wording
(`label_order_probs`), so the alarm and log-likelihood metrics read them alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from string import ascii_uppercase
from typing import Any, Literal

from sce.common.labels import (
    BINARY_OPTION_LETTERS,
    BINARY_OPTION_TEXT,
    LABEL_TEXT,
    LABELS,
)
from sce.metrics.parsing import ParsedAnswer, parse_binary_event, parse_event_class


@dataclass(frozen=True)
class EventWording:
    """One wording of the 3-way event question: its stem, the options' words and order, and
    the line after the options. Answers are "<letter>. <option words>"."""

    name: str
    stem: str
    option_text: Mapping[str, str]  # label -> the option's words
    order: tuple[str, ...]  # labels in option order (letters A, B, C)
    closing: str = ""  # a line after the options ("" for none)

    @property
    def letters(self) -> dict[str, str]:
        """Option letter -> label, in option order."""
        return dict(zip(ascii_uppercase, self.order, strict=False))

    def letter(self, label: str) -> str:
        """The option letter of `label` in this wording."""
        return ascii_uppercase[self.order.index(label)]

    def question(self) -> str:
        lines = [self.stem, *(f"{self.letter(lab)}. {self.option_text[lab]}" for lab in self.order)]
        return "\n".join(lines + ([self.closing] if self.closing else []))

    def answer(self, label: str) -> str:
        return f"{self.letter(label)}. {self.option_text[label]}"


SCE_WORDING = EventWording(
    "sce", "Which event occurs in this clip?", LABEL_TEXT, LABELS, "Answer with the letter."
)
# Paper 001, appendix A.3 (the think-trace prompt, whose MCQ is the paper's event question).
PAPER001_WORDING = EventWording(
    "paper001",
    "In this video, the ego vehicle's dashcam captures a driving event. "
    "What type of driving event occurs?",
    {
        "collision": "The vehicle collides with another vehicle or object.",
        "normal": "The vehicle drives normally with no incident.",
        "near_collision": "The vehicle nearly collides but avoids an accident.",
    },
    ("collision", "normal", "near_collision"),
)
WORDINGS: dict[str, EventWording] = {w.name: w for w in (SCE_WORDING, PAPER001_WORDING)}
DEFAULT_WORDING = SCE_WORDING.name
# The names `data.event_wording` accepts (the `sce fit` parser reads them from the signature).
EventWordingName = Literal[tuple(WORDINGS)]  # type: ignore[valid-type]


def get_wording(name: str) -> EventWording:
    """The wording `name`; ValueError naming the known ones otherwise."""
    if name not in WORDINGS:
        raise ValueError(f"unknown event wording {name!r}; expected one of {tuple(WORDINGS)}")
    return WORDINGS[name]


def wording_of(item: Mapping[str, Any]) -> str:
    """The event wording an evaluated item was asked in (older items: sce's)."""
    return item.get("event_wording") or DEFAULT_WORDING


EVENT_QUESTION = SCE_WORDING.question()
BINARY_EVENT_QUESTION = (
    "Does a safety-critical event (a collision or a near-collision) occur in this clip?\n"
    + "\n".join(
        f"{letter}. {BINARY_OPTION_TEXT[label]}" for letter, label in BINARY_OPTION_LETTERS.items()
    )
    + "\nAnswer with the letter."
)


def mcq_answer(label: str, wording: str = DEFAULT_WORDING) -> str:
    """Answer to the event question, e.g. 'B. near-collision' (sce's wording)."""
    return get_wording(wording).answer(label)


def mcq_options(wording: str = DEFAULT_WORDING) -> list[str]:
    """All answers of the event question, in option order (for log-likelihood scoring)."""
    chosen = get_wording(wording)
    return [chosen.answer(label) for label in chosen.order]


def binary_answer(label: str) -> str:
    """Answer to the binary event question: 'A. yes' (event) or 'B. no' (normal)."""
    letter = {v: k for k, v in BINARY_OPTION_LETTERS.items()}[label]
    return f"{letter}. {BINARY_OPTION_TEXT[label]}"


def event_question(scope: str = "three_class", wording: str = DEFAULT_WORDING) -> str:
    """The event question a record of this label scope can answer, in `wording` (the binary
    question has one wording)."""
    return BINARY_EVENT_QUESTION if scope == "binary" else get_wording(wording).question()


def event_answer(label: str, scope: str = "three_class", wording: str = DEFAULT_WORDING) -> str:
    """The answer to `event_question(scope, wording)`; a label outside the scope raises
    ValueError (a binary record's "event" is never turned into a 3-class collision)."""
    options = BINARY_OPTION_LETTERS if scope == "binary" else get_wording(wording).letters
    if label not in options.values():
        raise ValueError(
            f"label {label!r} is not a {scope!r} label; expected one of {tuple(options.values())}"
        )
    return binary_answer(label) if scope == "binary" else mcq_answer(label, wording)


def read_event(
    text: str | None, scope: str = "three_class", wording: str = DEFAULT_WORDING
) -> ParsedAnswer:
    """An event answer read with the parser of its question's scope ("A. yes" / "B. no" for a
    binary-scope record, the 3-way classes otherwise, letters in `wording`'s order)."""
    if scope == "binary":
        return parse_binary_event(text)
    return parse_event_class(text, options=get_wording(wording).letters)


def label_order_probs(
    letter_probs: Sequence[float], scope: str = "three_class", wording: str = DEFAULT_WORDING
) -> list[float]:
    """Option-letter probabilities (A, B, C, ...) put in label order (LABELS: collision,
    near-collision, normal) for a 3-class item asked in `wording`; a binary item's letters are
    already in BINARY_LABELS order (A event, B normal) and come back as they are."""
    probs = [float(p) for p in letter_probs]
    if scope == "binary":
        return probs
    letters = get_wording(wording).letters
    by_label = {label: probs[k] for k, label in enumerate(letters.values()) if k < len(probs)}
    return [by_label[label] for label in LABELS if label in by_label] + probs[len(LABELS) :]
