"""Issue 17 points 3-4: the ablation script runs end to end (reduced: 1 seed, few clips, 1 epoch)
and writes its table with every direction's rows and finite values."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import pytest

from sce.studies.ablations import DIRECTIONS, TABLE_COLUMNS, AblationConfig, run_ablations


@pytest.mark.slow
def test_reduced_ablation_run_writes_the_table(tmp_path: Path) -> None:
    cfg = AblationConfig(
        out=str(tmp_path / "ablations"),
        seeds=(0,),
        clips=12,
        long_tail_clips=60,
        warmup_epochs=1,
        epochs=1,
    )
    start = time.time()
    run_ablations(cfg)
    print(f"reduced ablation run: {time.time() - start:.0f} s")
    with open(tmp_path / "ablations" / "ablation_table.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == TABLE_COLUMNS
    # rows: variants x evaluation settings x metrics, per direction
    expected = {
        name: sum(len(s.get("eval_imu", ("on",))) for s in d.variants.values()) * len(d.metrics)
        for name, d in DIRECTIONS.items()
    }
    assert expected == {"imu_dropout": 8, "balancing": 6, "fps": 6}
    assert {n: sum(r["direction"] == n for r in rows) for n in expected} == expected
    variants = {(r["direction"], r["variant"]) for r in rows}
    assert len(variants) == 7
    for row in rows:
        assert int(row["n"]) == 1
        assert math.isfinite(float(row["mean"])) and 0.0 <= float(row["mean"]) <= 1.0, row
        assert float(row["std"]) == 0.0 and float(row["seconds"]) > 0
    md = (tmp_path / "ablations" / "ablation_table.md").read_text()
    assert md.count("\n| ") == 1 + len(rows)  # header + one line per row


def test_unknown_direction_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown ablation direction"):
        run_ablations(AblationConfig(out=str(tmp_path), directions=("resolution",)))
