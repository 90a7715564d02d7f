"""The dataset: each clip's label and split, its files (IMU, GPS, video) and manifest record, and
`generate_synthetic_dataset` (`sce synth`), which writes them all plus manifest.jsonl.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sce.data.schema import LABELS, ClipRecord, write_manifest
from sce.prepare.splits import assign_splits
from sce.prepare.synthetic.cabin import write_driver_view
from sce.prepare.synthetic.caption import clip_metadata, make_caption
from sce.prepare.synthetic.questions import teacher_annotations
from sce.prepare.synthetic.render import encode_video, render_frames
from sce.prepare.synthetic.scenario import (
    DEFAULT_OPTIONS,
    POST_EVENT_S,
    PRE_EVENT_S,
    SynthOptions,
    apply_options,
    sample_scenario,
)
from sce.prepare.synthetic.telemetry import Kinematics, gps_track, simulate, write_csv
from sce.tasks import CAPTION_FIELD


def class_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Clips per label for `n` clips at `fractions` (largest remainder, in LABELS order)."""
    exact = np.array([fractions[label] for label in LABELS]) * n
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    return dict(zip(LABELS, counts.tolist(), strict=True))


def long_tail_labels(
    clips: int, seed: int, split_fractions: Sequence[float], fractions: dict[str, float]
) -> tuple[list[str], list[str]]:
    """Labels and splits: a train split with the class mix `fractions`, balanced val/test.

    The train split holds round(clips x split_fractions[0]) clips; the rest are balanced
    round-robin and divided between val and test in their ratio (stratified).
    """
    n_train = int(round(clips * split_fractions[0]))
    train = [label for label, k in class_counts(n_train, fractions).items() for _ in range(k)]
    held = [LABELS[i % len(LABELS)] for i in range(clips - n_train)]
    rest = sum(split_fractions[1:])
    held_splits = (
        assign_splits(held, [0.0] + [f / rest for f in split_fractions[1:]]) if held else []
    )
    labels = train + held
    splits = ["train"] * n_train + held_splits
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(clips)
    return [labels[i] for i in order], [splits[i] for i in order]


def _check_args(clips: int, seed: int, duration: float, fps: int, width: int, height: int) -> None:
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if duration < PRE_EVENT_S + POST_EVENT_S:
        raise ValueError(
            f"duration must be >= {PRE_EVENT_S + POST_EVENT_S} s so the [-4 s, +2 s] event "
            f"window fits, got {duration}"
        )
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"width and height must be even and >= 16 (yuv420p): {width}x{height}")


def _write_telemetry(
    out_dir: Path, clip_id: str, kin: Kinematics, rng: np.random.Generator, duration: float
) -> tuple[str, str]:
    """Write the clip's IMU and GPS CSVs; returns their paths relative to out_dir."""
    n = kin.t.size - 1  # the extra sample past `duration` is only for the GPS interpolation
    imu_path, gps_path = f"imu/{clip_id}.csv", f"gps/{clip_id}.csv"
    imu = np.column_stack([kin.t[:n], kin.imu[:n]])
    write_csv(out_dir / imu_path, "t,ax,ay,az,gx,gy,gz", imu, ["%.2f"] + ["%.4f"] * 6)
    write_csv(out_dir / gps_path, "t,speed", gps_track(kin, rng, duration), ["%.0f", "%.3f"])
    return imu_path, gps_path


def generate_clip(
    out_dir: Path,
    clip_id: str,
    label: str,
    split: str,
    rng: np.random.Generator,
    duration: float,
    fps: int,
    width: int,
    height: int,
    preset: str = "ultrafast",
    options: SynthOptions = DEFAULT_OPTIONS,
) -> ClipRecord:
    """Write one clip (video, IMU, GPS) under out_dir and return its manifest record."""
    # One generator, drawn in this order: scenario, IMU, GPS, pictures (a seed fixes the clip).
    sc = sample_scenario(rng, label, duration)
    if options != DEFAULT_OPTIONS:
        apply_options(sc, options, rng.spawn(1)[0])
    kin = simulate(sc, rng, duration)
    imu_path, gps_path = _write_telemetry(out_dir, clip_id, kin, rng, duration)
    video_path = f"videos/{clip_id}.mp4"
    frames = render_frames(sc, kin, rng, fps, width, height)
    encode_video(frames, out_dir / video_path, fps, preset)
    meta = clip_metadata(sc, kin, duration, fps, (width, height))
    if "brief_start" in sc.params:  # where the impact can be seen (the ablation's ground truth)
        meta["visible_from_s"] = round(sc.params["brief_start"], 3)
        meta["visible_to_s"] = round(sc.params["brief_end"], 3)
    annotations = {
        CAPTION_FIELD: make_caption(label, meta, kin.event_time),
        **teacher_annotations(label, meta, kin.event_time),  # no random draw
    }
    if options.driver_view:  # its own generator, spawned after every draw of the road clip
        meta["driver_video"], cot = write_driver_view(
            out_dir, clip_id, label, rng.spawn(1)[0], duration, fps, width, height, preset
        )
        annotations.update(cot)
    return ClipRecord(
        id=clip_id,
        video=video_path,
        label=label,
        source="synthetic",
        split=split,
        imu=imu_path,
        gps=gps_path,
        event_time=kin.event_time,
        metadata=meta,
        annotations=annotations,
        root=str(out_dir),
    )


def _labels_and_splits(
    clips: int, seed: int, split_fractions: Sequence[float], options: SynthOptions
) -> tuple[list[str], list[str]]:
    """Each clip's label and split: balanced round-robin and shuffled, or the long-tail mix."""
    if options.class_fractions is not None:
        return long_tail_labels(clips, seed, split_fractions, options.class_fractions)
    labels = [LABELS[i % len(LABELS)] for i in range(clips)]
    # Its own generator (not any clip's), so the clips' draws do not depend on `clips`.
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(clips)
    labels = [labels[i] for i in order]
    return labels, assign_splits(labels, split_fractions)


def generate_synthetic_dataset(
    out_dir: str | Path,
    clips: int = 60,
    seed: int = 0,
    duration: float = 16.0,
    fps: int = 30,
    width: int = 320,
    height: int = 180,
    split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
    progress: bool = True,
    preset: str = "ultrafast",
    options: SynthOptions = DEFAULT_OPTIONS,
) -> Path:
    """Write a synthetic dataset (videos/, imu/, gps/, manifest.jsonl) and return the manifest.

    Args:
        out_dir: output folder (created); manifest paths are relative to it.
        clips: number of clips; classes are balanced round-robin, then shuffled with `seed`.
        seed: the same seed gives byte-identical CSVs and manifest and identical video frames.
        duration: clip length in seconds (>= 6 so the [-4 s, +2 s] event window fits).
        fps, width, height: video frame rate and size (width and height even).
        split_fractions: train/val/test fractions, stratified by class.
        progress: show a tqdm progress bar.
        preset: libx264 preset ("ultrafast" keeps a 60-clip demo around a minute).
        options: ablation options (brief events, telemetry-decides, long-tail train split).
    """
    _check_args(clips, seed, duration, fps, width, height)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels, splits = _labels_and_splits(clips, seed, split_fractions, options)
    records = []
    for i in tqdm(range(clips), desc="synthetic clips", unit="clip", disable=not progress):
        rng = np.random.default_rng([seed, i])
        clip_id = f"synth_{seed}_{i:05d}"
        records.append(
            generate_clip(
                out,
                clip_id,
                labels[i],
                splits[i],
                rng,
                duration,
                fps,
                width,
                height,
                preset,
                options,
            )
        )
    return write_manifest(records, out / "manifest.jsonl")
