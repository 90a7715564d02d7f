"""Frame cache: keys, hits, invalidation and atomic writes."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import sce.data.cache as cache_mod
import sce.data.clip as clip_mod
from sce.data import imu as imu_lib
from sce.data import video as video_lib
from sce.data.cache import FrameCache
from sce.data.clip import ClipSpec, WindowSpec, load_clip
from sce.data.schema import ClipRecord, load_manifest

SPEC = WindowSpec(width=64, height=36)


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    p = tmp_path / "clip.mp4"
    p.write_bytes(b"fake video bytes")
    return p


def frames(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (18, 24, 42, 3), np.uint8)


def test_hit_returns_identical_array_without_decoding_again(tmp_path: Path, video: Path) -> None:
    cache = FrameCache(tmp_path / "cache")
    calls = []

    def decode() -> np.ndarray:
        calls.append(1)
        return frames()

    parts = cache.window_key(video, 2.0, 8.0, fps=3.0, size=(42, 24), backend="decord")
    first = cache.get_or_decode(parts, decode)
    second = cache.get_or_decode(parts, decode)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    assert second.dtype == np.uint8 and np.array_equal(first, second)
    assert np.array_equal(FrameCache(tmp_path / "cache").get(cache.key(parts)), frames())


def test_key_depends_on_every_part_and_on_the_file(tmp_path: Path, video: Path) -> None:
    base = FrameCache.window_key(video, 2.0, 8.0, fps=3.0, size=(420, 240), backend="decord")
    k = FrameCache.key(base)
    assert FrameCache.key(dict(base)) == k
    assert FrameCache.key({**base, "start": 2.0000000001}) == k  # float noise ignored
    for change in ({"start": 2.5}, {"fps": 2.0}, {"size": [420, 252]}, {"backend": "pyav"}):
        assert FrameCache.key({**base, **change}) != k
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # re-encoded video
    assert FrameCache.key(base) != k
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        FrameCache.key(FrameCache.window_key(tmp_path / "gone.mp4", 0, 1, 3, None, "decord"))


def test_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    cache = FrameCache(tmp_path / "cache")
    real_save = np.save

    def broken_save(f, arr, **kw):
        f.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cache.put("ab" * 32, frames())
    monkeypatch.setattr(cache_mod.np, "save", real_save)
    assert list((tmp_path / "cache").rglob("*.*")) == []  # neither .npy nor .tmp left
    assert cache.get("ab" * 32) is None


def test_corrupt_entry_is_a_miss_and_concurrent_puts(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path / "cache")
    key = "cd" * 32
    cache.path_for(key).parent.mkdir(parents=True)
    cache.path_for(key).write_bytes(b"garbage")
    assert cache.get(key) is None and not cache.path_for(key).exists()
    threads = [threading.Thread(target=cache.put, args=(key, frames(3))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(cache.get(key), frames(3))
    assert [p.name for p in cache.path_for(key).parent.iterdir()] == [f"{key}.npy"]


@pytest.mark.parametrize("damage", ["truncate", "flip a byte"])
def test_corrupt_npz_entry_is_a_miss_and_removed(tmp_path: Path, damage: str) -> None:
    cache = FrameCache(tmp_path / "cache")
    key = "ef" * 32
    arrays = {"times": np.arange(18.0), "accel": np.ones((18, 3))}
    path = cache.put_arrays(key, arrays)
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob[len(blob) // 3] ^= 0xFF  # inside the first member's data: zip CRC mismatch
    path.write_bytes(bytes(blob))
    assert cache.get_arrays(key) is None and not path.exists()
    calls = []
    got = cache.get_or_compute_arrays(key, lambda: calls.append(1) or arrays)
    assert calls == [1] and np.array_equal(got["accel"], arrays["accel"])


@pytest.fixture()
def first_record(synthetic_manifest: Path) -> ClipRecord:
    return load_manifest(synthetic_manifest)[0]


def _clip_fields(clip) -> dict:
    telemetry = clip.telemetry
    return {
        "frames": clip.frames,
        "frame_times": clip.frame_times,
        "event": (clip.event_time, clip.event_time_source, clip.imu_reason),
        "window": (clip.shifted, clip.padded, clip.fps),
        "telemetry": None
        if telemetry is None
        else [telemetry.frame_times, telemetry.accel, telemetry.yaw_delta, telemetry.speed],
    }


def _assert_same_clip(a, b) -> None:
    fa, fb = _clip_fields(a), _clip_fields(b)
    assert fa["event"] == fb["event"] and fa["window"] == fb["window"]
    assert np.array_equal(fa["frames"], fb["frames"]) and fa["frames"].size > 0
    assert np.array_equal(fa["frame_times"], fb["frame_times"])
    assert (fa["telemetry"] is None) == (fb["telemetry"] is None)
    for x, y in zip(fa["telemetry"] or [], fb["telemetry"] or [], strict=True):
        assert (x is None and y is None) or np.array_equal(x, y)


def _forbid_reading_sources(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("a cached clip must not read its video or telemetry files")

    for module, name in [
        (video_lib, "video_info"),
        (video_lib, "read_frames"),
        (imu_lib, "load_imu"),
        (imu_lib, "load_gps"),
    ]:
        monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize("imu", ["as recorded", "missing file"])
def test_cached_clip_equals_uncached_without_reading_sources(
    first_record: ClipRecord, tmp_path: Path, monkeypatch, imu: str
) -> None:
    record = first_record
    if imu == "missing file":
        record = dataclasses.replace(record, imu="no-such-imu.csv")
    spec = SPEC
    plain = load_clip(record, spec)
    assert (plain.telemetry is None) == (imu == "missing file")
    cache = FrameCache(tmp_path / "cache")
    _assert_same_clip(load_clip(record, spec, cache), plain)
    assert (cache.hits, cache.misses) == (0, 2)  # the window plan and the frames
    with monkeypatch.context() as patch:
        _forbid_reading_sources(patch)
        _assert_same_clip(load_clip(record, spec, cache), plain)
    assert (cache.hits, cache.misses) == (2, 2)
    # another frame size reuses the plan (no IMU parsing) and decodes its own frames
    resized = load_clip(record, dataclasses.replace(spec, width=32, height=18), cache)
    assert (cache.hits, cache.misses) == (3, 3) and resized.frames.shape[1:3] == (18, 32)


def test_editing_the_imu_file_recomputes_the_cached_plan(
    first_record: ClipRecord, tmp_path: Path
) -> None:
    record, spec, cache = first_record, SPEC, FrameCache(tmp_path / "cache")
    load_clip(record, spec, cache)
    imu_file = record.path("imu")
    stat = imu_file.stat()
    try:
        os.utime(imu_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        load_clip(record, spec, cache)
    finally:
        os.utime(imu_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (cache.hits, cache.misses) == (1, 3)  # plan recomputed, frames reused


def test_changed_plan_code_recomputes_plans_but_keeps_frames(
    first_record: ClipRecord, tmp_path: Path, monkeypatch
) -> None:
    record, spec, cache = first_record, SPEC, FrameCache(tmp_path / "cache")
    load_clip(record, spec, cache)
    assert len(clip_mod.plan_code_version()) == 16
    monkeypatch.setattr(clip_mod, "plan_code_version", lambda: "edited-imu-code")
    load_clip(record, spec, cache)
    assert (cache.hits, cache.misses) == (1, 3)


def test_unreadable_imu_file_is_not_cached_as_missing_telemetry(
    first_record: ClipRecord, tmp_path: Path, monkeypatch
) -> None:
    record, spec, cache = first_record, SPEC, FrameCache(tmp_path / "cache")
    imu_file = record.path("imu")

    def permission_denied(path, *args, **kwargs):
        raise PermissionError(f"[Errno 13] Permission denied: '{path}'")

    with monkeypatch.context() as patch:  # chmod 000 as a non-root user would do
        patch.setattr(clip_mod.os, "access", lambda p, mode: Path(p) != imu_file)
        patch.setattr(imu_lib, "load_imu", permission_denied)
        denied = load_clip(record, spec, cache)
    assert denied.telemetry is None and "Permission denied" in denied.imu_reason
    restored = load_clip(record, spec, cache)  # permissions fixed; mtime unchanged
    assert restored.telemetry is not None and restored.imu_reason == ""


def test_keyframe_clip_is_cached_as_three_keyframes(
    first_record: ClipRecord, tmp_path: Path, monkeypatch
) -> None:
    """Paper 002's keyframe window through the cache: the same 3 frames and the keyframes flag
    (the prompt sends them as images) without reading the sources again."""
    spec = ClipSpec.of(SPEC, scale=3.0)
    plain = load_clip(first_record, spec)
    assert plain.keyframes and plain.frames.shape[0] == 3
    cache = FrameCache(tmp_path / "cache")
    load_clip(first_record, spec, cache)
    with monkeypatch.context() as patch:
        _forbid_reading_sources(patch)
        cached = load_clip(first_record, spec, cache)
    _assert_same_clip(cached, plain)
    assert cached.keyframes and (cache.hits, cache.misses) == (2, 2)
    assert not load_clip(first_record, SPEC, cache).keyframes  # the window: one video


def test_frames_cached_for_other_frame_times_of_the_same_span_are_not_reused(
    first_record: ClipRecord, tmp_path: Path, monkeypatch
) -> None:
    """Frames cached by the old keyframe rule (last keyframe repeated: 4 frames over the same
    span, scale and fractions) are not served to the new rule's 3 keyframes."""
    spec, cache = ClipSpec.of(SPEC, scale=3.0), FrameCache(tmp_path / "cache")
    new_rule = clip_mod.keyframe_window

    def old_rule(event_time, duration, scale, keyframes):
        window, times, fps = new_rule(event_time, duration, scale, keyframes)
        return window, np.append(times, times[-1]), fps

    with monkeypatch.context() as patch:
        patch.setattr(clip_mod, "keyframe_window", old_rule)
        patch.setattr(clip_mod, "plan_code_version", lambda: "old keyframe rule")
        assert load_clip(first_record, spec, cache).frames.shape[0] == 4
    clip = load_clip(first_record, spec, cache)
    assert clip.frame_times.shape == (3,) and clip.frames.shape[0] == 3
