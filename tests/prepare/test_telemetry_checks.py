"""`sce data validate` on device clocks and rates (issue 16 point 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.realdata import comma_segment_with_video

from sce.data.schema import load_manifest
from sce.prepare.sources import prepare
from sce.prepare.telemetry_checks import clock_stats
from sce.prepare.validate import validate_manifest


def one_record_manifest(
    synthetic_manifest: Path, tmp_path: Path, imu=None, gps=None, **meta
) -> Path:
    """The first synthetic record with its IMU/GPS tables changed by `imu(frame)` / `gps(frame)`."""
    record = load_manifest(synthetic_manifest)[0]
    data = record.to_json() | {"video": str(record.path("video"))}
    data["metadata"] = data["metadata"] | meta
    for name, change in (("imu", imu), ("gps", gps)):
        frame = pd.read_csv(record.path(name))
        path = tmp_path / f"{name}.csv"
        (change or (lambda f: f))(frame).to_csv(path, index=False)
        data[name] = str(path)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps(data) + "\n")
    return manifest


def shifted(seconds: float):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(t=frame["t"] + seconds)

    return change


def test_device_clock_offset_is_a_problem_with_the_offset(
    synthetic_manifest: Path, tmp_path: Path
) -> None:
    """IMU and GPS still on a device boot clock (46,408.5 s) do not overlap the 7 s video."""
    manifest = one_record_manifest(synthetic_manifest, tmp_path, shifted(46408.5), shifted(46408.5))
    report = validate_manifest(manifest, decode=False)
    for kind in ("imu", "gps"):
        problem = f"{kind} time range does not overlap the video (clock offset?)"
        assert report.problems[problem] == 1
        assert "offset +46408.500 s" in report.examples[problem][0]
    assert "offset +46408.500 s" in report.table()


def test_partial_overlap_and_rates_are_noted(synthetic_manifest: Path, tmp_path: Path) -> None:
    """An IMU starting 3 s late at 104.3 Hz with 1 ms jitter: noted (not an error), measured."""
    rng = np.random.default_rng(0)

    def late_and_fast(frame: pd.DataFrame) -> pd.DataFrame:
        t = 3.0 + np.arange(len(frame)) / 104.3 + rng.normal(0, 0.001, len(frame))
        return frame.assign(t=np.sort(t))

    manifest = one_record_manifest(synthetic_manifest, tmp_path, imu=late_and_fast)
    report = validate_manifest(manifest, decode=False)
    assert not any("overlap" in p for p in report.problems)
    assert report.notes["imu starts after the video"] == 1
    assert "offset +3.000 s" in report.note_examples["imu starts after the video"][0]
    (rate,) = report.note_examples["imu rate differs from nominal"]
    assert "nominal 100 Hz, measured 104." in rate
    stats = clock_stats(pd.read_csv(tmp_path / "imu.csv")["t"].to_numpy())
    assert stats.mean_rate == pytest.approx(104.3, abs=0.05)
    assert stats.jitter_ms == pytest.approx(1.4, abs=0.2)  # diff of two N(0, 1 ms) stamps
    assert report.notes["imu time stamps jitter or gap"] == 1
    assert report.notes.keys() <= {
        "imu starts after the video",
        "imu rate differs from nominal",
        "imu time stamps jitter or gap",
        "imu shorter than video",
    }


def test_declared_nominal_rate(synthetic_manifest: Path, tmp_path: Path) -> None:
    """A record declaring its device's 1 Hz GPS as 10 Hz gets the rate noted against 10 Hz."""
    manifest = one_record_manifest(synthetic_manifest, tmp_path, nominal_rate_hz={"gps": 10.0})
    report = validate_manifest(manifest, decode=False)
    (note,) = report.note_examples["gps rate differs from nominal"]
    assert "nominal 10 Hz, measured 1.00 Hz" in note


def test_comma2k19_rates_and_clock(tmp_path: Path) -> None:
    """The real segment after prepare: on the video's clock, IMU 104.3 Hz, GNSS jitter."""
    comma_segment_with_video(tmp_path / "root", 32, 24)
    prepare("comma2k19", tmp_path / "root", tmp_path / "m.jsonl")
    report = validate_manifest(tmp_path / "m.jsonl", decode=False)
    assert report.ok, report.table()
    (imu,) = report.note_examples["imu rate differs from nominal"]
    assert "measured 104.35 Hz (mean 104.26 Hz), jitter 0.014 ms, 0 gaps" in imu
    (gps,) = report.note_examples["gps time stamps jitter or gap"]
    assert "nominal 10 Hz, measured 9.99 Hz (mean 9.68 Hz), jitter 16.069 ms" in gps
