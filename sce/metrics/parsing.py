"""Turn generated answers into event classes, option letters and probabilities.

Nothing unparseable is ever mapped to a class silently: every answer comes back as a
`ParsedAnswer` with `valid=False` and a `reason` when it cannot be read unambiguously, and the
metrics count those as wrong (see `sce.metrics.classification`).

Event answers are read in this order (`mode="auto"`):

1. a closed `<think>...</think>` block is dropped (an unclosed one makes the answer invalid) and
   `<answer>...</answer>` tags, when present, are unwrapped;
2. an explicit answer: an option letter ("B", "B.", "(B)", "Answer: B", "B. near-collision")
   or a leading bare label ("Near-collision. The ego vehicle ...");
3. label words and synonyms anywhere in the text, with negation ("no collision");
4. free-text cues ("narrowly avoids", "collides with", "hits"), then weak cues (hard braking,
   swerving, driving smoothly) only when nothing stronger is found.

An explicit answer wins unless the rest of the text decisively names another class (then the
answer is contradictory and invalid). Two classes named positively, or a class both asserted and
negated, are ambiguous and invalid.

Negation: a negated class is ruled out. When nothing is asserted, the classes left after ruling
out are used if exactly one remains ("neither a collision nor a near miss" -> normal). A bare
"no collision" (only collision ruled out) reads as normal driving: that is what a model means
when it answers the event question with it, and the answer is still wrong for a near-collision
clip. A bare "no near-collision" or "not normal" leaves two classes and is invalid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sce.common.labels import BINARY_OPTION_LETTERS, BINARY_OPTION_TEXT, LABELS, OPTION_LETTERS

MODES: tuple[str, ...] = ("auto", "strict", "letter")


@dataclass(frozen=True)
class ParsedAnswer:
    """An event answer read from generated text; `label` is None exactly when `valid` is False."""

    label: str | None
    valid: bool
    reason: str


def _invalid(reason: str) -> ParsedAnswer:
    return ParsedAnswer(None, False, reason)


# ---------------------------------------------------------------------------- reasoning traces

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)


def split_reasoning(text: str) -> tuple[str | None, str, bool]:
    """Split a reasoning answer into (think, answer, valid).

    The answer is what follows the last `</think>`. A `</think>` without an opening tag is
    accepted (chat templates often put `<think>` in the prompt). A `<think>` that is never closed
    gives `valid=False` and an empty answer. Without tags: `(None, text, True)`.
    """
    closes = list(_THINK_CLOSE.finditer(text))
    opens = list(_THINK_OPEN.finditer(text))
    if not closes:
        if opens:
            return text[opens[0].end() :].strip(), "", False
        return None, _unwrap_answer(text), True
    last = closes[-1]
    start = opens[0].end() if opens and opens[0].start() < last.start() else 0
    think = text[start : last.start()].strip()
    if opens and opens[-1].start() > last.start():  # a new block opened after the last close
        return think, "", False
    return think, _unwrap_answer(text[last.end() :]), True


def reasoning_mode_answer(text: str | None) -> str | None:
    """The final answer of a reasoning-mode response (paper 001 Table 9): the text after the
    closing `</think>`, or None when there is no closed think block (unclosed, or no trace at
    all). The think trace itself is never read for the answer."""
    if not isinstance(text, str) or not _THINK_CLOSE.search(text):
        return None
    _, answer, valid = split_reasoning(text)
    return answer if valid else None


def _unwrap_answer(answer: str) -> str:
    tagged = _ANSWER_TAG.search(answer)
    return (tagged.group(1) if tagged else answer).strip()


# ---------------------------------------------------------------------------- option letters

_MARKDOWN = re.compile(r"[*`#]+")
_LETTER_PATTERNS: tuple[re.Pattern[str], ...] = (
    # the whole answer is one letter: "B", "b", "B.", "(B)", "[b]"
    re.compile(r"^[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:)]?$"),
    # a leading letter with punctuation: "B. near-collision", "B) ...", "(b) ...", "B: ...",
    # "B - ...", "B" alone on the first line, "b) ..." (not "U.S. ..." nor "e.g. ...")
    re.compile(
        r"^\s*(?:[(\[]([A-Za-z])[)\]]|([A-Z])(?:[.:)\]](?=\s|$)|[ \t]*\n|\s+[-\u2013\u2014]\s)"
        r"|([a-z])[.)](?=\s))"
    ),
    # "Answer: B", "the answer is (B)", "option C", "final answer: A." (letter must be upper case,
    # so that "the answer is a collision" does not read the article as option A; "Answer: I think"
    # is not option I)
    re.compile(
        r"(?i:answer|option|choice)\s*(?:(?i:is|would be|should be)\s*)?[:=]?\s*"
        r"(?:(?i:option)\s*)?[(\[]?((?!I\s+[a-z]|I')[A-Z])(?![A-Za-z0-9'])"
    ),
    # a parenthesised capital anywhere: "... so (B)."
    re.compile(r"(?<![A-Za-z])\(([A-Z])\)"),
)


def _clean(text: str) -> str:
    return _MARKDOWN.sub("", text).replace("\u2019", "'").strip()


def _letter_candidates(answer: str) -> set[str]:
    found: set[str] = set()
    for pattern in _LETTER_PATTERNS:
        for match in pattern.finditer(answer):
            found.update(g.upper() for g in match.groups() if g)
    return found


def _find_letter(answer: str, options: Sequence[str]) -> tuple[str | None, str]:
    """(letter, reason); letter None with an empty reason when the answer names no letter."""
    letters = _letter_candidates(answer)
    if not letters:
        return None, ""
    if len(letters) > 1:
        return None, f"several option letters: {', '.join(sorted(letters))}"
    letter = letters.pop()
    if letter not in options:
        return None, f"letter {letter} is not one of the options {''.join(options)}"
    return letter, f"letter {letter}"


def parse_letter(text: str | None, options: str | Sequence[str] = "ABCD") -> str | None:
    """The option letter a closed-QA answer picks (upper case), or None when there is no single
    valid letter (none, several, not an option, or an unclosed think block)."""
    if not isinstance(text, str):
        return None
    _, answer, valid = split_reasoning(text)
    if not valid:
        return None
    letter, _ = _find_letter(_clean(answer), [o.upper() for o in options])
    return letter


# ---------------------------------------------------------------------------- label phrases

_COLL, _NEAR, _NORM = LABELS

_HIT = (
    r"(?:collid\w*|hit|hits|hitting|crash\w*|strik\w*|struck|rear ended|run into|runs into|"
    r"ran into|touch\w*|clip\w*|impact\w*|contact)"
)
_EVENT_NOUN = r"(?:collision|crash|accident|impact|hitting|striking|colliding)"
# (class, pattern) per class; `_cues` orders them so that "near" phrases and phrases that contain
# a collision word ("collision was narrowly avoided") match first. A match masks its span, so
# "near collision" is never read again as "collision".
_STRICT_NEAR: tuple[tuple[str, str], ...] = (
    (
        _NEAR,
        r"\b(?:collision|crash|accident|impact) (?:is |was )?(?:narrowly |barely |just )?"
        r"(?:avoided|averted|prevented)\b",
    ),
    (
        _NEAR,
        r"\b(?:narrowly |barely |just )?avoid(?:s|ed|ing)? (?:a |an |the )?(?:potential |possible )?"
        rf"{_EVENT_NOUN}\b",
    ),
    (_NEAR, r"\bnear (?:collision|crash|miss|accident|hit)(?:es|s)?\b"),
    (_NEAR, r"\bclose call\b"),
)
_FREE_NEAR: tuple[tuple[str, str], ...] = (
    (_NEAR, rf"\b(?:nearly|almost|narrowly|barely|just) (?:avoid\w*|miss\w*|escap\w*|{_HIT})"),
    (_NEAR, rf"\bclose to (?:{_HIT}|a collision|a crash)"),
)
_STRICT_NORMAL: tuple[tuple[str, str], ...] = (
    (
        _NORM,
        r"\bno (?:safety critical |notable |significant |dangerous |unusual |critical |risky "
        r"|special )?(?:events?|incidents?|hazards?)\b",
    ),
    (_NORM, r"\bnothing (?:unusual|notable|happens|happened|of note|dangerous)\b"),
    (_NORM, r"\b(?:normal|routine|regular|safe|uneventful) driving\b"),
    (_NORM, r"\bnormal\b|\buneventful\b"),
)
_STRICT_COLLISION: tuple[tuple[str, str], ...] = (
    (_COLL, r"\b(?:collisions?|crash|crashes|crashed|accidents?)\b"),
)
_FREE_COLLISION: tuple[tuple[str, str], ...] = (
    (_COLL, r"\b(?:collid(?:e|es|ed|ing))\b"),
    (_COLL, r"\b(?:hit|hits|hitting)\b(?! (?:the |its |his |her )?brakes?)"),
    (_COLL, r"\b(?:struck|strikes?|striking|smash\w*|t boned|rear ended)\b"),
    (_COLL, r"\b(?:slams?|slammed|runs|ran|bumps|bumped|plows|plowed|crashes|crashed) into\b"),
    (_COLL, r"\bimpacts?\b|\bimpacted\b|\bmakes? contact\b"),
)


def _cues(free: bool) -> tuple[tuple[str, str], ...]:
    if not free:
        return _STRICT_NEAR + _STRICT_NORMAL + _STRICT_COLLISION
    return _STRICT_NEAR + _FREE_NEAR + _STRICT_NORMAL + _FREE_COLLISION + _STRICT_COLLISION


_WEAK_CUES: tuple[tuple[str, str], ...] = (
    (_NEAR, r"\bbrak(?:e|es|ed|ing) (?:hard|sharply|suddenly|abruptly|heavily|harshly)\b"),
    (_NEAR, r"\b(?:hard|sudden|abrupt|emergency|heavy|harsh) brak\w*"),
    (_NEAR, r"\bslam\w* (?:on )?(?:the )?brakes?\b"),
    (_NEAR, r"\bswerv\w*|\bevasive\b|\bavoid\w*"),
    (
        _NORM,
        r"\b(?:drives|driving|proceeds|continues|travels|moves|moving|cruises|cruising)"
        r"(?: \w+)? (?:safely|smoothly|normally|steadily)\b",
    ),
    (_NORM, r"\bmaintains? (?:a )?(?:safe|steady|constant) (?:distance|speed)\b"),
)

_BOUNDARY = re.compile(
    r"[,;:.!?\n]|\b(?:but|however|although|though|whereas|instead|rather|yet|then)\b"
)
_NEGATORS = frozenset(
    "no not without never neither nor non none zero absence lack lacks lacking free avoid avoids "
    "avoided avoiding averted prevented".split()
)
_POST_NEGATION = re.compile(
    r"^\s*(?:(?:did|does|do|was|were|is|has|had|will|would|could)\s+(?:not|never)\b|\w+n't\b|never\b)"
)
_LEADING_PREFIX = re.compile(
    r"^(?:(?:the )?(?:final )?answer(?: is)?\s*[:=]?|(?:the )?event(?: is)?\s*[:=]?)\s*"
)
_LEADING_LABEL: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        _NEAR,
        re.compile(r"^(?:a )?near (?:collision|crash|miss)(?:\s*[.:;,!\n]|\s+[\u2013\u2014-]|$)"),
    ),
    (_NORM, re.compile(r"^normal(?: driving)?(?:\s*[.:;,!\n]|\s+[\u2013\u2014-]|$)")),
    (_COLL, re.compile(r"^(?:a )?(?:collision|crash)(?:\s*[.:;,!\n]|\s+[\u2013\u2014-]|$)")),
)


def _normalize(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("_", " ")
    text = re.sub(r"(?<=\w)[-\u2010\u2011](?=\w)", " ", text)  # near-collision -> near collision
    return re.sub(r"[ \t]+", " ", text).strip()


def _negated(text: str, start: int, end: int) -> bool:
    clause = _BOUNDARY.split(text[:start])[-1]
    words = clause.split()[-4:]
    if any(w in _NEGATORS or w.endswith("n't") for w in words):
        return True
    following = _BOUNDARY.split(text[end:])[0]
    return _POST_NEGATION.match(following) is not None


def _scan(text: str, cues: Iterable[tuple[str, str]]) -> tuple[set[str], set[str], str]:
    """(asserted classes, negated classes, text with matched spans masked)."""
    asserted: set[str] = set()
    negated: set[str] = set()
    masked = text
    for label, pattern in cues:
        for match in re.finditer(pattern, masked):
            a, b = match.span()
            (negated if _negated(text, a, b) else asserted).add(label)
            masked = masked[:a] + "#" * (b - a) + masked[b:]
    return asserted, negated, masked


def _resolve(asserted: set[str], negated: set[str]) -> ParsedAnswer:
    both = asserted & negated
    if both:
        return _invalid(f"contradictory: {', '.join(sorted(both))} both asserted and negated")
    if len(asserted) == 1:
        label = next(iter(asserted))
        return ParsedAnswer(label, True, f"text names {label}")
    if asserted:
        return _invalid(f"ambiguous: text names {', '.join(sorted(asserted))}")
    if not negated:
        return _invalid("no event class found")
    remaining = [c for c in LABELS if c not in negated]
    if len(remaining) == 1:
        return ParsedAnswer(remaining[0], True, f"negation rules out {', '.join(sorted(negated))}")
    if negated == {_COLL}:
        return ParsedAnswer(_NORM, True, "negated collision read as normal driving")
    return _invalid(f"ambiguous negation of {', '.join(sorted(negated))}")


def _parse_text(text: str, free: bool) -> ParsedAnswer:
    asserted, negated, masked = _scan(text, _cues(free))
    parsed = _resolve(asserted, negated)
    if parsed.valid or asserted or negated or not free:
        return parsed
    weak, weak_negated, _ = _scan(masked, _WEAK_CUES)
    weak -= weak_negated
    if len(weak) == 1:
        label = next(iter(weak))
        return ParsedAnswer(label, True, f"weak free-text cue for {label}")
    return _invalid("ambiguous weak cues" if weak else "no event class found")


def _leading_label(text: str) -> tuple[str | None, str]:
    """(label, rest of the text) when the answer starts with a bare label ("Collision. ...")."""
    text = _LEADING_PREFIX.sub("", text, count=1)
    for label, pattern in _LEADING_LABEL:
        match = pattern.match(text)
        if match:
            return label, text[match.end() :]
    return None, text


def _contradiction(explicit: str, rest: str, free: bool) -> str | None:
    """Why the text after an explicit answer contradicts it: it negates the explicit class, or it
    names exactly one other class. Mixed mentions (narratives) do not overrule the answer."""
    asserted, negated, _ = _scan(rest, _cues(free))
    if explicit in negated:
        return f"explicit answer {explicit} is negated in the text"
    if len(asserted) == 1 and explicit not in asserted:
        return f"explicit answer {explicit} contradicts text ({asserted.pop()})"
    return None


def _explicit_answer(
    text: str | None, options: Sequence[str]
) -> tuple[str, str | None, str] | ParsedAnswer:
    """(cleaned answer, option letter or None, reason), or the invalid ParsedAnswer when the
    text is empty, holds an unclosed think block or names no single valid letter."""
    if not isinstance(text, str) or not text.strip():
        return _invalid("empty answer")
    _, answer, closed = split_reasoning(text)
    if not closed:
        return _invalid("unclosed <think> block")
    answer = _clean(answer)
    if not answer:
        return _invalid("empty answer after reasoning")
    letter, reason = _find_letter(answer, list(options))
    if reason and letter is None:
        return _invalid(reason)
    return answer, letter, reason


def parse_event_class(
    text: str | None, mode: str = "auto", options: dict[str, str] | None = None
) -> ParsedAnswer:
    """Read the event class (one of LABELS) from a generated answer.

    mode: "auto" (letters, label words, free-text cues), "strict" (letters and label words only)
    or "letter" (option letters only). `options` maps letters to classes (OPTION_LETTERS).
    """
    if mode not in MODES:
        raise ValueError(f"parse_event_class: mode must be one of {MODES}, got {mode!r}")
    options = OPTION_LETTERS if options is None else options
    found = _explicit_answer(text, list(options))
    if isinstance(found, ParsedAnswer):
        return found
    answer, letter, reason = found
    if mode == "letter":
        return (
            ParsedAnswer(options[letter], True, reason) if letter else _invalid("no option letter")
        )
    free = mode == "auto"
    norm = _normalize(answer)
    if letter:
        explicit, rest = options[letter], norm  # the letter itself carries no cue words
    else:
        explicit, rest = _leading_label(norm)
        reason = f"leading label {explicit}"
    if explicit is None:
        return _parse_text(norm, free)
    conflict = _contradiction(explicit, rest, free)
    return _invalid(conflict) if conflict else ParsedAnswer(explicit, True, reason)


# ---------------------------------------------------------------------------- binary answers

# "yes" -> "event", "no" -> "normal": the words the binary question's options use.
_LABEL_OF_OPTION_TEXT = {text: label for label, text in BINARY_OPTION_TEXT.items()}
_YES_NO = re.compile(rf"^({'|'.join(_LABEL_OF_OPTION_TEXT)})\b")


def binary_side(label: str) -> str:
    """A class seen from the binary question: "event" for a collision, a near-collision or an
    event, "normal" for normal driving."""
    return "normal" if label == _NORM else "event"


def _sides(classes: set[str]) -> set[str]:
    return {binary_side(c) for c in classes}


def _binary_from_text(norm: str, free: bool) -> ParsedAnswer:
    """Event / normal from label words: any event class named (collision and near-collision
    together included) is an event; negating every event class, or a bare "no collision", is
    normal (the same convention as the 3-class reader)."""
    asserted, negated, _ = _scan(norm, _cues(free))
    sides = _sides(asserted)
    if len(sides) == 1:
        side = sides.pop()
        return ParsedAnswer(side, True, f"text names {side}")
    if sides:
        return _invalid("ambiguous: text names an event and normal driving")
    if negated and negated <= {_COLL, _NEAR}:
        return ParsedAnswer("normal", True, f"negation rules out {', '.join(sorted(negated))}")
    if negated == {_NORM}:
        return ParsedAnswer("event", True, "negation rules out normal")
    return _invalid("no event class found")


def parse_binary_event(text: str | None, mode: str = "auto") -> ParsedAnswer:
    """Read "event" / "normal" from an answer to the binary event question ("A. yes" / "B. no").

    Order as `parse_event_class`: an option letter (A event, B normal) or a leading yes / no,
    then (modes "auto" and "strict") label words, where collision and near-collision both read
    as an event. An explicit answer contradicted by the text ("A. yes, normal driving") is
    invalid.
    """
    if mode not in MODES:
        raise ValueError(f"parse_binary_event: mode must be one of {MODES}, got {mode!r}")
    found = _explicit_answer(text, list(BINARY_OPTION_LETTERS))
    if isinstance(found, ParsedAnswer):
        return found
    answer, letter, reason = found
    if mode == "letter":
        if letter is None:
            return _invalid("no option letter")
        return ParsedAnswer(BINARY_OPTION_LETTERS[letter], True, reason)
    norm = _normalize(answer)
    explicit = BINARY_OPTION_LETTERS[letter] if letter else None
    if explicit is None and (match := _YES_NO.match(norm)):
        explicit = _LABEL_OF_OPTION_TEXT[match.group(1)]
        reason = f"leading {match.group(1)}"
    free = mode == "auto"
    if explicit is None:
        return _binary_from_text(norm, free)
    named = _sides(_scan(norm, _cues(free))[0])  # sides the text asserts (negations aside)
    if len(named) == 1 and explicit not in named:
        return _invalid(f"explicit answer {explicit} contradicts text ({named.pop()})")
    return ParsedAnswer(explicit, True, reason)


# ---------------------------------------------------------------------------- instruction answers

# Paper 003's chain-of-thought answer: "Events: <events>.\nInstruction: <instruction>".
EVENTS_HEAD = "Events:"
INSTRUCTION_HEAD = "Instruction:"
_TWO_PARTS = re.compile(
    rf"^\s*{EVENTS_HEAD}\s*(.*?)\s*{INSTRUCTION_HEAD}\s*(.*?)\s*$",
    re.IGNORECASE | re.DOTALL,
)


def split_answer(text: str | None) -> tuple[str, str] | None:
    """(events, instruction) of an answer "Events: ... Instruction: ...", each part stripped;
    None when the answer lacks either head (an answer in the one-line form included)."""
    match = _TWO_PARTS.match(text or "")
    return (match.group(1), match.group(2)) if match else None


# ---------------------------------------------------------------------------- probabilities

_NUMBER = r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(%?)"
_PROB_LABELLED = re.compile(
    r"probability(?:\s+of\s+(?:a\s+)?collision)?\s*(?:is\s*)?[:=]?\s*" + _NUMBER, re.IGNORECASE
)
_PROB_BARE = re.compile(r"^\s*" + _NUMBER + r"\s*\.?\s*$")


def _to_probability(number: str, percent: str) -> float | None:
    value = float(number) / (100.0 if percent else 1.0)
    return value if 0.0 <= value <= 1.0 else None


def parse_probability(text: str | None) -> float | None:
    """The probability in "Collision Probability: 0.872" (also "87%", "probability = 0.3" or a
    bare number). None when absent, out of [0, 1] (never clamped), given twice with different
    values, or inside an unclosed think block."""
    if not isinstance(text, str):
        return None
    _, answer, valid = split_reasoning(text)
    if not valid:
        return None
    answer = _clean(answer)
    matches = _PROB_LABELLED.findall(answer) or _PROB_BARE.findall(answer)
    values = {_to_probability(number, percent) for number, percent in matches}
    if len(values) != 1:
        return None
    return values.pop()
