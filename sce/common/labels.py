"""The event labels, their display names and the option letters of the event questions.

The one definition that the manifest schema (sce.data.schema), the student's prompts
(sce.tasks), the answer parser (sce.metrics.parsing) and the teacher labeling
(sce.labeling) import, so the letter a prompt offers and the letter the parser reads cannot
drift apart. Imports nothing from sce (every package imports it).

label_scope "three_class": collision / near_collision / normal, asked as options A / B / C.
label_scope "binary" (Nexar: the source only knows event / no event): event / normal, asked as
"A. yes" / "B. no" (the same letters A, B, so letter parsing and letter scoring apply).
"""

from __future__ import annotations

from string import ascii_uppercase

LABELS: tuple[str, ...] = ("collision", "near_collision", "normal")  # label_scope "three_class"
BINARY_LABELS: tuple[str, ...] = ("event", "normal")  # label_scope "binary": event / no event
SCOPE_LABELS: dict[str, tuple[str, ...]] = {"three_class": LABELS, "binary": BINARY_LABELS}
LABEL_SCOPES: tuple[str, ...] = tuple(SCOPE_LABELS)
# Every label of any scope, most severe first (split stratification, report tables).
ALL_LABELS: tuple[str, ...] = ("collision", "near_collision", "event", "normal")

# How the student's prompts and answers name each label ("B. near-collision").
LABEL_TEXT: dict[str, str] = {
    "collision": "collision",
    "near_collision": "near-collision",
    "normal": "normal driving",
    "event": "collision or near-collision",  # binary scope (Nexar): the source knows no more
}
# How the binary question's options name its labels ("A. yes").
BINARY_OPTION_TEXT: dict[str, str] = {"event": "yes", "normal": "no"}

# Option letter -> label, in option order: the 3-way event question and the binary one.
OPTION_LETTERS: dict[str, str] = dict(zip(ascii_uppercase, LABELS, strict=False))
BINARY_OPTION_LETTERS: dict[str, str] = dict(zip(ascii_uppercase, BINARY_LABELS, strict=False))
# Label -> option letter of the 3-way question ("near_collision" -> "B").
LETTER_OF_LABEL: dict[str, str] = {label: letter for letter, label in OPTION_LETTERS.items()}
