"""Decode throughput of the default event window, per worker (one process, one decoder thread).

Generates its own 1280x720 30 fps 16 s H.264 clips with PyAV, then times reading the paper-000
window (6 s around a random event at 3 fps = 18 frames, resized to 420x240) with:

    decord      sce.data.video.read_frames(backend="decord"): get_batch on 18 indices
    pyav        sce.data.video.read_frames(backend="pyav"): seek + decode forward
    naive       PyAV: decode every frame from the file start through the window end, convert
                the window's frames to full-size RGB, subsample, resize with torch
    cache       sce.data.cache.FrameCache hit (np.load of the decoded window)

    python benchmarks/bench_decode.py [--clips 3] [--reps 2] [--gop 30] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from sce.data.cache import FrameCache
from sce.data.clip import DEFAULT_WINDOW
from sce.data.video import frame_indices, read_frames, resize_frames
from sce.data.windows import event_window, window_frame_times

SIZE = (DEFAULT_WINDOW.width, DEFAULT_WINDOW.height)  # the default event window (paper 000)
FPS_OUT = DEFAULT_WINDOW.fps


def make_clip(path: Path, seconds: float, fps: int, gop: int, seed: int) -> None:
    """Synthetic scene: a smooth random texture scrolling, plus a sharp-edged moving box."""
    w, h = 1280, 720
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, h // 16, w // 16))).float()
    texture = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    texture = texture.clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"g": str(gop), "crf": "23", "preset": "ultrafast"}
        for i in range(int(seconds * fps)):
            img = np.roll(texture, shift=(i * 2, i * 3), axis=(0, 1))
            x = (i * 11) % (w - 200)
            img[300:450, x : x + 200] = (200, 30, 30)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def naive_read(path: Path, times: np.ndarray) -> np.ndarray:
    """Baseline: decode everything up to the window end at full size, then subsample."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        fps = float(stream.average_rate)
        idx = frame_indices(times, fps, int(stream.frames))
        lo, hi = int(idx.min()), int(idx.max())
        window = []
        for i, frame in enumerate(container.decode(stream)):
            if i >= lo:
                window.append(frame.to_ndarray(format="rgb24"))
            if i >= hi:
                break
    full = np.stack(window)[idx - lo]
    return resize_frames(full, SIZE)


def timeit(fn: Callable[..., np.ndarray], args: tuple, reps: int) -> tuple[float, np.ndarray]:
    fn(*args)  # warm-up (imports, page cache; fills the frame cache)
    t0 = time.perf_counter()
    for _ in range(reps):
        out = fn(*args)
    return (time.perf_counter() - t0) / reps, out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def run(workdir: Path, n_clips: int, reps: int, gop: int) -> None:
    seconds, fps = 16.0, 30
    rng = np.random.default_rng(0)
    clips = []
    t0 = time.perf_counter()
    for k in range(n_clips):
        path = workdir / f"clip{k}.mp4"
        make_clip(path, seconds, fps, gop, seed=k)
        event = float(rng.uniform(2.0, 15.0))
        win = event_window(seconds, event, DEFAULT_WINDOW.before, DEFAULT_WINDOW.after)
        clips.append((path, window_frame_times(win, FPS_OUT), win))
    print(
        f"generated {n_clips} clips (1280x720, {fps} fps, {seconds:.0f} s, GOP {gop}) "
        f"in {time.perf_counter() - t0:.1f} s; window 6 s @ 3 fps -> 18 x {SIZE[1]}x{SIZE[0]}"
    )

    cache = FrameCache(workdir / "cache")

    def cached(path: Path, times: np.ndarray, win) -> np.ndarray:
        parts = cache.window_key(path, win.start, win.end, FPS_OUT, SIZE, "decord")
        return cache.get_or_decode(parts, lambda: read_frames(path, times, SIZE))

    def cache_miss(path: Path, times: np.ndarray, win) -> np.ndarray:
        parts = cache.window_key(path, win.start, win.end, FPS_OUT, SIZE, "miss")
        cache.path_for(cache.key(parts)).unlink(missing_ok=True)
        return cache.get_or_decode(parts, lambda: read_frames(path, times, SIZE))

    methods: dict[str, Callable] = {
        "naive (pyav all frames)": lambda p, t, w: naive_read(p, t),
        "pyav seek": lambda p, t, w: read_frames(p, t, SIZE, backend="pyav"),
        "decord get_batch": lambda p, t, w: read_frames(p, t, SIZE, backend="decord"),
        "cache miss (decord+write)": cache_miss,
        "cache hit (.npy)": cached,
    }
    results: dict[str, list[float]] = {name: [] for name in methods}
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in methods}
    for path, times, win in clips:
        for name, fn in methods.items():
            sec, out = timeit(fn, (path, times, win), reps)
            results[name].append(sec)
            outputs[name].append(out)

    ref = outputs["decord get_batch"]
    base = float(np.mean(results["naive (pyav all frames)"]))
    print(f"\n{'method':<27}{'ms/clip':>10}{'clips/s':>10}{'speedup':>10}{'PSNR vs decord':>16}")
    for name, secs in results.items():
        mean = float(np.mean(secs))
        q = min(psnr(a, b) for a, b in zip(outputs[name], ref, strict=True))
        q_txt = "identical" if q > 100 else f"{q:.1f} dB"
        print(f"{name:<27}{mean * 1e3:>10.1f}{1 / mean:>10.2f}{base / mean:>9.1f}x{q_txt:>16}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--gop", type=int, default=30, help="key frame interval (frames)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep clips here (default: temp)")
    args = ap.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args.workdir, args.clips, args.reps, args.gop)
        return
    with tempfile.TemporaryDirectory() as d:
        run(Path(d), args.clips, args.reps, args.gop)


if __name__ == "__main__":
    main()
