"""comma2k19 segments -> canonical records (issue 16 point 1), on the shared real segment.

The segment's arrays are real (../shared/realdata); its raw HEVC video is not shipped, so a
stand-in raw stream with one frame per real frame time is written next to a copy in tmp.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from helpers.realdata import COMMA_SEGMENT, comma_segment_with_video, require, write_raw_hevc

from sce.data import imu as imu_lib
from sce.data import video as video_lib
from sce.data.schema import load_manifest
from sce.prepare.sources import SourceError, add_prepare_arguments, prepare, prepare_command


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    """(manifest records, the segment copy) after `prepare --source comma2k19`."""
    tmp = tmp_path_factory.mktemp("comma")
    segment = comma_segment_with_video(tmp / "root")
    report = prepare("comma2k19", tmp / "root", tmp / "out" / "manifest.jsonl")
    assert report.n_records == 1 and report.n_skipped == 0
    return load_manifest(tmp / "out" / "manifest.jsonl"), segment


def test_record_fields(prepared) -> None:
    (record,), _ = prepared
    assert record.id == "comma2k19_b0c9d2329ad1606b_2018-08-02--08-34-47_40"
    assert (record.label, record.source, record.event_time) == ("normal", "comma2k19", None)
    assert record.metadata["route"] == "b0c9d2329ad1606b|2018-08-02--08-34-47"
    assert record.metadata["device_clock_zero_s"] == pytest.approx(46408.547498)
    rates = record.metadata["measured_rate_hz"]
    assert rates["imu"] == pytest.approx(104.26, abs=0.01)
    assert rates["gps"] == pytest.approx(9.68, abs=0.01)
    assert rates["can_speed"] == pytest.approx(82.90, abs=0.01)
    assert record.metadata["frame_rate_hz"] == pytest.approx(20.0, abs=1e-3)


def test_video_remuxed_at_the_real_frame_times(prepared) -> None:
    """The mp4 shows frame k at frame_times[k] - frame_times[0]; both decoders read it."""
    (record,), segment = prepared
    frame_times = np.load(segment / "global_pose" / "frame_times")
    info = video_lib.video_info(record.path("video"))
    assert info.n_frames == 1200 and info.fps == pytest.approx(20.0, abs=1e-3)
    with av.open(str(record.path("video"))) as container:
        shown = np.array([f.time for f in container.decode(container.streams.video[0])])
    assert len(shown) == 1200
    np.testing.assert_allclose(shown, frame_times - frame_times[0], atol=1e-4)
    for backend in ("decord", "pyav"):
        frames = video_lib.read_frames(
            record.path("video"), [0.0, 1.0, 30.0, 59.9], size=None, backend=backend
        )
        levels = frames[:, 0, 0, 0].astype(int)
        np.testing.assert_allclose(levels, [0, 20, 600 % 250, 1198 % 250], atol=3)


def test_telemetry_on_the_video_time_base(prepared) -> None:
    """IMU/GPS keep every sample, shifted by the first frame's boot time; units unchanged."""
    (record,), segment = prepared
    zero = float(np.load(segment / "global_pose" / "frame_times")[0])
    t_acc = np.load(segment / "processed_log/IMU/accelerometer/t")
    acc = np.load(segment / "processed_log/IMU/accelerometer/value")
    gyro = np.load(segment / "processed_log/IMU/gyro/value")
    imu = imu_lib.load_imu(record.path("imu"))
    assert len(imu.t) == 6256
    np.testing.assert_allclose(imu.t, t_acc - zero, atol=1e-6)
    assert imu.t[0] == pytest.approx(0.0325, abs=1e-4)  # the IMU starts 33 ms after frame 0
    np.testing.assert_allclose(imu.accel, acc, atol=1e-6)
    np.testing.assert_allclose(imu.gyro, gyro, atol=1e-6)
    assert np.nanmean(imu.accel[:, 2]) == pytest.approx(-9.66, abs=0.01)  # gravity, device z
    assert imu.fs == pytest.approx(104.36, abs=0.01)
    gps = imu_lib.load_gps(record.path("gps"))
    gnss = np.load(segment / "processed_log/GNSS/live_gnss_ublox/value")
    assert len(gps.t) == 579
    np.testing.assert_allclose(gps.speed, gnss[:, 2], atol=1e-6)
    assert 0.0 < gps.t[0] < 0.2 and 59.7 < gps.t[-1] < 60.0
    can = imu_lib.load_gps(Path(record.root) / record.metadata["can_speed"])
    assert len(can.t) == 4974 and 7.9 < can.speed.min() < can.speed.max() < 20.5


def test_missing_video_is_named_or_skipped(tmp_path: Path) -> None:
    source = require(COMMA_SEGMENT)
    segment = tmp_path / "root" / source.parent.name / source.name
    shutil.copytree(source, segment)
    with pytest.raises(SourceError, match=r"video not found: .*video\.hevc"):
        prepare("comma2k19", tmp_path / "root", tmp_path / "m.jsonl")
    report = prepare("comma2k19", tmp_path / "root", tmp_path / "m.jsonl", skip_missing=True)
    assert (report.n_records, report.reasons["missing_video"]) == (0, 1)


def test_frame_count_mismatch_and_reordered_stream_are_refused(tmp_path: Path) -> None:
    source = require(COMMA_SEGMENT)
    segment = tmp_path / "root" / source.parent.name / source.name
    shutil.copytree(source, segment)
    write_raw_hevc(segment / "video.hevc", 1199, 32, 24)
    with pytest.raises(SourceError, match=r"1199 video frames but .*frame_times has 1200"):
        prepare("comma2k19", tmp_path / "root", tmp_path / "m.jsonl")
    write_raw_hevc(segment / "video.hevc", 1200, 32, 24, bframes=3)
    with pytest.raises(SourceError, match=r"reorders frames"):
        prepare("comma2k19", tmp_path / "root", tmp_path / "m.jsonl")


def test_cli_dispatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    comma_segment_with_video(tmp_path / "root", 32, 24)
    parser = add_prepare_arguments(argparse.ArgumentParser())
    args = parser.parse_args(
        ["--source", "comma2k19", "--root", str(tmp_path / "root"), "--out",
         str(tmp_path / "m.jsonl"), "--split", "test", "-o", "label=near_collision"]
    )  # fmt: skip
    assert prepare_command(args) == 0
    assert "comma2k19: wrote 1 records" in capsys.readouterr().out
    (record,) = load_manifest(tmp_path / "m.jsonl")
    assert (record.split, record.label) == ("test", "near_collision")


# ------------------------------------------------------- issue 26 point 8: bad segments
def two_segments(tmp: Path) -> tuple[Path, Path]:
    """The real segment and a copy of it beside it (segment 41 of the same route)."""
    first = comma_segment_with_video(tmp / "root", 16, 16)
    second = first.parent / "41"
    shutil.copytree(first, second)
    return first, second


def test_truncated_frame_times_are_named(tmp_path: Path) -> None:
    """Before: numpy's own error, naming no file."""
    segment = comma_segment_with_video(tmp_path / "root", 16, 16)
    path = segment / "global_pose" / "frame_times"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SourceError, match=rf"^{re.escape(str(path))}: not a numpy array file"):
        prepare("comma2k19", tmp_path / "root", tmp_path / "out" / "m.jsonl")


def test_a_bad_segment_leaves_no_orphans_or_is_skipped(tmp_path: Path) -> None:
    """Segment 41 lacks its GNSS values. Before, the conversion stopped with segment 40's mp4
    and CSVs and 41's mp4 written but no manifest, and skip_missing did not apply. Now the
    error names the file and nothing is left; with skip_missing, 41 is skipped and named."""
    first, second = two_segments(tmp_path)
    missing = second / "processed_log" / "GNSS" / "live_gnss_ublox" / "value"
    missing.unlink()
    out = tmp_path / "out"
    with pytest.raises(SourceError, match=re.escape(f"{missing}: file not found")):
        prepare("comma2k19", tmp_path / "root", out / "m.jsonl")
    assert list((out / "comma2k19").iterdir()) == []
    report = prepare("comma2k19", tmp_path / "root", out / "m.jsonl", skip_missing=True)
    assert report.n_records == 1 and report.reasons == {"bad_segment": 1}
    assert f"  bad_segment: {missing}: file not found" in report.summary()
    (record,) = load_manifest(out / "m.jsonl")
    assert record.metadata["segment"] == "40"
    assert sorted(p.name for p in (out / "comma2k19").iterdir()) == [record.id]
    assert sorted(p.name for p in (out / "comma2k19" / record.id).iterdir()) == [
        "can_speed.csv", "gps.csv", "imu.csv", "video.mp4",
    ]  # fmt: skip


def test_a_short_imu_is_named_or_skipped(tmp_path: Path) -> None:
    """An accelerometer log that stops at 30 s of the 60 s segment: a warning naming the
    segment and the span, or (skip_missing) a counted skip."""
    segment = comma_segment_with_video(tmp_path / "root", 16, 16)
    zero = np.load(segment / "global_pose" / "frame_times")[0]
    for sensor in ("accelerometer", "gyro"):
        folder = segment / "processed_log" / "IMU" / sensor
        t, value = np.load(folder / "t"), np.load(folder / "value")
        keep = t - zero < 30.0
        for name, array in (("t", t[keep]), ("value", value[keep])):
            with open(folder / name, "wb") as handle:
                np.save(handle, array)
    report = prepare("comma2k19", tmp_path / "root", tmp_path / "a" / "m.jsonl")
    assert report.n_records == 1 and report.notes["short_telemetry"] == 1
    assert report.warnings[0].startswith(
        f"segment {segment}: IMU covers 0.03 to 29.99 s of the 60."
    )
    skipped = prepare("comma2k19", tmp_path / "root", tmp_path / "b" / "m.jsonl", skip_missing=True)
    assert skipped.n_records == 0 and skipped.reasons == {"short_telemetry": 1}
