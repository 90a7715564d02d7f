"""On-disk cache of decoded, resized frame windows (one .npy per window) and of small dicts
of arrays (one .npz each: `sce.data.clip` stores each clip's window plan and synchronized
telemetry there, so a cached clip reads no video or IMU file).

Keys are SHA-256 hashes of the key parts (video identity, window, fps, size, backend, ...). A
`pathlib.Path` part is replaced by (resolved path, mtime_ns, size), so re-encoding a video
invalidates its entries. Writes go to a temporary file in the destination folder and are moved
into place with os.replace, which is atomic on POSIX: concurrent dataloader workers either see
the complete file or none, and a crash leaves at most a stray *.tmp file.

    cache = FrameCache("cache/frames")
    frames = cache.get_or_decode(
        cache.window_key(video, start, end, fps=3, size=(420, 240), backend="decord"),
        lambda: read_frames(video, times, size=(420, 240)),
    )
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _normalise(part: Any) -> Any:
    """JSON-able, stable form of a key part (floats rounded to 1 us / 1e-6)."""
    if isinstance(part, os.PathLike):
        p = Path(part).resolve()
        try:
            st = p.stat()
        except OSError as exc:
            raise FileNotFoundError(f"{p}: cannot stat file for the cache key: {exc}") from exc
        return ["file", str(p), st.st_mtime_ns, st.st_size]
    if isinstance(part, dict):
        return {str(k): _normalise(v) for k, v in sorted(part.items())}
    if isinstance(part, (list, tuple)):
        return [_normalise(v) for v in part]
    if isinstance(part, np.generic):
        part = part.item()
    if isinstance(part, float):
        return round(part, 6)
    if part is None or isinstance(part, (str, int, bool)):
        return part
    raise TypeError(f"unsupported cache key part {part!r} ({type(part).__name__})")


class FrameCache:
    """Frame windows (`root/<2 hex>/<sha256>.npy`) and dicts of arrays (`.npz`) on disk;
    safe for many processes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(parts: Any) -> str:
        """Hex SHA-256 of the normalised key parts (pass video files as Path objects)."""
        blob = json.dumps(_normalise(parts), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @staticmethod
    def window_key(
        video: str | Path,
        start: float,
        end: float,
        fps: float,
        size: tuple[int, int] | None,
        backend: str,
        **extra: Any,
    ) -> dict[str, Any]:
        """Key parts for a decoded window; `extra` for anything else that changes the pixels."""
        return {
            "video": Path(video),
            "start": float(start),
            "end": float(end),
            "fps": float(fps),
            "size": list(size) if size is not None else None,
            "backend": backend,
            **extra,
        }

    def path_for(self, key: str, suffix: str = ".npy") -> Path:
        return self.root / key[:2] / f"{key}{suffix}"

    def get(self, key: str) -> np.ndarray | None:
        """The cached array, or None when absent or unreadable (an unreadable file is removed)."""
        return self._load(self.path_for(key), lambda f: np.load(f, allow_pickle=False))

    def put(self, key: str, array: np.ndarray) -> Path:
        """Write atomically: temp file in the same folder, then os.replace."""
        return self._store(
            self.path_for(key),
            lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False),
        )

    def get_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        """A cached dict of arrays (one .npz), or None when absent or unreadable."""

        def read(path: Path) -> dict[str, np.ndarray]:
            with np.load(path, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}

        return self._load(self.path_for(key, ".npz"), read)

    def put_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> Path:
        """Write a dict of arrays atomically as one uncompressed .npz."""
        return self._store(self.path_for(key, ".npz"), lambda f: np.savez(f, **arrays))

    def get_or_compute_arrays(
        self,
        key_parts: Any,
        compute_fn: Callable[[], dict[str, np.ndarray]],
        store: bool = True,
    ) -> dict[str, np.ndarray]:
        """Like get_or_decode, for a dict of arrays (e.g. a clip's synchronized telemetry).

        `store=False` computes on a miss without writing (a result that may not last)."""
        put = self.put_arrays if store else lambda *_: None
        return self._memo(key_parts, self.get_arrays, put, compute_fn)

    @staticmethod
    def _load(path: Path, read: Callable[[Path], Any]) -> Any:
        try:
            return read(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # truncated/foreign
            path.unlink(missing_ok=True)
            return None

    @staticmethod
    def _store(path: Path, write: Callable[[Any], None]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def get_or_decode(self, key_parts: Any, decode_fn: Callable[[], np.ndarray]) -> np.ndarray:
        """Return the cached array for key_parts, decoding and storing it on a miss."""
        return self._memo(key_parts, self.get, self.put, decode_fn)

    def _memo(self, key_parts: Any, get: Callable, put: Callable, make: Callable) -> Any:
        key = self.key(key_parts)
        value = get(key)
        if value is not None:
            self.hits += 1
            return value
        self.misses += 1
        value = make()
        put(key, value)
        return value
