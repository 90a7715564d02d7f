"""The real recordings through the whole pipeline (issue 16 point 6).

GoPro: prepare -> validate -> the event window at its IMU peak at 3 fps from 29.97 fps ->
synchronized telemetry -> collated batch -> one training step and `sce infer` on the tiny kit.
comma2k19: the real telemetry with a stand-in video at its real frame times -> prepare ->
validate -> windows whose synchronized a_x follows the CAN-derived acceleration and whose GPS
speed agrees with the CAN speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.realdata import GOPRO_SAMPLE, comma_segment_with_video, require

from sce.cli import main
from sce.data import imu as imu_lib
from sce.data import video as video_lib
from sce.data.clip import WindowSpec, load_clip, load_record_imu
from sce.data.collate import Collator
from sce.data.dataset import SceDataset
from sce.data.schema import load_manifest
from sce.models.module import SceModule
from sce.prepare.sources import prepare
from sce.prepare.validate import validate_manifest

SPEC = WindowSpec(fps=3, before=4, after=2, width=112, height=56)


@pytest.fixture(scope="module")
def gopro_record(tmp_path_factory: pytest.TempPathFactory):
    sample = require(GOPRO_SAMPLE)
    out = tmp_path_factory.mktemp("gopro") / "manifest.jsonl"
    prepare("gopro", sample, out, split="train")
    return load_manifest(out)[0], out


def test_gopro_validates_and_windows_at_its_imu_peak(gopro_record) -> None:
    record, manifest = gopro_record
    report = validate_manifest(manifest, before=4, after=2, fps=3)
    assert report.ok, report.table()
    clip = load_clip(record, SPEC)
    imu, _ = load_record_imu(record)  # the vehicle (here: walker) frame
    assert clip.event_time_source == "imu"
    assert clip.event_time == pytest.approx(imu_lib.event_time_from_imu(imu))
    assert clip.frames.shape == (18, 56, 112, 3)  # 6 s at 3 fps
    # 3 fps from 29.97 fps: 18 distinct frames 9.99 source frames apart
    info = video_lib.video_info(record.path("video"))
    steps = np.diff(video_lib.frame_indices(clip.frame_times, info.fps, info.n_frames))
    assert set(steps.tolist()) <= {9, 10} and steps.sum() == pytest.approx(17 * 9.99, abs=1)
    telemetry = clip.telemetry
    assert telemetry is not None and telemetry.accel.shape == (18, 3)
    assert np.mean(telemetry.accel[:, 2]) == pytest.approx(9.8, abs=0.3)  # up after alignment
    assert np.all(np.isfinite(telemetry.speed)) and 0.3 < np.median(telemetry.speed) < 2.5


def test_gopro_batch_trains_and_infers(gopro_record, tiny_kit, tiny_processor, capsys) -> None:
    record, _ = gopro_record
    dataset = SceDataset([record], SPEC, train=True, imu_dropout=0.0)
    batch = Collator(tiny_processor)([dataset[0]])
    assert batch["pixel_values_videos"].shape[0] > 0
    torch.manual_seed(0)
    module = SceModule(str(tiny_kit), finetuning="lora", rank=4, alpha=8, lr=1e-3)
    module.configure_model()
    module.train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    loss = module.model_step(batch).total
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    capsys.readouterr()  # the module's parameter summary
    args = ["infer", "--model", str(tiny_kit), "--video", str(record.path("video"))]
    args += ["--imu", str(record.path("imu")), "--gps", str(record.path("gps"))]
    args += ["--imu-axes", "estimate", "--width", "112", "--height", "56"]
    assert main([*args, "--max-new-tokens", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["imu_used"] is True and out["event_time_source"] == "imu"
    clip = load_clip(record, SPEC)
    assert out["event_time"] == pytest.approx(clip.event_time)  # same peak as the manifest path


def can_acceleration(can, times: np.ndarray, half: float) -> np.ndarray:
    """d(CAN speed)/dt over [t - half, t + half]: the span of a centred IMU block."""
    ahead = np.interp(times + half, can.t, can.speed)
    return (ahead - np.interp(times - half, can.t, can.speed)) / (2 * half)


def test_comma2k19_window_follows_can(tmp_path: Path) -> None:
    """Synchronized a_x (block means of 34 samples at 3 fps) against the CAN-derived
    acceleration over the same blocks, and GPS speed against CAN speed, on the real segment.
    Measured: r = 0.864 over 58 s (174 frames), 0.841 in the event window; GPS - CAN speed
    +0.149 m/s mean, 0.205 m/s RMS, 0.605 m/s at worst."""
    comma_segment_with_video(tmp_path / "root", 32, 24)
    manifest = tmp_path / "m.jsonl"
    prepare("comma2k19", tmp_path / "root", manifest)
    assert validate_manifest(manifest, fps=3).ok
    (record,) = load_manifest(manifest)
    can = imu_lib.load_gps(Path(record.root) / record.metadata["can_speed"])
    long = load_clip(record, WindowSpec(fps=3, before=30, after=28, width=32, height=24))
    assert long.frames.shape[0] == 174 and long.telemetry is not None
    half = 0.5 / 3  # a centred block spans one 1/3 s frame interval
    a_x = long.telemetry.accel[:, 0]
    r = np.corrcoef(a_x, can_acceleration(can, long.frame_times, half))[0, 1]
    assert r >= 0.8 and r == pytest.approx(0.864, abs=0.01)
    error = long.telemetry.speed - np.interp(long.frame_times, can.t, can.speed)
    assert np.sqrt(np.mean(error**2)) == pytest.approx(0.205, abs=0.01)
    assert np.abs(error).max() < 0.65
    event = load_clip(record, SPEC)  # the 6 s window at argmax |a_x|
    assert event.event_time == pytest.approx(38.857, abs=1e-3)
    r_event = np.corrcoef(
        event.telemetry.accel[:, 0], can_acceleration(can, event.frame_times, half)
    )
    assert r_event[0, 1] >= 0.8
