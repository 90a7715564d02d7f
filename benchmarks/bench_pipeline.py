"""Data-path throughput: decode + IMU sync + prompt + collate, clips/s on one worker core.

Generates 1280x720, 30 fps, 16 s synthetic clips (with IMU/GPS) and times the default window
(6 s at 3 fps, 420x240) through `SceDataset` + `Collator` (the real processor of the tiny kit):

- naive:   seek to the window, decode every frame of it with PyAV, then subsample (a common
           first version)
- sce:     decord reads only the 18 needed frames
- cached:  decoded windows read back from the frame cache

Run:  python benchmarks/bench_pipeline.py [--clips 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from sce.data import clip as clip_lib
from sce.data.cache import FrameCache
from sce.data.clip import WindowSpec
from sce.data.collate import Collator
from sce.data.dataset import SceDataset
from sce.data.schema import load_manifest
from sce.data.video_processing import at_model_size
from sce.models.families.qwen2_5_vl import TinySpec, build_processor, train_tokenizer
from sce.models.tiny import vocabulary_corpus
from sce.prepare.synthetic import generate_synthetic_dataset


def naive_read_frames(path, times, size=(420, 240), backend="pyav", **_):
    """Seek to the window start, decode every frame of the window with PyAV, then subsample."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        first, last = int(times[0] * fps), int(round(times[-1] * fps))
        container.seek(int(first / fps / stream.time_base), stream=stream, backward=True)
        frames = {}
        for frame in container.decode(stream):
            index = int(round(float(frame.pts * stream.time_base) * fps))
            if index > last:
                break
            if index >= first:
                frames[index] = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
    wanted = np.clip(np.round(np.asarray(times) * fps).astype(int), first, max(frames))
    return np.stack([frames[i] for i in wanted])


def time_path(dataset: SceDataset, collator: Collator, repeats: int) -> float:
    """Seconds per clip, one clip per batch, best of `repeats` passes."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(len(dataset)):
            collator([dataset[i]])
        best = min(best, (time.perf_counter() - start) / len(dataset))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="sce-bench-"))
    manifest = generate_synthetic_dataset(
        work / "data",
        clips=args.clips,
        seed=0,
        duration=16.0,
        width=1280,
        height=720,
        progress=False,
    )
    records = load_manifest(manifest)
    tiny = TinySpec(max_pixels=420 * 252)
    processor = build_processor(train_tokenizer(tiny.vocab_size, vocabulary_corpus()), tiny)
    # 6 s at 3 fps, 420x240 -> decoded at 420x252, the model's size (as SceDataModule does)
    spec = at_model_size(WindowSpec(), processor)
    collator = Collator(processor, max_length=8192)
    plain = SceDataset(records, spec, train=False)
    cache = FrameCache(work / "cache")
    cached = SceDataset(records, spec, train=False, cache=cache)
    for i in range(len(cached)):  # fill the cache
        cached[i]
    rows = [("sce (decord, 18 frames)", time_path(plain, collator, args.repeats))]
    rows.append(("cached windows", time_path(cached, collator, args.repeats)))
    real_read = clip_lib.video_lib.read_frames
    clip_lib.video_lib.read_frames = naive_read_frames
    try:
        rows.insert(0, ("naive (PyAV all frames)", time_path(plain, collator, 1)))
    finally:
        clip_lib.video_lib.read_frames = real_read
    naive = rows[0][1]
    size = f"{spec.width}x{spec.height}"
    print(f"{len(records)} clips 1280x720 30 fps 16 s; window 6 s at 3 fps -> 18 frames {size};")
    print("decode + IMU sync + prompt + collate (tiny-kit processor), one thread\n")
    print(f"{'path':<26} {'ms/clip':>9} {'clips/s':>9} {'vs naive':>9}")
    for name, seconds in rows:
        print(f"{name:<26} {seconds * 1e3:>9.1f} {1 / seconds:>9.2f} {naive / seconds:>8.1f}x")
    uncached, cached_s = rows[1][1], rows[2][1]
    print(f"\ncached / uncached (sce): {uncached / cached_s:.1f}x (target >= 10x); ", end="")
    print(f"uncached {1 / uncached:.2f} clips/s per core (target >= 4)")


if __name__ == "__main__":
    main()
