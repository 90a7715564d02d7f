"""`sce data mine-events` (issue 16 point 5): synthetic long recordings with known events, and
the real comma2k19 highway segment."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from helpers.realdata import comma_segment_with_video

from sce.cli import main
from sce.data.alignment import Alignment
from sce.data.clip import WindowSpec, load_clip
from sce.data.imu import ImuSignal
from sce.data.schema import load_manifest
from sce.prepare.mining import Thresholds, detect_events, mine_manifest
from sce.prepare.sources import prepare
from sce.prepare.synthetic import sample_scenario, simulate

PATTERN = ("normal", "near_collision", "normal", "collision", "normal", "near_collision", "normal")
CLIP_S = 16.0


def long_drive(seed: int) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """[N, 7] IMU rows (t, a, gyro) of 7 synthetic 16 s clips back to back (112 s), and the
    known (time, label) of each collision / near-collision."""
    rows, events = [], []
    for k, label in enumerate(PATTERN):
        rng = np.random.default_rng([seed, k])
        scenario = sample_scenario(rng, label, CLIP_S)
        kin = simulate(scenario, rng, CLIP_S)
        offset = k * CLIP_S
        rows.append(np.column_stack([kin.t[:-1] + offset, kin.imu[:-1]]))
        if label != "normal":
            events.append((scenario.event_time + offset, label))
    return np.concatenate(rows), events


def tiny_video(path: Path, seconds: int) -> Path:
    """A 1 fps 32x24 mp4 of `seconds` frames (the recording's duration for the loader)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for k in range(seconds):
            image = np.full((24, 32, 3), k % 250, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def score(found, events, tolerance: float = 0.5) -> tuple[int, int, int]:
    """(hits with the right kind, missed events, false alarms)."""
    kind = {"collision": "impact", "near_collision": "hard_braking"}
    hits = sum(
        any(abs(c.time - t) <= tolerance and c.kind == kind[label] for c in found)
        for t, label in events
    )
    false = sum(not any(abs(c.time - t) <= tolerance for t, _ in events) for c in found)
    return hits, len(events) - hits, false


def test_detects_known_events_in_long_drives(capsys: pytest.CaptureFixture[str]) -> None:
    """Five 112 s drives, 3 events each (2 hard brakes, 1 collision) among normal driving
    with gentle 1-1.6 m/s^2 speed changes: every event found with its kind, no false alarm."""
    total = [0, 0, 0]
    for seed in range(5):
        rows, events = long_drive(seed)
        imu = ImuSignal(rows[:, 0], rows[:, 1:4], rows[:, 4:7])
        hits, missed, false = score(detect_events(imu), events)
        total = [total[0] + hits, total[1] + missed, total[2] + false]
    with capsys.disabled():
        print(
            f"\nmine-events on 5 x 112 s synthetic drives: recall {total[0]}/15, false alarms {total[2]}"
        )
    assert total == [15, 0, 0]
    stricter = Thresholds(brake_m_s2=-6.0)  # above every near-collision's braking
    rows, events = long_drive(0)
    found = detect_events(ImuSignal(rows[:, 0], rows[:, 1:4], rows[:, 4:7]), stricter)
    assert [c.kind for c in found] == ["impact"]


def test_candidates_are_records_for_review(tmp_path: Path) -> None:
    """A mounted device (IMU rotated, rotation in the record): candidates come back in the
    vehicle frame as chunk records of the recording, label untouched, kind in metadata."""
    rows, events = long_drive(1)
    mounting = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])  # det +1
    device = np.column_stack([rows[:, 0], rows[:, 1:4] @ mounting.T, rows[:, 4:7] @ mounting.T])
    np.savetxt(
        tmp_path / "imu.csv",
        device,
        fmt="%.5f",
        delimiter=",",
        header="t,ax,ay,az,gx,gy,gz",
        comments="",
    )
    tiny_video(tmp_path / "drive.mp4", 112)
    record = {
        "id": "drive1", "video": "drive.mp4", "imu": "imu.csv", "label": "normal",
        "source": "private", "split": "train",
        "metadata": Alignment(mounting.T, "axes").metadata(),  # device -> vehicle = mounting^T
    }  # fmt: skip
    (tmp_path / "m.jsonl").write_text(json.dumps(record) + "\n")
    report = mine_manifest(tmp_path / "m.jsonl", tmp_path / "out" / "candidates.jsonl")
    candidates = load_manifest(tmp_path / "out" / "candidates.jsonl")
    assert [c.metadata["candidate"]["kind"] for c in candidates] == [
        "hard_braking", "impact", "hard_braking",
    ]  # fmt: skip
    assert len(report.candidates) == 3 and report.hours == pytest.approx(112 / 3600)
    for candidate, (time, _) in zip(candidates, events, strict=True):
        info = candidate.metadata["candidate"]
        assert info["status"] == "unreviewed" and info["source_id"] == "drive1"
        assert candidate.label == "normal"  # the recording's label; mining sets none
        start, end = candidate.metadata["clip_start"], candidate.metadata["clip_end"]
        assert end - start == pytest.approx(6.0)
        assert start + candidate.event_time == pytest.approx(time, abs=0.5)
        clip = load_clip(candidate, WindowSpec(fps=1, before=4, after=2, width=32, height=24))
        assert clip.event_time_source == "manifest"
        assert clip.event_time == pytest.approx(info["time_in_recording_s"], abs=1e-6)


def test_comma2k19_highway_has_no_candidate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real 60 s highway segment: no hard braking (lowest 0.3 s a_x -2.32 m/s^2) and no
    impact (largest 0.1 s |a_h| 2.56 m/s^2; single raw samples reach 10.1 m/s^2: vibration,
    which is why the levels apply to short means)."""
    comma_segment_with_video(tmp_path / "root", 32, 24)
    prepare("comma2k19", tmp_path / "root", tmp_path / "m.jsonl")
    code = main(
        ["data", "mine-events", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "c.jsonl")]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "1 recordings, 0.02 h (0.02 h covered; 1 mined, 0 partly covered, 0 skipped): " in out
    assert "0 candidates" in out and "  mined comma2k19_" in out
    assert (tmp_path / "c.jsonl").read_text() == ""


# ------------------------------------------- issue 26 point 5: every drive accounted for


def write_drive(folder: Path, name: str, rows: np.ndarray) -> dict:
    """The IMU rows as `<name>.csv` beside a 112 s video; its manifest record."""
    np.savetxt(
        folder / f"{name}.csv", rows, fmt="%.5f", delimiter=",",
        header="t,ax,ay,az,gx,gy,gz", comments="",
    )  # fmt: skip
    return {
        "id": name, "video": "drive.mp4", "imu": f"{name}.csv", "label": "normal",
        "source": "private", "split": "train",
    }  # fmt: skip


def test_every_drive_is_accounted_for(tmp_path: Path, capsys) -> None:
    """Issue 26.5's probes, one drive each (112 s, 2 hard brakes and 1 collision unless said):
    a_y NaN throughout (before: rows kept only where a_x and a_y were both finite, so nothing
    was found and the drive was not listed) now finds all three events on a_x and is partly
    covered; a_x stuck at exactly -4.0 for 10 s (before: mined as a braking event) is left out
    as stuck; all-NaN, dead (all zero) and 0.5 s IMUs (before: 0 candidates, no line) are
    skipped with their reason."""
    rows, events = long_drive(0)
    tiny_video(tmp_path / "drive.mp4", 112)
    no_ay = rows.copy()
    no_ay[:, 2] = np.nan
    stuck = rows.copy()
    stuck[(stuck[:, 0] >= 34.0) & (stuck[:, 0] < 44.0), 1] = -4.0
    all_nan, dead = rows.copy(), rows.copy()
    all_nan[:, 1:4] = np.nan
    dead[:, 1:4] = 0.0
    drives = {
        "clean": rows, "no_ay": no_ay, "stuck": stuck, "all_nan": all_nan, "dead": dead,
        "short": rows[rows[:, 0] < 0.5],
    }  # fmt: skip
    records = [write_drive(tmp_path, name, data) for name, data in drives.items()]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out_manifest = tmp_path / "c.jsonl"
    assert main(["data", "mine-events", str(tmp_path / "m.jsonl"), "--out", str(out_manifest)]) == 0
    out = capsys.readouterr().out
    found: dict[str, list[tuple[float, str]]] = {}
    for c in load_manifest(out_manifest):
        info = c.metadata["candidate"]
        found.setdefault(info["source_id"], []).append((info["time_in_recording_s"], info["kind"]))
    expected = [("hard_braking" if label == "near_collision" else "impact") for _, label in events]
    for name in ("clean", "no_ay", "stuck"):
        assert [kind for _, kind in found[name]] == expected, name
        for (time, _), (truth, _) in zip(found[name], events, strict=True):
            assert time == pytest.approx(truth, abs=0.5)
    assert set(found) == {"clean", "no_ay", "stuck"}
    assert (
        "6 recordings, 0.19 h (0.09 h covered; 1 mined, 2 partly covered, 3 skipped): 9 candidates"
        in out
    )
    assert "  mined clean: 0.031 h covered" in out
    assert (
        "  partly covered no_ay: 0.031 h of 0.031 h (usable a_x 112.0 s, a_y 0.0 s of 112.0 s: a_y: all NaN)"
        in out
    )
    assert (
        "  partly covered stuck: 0.028 h of 0.031 h (usable a_x 102.0 s, a_y 112.0 s of 112.0 s: a_x: stuck for 10.0 s (first at 34.0 s, value -4))"
        in out
    )
    assert (
        "  skipped all_nan: usable a_x 0.0 s, a_y 0.0 s of 112.0 s: a_x: all NaN; a_y: all NaN"
        in out
    )
    assert (
        "  skipped dead: usable a_x 0.0 s, a_y 0.0 s of 112.0 s: a_x: dead (constant 0 throughout); a_y: dead (constant 0 throughout)"
        in out
    )
    assert "  skipped short: usable a_x 0.5 s, a_y 0.5 s of 112.0 s (under 1 s of a_x)" in out
