"""`sce compare RUN...` (issue 27 point 4): runs side by side, metrics per run and IMU setting,
and the config keys that differ, read from run folders as `sce report` reads them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from sce.cli import main

SCALARS = {  # (run name) -> the metrics.json scalars of its last evaluation
    "rank8": {"imu_on/acc": 0.75, "imu_off/acc": 0.5, "imu_on/invalid_rate": 0.125},
    "rank32": {"imu_on/acc": 0.875, "imu_off/acc": 0.625, "imu_on/invalid_rate": 0.0},
}


def write_run(folder: Path, rank: int, scalars: dict, split: str = "val", step: int = 9) -> None:
    """A log folder as `sce fit` leaves it: config.yaml and metrics.json."""
    folder.mkdir(parents=True)
    config = {
        "model": {"rank": rank, "alpha": 2 * rank, "lr": 5e-5},
        "data": {"manifest": "m.jsonl", "window": {"fps": 3.0}},
        "trainer": {
            "default_root_dir": str(folder),
            "logger": {"init_args": {"save_dir": str(folder), "version": folder.name}},
        },
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    record = {"split": split, "step": step, "scalars": scalars, "sources": ["synthetic"]}
    (folder / "metrics.json").write_text(json.dumps(record))


def test_compare_prints_runs_side_by_side_with_the_config_keys_that_differ(tmp_path, capsys):
    write_run(tmp_path / "rank8", 8, SCALARS["rank8"])
    write_run(tmp_path / "rank32", 32, SCALARS["rank32"], split="test", step=12)
    assert main(["compare", str(tmp_path / "rank8"), str(tmp_path / "rank32")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    # where each column's numbers come from: file, split and step
    assert any(x.startswith("  rank8: ") and "split val, step 9" in x for x in lines)
    assert any(x.startswith("  rank32: ") and "split test, step 12" in x for x in lines)
    header = next(x for x in lines if x.startswith("metric"))
    assert header.split() == ["metric", "rank8", "IMU", "rank8", "video", "rank32", "IMU"] + [
        "rank32",
        "video",
    ]
    assert "video - IMU" not in out  # no change column of one run in a comparison
    row = {
        x.split()[0]: x.split()[1:] for x in lines if x.split()[:1] in (["acc"], ["invalid_rate"])
    }
    assert row["acc"] == ["0.750", "0.500", "0.875", "0.625"]
    assert row["invalid_rate"] == ["0.125", "-", "0.000", "-"]
    # the keys that differ (rank, alpha), not the ones alike nor the run folders' own paths
    block = out[out.index("config keys that differ (2):") :].splitlines()
    assert block[1].split() == ["key", "rank8", "rank32"]
    assert [x.split() for x in block[3:]] == [
        ["model.alpha", "16", "64"],
        ["model.rank", "8", "32"],
    ]


def test_compare_names_a_folder_without_metrics(tmp_path, capsys):
    write_run(tmp_path / "ok", 8, SCALARS["rank8"])
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "ok"), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'empty'}: no metrics.json" in err
