"""Frame cache: keys, hits, invalidation and atomic writes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

import sce.data.cache as cache_mod
from sce.data.cache import FrameCache


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
