"""The teacher's QA pairs of paper 000 (`annotations.qa`): the field, its check and the pairs of
one type, shared by the open_qa and closed_qa tasks.

`sce label`'s caption template asks the teacher for open-ended questions "about the event and its
causes" and closed-ended ones "about the static scene whose answer is a single word or yes/no"
(paper 000: captions "alongside open-ended and closed-ended questions"); it writes them as
`annotations.qa = [{"type": "open" | "closed", "question", "answer"}, ...]`. LingoQA's converter
writes its free-text pairs there as open questions (with "question_id" and, for several
references, "answers").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sce.tasks.base import AnnotationError, PairTask, TaskSource, check_text, shown

FIELD = "qa"  # the annotation holding the teacher's open and closed QA pairs
QA_TYPES = ("open", "closed")


def check_qa(items: Any) -> None:
    """`annotations.qa`: a list of {type: "open" | "closed", question, answer} objects with
    non-empty strings (other keys, e.g. LingoQA's question_id, are kept and not read)."""
    field_name = f"annotations.{FIELD}"
    if not isinstance(items, list):
        detail = f"expected a list of {{type, question, answer}} objects, got {shown(items)}"
        raise AnnotationError(field_name, detail)
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            raise AnnotationError(field_name, f"item {k}: expected an object, got {shown(item)}")
        if item.get("type") not in QA_TYPES:
            detail = f"item {k}: 'type': expected one of {list(QA_TYPES)}, got {item.get('type')!r}"
            raise AnnotationError(field_name, detail)
        for key in ("question", "answer"):
            if key not in item:
                raise AnnotationError(field_name, f"item {k}: missing '{key}'")
            check_text(field_name, item[key], f"item {k}: '{key}': ")
            if not item[key].strip():
                raise AnnotationError(field_name, f"item {k}: '{key}' is empty")


def qa_pairs(source: TaskSource, kind: str) -> list[Mapping[str, Any]]:
    """The record's QA pairs of type `kind` ("open" or "closed"), in annotation order."""
    items = source.annotations.get(FIELD) or []
    return [item for item in items if item.get("type") == kind]


class QaPairTask(PairTask):
    """A task on the teacher's QA pairs of one `kind` ("open" or "closed"), every pair its own
    item: the question as asked, the answer as given."""

    fields = (FIELD,)
    kind = "open"

    def check(self, annotations: Mapping[str, Any]) -> None:
        if annotations.get(FIELD) is not None:
            check_qa(annotations[FIELD])

    def pairs(self, source: TaskSource) -> list[Mapping[str, Any]]:
        return qa_pairs(source, self.kind)

    def pair_question(self, pair: Mapping[str, Any]) -> str:
        return str(pair["question"])

    def pair_answer(self, pair: Mapping[str, Any]) -> str:
        return str(pair["answer"])
