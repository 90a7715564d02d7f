"""Metrics with hand-computed values: classification, grouping, calibration, text, reports."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.encoders import build_tiny_encoder

from sce.evaluate.figures import confusion_matrix_figure, figure_to_array, format_table, group_rows
from sce.metrics.calibration import (
    CalibrationMetrics,
    brier_score,
    calibration_bins,
    expected_calibration_error,
    mean_absolute_error,
    reliability_diagram,
)
from sce.metrics.classification import (
    EventClassificationMetrics,
    GroupedMetrics,
    labels_from_option_scores,
    option_probabilities,
    sce_probability,
)
from sce.metrics.parsing import ParsedAnswer
from sce.metrics.text import (
    BERTScoreF1,
    CaptionMetrics,
    ClosedQAAccuracy,
    bertscore_f1,
    closed_qa_accuracy,
    closed_qa_correct,
    rouge_l_f1,
)

C, N, M = "collision", "near_collision", "normal"

# 10 samples. Confusion (rows true, columns predicted C, N, M, invalid):
#   C: 2 1 0 0     N: 1 1 0 1     M: 0 1 3 0
TARGETS = [C, C, C, N, N, N, M, M, M, M]
PREDS = [C, C, N, N, C, None, M, M, N, M]


def approx(value: float) -> object:
    return pytest.approx(value, abs=1e-6)


# ---------------------------------------------------------------------------- classification


def test_per_class_metrics_by_hand():
    metrics = EventClassificationMetrics()
    metrics.update(PREDS[:4], TARGETS[:4])  # two batches: states accumulate
    metrics.update(PREDS[4:], TARGETS[4:])
    out = metrics.compute()
    assert out["n"] == 10
    # precision = TP / predicted: C 2/3, N 1/3 (3 predicted N), M 3/3
    assert out["precision/collision"] == approx(2 / 3)
    assert out["precision/near_collision"] == approx(1 / 3)
    assert out["precision/normal"] == approx(1.0)
    # recall = TP / support: C 2/3, N 1/3 (the invalid answer is a miss), M 3/4
    assert out["recall/collision"] == approx(2 / 3)
    assert out["recall/near_collision"] == approx(1 / 3)
    assert out["recall/normal"] == approx(3 / 4)
    assert out["f1/collision"] == approx(2 / 3)
    assert out["f1/near_collision"] == approx(1 / 3)
    assert out["f1/normal"] == approx(6 / 7)
    assert out["acc"] == approx(6 / 10)
    assert out["macro_precision"] == approx(2 / 3)
    assert out["macro_recall"] == approx((2 / 3 + 1 / 3 + 3 / 4) / 3)
    assert out["macro_f1"] == approx(13 / 21)
    assert out["invalid_rate"] == approx(0.1)
    assert [out[f"support/{c}"] for c in (C, N, M)] == [3, 3, 4]


def test_binary_sce_metrics_by_hand():
    metrics = EventClassificationMetrics()
    metrics.update(PREDS, TARGETS)
    out = metrics.compute()
    # SCE = collision + near_collision. Samples 1-5 TP, 6 invalid on an SCE clip -> FN,
    # sample 9 (normal predicted near) -> FP, 7, 8, 10 TN.
    assert out["binary/precision"] == approx(5 / 6)
    assert out["binary/recall"] == approx(5 / 6)
    assert out["binary/f1"] == approx(5 / 6)
    assert out["binary/acc"] == approx(8 / 10)


def test_invalid_answer_on_normal_clip_is_a_false_positive():
    metrics = EventClassificationMetrics()
    metrics.update([None, M, C], [M, M, C])
    out = metrics.compute()
    assert out["binary/precision"] == approx(1 / 2)  # TP 1 (C), FP 1 (invalid on normal)
    assert out["binary/recall"] == approx(1.0)
    assert out["binary/acc"] == approx(2 / 3)
    assert out["recall/normal"] == approx(1 / 2)
    assert out["precision/normal"] == approx(1.0)  # invalid never lowers a class's precision


def test_confusion_matrix_and_invalid_column():
    metrics = EventClassificationMetrics()
    metrics.update(PREDS, TARGETS)
    assert metrics.confusion_matrix().tolist() == [[2, 1, 0], [1, 1, 0], [0, 1, 3]]
    assert metrics.confusion_matrix(include_invalid=True).tolist() == [
        [2, 1, 0, 0],
        [1, 1, 0, 1],
        [0, 1, 3, 0],
    ]


def test_parsed_answers_are_accepted_and_bad_labels_raise():
    metrics = EventClassificationMetrics()
    metrics.update([ParsedAnswer(C, True, "x"), ParsedAnswer(None, False, "garbage")], [C, N])
    assert metrics.compute()["invalid_rate"] == approx(0.5)
    with pytest.raises(ValueError, match="target label 'crash' at position 1"):
        metrics.update([C, C], [C, "crash"])
    with pytest.raises(ValueError, match="predicted label 'Collision' at position 0"):
        metrics.update(["Collision"], [C])
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        metrics.update([C, C], [C])


def test_absent_class_gives_nan_recall_and_is_left_out_of_macro():
    # Nexar-like split: no near-collision targets; the model predicts near_collision once.
    metrics = EventClassificationMetrics()
    metrics.update([C, N, M, M], [C, C, M, M])
    out = metrics.compute()
    assert math.isnan(out["recall/near_collision"]) and math.isnan(out["f1/near_collision"])
    assert out["precision/near_collision"] == 0.0
    assert out["recall/collision"] == approx(1 / 2)
    assert out["macro_recall"] == approx((1 / 2 + 1) / 2)  # collision and normal only
    assert out["macro_f1"] == approx((2 / 3 + 1) / 2)


def test_binary_scope_items_count_only_in_binary_metrics():
    """Nexar items (label_scope "binary": event / normal) never enter the 3-class accuracy,
    per-class scores or confusion matrix; 3-class items enter both, collapsed for the binary."""
    three = EventClassificationMetrics()
    three.update(PREDS, TARGETS)
    mixed = EventClassificationMetrics()
    # 4 binary items: event->event (TP), event->invalid (FN), normal->event (FP), normal->normal
    preds = [*PREDS, "event", None, "event", "normal"]
    targets = [*TARGETS, "event", "event", "normal", "normal"]
    scopes = ["three_class"] * 10 + ["binary"] * 4
    mixed.update(preds, targets, scopes)
    out, ref = mixed.compute(), three.compute()
    three_class_keys = [k for k in ref if not k.startswith("binary/")]
    assert {k: out[k] for k in three_class_keys} == {k: ref[k] for k in three_class_keys}
    assert out["n"] == 10 and out["binary/n"] == 14
    assert mixed.confusion_matrix().tolist() == [[2, 1, 0], [1, 1, 0], [0, 1, 3]]
    # binary: 3-class TP 5, FN 1, FP 1, TN 3 (test_binary_sce_metrics_by_hand) + 1, 1, 1, 1
    assert out["binary/precision"] == approx(6 / 8)
    assert out["binary/recall"] == approx(6 / 8)
    assert out["binary/acc"] == approx(10 / 14)
    # a binary "normal" is told apart from a 3-class one only by its scope
    only_binary = EventClassificationMetrics()
    only_binary.update(["normal", "collision"], ["normal", "event"], ["binary", "binary"])
    out = only_binary.compute()
    assert out["n"] == 0 and "acc" not in out and out["binary/n"] == 2
    assert out["binary/acc"] == 1.0  # a collision answer is on the event side
    with pytest.raises(ValueError, match="target label 'collision' at position 0 is not one of"):
        only_binary.update(["event"], ["collision"], ["binary"])
    with pytest.raises(ValueError, match="target label 'event' at position 0"):
        only_binary.update(["event"], ["event"], ["three_class"])


def test_summary_scores_binary_items_in_binary_metrics_only():
    from sce.evaluate.summary import summarize

    def item(i, label, scope, prediction, probs):
        return {
            "id": f"x{i}", "task": "mcq", "label": label, "label_scope": scope,
            "source": "nexar" if scope == "binary" else "synthetic", "imu_on": False,
            "reference": "", "prediction": prediction, "option_probs": probs,
        }  # fmt: skip

    items = [
        item(0, "collision", "three_class", "A. collision", [0.8, 0.1, 0.1]),
        item(1, "normal", "three_class", "C. normal driving", [0.1, 0.1, 0.8]),
        item(2, "event", "binary", "A. yes", [0.2, 0.1, 0.7]),  # letters: A > B -> event
        item(3, "normal", "binary", "B. no", [0.1, 0.6, 0.3]),
        item(4, "event", "binary", "B. no", [0.1, 0.5, 0.4]),
    ]
    scalars = summarize(items).scalars
    assert scalars["n"] == 2 and scalars["acc"] == 1.0  # the Nexar items are not 3-class
    assert scalars["binary/n"] == 5 and scalars["binary/acc"] == approx(4 / 5)
    assert scalars["source_nexar/n"] == 0 and scalars["source_nexar/binary/acc"] == approx(2 / 3)
    assert scalars["ll/acc"] == 1.0 and scalars["ll/binary/acc"] == approx(4 / 5)


def _mixed_scope_items() -> list[dict]:
    """4 three-class items (synthetic, one wrong) + 3 binary Nexar items (one unparseable)."""

    def item(i, label, scope, prediction):
        return {
            "id": f"x{i}", "task": "mcq", "label": label, "label_scope": scope,
            "source": "nexar" if scope == "binary" else "synthetic", "imu_on": False,
            "reference": "", "prediction": prediction,
        }  # fmt: skip

    return [
        item(0, "collision", "three_class", "A. collision"),
        item(1, "near_collision", "three_class", "B. near-collision"),
        item(2, "normal", "three_class", "C. normal driving"),
        item(3, "collision", "three_class", "C. normal driving"),
        item(4, "event", "binary", "A. yes"),
        item(5, "normal", "binary", "B. no"),
        item(6, "event", "binary", "the weather is sunny"),  # no answer: invalid
    ]


def test_groups_report_only_the_scopes_they_have_items_of():
    """A binary-only group (source_nexar) has no 3-class keys (no NaN acc / f1 with n = 0);
    binary/invalid_rate counts the binary items' unparseable answers."""
    from sce.evaluate.summary import summarize

    scalars = summarize(_mixed_scope_items()).scalars
    names = EventClassificationMetrics().metric_names()
    binary_keys = {k for k in names if k.startswith("binary/")}
    three_keys = set(names) - binary_keys

    def keys_of(group: str) -> set[str]:
        head = f"{group}/"
        return {k[len(head) :] for k in scalars if k.startswith(head) and k[len(head) :] in names}

    assert keys_of("source_nexar") == {"n"} | binary_keys
    assert keys_of("source_synthetic") == three_keys | binary_keys
    assert {k for k in scalars if k in names} == three_keys | binary_keys  # overall
    assert scalars["source_nexar/n"] == 0 and scalars["source_nexar/binary/n"] == 3
    assert scalars["source_nexar/binary/invalid_rate"] == 1 / 3
    assert scalars["source_nexar/binary/acc"] == approx(2 / 3)  # the invalid answer is wrong
    assert scalars["source_synthetic/binary/invalid_rate"] == 0.0
    assert scalars["binary/invalid_rate"] == approx(1 / 7) and scalars["invalid_rate"] == 0.0
    # all: TP 3 (C, N, yes), FN 2 (C->normal, event->invalid), TN 2, FP 0
    assert scalars["n"] == 4 and scalars["acc"] == approx(3 / 4)
    assert scalars["binary/acc"] == approx(5 / 7) and scalars["binary/recall"] == approx(3 / 5)
    assert scalars["binary/precision"] == 1.0
    finite = [k for k, v in scalars.items() if isinstance(v, float) and not math.isfinite(v)]
    assert finite == []  # every class is present overall and per source: nothing undefined


def _strict_json(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_metrics_json_is_strict_json(tmp_path):
    """metrics.json never holds a bare NaN / Infinity (not JSON): undefined values are null."""
    from sce.evaluate.callback import _write_json
    from sce.evaluate.summary import summarize

    record = {"split": "val", "step": 3, **summarize(_mixed_scope_items()).to_json()}
    record["scalars"]["recall/near_collision"] = math.nan  # e.g. a class absent from targets
    record["extra"] = {"inf": math.inf, "np": np.float32("nan"), "t": torch.tensor(-math.inf)}
    path = tmp_path / "metrics.json"
    _write_json(path, record)
    saved = _strict_json(path.read_text())
    assert saved["scalars"]["recall/near_collision"] is None
    assert saved["extra"] == {"inf": None, "np": None, "t": None}
    assert saved["scalars"]["source_nexar/binary/invalid_rate"] == approx(1 / 3)
    assert "source_nexar/acc" not in saved["scalars"]
    assert saved["step"] == 3 and not list(tmp_path.glob("*.tmp"))


def test_empty_metrics_and_reset():
    metrics = EventClassificationMetrics()
    assert metrics.compute() == {"n": 0, "binary/n": 0}  # counts only, no NaN placeholders
    metrics.update(PREDS, TARGETS)
    assert metrics.compute()["n"] == 10
    assert set(metrics.compute()) == set(metrics.metric_names())
    metrics.reset()
    metrics.update([C], [C])
    assert metrics.compute()["acc"] == approx(1.0)


# ---------------------------------------------------------------------------- grouping


def grouped_event_metrics() -> GroupedMetrics:
    return GroupedMetrics(
        EventClassificationMetrics,
        {"source": ["synthetic", "nexar", "bddx"], "imu": ["on", "off"]},
    )


SOURCES = ["synthetic"] * 5 + ["nexar"] * 5
IMU = ["on", "off"] * 5


def test_grouped_metrics_by_hand():
    grouped = grouped_event_metrics()
    grouped.update(PREDS, TARGETS, groups={"source": SOURCES, "imu": IMU})
    out = grouped.compute()
    assert set(out) == {"all", "source_synthetic", "source_nexar", "imu_on", "imu_off"}  # no bddx
    assert out["all"]["acc"] == approx(6 / 10)
    # synthetic = samples 1-5: C->C, C->C, C->N, N->N, N->C: 3 right of 5
    assert out["source_synthetic"]["acc"] == approx(3 / 5)
    assert out["source_synthetic"]["recall/collision"] == approx(2 / 3)
    assert out["source_synthetic"]["invalid_rate"] == 0.0
    # nexar = samples 6-10: N->invalid, M->M, M->M, M->N, M->M
    assert out["source_nexar"]["acc"] == approx(3 / 5)
    assert out["source_nexar"]["invalid_rate"] == approx(1 / 5)
    assert math.isnan(out["source_nexar"]["recall/collision"])
    # imu on = samples 1, 3, 5, 7, 9: C->C, C->N, N->C, M->M, M->N
    assert out["imu_on"]["acc"] == approx(2 / 5)
    assert out["imu_off"]["acc"] == approx(4 / 5)
    assert out["imu_on"]["n"] + out["imu_off"]["n"] == 10
    flat = grouped.compute_flat("val")
    assert flat["val/source_nexar/acc"] == approx(3 / 5)
    assert flat["val/all/binary/acc"] == approx(8 / 10)
    assert "val/source_bddx/acc" not in flat
    assert "source_bddx" in grouped.compute(skip_empty=False)


def test_grouped_metrics_accept_tensors_and_check_groups():
    grouped = GroupedMetrics(CalibrationMetrics, {"imu": ["on", "off"]})
    probs = torch.tensor([0.9, 0.2, 0.7, 0.4])
    grouped.update(probs, torch.tensor([1, 0, 0, 0]), groups={"imu": ["on", "on", "off", "off"]})
    out = grouped.compute()
    assert out["imu_on"]["mae"] == approx((0.1 + 0.2) / 2)
    assert out["imu_off"]["mae"] == approx((0.7 + 0.4) / 2)
    with pytest.raises(ValueError, match="imu='maybe' was not declared"):
        grouped.update(probs[:1], torch.tensor([1]), groups={"imu": ["maybe"]})
    with pytest.raises(KeyError, match="weather"):
        grouped.update(probs[:1], torch.tensor([1]), groups={"weather": ["rain"]})
    with pytest.raises(ValueError, match="1 values for 2 samples"):
        grouped.update(probs[:2], torch.tensor([1, 0]), groups={"imu": ["on"]})


# ---------------------------------------------------------------------------- option scoring


def test_option_probabilities_and_predictions():
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.7, 0.2, 0.1]])
    logprobs = probs.log() - 7.0  # unnormalised log-likelihoods
    got = option_probabilities(logprobs)
    assert torch.allclose(got, probs, atol=1e-6)
    assert labels_from_option_scores(logprobs) == [M, C]
    assert torch.allclose(sce_probability(got), torch.tensor([0.5, 0.9]), atol=1e-6)
    impossible = torch.tensor([[0.0, -torch.inf, math.log(3.0)]])
    assert torch.allclose(option_probabilities(impossible), torch.tensor([[0.25, 0.0, 0.75]]))
    with pytest.raises(ValueError, match="every option"):
        option_probabilities(torch.full((1, 3), -torch.inf))
    with pytest.raises(ValueError, match="NaN"):
        option_probabilities(torch.tensor([[0.0, math.nan, 0.0]]))


# ---------------------------------------------------------------------------- calibration

# valid pairs: (0.9, 1) (0.25, 0) (0.65, 0) (0.1, 1) (0.95, 0); one invalid answer (None, 1)
PROBS = [0.9, 0.25, None, 0.65, 0.1, 0.95]
BIN_TARGETS = [1, 0, 1, 0, 1, 0]


def test_mae_brier_ece_by_hand():
    assert mean_absolute_error(PROBS, BIN_TARGETS) == approx((0.1 + 0.25 + 0.65 + 0.9 + 0.95) / 5)
    brier = (0.01 + 0.0625 + 0.4225 + 0.81 + 0.9025) / 5
    assert brier_score(PROBS, BIN_TARGETS) == approx(brier)
    # 5 bins of width 0.2: {0.1}, {0.25}, {0.65}, {0.9, 0.95}. Last bin: mean p 0.925, rate 0.5.
    ece = (0.9 + 0.25 + 0.65) / 5 + 2 / 5 * abs(0.5 - 0.925)
    assert expected_calibration_error(PROBS, BIN_TARGETS, n_bins=5) == approx(ece)
    bins = calibration_bins(PROBS, BIN_TARGETS, n_bins=5)
    assert bins["count"].tolist() == [1, 1, 0, 1, 2]
    assert math.isnan(bins["accuracy"][2])


def test_calibration_metric_by_hand():
    metric = CalibrationMetrics(n_bins=5)
    metric.update(PROBS[:3], BIN_TARGETS[:3])
    metric.update(PROBS[3:], BIN_TARGETS[3:])
    out = metric.compute()
    assert out["n"] == 6
    assert out["invalid_rate"] == approx(1 / 6)
    assert out["mae"] == approx(2.85 / 5)
    assert out["ece"] == approx(0.53)
    # threshold 0.5: TP (0.9), FP (0.65, 0.95), FN (0.1 and the invalid answer), TN (0.25)
    assert out["precision"] == approx(1 / 3)
    assert out["recall"] == approx(1 / 3)
    assert out["f1"] == approx(1 / 3)
    assert out["acc"] == approx(2 / 6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metric.update([1.5], [1])
    with pytest.raises(ValueError, match="0 or 1"):
        metric.update([0.5], [2])


@pytest.mark.parametrize("n_bins", [15, 7])
def test_ece_matches_torchmetrics(n_bins):
    from torchmetrics.classification import BinaryCalibrationError

    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(500, generator=gen) * 0.999  # no probability exactly 1.0 (see next test)
    targets = (torch.rand(500, generator=gen) < probs**2).long()  # miscalibrated on purpose
    expected = BinaryCalibrationError(n_bins=n_bins, norm="l1")(probs, targets).item()
    assert expected > 0.05
    assert expected_calibration_error(probs, targets, n_bins) == pytest.approx(expected, abs=1e-5)
    metric = CalibrationMetrics(n_bins=n_bins)
    metric.update(probs, targets)
    assert metric.compute()["ece"] == pytest.approx(expected, abs=1e-5)


def test_ece_puts_probability_one_in_the_last_bin():
    from torchmetrics.classification import BinaryCalibrationError

    probs, targets = torch.tensor([0.96, 1.0]), torch.tensor([1, 0])
    # here: one bin [14/15, 1] with mean p 0.98 and rate 0.5; torchmetrics: two bins
    assert expected_calibration_error(probs, targets) == approx(0.48)
    assert BinaryCalibrationError(n_bins=15)(probs, targets).item() == pytest.approx(0.52, abs=1e-6)


def test_reliability_diagram():
    fig = reliability_diagram(PROBS, BIN_TARGETS, n_bins=5)
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [0.0, 0.0, 0.5, 1.0]  # rates of the 4 filled bins
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "1", "2"]  # counts
    assert "invalid=1" in ax.get_title() and "ECE 0.530" in ax.get_title()
    image = figure_to_array(fig)
    assert image.shape == (500, 500, 3) and image.dtype == np.uint8


# ---------------------------------------------------------------------------- ROUGE-L

ROUGE_PAIRS = [
    ("The ego vehicle brakes hard.", "the EGO vehicle brakes, hard!"),
    (
        "A truck cuts in from the left lane at 45 km/h",
        "A white truck cuts in from the right at 45 km/h",
    ),
    ("", "something happened"),
    ("café crash—near-miss", "cafe crash near miss"),
    ("x y z", "a b c"),
    ("the the the cat", "the cat the"),
]


def test_rouge_l_matches_rouge_score_package():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    expected = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in ROUGE_PAIRS]
    got = rouge_l_f1([p for p, _ in ROUGE_PAIRS], [r for _, r in ROUGE_PAIRS])
    assert got == pytest.approx(expected, abs=1e-6)
    assert got[1] == approx(10 / 12)  # LCS "a truck cuts in from the at 45 km h", 12 tokens each
    metrics = CaptionMetrics()
    metrics.update([p for p, _ in ROUGE_PAIRS[:3]], [r for _, r in ROUGE_PAIRS[:3]])
    metrics.update([p for p, _ in ROUGE_PAIRS[3:]], [r for _, r in ROUGE_PAIRS[3:]])
    out = metrics.compute()
    assert out["n"] == len(ROUGE_PAIRS)
    assert out["rougeL"] == pytest.approx(sum(expected) / len(expected), abs=1e-6)
    assert "bertscore_f1" not in out  # no encoder configured


# ---------------------------------------------------------------------------- BERTScore


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    """A 2-layer BERT with random weights and a WordPiece vocabulary, saved like a real one."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_bert"))


def hand_bertscore(folder: Path, layer: int, cand: str, ref: str) -> float:
    """Greedy cosine matching of layer `layer` embeddings; [CLS]/[SEP] get zero weight but can
    be matched (the bert-score convention without idf)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()

    def embed(text: str) -> torch.Tensor:
        with torch.no_grad():
            hidden = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True)
        h = hidden.hidden_states[layer][0]
        return h / h.norm(dim=-1, keepdim=True)

    sim = embed(cand) @ embed(ref).T
    precision = sim[1:-1].max(dim=1).values.mean()
    recall = sim[:, 1:-1].max(dim=0).values.mean()
    return float(2 * precision * recall / (precision + recall))


def test_bertscore_with_local_encoder(tiny_encoder):
    preds = ["the ego car brakes hard", "the ego vehicle collides with a truck", "sunny road"]
    refs = ["the ego car brakes hard", "a pedestrian turns left at the red light", "the car stops"]
    scores = bertscore_f1(preds, refs, tiny_encoder)
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert scores[1] < 0.9 and scores[2] < 0.9
    for i in (1, 2):
        assert scores[i] == pytest.approx(
            hand_bertscore(tiny_encoder, 2, preds[i], refs[i]), abs=1e-5
        )
    layer1 = bertscore_f1(preds[1:2], refs[1:2], tiny_encoder, num_layers=1)
    assert layer1[0] == pytest.approx(hand_bertscore(tiny_encoder, 1, preds[1], refs[1]), abs=1e-5)
    metric = BERTScoreF1(tiny_encoder)
    metric.update(preds[:2], refs[:2])
    metric.update(preds[2:], refs[2:])
    assert metric.compute().item() == pytest.approx(sum(scores) / 3, abs=1e-5)
    captions = CaptionMetrics(encoder_path=tiny_encoder).compute()
    assert captions["n"] == 0 and math.isnan(captions["bertscore_f1"])


def test_bertscore_without_encoder_is_skipped_and_never_downloads(tmp_path):
    assert bertscore_f1(["a"], ["b"], encoder_path=None) is None
    with pytest.raises(FileNotFoundError, match="never downloads"):
        bertscore_f1(["a"], ["b"], encoder_path="roberta-large")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        BERTScoreF1(tmp_path)


# ---------------------------------------------------------------------------- closed QA


def test_closed_qa():
    assert closed_qa_correct("<think>two lanes</think>(C)", "C")
    assert not closed_qa_correct("B or C", "C")
    assert closed_qa_correct("Yes, there is a truck.", "yes")
    assert not closed_qa_correct("No.", "yes")
    assert closed_qa_correct("The red car.", "red car")
    preds = ["A", "B.", "yes", "Answer: D", None]
    targets = ["A", "C", "Yes", "D", "B"]
    assert closed_qa_accuracy(preds, targets) == approx(3 / 5)
    metric = ClosedQAAccuracy()
    metric.update(preds[:2], targets[:2])
    metric.update(preds[2:], targets[2:])
    assert metric.compute() == {"n": 5, "acc": approx(3 / 5)}


# ---------------------------------------------------------------------------- reports


def test_confusion_matrix_figure_annotates_counts():
    cm = torch.tensor([[2, 1, 0, 0], [1, 1, 0, 1], [0, 1, 3, 0]])
    fig = confusion_matrix_figure(cm, [C, N, M])
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts[:4] == ["2\n67%", "1\n33%", "0\n0%", "0\n0%"]
    assert texts[11] == "0\n0%" and texts[10] == "3\n75%"
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "invalid"
    image = figure_to_array(fig)
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert image.min() < 100 < image.max()  # something was drawn
    with pytest.raises(ValueError, match="does not fit"):
        confusion_matrix_figure(cm, [C, N])


def test_format_table():
    rows = group_rows(
        {"all": {"n": 10, "acc": 0.6, "f1": math.nan}, "source_nexar": {"n": 5, "acc": 0.6}}
    )
    table = format_table(rows, ["group", "n", "acc", "f1"])
    assert table.splitlines() == [
        "group          n    acc   f1",
        "------------  --  -----  ---",
        "all           10  0.600  nan",
        "source_nexar   5  0.600    -",
    ]
    assert format_table([{"a": "x", "b": 1.23456}], float_format=".2f").splitlines()[2] == "x  1.23"


# ---------------------------------------------------------------------------- distributed sync


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    grouped = grouped_event_metrics()
    calibration = GroupedMetrics(CalibrationMetrics, {"imu": ["on", "off"]})
    captions = CaptionMetrics()
    # rank 0: synthetic samples only; rank 1: nexar samples; bddx nowhere; rank 0 has no
    # calibration data at all
    part = slice(0, 5) if rank == 0 else slice(5, 10)
    grouped.update(PREDS[part], TARGETS[part], groups={"source": SOURCES[part], "imu": IMU[part]})
    if rank == 1:
        calibration.update(PROBS, BIN_TARGETS, groups={"imu": ["on"] * 6})
    pairs = ROUGE_PAIRS[:3] if rank == 0 else ROUGE_PAIRS[3:]
    captions.update([p for p, _ in pairs], [r for _, r in pairs])
    result = {
        "events": grouped.compute(),
        "calibration": calibration.compute(),
        "captions": captions.compute(),
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


@pytest.mark.slow
def test_metrics_sync_across_two_ranks(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = grouped_event_metrics()
    single.update(PREDS, TARGETS, groups={"source": SOURCES, "imu": IMU})
    expected = single.compute()
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert set(got["events"]) == set(expected)
        for group, values in expected.items():
            for key, value in values.items():
                assert got["events"][group][key] == pytest.approx(value, nan_ok=True), (group, key)
        assert got["calibration"]["imu_on"]["ece"] == pytest.approx(
            expected_calibration_error(PROBS, BIN_TARGETS)
        )
        assert got["calibration"]["all"]["n"] == 6 and "imu_off" not in got["calibration"]
        assert got["captions"]["n"] == len(ROUGE_PAIRS)
        assert got["captions"]["rougeL"] == pytest.approx(
            sum(rouge_l_f1([p for p, _ in ROUGE_PAIRS], [r for _, r in ROUGE_PAIRS]))
            / len(ROUGE_PAIRS)
        )


def test_alarm_metrics_rank_event_probability_from_option_probs():
    """P(event) = P(A) + P(B) for 3-class items, P(A) for binary ones; AUROC and AP by hand."""
    from sce.tasks.scoring import alarm_metrics, event_probability

    items = [
        {"label": "collision", "option_probs": [0.5, 0.3, 0.2]},  # 0.8
        {"label": "near_collision", "option_probs": [0.1, 0.2, 0.7]},  # 0.3
        {"label": "normal", "option_probs": [0.2, 0.2, 0.6]},  # 0.4
        {"label": "event", "option_probs": [0.9, 0.05, 0.05]},  # binary: 0.9
        {"label": "normal", "option_probs": [0.1, 0.1, 0.8]},  # 0.2
        {"label": "normal", "option_probs": None},  # not scored
    ]
    assert [round(event_probability(i), 6) for i in items[:5]] == [0.8, 0.3, 0.4, 0.9, 0.2]
    scores = alarm_metrics(items)
    # positives 0.9, 0.8, 0.3; negatives 0.4, 0.2: 5 of 6 pairs ranked right
    assert scores["alarm/auroc"] == pytest.approx(5 / 6)
    # ranked: 0.9 P, 0.8 P, 0.4 N, 0.3 P, 0.2 N -> AP = (1 + 1 + 3/4) / 3
    assert scores["alarm/ap"] == pytest.approx((1 + 1 + 0.75) / 3)
    assert alarm_metrics(items[2:3]) == {}  # one class only: undefined, not NaN
