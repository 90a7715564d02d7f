"""TensorBoard a researcher can read (issue 15 point 6): no duplicate per-source scalars, images
at their scalars' step, a precision-recall curve of the alarm, clips/s and gradient norm."""

from __future__ import annotations

from pytest import approx

from sce.metrics.evaluate import summarize


def _item(label: str, answer: str, source: str, imu_on: bool, probs: list[float]) -> dict:
    return {
        "id": f"{source}-{label}-{imu_on}",
        "task": "mcq",
        "label": label,
        "source": source,
        "imu_on": imu_on,
        "prediction": answer,
        "option_probs": probs,
    }


ANSWERS = [
    ("collision", "A. collision", [0.8, 0.1, 0.1]),
    ("near_collision", "A. collision", [0.5, 0.3, 0.2]),
    ("normal", "C. normal", [0.1, 0.2, 0.7]),
    ("normal", "B. near-collision", [0.3, 0.4, 0.3]),
]


def test_one_source_gets_no_per_source_copy_of_the_overall_scalars():
    items = [_item(lbl, a, "synthetic", imu, p) for lbl, a, p in ANSWERS for imu in (True, False)]
    scalars = summarize(items).scalars
    assert scalars["acc"] == approx(0.5) and scalars["imu_on/acc"] == approx(0.5)
    assert not [k for k in scalars if "source_" in k]


def test_two_sources_keep_their_per_source_scalars():
    items = [_item(lbl, a, "synthetic", True, p) for lbl, a, p in ANSWERS]
    items += [_item("collision", "C. normal", "own", True, [0.2, 0.2, 0.6])]
    scalars = summarize(items).scalars
    assert scalars["source_synthetic/acc"] == approx(2 / 4)
    assert scalars["source_own/acc"] == 0.0 and scalars["acc"] == approx(2 / 5)
