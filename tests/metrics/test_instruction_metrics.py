"""Paper 003 instruction metrics: BLEU-4 by hand, distinct-4 / self-BLEU, summarize() keys."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from sce.evaluate.summary import summarize
from sce.metrics.instruction import bleu4, distinct_n, instruction_part, self_bleu4


def _hand_corpus_bleu4(preds: list[str], refs: list[str]) -> float:
    """Papineni et al. corpus BLEU-4: clipped n-gram precisions, geometric mean, brevity penalty."""
    matches, totals = [0] * 4, [0] * 4
    pred_len = ref_len = 0
    for p, r in zip(preds, refs, strict=True):
        pw, rw = p.split(), r.split()
        pred_len, ref_len = pred_len + len(pw), ref_len + len(rw)
        for n in range(1, 5):
            pg = Counter(tuple(pw[i : i + n]) for i in range(len(pw) - n + 1))
            rg = Counter(tuple(rw[i : i + n]) for i in range(len(rw) - n + 1))
            matches[n - 1] += sum(min(c, rg[g]) for g, c in pg.items())
            totals[n - 1] += sum(pg.values())
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / 4
    bp = 1.0 if pred_len > ref_len else math.exp(1 - ref_len / pred_len)
    return bp * math.exp(log_p)


PAIRS = [
    ("slow down and keep a safe distance from the car ahead", "slow down and keep a safe distance"),
    ("brake now to avoid the pedestrian crossing", "brake now to avoid hitting the pedestrian"),
    (
        "stay in your lane and watch the truck",
        "stay in your lane and watch for the truck on the left",
    ),
]


def test_bleu4_equals_hand_computation() -> None:
    preds, refs = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    expected = _hand_corpus_bleu4(preds, refs)
    assert 0.0 < expected < 1.0
    assert bleu4(preds, refs) == pytest.approx(expected, abs=1e-6)
    assert bleu4(refs, refs) == pytest.approx(1.0)


def test_identical_predictions_show_language_bias() -> None:
    n = 10
    same = ["slow down and keep a safe distance from the car ahead"] * n  # 8 four-grams each
    assert distinct_n(same, 4) == pytest.approx(8 / (8 * n))  # 1/N
    assert self_bleu4(same) == pytest.approx(1.0)


def test_all_different_predictions() -> None:
    preds = [" ".join(f"w{i}_{k}" for k in range(6)) for i in range(5)]
    assert distinct_n(preds, 4) == 1.0
    assert self_bleu4(preds) == pytest.approx(0.0)


def test_instruction_part_drops_event_sentence() -> None:
    assert instruction_part("Yes, collision. Brake hard now.") == "Brake hard now."
    assert instruction_part("Brake hard now") == "Brake hard now"


def test_summarize_instruction_keys_and_strict_json() -> None:
    items = [
        {
            "id": f"r{i}",
            "task": "instruction",
            "label": "collision",
            "source": "s",
            "imu_on": True,
            "reference": f"Yes, collision. {r}",
            "prediction": f"Yes, collision. {p}",
        }
        for i, (p, r) in enumerate(PAIRS)
    ]
    scalars = summarize(items).scalars
    preds, refs = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    assert scalars["instruction/n"] == 3
    assert scalars["instruction/bleu4"] == pytest.approx(100 * _hand_corpus_bleu4(preds, refs))
    assert scalars["instruction/distinct4"] == pytest.approx(distinct_n(preds, 4))
    assert 0.0 <= scalars["instruction/self_bleu4"] < 1.0
    assert "instruction/bertscore_f1" not in scalars  # no local encoder configured
    one = summarize(items[:1]).to_json()
    text = json.dumps(one, allow_nan=False)  # self-BLEU of one clip is undefined -> null
    assert json.loads(text)
