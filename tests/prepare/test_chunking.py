"""Sliding-window chunking of long videos into labelled short clips (paper 001)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

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


# --- issue 25.7: every event one event chunk; what shows an event is never normal -------------


def test_event_excursion_of_a_held_braking(tmp_path):
    from sce.data.imu import event_excursion, load_imu

    # the near-collision: -4.3 m/s² held 0.5 s around 17.15 s, 0.3 s cosine ramps
    def ax(t):
        d = np.maximum(np.abs(t - 17.15) - 0.25, 0.0)
        return np.where(d < 0.3, -4.3 * (0.5 + 0.5 * np.cos(np.pi * d / 0.3)), 0.0)

    imu = load_imu(_imu_csv(tmp_path / "imu.csv", ax))
    first, last = event_excursion(imu, 17.15, search_s=0.5)
    # departure >= 1.5 m/s² where the ramp is >= 1.5/4.3: 0.179 s into each ramp
    assert first == pytest.approx(17.15 - 0.429, abs=0.02)
    assert last == pytest.approx(17.15 + 0.429, abs=0.02)


def test_braking_after_the_guard_band_is_never_normal(tmp_path):
    # an impact at 10 s (-10 m/s², 0.2 s), then -3 m/s² of braking until 13.5 s: the guard
    # band ends at 10.5 s, but [12, 18] shows the braking (before, it was normal)
    def ax(t):
        return np.where(np.abs(t - 10.0) <= 0.1, -10.0, 0.0) + np.where(
            (t > 10.1) & (t <= 13.5), -3.0, 0.0
        )

    imu = _imu_csv(tmp_path / "imu.csv", ax)
    record = dataclasses.replace(_record(tmp_path, "collision", imu), event_time=10.0)
    chunks = chunk_record(record, 20.0, 6.0, 6.0, 0.5, False)
    spans = [(c.metadata["clip_start"], c.metadata["clip_end"], c.label) for c in chunks]
    # band [9.5, 13.5]: no grid chunk holds it, one is placed on it; [6, 12], [12, 18] dropped
    assert spans == [(0.0, 6.0, "normal"), (8.5, 14.5, "collision"), (14.0, 20.0, "normal")]
    assert chunks[1].event_time == pytest.approx(1.5) and chunks[1].metadata["chunk_placed"]
    kept = chunk_record(record, 20.0, 6.0, 6.0, 0.5, True)  # --keep-cut: labelled, marked cut
    cut = [(c.metadata["clip_start"], c.label) for c in kept if c.metadata["chunk_cut"]]
    assert cut == [(6.0, "collision"), (12.0, "collision")]
    assert [c.event_time for c in kept if c.metadata["chunk_cut"]] == [4.0, 0.0]


@pytest.fixture(scope="module")
def forty_s(tmp_path_factory):
    """The issue's probe: 6 synthetic 40 s videos (seed 0: 2 normal, 2 collisions at 6.43 and
    29.95 s, 2 near-collisions at 27.22 and 9.06 s)."""
    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("forty"), clips=6, seed=0, duration=40.0, fps=10, width=32,
        height=18, progress=False,
    )  # fmt: skip


def test_six_40s_videos_defaults(forty_s, tmp_path):
    from sce.data.imu import load_imu
    from sce.prepare.chunking import chunk_manifest

    out = tmp_path / "chunks.jsonl"
    summary = chunk_manifest(forty_s, out)  # the defaults: 6 s every 6 s, margin 0.5 s
    chunks = load_manifest(out)
    # before (5 s / 2.5 s): 88 chunks of 5 s, two videos with two event chunks, two with a
    # normal chunk showing the event ([27.5, 32.5], min a_x -4.2 vs -5.1; [30, 35], -10.5)
    assert len(chunks) == 40 and summary.labels == {
        "normal": 36,
        "collision": 2,
        "near_collision": 2,
    }
    assert (summary.events, summary.placed, summary.dropped, summary.partial) == (4, 2, 4, [])
    for source in load_manifest(forty_s):
        mine = [c for c in chunks if c.metadata["source_id"] == source.id]
        assert len(mine) in (6, 7)  # paper 001: "6-7 overlapping segments"
        assert all(c.metadata["clip_end"] - c.metadata["clip_start"] == 6.0 for c in mine)
        if source.label == "normal":
            assert {c.label for c in mine} == {"normal"}
            continue
        te = source.event_time
        (event,) = [c for c in mine if c.label != "normal"]  # exactly one, holding the event
        assert event.label == source.label and event.annotations == source.annotations
        assert event.metadata["clip_start"] + event.event_time == pytest.approx(te)
        assert event.metadata["clip_start"] <= te - 0.5 and event.metadata["clip_end"] >= te + 0.5
        imu = load_imu(source.path("imu"))
        peak = imu.accel[np.abs(imu.t - te) <= 0.5, 0].min()
        for c in mine:
            if c.label != "normal":
                continue
            lo, hi = c.metadata["clip_start"], c.metadata["clip_end"]
            assert hi <= te - 0.5 or lo >= te + 0.5  # outside the guard band
            inside = (imu.t >= lo) & (imu.t <= hi)
            assert imu.accel[inside, 0].min() > peak / 2  # none of the event's braking


# --- issue 26.6: a chunked manifest (or mined candidates) is cut inside each record's span -----


@pytest.fixture(scope="module")
def twenty_s(tmp_path_factory):
    """6 synthetic 20 s clips (seed 3), the issue's re-chunking probe."""
    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("twenty"), clips=6, seed=3, duration=20.0, fps=10, width=32,
        height=18, progress=False,
    )  # fmt: skip


def test_chunking_a_chunked_manifest_keeps_every_record(twenty_s, tmp_path):
    from sce.prepare.chunking import chunk_manifest

    once, twice = tmp_path / "once" / "m.jsonl", tmp_path / "twice" / "m.jsonl"
    chunk_manifest(twenty_s, once)
    chunk_manifest(once, twice)
    first, second = load_manifest(once), load_manifest(twice)
    # before: 22 chunks became 88, each re-cut over its whole video, and a near-collision at
    # 15.36 s was labelled in spans [0, 6] (twice); now each 6 s chunk is its own one chunk
    assert len(first) == len(second) == 21
    for a, b in zip(first, second, strict=True):
        assert b.metadata["source_id"] == a.id and b.label == a.label
        assert (b.metadata["clip_start"], b.metadata["clip_end"]) == (
            a.metadata["clip_start"], a.metadata["clip_end"]
        )  # fmt: skip
        assert b.event_time == pytest.approx(a.event_time)
    near = [b for b in second if b.label == "near_collision"]
    assert [(b.metadata["clip_start"], b.metadata["clip_start"] + b.event_time) for b in near] == [
        (6.0, pytest.approx(11.5)), (12.0, pytest.approx(15.36))
    ]  # fmt: skip


def test_a_record_span_bounds_its_chunks(tmp_path):
    # a 6 s chunk [12, 18] with its near-collision 3.36 s in (15.36 s in the video)
    record = _record(tmp_path, "near_collision", None)
    record = dataclasses.replace(
        record, event_time=3.36, metadata={"clip_start": 12.0, "clip_end": 18.0}
    )
    (chunk,) = chunk_record(record, 20.0, 6.0, 6.0, 0.5, False)
    assert (chunk.metadata["clip_start"], chunk.metadata["clip_end"]) == (12.0, 18.0)
    assert (chunk.label, chunk.event_time) == ("near_collision", pytest.approx(3.36))
    # a 12 s span [4, 16] with the event at 4.92 s in the span (8.92 s in the video)
    record = dataclasses.replace(
        record, event_time=4.92, metadata={"clip_start": 4.0, "clip_end": 16.0}
    )
    chunks = chunk_record(record, 20.0, 6.0, 6.0, 0.5, False)
    assert [(c.metadata["clip_start"], c.label) for c in chunks] == [
        (4.0, "near_collision"), (10.0, "normal")
    ]  # fmt: skip
    assert chunks[0].event_time == pytest.approx(4.92)


# --- issue 26.7: options, vanishing events, dual-view paths --------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "abc"])
def test_bad_chunk_option_is_named(twenty_s, tmp_path, capsys, value):
    from sce.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["data", "chunk", str(twenty_s), "--out", str(tmp_path / "m.jsonl"), "--chunk", value])
    assert exc.value.code == 2
    assert f"argument --chunk: expected a finite number of seconds > 0, got '{value}'" in (
        capsys.readouterr().err
    )


def test_settings_that_lose_events_are_refused_or_warned(twenty_s, tmp_path, capsys):
    from sce.cli import main

    out = tmp_path / "m.jsonl"
    base = ["data", "chunk", str(twenty_s), "--out", str(out)]
    # chunk <= 2 x margin: no chunk can hold an event with its guard band
    assert main([*base, "--chunk", "1", "--margin", "0.5"]) == 1
    assert "--chunk 1 s must be longer than twice --margin (0.5 s)" in capsys.readouterr().err
    assert not out.exists()
    # 0.01 s chunks: every event keeps one chunk, warned about with counts
    assert main([*base, "--chunk", "0.01", "--stride", "1", "--margin", "0"]) == 0
    captured = capsys.readouterr()
    assert "4 events -> 4 event chunks (4 placed on the event)" in captured.out
    assert "warning: 4 of 4 event chunks hold only part of their event" in captured.err
    assert "warning: 6 of 6 clips give chunks shorter than 2 video frames" in captured.err


def test_driver_video_is_rebased_and_validated(twenty_s, tmp_path):
    import json

    from sce.prepare.chunking import chunk_manifest
    from sce.prepare.validate import validate_manifest

    rows = [json.loads(line) for line in twenty_s.read_text().splitlines()]
    for row in rows:  # dual view: the road video doubles as the driver's
        row["metadata"]["driver_video"] = row["video"]
    dual = twenty_s.parent / "dual.jsonl"
    dual.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "elsewhere" / "chunks.jsonl"
    chunk_manifest(dual, out)
    chunks = load_manifest(out)  # every file of every record checked, the driver video too
    for chunk in chunks:
        driver = chunk.root / Path(chunk.metadata["driver_video"])
        assert driver.resolve() == chunk.path("video").resolve()
    assert validate_manifest(out, decode=False).ok
    # a dual-view record pointing nowhere is a problem (before: "no problems")
    row = json.loads(out.read_text().splitlines()[0])
    row["metadata"]["driver_video"] = "nowhere/driver.mp4"
    broken = tmp_path / "elsewhere" / "broken.jsonl"
    broken.write_text(json.dumps(row) + "\n")
    report = validate_manifest(broken, decode=False)
    assert not report.ok and "schema: metadata.driver_video" in report.table()
