"""Issue 15 point 2: `sce data validate --config CFG` checks what training will do (telemetry
clocks and rates, the window plan, splits, task weights), and `sce fit` prints a data error in
two lines naming the clip and the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.paths import REPO

from sce.cli import main
from sce.data.schema import ClipRecord, load_manifest, write_manifest
from sce.prepare.validate import telemetry_clock_problems, validate_manifest

DEMO = REPO / "experiments" / "demo.yaml"
CLOCK_HINT = "timestamps in ms, or epoch seconds? expected seconds from the clip start"


def copy_manifest(
    synthetic_manifest: Path, out: Path, change=lambda r: r, imu_time=None, ids=()
) -> tuple[Path, list[ClipRecord]]:
    """The synthetic manifest at `out` with absolute paths, each record passed through `change`;
    the IMU files of `ids` rewritten with t -> imu_time(t) (copies beside `out`)."""
    records = load_manifest(synthetic_manifest)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for record in records:
        paths = {name: str(record.path(name)) for name in ("video", "imu", "gps")}
        record = dataclasses.replace(record, **paths)
        if record.id in ids:
            imu = pd.read_csv(record.imu)
            imu["t"] = imu_time(imu["t"].to_numpy())
            record.imu = str(out.parent / f"{record.id}.imu.csv")
            imu.to_csv(record.imu, index=False, float_format="%.6f")
        rows.append(change(record).to_json())
    write_manifest(rows, out)
    return out, load_manifest(out)


def test_clock_problems_name_id_file_and_measured_span(
    tmp_path: Path, synthetic_manifest: Path
) -> None:
    first = load_manifest(synthetic_manifest)[0].id
    shifts = {"ms": lambda t: t * 1000.0, "epoch": lambda t: t + 1.7e9}
    reports = {}
    for name, shift in shifts.items():
        path, records = copy_manifest(
            synthetic_manifest, tmp_path / name / "m.jsonl", imu_time=shift, ids=[first]
        )
        reports[name] = validate_manifest(path, decode=False)
        # before: "9 records checked: no problems" for both
        assert not reports[name].ok and reports[name].bad_records == {first}
    imu_file = tmp_path / "ms" / f"{first}.imu.csv"
    (example,) = reports["ms"].examples["imu time span far longer than the video"]
    assert example == (
        f"line 1, id '{first}': {imu_file}: t 0.000 to 6990.000 s (6990.0 s) for a 7.00 s "
        f"video: {CLOCK_HINT}"
    )
    # a 100 Hz file stamped in ms reads as 0.1 Hz: slower than the 3 fps frames
    (example,) = reports["ms"].examples["imu rate below the frame rate"]
    assert example.startswith(f"line 1, id '{first}': {imu_file}: 0.1 Hz < 3 fps")
    # epoch seconds never overlap the video: sce.prepare.telemetry_checks reports the offset
    (example,) = reports["epoch"].examples[
        "imu time range does not overlap the video (clock offset?)"
    ]
    assert "offset +1700000000.000 s" in example
    assert "imu shorter than video" not in reports["epoch"].problems  # one cause, one problem


def test_clock_problems_function_values() -> None:
    t = np.arange(0, 7.0, 0.01)
    assert telemetry_clock_problems(t, 7.0, "imu", fps=3.0) == []
    assert [p for p, _ in telemetry_clock_problems(t[::50], 7.0, "imu", fps=3.0)] == [
        "imu rate below the frame rate"  # 2 Hz
    ]
    assert telemetry_clock_problems(t * 1000, 7.0, "gps")[0][0] == (
        "gps time span far longer than the video"
    )
    assert telemetry_clock_problems(t[:200], 7.0, "gps") == []  # short: validate's own check


def test_validate_config_runs_the_training_plan(
    tmp_path: Path, synthetic_manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = load_manifest(synthetic_manifest)
    gap_id = next(r.id for r in records if r.split == "train" and r.event_time)
    event = next(r.event_time for r in records if r.id == gap_id)

    def no_captions(record: ClipRecord) -> ClipRecord:
        return dataclasses.replace(record, annotations={})

    path, _ = copy_manifest(synthetic_manifest, tmp_path / "m.jsonl", no_captions)
    # a 0.5 s hole in the IMU inside the event window: plain validate cannot see it, training
    # drops this clip's IMU (max gap 0.25 s)
    imu_file = next(r for r in load_manifest(path) if r.id == gap_id).path("imu")
    imu = pd.read_csv(imu_file)
    imu[(imu.t < event - 1.0) | (imu.t > event - 0.5)].to_csv(tmp_path / "gap.csv", index=False)
    rows = [r.to_json() | ({"imu": str(tmp_path / "gap.csv")} if r.id == gap_id else {})
            for r in load_manifest(path)]  # fmt: skip
    write_manifest(rows, path)
    assert validate_manifest(path, decode=False).ok  # before: nothing found

    argv = ["data", "validate", "--config", str(DEMO), f"--data.manifest={path}", "--no-decode"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    n_train = sum(r.split == "train" for r in records)
    assert (
        f"data.task_weights 'caption' = 0.25, but none of the {n_train} train records has "
        "annotations.caption"
    ) in out
    assert f"id '{gap_id}': imu unusable: {tmp_path / 'gap.csv'}: 'ax' has a 0.520 s gap" in out
    assert "imu dropped by the window plan" in out
    # the positional manifest works with --config too, and overrides reach the data module
    assert (
        main(["data", "validate", "--config", str(DEMO), str(path), "--data.window.fps=600"]) == 1
    )
    assert "imu rate below the frame rate" in capsys.readouterr().out


def test_validate_reports_empty_splits_and_missing_classes(
    tmp_path: Path, synthetic_manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def train_or_val(record: ClipRecord) -> ClipRecord:
        split = "val" if record.label == "normal" and record.split == "val" else "train"
        return dataclasses.replace(record, split=split)

    path, records = copy_manifest(synthetic_manifest, tmp_path / "m.jsonl", train_or_val)
    report = validate_manifest(path, decode=False)
    assert report.ok  # fit can run: a train and a val split
    assert report.warnings == [
        "split 'test' is empty (train 8, val 1, test 0): sce test needs test records",
        "split 'val' has no collision / near_collision record "
        "(manifest: collision 3, near_collision 3)",
    ]
    assert "val            0               0       1      1" in report.overview().splitlines()
    all_train = lambda r: dataclasses.replace(r, split="train")  # noqa: E731
    path, _ = copy_manifest(synthetic_manifest, tmp_path / "t.jsonl", all_train)
    report = validate_manifest(path, decode=False)
    # before: "9 records checked: no problems"; without --config a warning (the manifest may
    # serve labeling only), with it an error: sce fit stops on an empty val split
    empty_val = "no val records (train 9, val 0, test 0): sce fit needs val records"
    assert report.warnings[0] == f"split 'val' is empty: {empty_val}"
    assert report.table() == "9 records checked: no problems; 2 warning(s) above"
    argv = ["data", "validate", "--config", str(DEMO), str(path), "--no-decode"]
    assert main(argv) == 1
    assert f"split empty      1  {empty_val}" in capsys.readouterr().out


def test_fit_data_error_in_two_lines(
    tmp_path: Path, synthetic_manifest: Path, tiny_kit: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ids = [r.id for r in load_manifest(synthetic_manifest)]
    path, records = copy_manifest(
        synthetic_manifest, tmp_path / "m.jsonl", imu_time=lambda t: t * 1000, ids=ids
    )
    fast = [
        f"--model.model_path={tiny_kit}", f"--data.manifest={path}", "--data.window.width=56",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
        "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
    ]  # fmt: skip
    assert main(["fit", "--config", str(DEMO), *fast]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # before: a 75-line traceback ending in "ValueError: IMU rate 0.100 Hz is below the frame
    # rate 3.0 fps", naming neither the clip nor the file
    err = err[-2:]  # after Lightning's INFO lines
    assert err[0].startswith("sce fit: data error (ClipError): sample '")
    clip = err[0].split("'")[1]
    imu = next(r for r in records if r.id == clip).path("imu")
    assert f"file {imu}: IMU rate 0.100 Hz is below the frame rate 3.0 fps" in err[0]
    assert err[1].startswith("  raised at ") and "plan_window" in err[1]
