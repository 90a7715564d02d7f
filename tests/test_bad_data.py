"""Bad input never reaches a batch unnamed (issue 14): each test builds the bad input the issue
describes and asserts the error naming file, line, record id and field, or the counted skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sce.data.schema import ManifestError, load_manifest
from sce.data.validate import validate_manifest


def _row(i: int, **annotations) -> dict:
    return {
        "id": f"clip{i}",
        "video": "clip.mp4",
        "label": "collision",
        "source": "private",
        "split": "train",
        "annotations": annotations,
    }


def _manifest(folder: Path, lines: list[str]) -> Path:
    """manifest.jsonl in `folder` (with the clip.mp4 every row points to)."""
    (folder / "clip.mp4").write_bytes(b"x")
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------ point 2: probability in [0, 1]
PROBABILITIES = [  # the values, as raw JSON text (Python's json reads NaN)
    ("NaN", "must be finite, got nan"),
    ("1e20", "must be within [0, 1], got 1e+20"),
    ("87", "must be within [0, 1] (a percentage?), got 87"),
]


@pytest.mark.parametrize(("value", "detail"), PROBABILITIES)
def test_probability_outside_unit_interval_is_named_at_load(tmp_path, value, detail) -> None:
    line = json.dumps(_row(1, probability=0.5)).replace(
        '"probability": 0.5', f'"probability": {value}'
    )
    path = _manifest(tmp_path, [json.dumps(_row(0, probability=0.25)), line])
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(err.value) == (
        f"{path} line 2, id 'clip1': field 'annotations.probability': {detail}"
    )


def test_validate_reports_every_bad_probability(tmp_path) -> None:
    lines = [json.dumps(_row(0, probability=0.25))]
    for i, (value, _) in enumerate(PROBABILITIES, start=1):
        row = json.dumps(_row(i, probability=0.5))
        lines.append(row.replace('"probability": 0.5', f'"probability": {value}'))
    report = validate_manifest(_manifest(tmp_path, lines), decode=False)
    assert report.problems["schema: annotations.probability"] == 3
    assert report.examples["schema: annotations.probability"] == [
        f"line {i + 2}, id 'clip{i + 1}': {detail}" for i, (_, detail) in enumerate(PROBABILITIES)
    ]
