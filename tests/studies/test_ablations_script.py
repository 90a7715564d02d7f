"""Issue 17 points 3-4: the ablation script runs end to end (reduced: 1 seed, few clips, 1 epoch)
and writes its table with every direction's rows and finite values."""

from __future__ import annotations

import csv
import math
import time
from argparse import Namespace
from pathlib import Path

import pytest

from sce.studies.ablations import (
    DIRECTIONS,
    TABLE_COLUMNS,
    AblationConfig,
    ablation_config,
    plan_direction,
    run_ablations,
)
from sce.studies.sweep import get_dotted


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
        name: sum(len(s.get("data.eval_imu", ["on"])) for s in d.variants.values()) * len(d.metrics)
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


def test_directions_run_as_sweeps_of_the_in_process_recipe(tmp_path, tiny_kit, synthetic_manifest):
    """Each direction is a seeded sweep (the mechanism of `sce sweep`) whose runs train what the
    script trained in process before: the recipe's settings, the variant's, the seed's."""
    cfg = AblationConfig(out=str(tmp_path), seeds=(0, 2))
    for name, direction in DIRECTIONS.items():
        plan = plan_direction(direction, cfg, tmp_path, tiny_kit, synthetic_manifest)
        assert plan.names == list(direction.variants) and plan.seeds == [0, 2]
        assert len(plan.variants) == 2 * len(direction.variants)
        for run in plan.variants:
            config = run.config
            assert run.run_dir == tmp_path / name / run.name / f"seed{run.seed}"
            assert config["seed_everything"] == config["data"]["seed"] == run.seed
            assert config["model"]["model_path"] == str(tiny_kit)  # data.processor_path follows
            assert {k: config["model"][k] for k in ("finetuning", "lr", "scheduler", "warmup_ratio")} == {
                "finetuning": "full", "lr": cfg.lr, "scheduler": "cosine", "warmup_ratio": 0.05
            }  # fmt: skip
            trainer = config["trainer"]
            assert (trainer["max_epochs"], trainer["limit_val_batches"]) == (cfg.epochs, 0)
            assert trainer["callbacks"][0]["init_args"]["every_n_epochs"] == 0  # test only
            data = config["data"]
            assert data["task_weights"] == {"mcq": 0.8, "caption": 0.2}
            window = data["window"]
            assert (window["width"], window["height"], data["batch_size"]) == (
                *cfg.frame_size,
                cfg.batch_size,
            )
            assert data["cache_dir"] == str(synthetic_manifest.parent / "frame_cache")
            assert data["manifest"] == str(synthetic_manifest)
            for key, value in direction.variants[run.name].items():
                assert get_dotted(config, key) == value, (name, run.name, key)
            if "data.eval_imu" not in direction.variants[run.name]:
                assert data["eval_imu"] == ["on"]


def test_unknown_direction_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown ablation direction"):
        run_ablations(AblationConfig(out=str(tmp_path), directions=("resolution",)))


def test_quick_run_is_one_seed_of_every_direction_small_and_elsewhere() -> None:
    quick = ablation_config(Namespace(quick=True, out=AblationConfig.out, seeds="0,1,2",
                                      only=",".join(DIRECTIONS)))  # fmt: skip
    full = AblationConfig()
    assert quick.seeds == (0,) and quick.directions == tuple(DIRECTIONS)
    assert quick.out == "runs/ablations_quick" != full.out  # never mixed into the full table
    assert quick.epochs < full.epochs and quick.clips < full.clips
    explicit = ablation_config(Namespace(quick=True, out="x", seeds="1,2", only="fps"))
    assert (explicit.out, explicit.seeds, explicit.directions) == ("x", (1, 2), ("fps",))
