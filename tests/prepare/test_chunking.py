"""Sliding-window chunking of long videos into labelled short clips (paper 001)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from sce.data import video as video_lib
from sce.data.clip import ClipError, WindowSpec, load_clip
from sce.data.schema import ClipRecord, load_manifest
from sce.prepare.chunking import chunk_command, chunk_record
from sce.prepare.synthetic import generate_synthetic_dataset


@pytest.fixture(scope="module")
def long_manifest(tmp_path_factory):
    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("long"),
        clips=3,
        seed=1,
        duration=20.0,
        width=64,
        height=36,
        progress=False,
    )


def test_chunks_label_event_chunk_and_read_their_span(long_manifest, tmp_path, capsys):
    out = tmp_path / "chunks" / "manifest.jsonl"
    args = argparse.Namespace(
        manifest=str(long_manifest), out=str(out), chunk=6.0, stride=6.0, margin=0.5, keep_cut=False
    )
    assert chunk_command(args) == 0
    assert "3 clips ->" in capsys.readouterr().out
    sources = {r.id: r for r in load_manifest(long_manifest)}
    chunks = load_manifest(out)  # paths resolve from the new folder
    for source in sources.values():
        mine = [c for c in chunks if c.metadata["source_id"] == source.id]
        starts = [c.metadata["clip_start"] for c in mine]
        assert starts == sorted(starts) and all(c.split == source.split for c in mine)
        with_event = [c for c in mine if c.label != "normal"]
        if source.label == "normal":
            assert not with_event
            continue
        for c in mine:  # a chunk without the event is normal; one that cuts it is dropped
            start, end = c.metadata["clip_start"], c.metadata["clip_end"]
            contains = start - 1e-6 <= source.event_time <= end + 1e-6
            assert not contains or start + 0.5 <= source.event_time <= end - 0.5
            assert (c.label == source.label) == contains
        for c in with_event:
            start, end = c.metadata["clip_start"], c.metadata["clip_end"]
            assert start + 0.5 <= source.event_time <= end - 0.5
            assert c.event_time == pytest.approx(source.event_time - start, abs=1e-5)
            assert c.label == source.label and c.annotations == source.annotations
    event_chunk = next(c for c in chunks if c.label == "collision")
    clip = load_clip(event_chunk, WindowSpec(width=64, height=36))
    start, end = event_chunk.metadata["clip_start"], event_chunk.metadata["clip_end"]
    assert start <= clip.frame_times.min() and clip.frame_times.max() <= end
    assert clip.event_time == pytest.approx(event_chunk.event_time + start, abs=1e-5)
    direct = video_lib.read_frames(event_chunk.path("video"), clip.frame_times, size=(64, 36))
    np.testing.assert_array_equal(clip.frames, direct)
    assert clip.telemetry is not None and clip.telemetry.accel[:, 0].min() < -2.0


def test_chunk_outside_the_video_is_named(long_manifest):
    import dataclasses

    record = load_manifest(long_manifest)[0]
    bad = dataclasses.replace(
        record, metadata={**record.metadata, "clip_start": 18.0, "clip_end": 30.0}
    )
    with pytest.raises(ClipError, match="clip_start/clip_end"):
        load_clip(bad, WindowSpec(width=64, height=36))


def _imu_csv(path, ax_of_t) -> str:
    """A 100 Hz, 20 s IMU file whose a_x is ax_of_t(t); other channels 0 (gravity on z)."""
    t = np.round(np.arange(0, 2000) / 100.0, 6)
    rows = np.zeros((len(t), 7))
    rows[:, 0], rows[:, 1], rows[:, 3] = t, ax_of_t(t), 9.81
    np.savetxt(path, rows, delimiter=",", header="t,ax,ay,az,gx,gy,gz", comments="", fmt="%.6f")
    return str(path)


def _record(tmp_path, label: str, imu: str | None) -> ClipRecord:
    return ClipRecord(
        id="long_07", video="v.mp4", label=label, source="s", split="train", imu=imu,
        root=str(tmp_path),
    )  # fmt: skip


def test_event_time_from_imu_when_manifest_has_none(tmp_path):
    # |a_x| peaks at 8.25 s (-9 braking); a smaller +4 bump at 15 s must not win.
    def ax(t):
        return np.where(np.isclose(t, 8.25), -9.0, 0.0) + np.where(np.isclose(t, 15.0), 4.0, 0.0)

    imu = _imu_csv(tmp_path / "imu.csv", ax)
    chunks = chunk_record(_record(tmp_path, "collision", imu), 20.0, 6.0, 6.0, 0.5, False)
    # starts 0, 6, 12 and the tail 14; only [6, 12] holds 8.25 s (2.25 s in, >= 0.5 from edges)
    assert [c.metadata["clip_start"] for c in chunks] == [0.0, 6.0, 12.0, 14.0]
    assert [c.label for c in chunks] == ["normal", "collision", "normal", "normal"]
    assert [c.event_time for c in chunks] == [3.0, 2.25, 3.0, 3.0]


def test_normal_record_without_event_time_or_imu_stays_normal(tmp_path):
    chunks = chunk_record(_record(tmp_path, "normal", None), 20.0, 6.0, 6.0, 0.5, False)
    assert [c.label for c in chunks] == ["normal"] * 4


@pytest.mark.parametrize("imu", [None, "nan"])
def test_event_record_without_event_time_or_usable_imu_is_named(tmp_path, imu):
    if imu == "nan":  # an IMU with no finite a_x cannot locate the event either
        imu = _imu_csv(tmp_path / "imu.csv", lambda t: np.full_like(t, np.nan))
    record = _record(tmp_path, "near_collision", imu)
    with pytest.raises(ValueError, match="sample 'long_07': field 'event_time'"):
        chunk_record(record, 20.0, 6.0, 6.0, 0.5, False)
