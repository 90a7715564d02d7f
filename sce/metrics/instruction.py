"""Paper 003's instruction task: BERTScore F1 of the detected events and of the instruction,
BLEU-4 of the instruction, plus diversity.

Paper 003's answers are chain-of-thought: the events first, then the instruction. sce writes
them as two labelled parts (sce/tasks/instruction.py),

    Events: mobile phone use; harsh braking.
    Instruction: Put the phone away and keep a safe distance.

and `split_answer` separates them; the paper scores each part on its own (BERTScore F1 0.897
event detection, 0.894 instruction), so both prediction and reference are split. Answers in the
earlier one-line form ("Yes, collision. <instruction>") split after the first sentence. BLEU: torchmetrics' BLEUScore (already a dependency; sacrebleu is not),
corpus BLEU-4 with uniform weights and brevity penalty, reported x100 like the paper's "BLEU
~10-13" (paper 003 does not name its BLEU variant: corpus BLEU-4 is the closest common reading).

Diversity (the paper's language-bias failure: a model that prints the same generic safe-driving
advice for every clip): `distinct4` = distinct 4-grams / all 4-grams over all predictions (one
repeated answer over N clips gives ~1/N, all-different answers 1.0) and `self_bleu4` = mean BLEU-4
of each prediction against the other predictions (1.0 when every clip gets the same answer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torchmetrics.functional.text import bleu_score

from sce.metrics.parsing import split_answer
from sce.metrics.text import bertscore_f1


def event_part(text: str | None) -> str:
    """The event part of an answer ("" when it has none)."""
    parts = split_answer(text)
    if parts is not None:
        return parts[0]
    head, sep, _ = (text or "").strip().partition(". ")
    return head.strip() + "." if sep else ""


def instruction_part(text: str | None) -> str:
    """The instruction after the event part ("Events: collision. Instruction: Brake now." and
    the one-line "Yes, collision. Brake now." -> "Brake now.")."""
    parts = split_answer(text)
    if parts is not None:
        return parts[1]
    text = (text or "").strip()
    head, sep, tail = text.partition(". ")
    return tail.strip() if sep else text


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = text.lower().split()
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def bleu4(preds: Sequence[str], targets: Sequence[str]) -> float:
    """Corpus BLEU-4 (0..1) of preds against one reference each (torchmetrics)."""
    if not preds:
        return math.nan
    return float(bleu_score(list(preds), [[t] for t in targets], n_gram=4))


def distinct_n(preds: Sequence[str], n: int = 4) -> float:
    """Distinct n-grams / all n-grams across the predictions (NaN when none has n words)."""
    grams = [g for p in preds for g in _ngrams(p, n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def self_bleu4(preds: Sequence[str]) -> float:
    """Mean sentence BLEU-4 of each prediction against all the others as references."""
    if len(preds) < 2:
        return math.nan
    scores = [
        float(bleu_score([p], [[o for j, o in enumerate(preds) if j != i]], n_gram=4))
        for i, p in enumerate(preds)
    ]
    return sum(scores) / len(scores)


def instruction_metrics(
    items: list[dict], bertscore_model: str | None, bertscore_layer: int | None = None
) -> dict[str, float]:
    """`instruction/{n,bleu4,distinct4,self_bleu4}`, and with an encoder (read at
    `bertscore_layer`; None: bert-score's recommended layer, sce.metrics.text) the BERTScore F1
    of the instruction (`instruction/bertscore_f1`, paper 003: 0.894) and of the event part
    (`instruction/event_bertscore_f1`, paper 003: 0.897)."""
    preds = [instruction_part(i["prediction"]) for i in items]
    targets = [instruction_part(i["reference"]) for i in items]
    out = {
        "instruction/n": float(len(items)),
        "instruction/bleu4": 100.0 * bleu4(preds, targets),
        "instruction/distinct4": distinct_n(preds, 4),
        "instruction/self_bleu4": self_bleu4(preds),
    }
    events = (
        [event_part(i["prediction"]) for i in items],
        [event_part(i["reference"]) for i in items],
    )
    parts = {
        "instruction/bertscore_f1": (preds, targets),
        "instruction/event_bertscore_f1": events,
    }
    for key, (said, gold) in parts.items():
        scores = bertscore_f1(said, gold, bertscore_model, bertscore_layer)
        if scores is not None:
            out[key] = sum(scores) / len(scores) if scores else math.nan
    return out
