"""What a prompt may see: a chunk's frames and telemetry come only from its span (paper 001
chunking), and a window that ends at the event reads no telemetry after it (paper 002).

Both are checked by poisoning: the IMU and GPS samples the prompt must not use are replaced by
absurd values (1000), and the clip's plan (frame times, event time, synchronized telemetry: what
the prompt is built from) must come out identical to the one from the clean files.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from helpers import poisoned_telemetry

from sce.data import video as video_lib
from sce.data.cache import FrameCache
from sce.data.clip import ClipError, ClipInputs, ClipSpec, WindowSpec, load_clip, plan_window
from sce.data.schema import ClipRecord, load_manifest
from sce.prepare.chunking import chunk_record
from sce.prepare.synthetic import generate_synthetic_dataset


@pytest.fixture(scope="module")
def long_collision(tmp_path_factory) -> ClipRecord:
    """A 20 s synthetic collision clip (30 fps video, 100 Hz IMU, 1 Hz GPS)."""
    manifest = generate_synthetic_dataset(
        tmp_path_factory.mktemp("long"), clips=3, seed=1, duration=20.0, width=64, height=36,
        progress=False,
    )  # fmt: skip
    return next(r for r in load_manifest(manifest) if r.label == "collision")


def _assert_same_plan(clean: ClipInputs, poisoned: ClipInputs) -> None:
    assert clean.telemetry is not None and poisoned.telemetry is not None
    np.testing.assert_array_equal(poisoned.frame_times, clean.frame_times)
    assert poisoned.event_time == clean.event_time
    for field in ("accel", "yaw_delta", "speed"):
        np.testing.assert_array_equal(
            getattr(poisoned.telemetry, field), getattr(clean.telemetry, field), err_msg=field
        )


@pytest.mark.parametrize("event_time", ["chunked", "from_imu"])
def test_chunk_prompt_reads_only_its_span(long_collision, tmp_path, event_time):
    # The README's example: 5 s chunks every 2.5 s, with the default 6 s window at 3 fps.
    chunks = chunk_record(long_collision, 20.0, chunk=5.0, stride=2.5, margin=0.5, keep_cut=False)
    # the impact at 15.2 s: [12.5, 17.5] is the collision chunk; [10, 15] ends 0.2 s before the
    # impact and [15, 20] cuts it: both show part of it (never normal), dropped
    assert [c.metadata["clip_start"] for c in chunks] == [0.0, 2.5, 5.0, 7.5, 12.5]
    assert [c.label for c in chunks] == ["normal"] * 4 + ["collision"]
    spec = WindowSpec(width=64, height=36)
    info = video_lib.video_info(long_collision.path("video"))
    for chunk in chunks:
        if event_time == "from_imu":  # the loader's argmax |a_x| must stay inside the chunk
            chunk = dataclasses.replace(chunk, event_time=None)
        lo, hi = chunk.metadata["clip_start"], chunk.metadata["clip_end"]
        clean = plan_window(chunk, spec)
        # 14 frames (4.67 s, the largest even count at 3 fps in 5 s), all inside the chunk,
        # and so are the source frames they decode to
        assert len(clean.frame_times) == 14
        assert lo <= clean.frame_times.min() and clean.frame_times.max() <= hi
        idx = video_lib.frame_indices(clean.frame_times, info.fps, info.n_frames)
        assert lo <= idx.min() / info.fps and idx.max() / info.fps <= hi
        assert lo <= clean.event_time <= hi
        outside = poisoned_telemetry(
            chunk, lambda t, a=lo, b=hi: (t >= a) & (t <= b), tmp_path / chunk.id
        )
        _assert_same_plan(clean, plan_window(outside, spec))


def test_chunk_after_the_collision_does_not_show_it(long_collision):
    # A normal chunk starting 0.2 s after the impact (a stride that lands there): its prompt's
    # a_x is no stronger than the braking inside its own span. Before, its 6 s window was
    # padded from 1.3 s before the chunk, impact included.
    start = long_collision.event_time + 0.2
    after = dataclasses.replace(
        long_collision, label="normal", event_time=2.5,
        metadata={**long_collision.metadata, "clip_start": start, "clip_end": start + 4.6},
    )  # fmt: skip
    clip = plan_window(after, WindowSpec(width=64, height=36))
    assert len(clip.frame_times) == 12  # 4.6 s at 3 fps: 13.8 -> 12 frames (4 s)
    imu = pd.read_csv(after.path("imu"))
    inside = imu["ax"][(imu["t"] >= start) & (imu["t"] <= start + 4.6)]
    assert clip.telemetry.accel[:, 0].min() >= inside.min()


def test_chunk_too_short_for_two_frames_is_named(long_collision):
    short = dataclasses.replace(
        long_collision, event_time=0.2,
        metadata={**long_collision.metadata, "clip_start": 10.0, "clip_end": 10.5},
    )  # fmt: skip
    with pytest.raises(ClipError, match=r"'metadata.clip_start/clip_end'.*fewer than 2 frames"):
        plan_window(short, WindowSpec(width=64, height=36))


def test_anchor_is_causal_exactly_when_the_window_ends_at_the_event():
    assert WindowSpec().anchor == "centered"  # paper 000: [-4 s, +2 s] around the event
    assert ClipSpec(scale=6.0).anchor == "causal"  # paper 002 multi-scale windows
    assert WindowSpec(before=6.0, after=0.0).anchor == "causal"
    assert ClipSpec(scale=6.0, telemetry_anchor="centered").anchor == "centered"
    assert WindowSpec(scales=(6.0, 3.0)).anchor == "causal"  # every item of it is a scale
    with pytest.raises(ValueError, match="data.window.telemetry_anchor"):
        WindowSpec(telemetry_anchor="end")


@pytest.mark.parametrize("scale", [6.0, 3.0, 1.5, None])
def test_anticipation_prompt_reads_nothing_after_its_last_frame(long_collision, tmp_path, scale):
    # Paper 002's windows end at the event (scale) and so does a [-6 s, 0] event window (None).
    spec = ClipSpec(width=64, height=36, before=6.0, after=0.0, scale=scale)
    clean = plan_window(long_collision, spec)
    last = clean.frame_times[-1]
    if scale is not None:
        assert last == pytest.approx(long_collision.event_time)  # the last keyframe: the event
    future = poisoned_telemetry(long_collision, lambda t: t <= last, tmp_path / "future")
    _assert_same_plan(clean, plan_window(future, spec))
    # Before: the centred 3 s block of the 6 s scale's last keyframe averaged 1.5 s of the
    # impact's aftermath into "the event" (about -3 m/s^2 instead of about -1 m/s^2).
    if scale == 6.0:
        imu = pd.read_csv(long_collision.path("imu"))
        up_to = imu["ax"][(imu["t"] > last - 3.0 + 1e-9) & (imu["t"] <= last + 1e-9)]
        assert clean.telemetry.accel[-1, 0] == pytest.approx(up_to.mean(), abs=0.05)


def test_cached_plan_depends_on_the_telemetry_anchor(long_collision, tmp_path):
    cache = FrameCache(tmp_path / "cache")
    spec = ClipSpec(width=64, height=36, scale=6.0)
    causal = load_clip(long_collision, spec, cache)
    centred = load_clip(
        long_collision, dataclasses.replace(spec, telemetry_anchor="centered"), cache
    )
    assert cache.misses >= 2
    assert not np.allclose(causal.telemetry.accel, centred.telemetry.accel)


def test_shrunk_window_is_counted_from_plan_to_batch(long_collision, tmp_path, tiny_processor):
    # Paper 001's 6 s window at 30 fps (180 frames) on a 5 s chunk (`sce data chunk --chunk 5`)
    # keeps 150 frames: 1 s (30 frames) lost, recorded on the plan, the sample and the batch.
    from sce.data.collate import Collator
    from sce.data.dataset import SceDataset

    chunk, *_ = chunk_record(
        long_collision, 20.0, chunk=5.0, stride=5.0, margin=0.5, keep_cut=False
    )
    spec = WindowSpec(fps=30.0, width=64, height=36)
    clip = plan_window(chunk, spec)
    assert len(clip.frame_times) == 150 and spec.num_frames == 180
    assert clip.shrunk == pytest.approx(1.0) and clip.shrunk * spec.fps == pytest.approx(30)
    full = plan_window(long_collision, spec)  # the 20 s clip holds the whole window
    assert (len(full.frame_times), full.shrunk) == (180, 0.0)
    cached = load_clip(chunk, spec, FrameCache(tmp_path / "cache"))  # the plan cache keeps it
    assert cached.shrunk == pytest.approx(1.0)
    data = SceDataset([chunk, long_collision], spec, train=False)
    samples = [data[0], data[1]]
    assert samples[0].meta["window_shrunk"] == pytest.approx(1.0)
    assert samples[1].meta["window_shrunk"] == 0.0
    batch = Collator(tiny_processor, 100_000, mode="generate")(samples)
    assert batch["window_shrunk"] == 1
