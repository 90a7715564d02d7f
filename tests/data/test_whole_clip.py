"""Paper 003's "2 fps, at most 128 frames, at most 16,384 pixels": the whole-clip window and the
per-frame pixel cap, from the window plan through decoding, collation, `sce infer` and
`sce budget`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from helpers.paths import EXPERIMENTS

from sce.cli import main
from sce.data.cache import FrameCache
from sce.data.clip import WindowSpec, load_clip, plan_window
from sce.data.collate import Collator
from sce.data.dataset import SceDataset
from sce.data.schema import ClipRecord, load_manifest
from sce.data.video import frame_indices
from sce.data.video_processing import at_model_size, model_frame_size
from sce.prepare.synthetic import encode_video
from sce.train import budget as b

NATIVE_FPS = 4  # the test videos' frame rate: every frame a different colour
WHOLE = WindowSpec(fps=2.0, width=56, height=56, mode="whole", max_frames=128)


def _frame_image(i: int) -> np.ndarray:
    """A 48x48 frame showing the number i (< 512) in binary: 3x3 black/white blocks."""
    bits = (i >> np.arange(9)) & 1
    blocks = (bits.reshape(3, 3) * 255).astype(np.uint8)
    return np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)[..., None].repeat(3, axis=2)


def _write_video(path: Path, seconds: float) -> Path:
    n = int(round(seconds * NATIVE_FPS))
    encode_video((_frame_image(i) for i in range(n)), path, NATIVE_FPS, "ultrafast")
    return path


def _frame_numbers(frames: np.ndarray) -> np.ndarray:
    """The number each decoded frame shows (read at the centres of its 3x3 blocks)."""
    height, width = frames.shape[1:3]
    rows = ((np.arange(3) + 0.5) * height / 3).astype(int)
    cols = ((np.arange(3) + 0.5) * width / 3).astype(int)
    bits = frames[:, rows][:, :, cols, 0].reshape(len(frames), 9) > 128
    return (bits * (1 << np.arange(9))).sum(axis=1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, ClipRecord]:
    root = tmp_path_factory.mktemp("whole")
    out = {}
    for name, seconds in (("short", 16.0), ("long", 100.0)):
        _write_video(root / f"{name}.mp4", seconds)
        out[name] = ClipRecord(name, f"{name}.mp4", "normal", "test", "test", root=str(root))
    return out


def test_short_clip_is_every_half_second_of_it_all_distinct(clips):
    """16 s at 2 fps: 32 distinct frames covering the clip (the 64 s event window gave 128
    frames of which 34 were distinct: 48 s of repeated edge frames)."""
    clip = load_clip(clips["short"], WHOLE)
    np.testing.assert_allclose(clip.frame_times, 0.25 + 0.5 * np.arange(32))
    assert clip.fps == 2.0 and clip.frames.shape == (32, 56, 56, 3)
    assert (clip.padded, clip.shifted) == (0.0, 0.0)
    # the frame nearest each time: floor(t * 4 + 0.5) = 1, 3, ..., 63, all different
    np.testing.assert_array_equal(_frame_numbers(clip.frames), 1 + 2 * np.arange(32))


def test_long_clip_spreads_128_frames_over_all_of_it_at_the_true_rate(clips):
    """100 s: 128 frames at the centres of 128 equal intervals of [0, 100] s, at 1.28 fps (not a
    64 s crop of the middle at 2 fps)."""
    clip = load_clip(clips["long"], WHOLE)
    np.testing.assert_allclose(clip.frame_times, (np.arange(128) + 0.5) * 100 / 128)
    assert clip.fps == pytest.approx(1.28)
    numbers = _frame_numbers(clip.frames)
    np.testing.assert_array_equal(numbers, frame_indices(clip.frame_times, NATIVE_FPS, 400))
    assert len(np.unique(numbers)) == 128 and numbers[0] <= 2 and numbers[-1] >= 397


@pytest.mark.parametrize(
    ("seconds", "frames", "fps"),
    [(16.0, 32, 2.0), (16.3, 32, 2.0), (64.0, 128, 2.0), (100.0, 128, 1.28), (0.6, 2, 2 / 0.6)],
)
def test_whole_clip_frame_counts_are_even_and_capped(seconds, frames, fps):
    from sce.data.windows import whole_clip_window

    _, times, rate = whole_clip_window(10.0, 10.0 + seconds, WHOLE.fps, WHOLE.max_frames)
    assert (len(times), rate) == (frames, pytest.approx(fps))
    np.testing.assert_allclose(np.diff(times), 1 / rate)
    assert 10.0 < times[0] and times[-1] < 10.0 + seconds  # inside the span, centred
    assert times[0] - 10.0 == pytest.approx(10.0 + seconds - times[-1])


def test_chunk_whole_clip_is_its_span_with_telemetry_at_the_true_rate(synthetic_manifest):
    """A chunk record's whole clip is [clip_start, clip_end]; telemetry rows follow the frames."""
    record = next(r for r in load_manifest(synthetic_manifest) if r.imu)
    chunk = dataclasses.replace(
        record, event_time=None, metadata={"clip_start": 1.0, "clip_end": 5.0}
    )
    clip = plan_window(chunk, WHOLE)
    np.testing.assert_allclose(clip.frame_times, 1.25 + 0.5 * np.arange(8))
    few = plan_window(chunk, dataclasses.replace(WHOLE, max_frames=4))
    np.testing.assert_allclose(few.frame_times, [1.5, 2.5, 3.5, 4.5])
    assert few.fps == 1.0
    assert few.telemetry is not None and len(few.telemetry.accel) == 4
    np.testing.assert_allclose(few.telemetry.frame_times, few.frame_times)
    # a whole-clip window does not end at the event: blocks centred on the frames, after or not
    assert dataclasses.replace(WHOLE, after=0.0).anchor == "centered"


def test_mixed_lengths_collate_with_each_clips_rate(clips, tiny_processor):
    """A 16 s and a 100 s clip in one batch: 16 and 64 temporal patches, second_per_grid_ts
    2 / 2 fps and 2 / 1.28 fps, and each row's video tokens counted in its length."""
    spec = at_model_size(WHOLE, tiny_processor)
    records = [clips["short"], clips["long"]]
    data = SceDataset(records, dataclasses.replace(spec, layout="table"), train=False)
    samples = [data[0], data[1]]
    assert [s.fps for s in samples] == [2.0, pytest.approx(1.28)]
    batch = Collator(tiny_processor, 8192, "train")(samples)
    grid = batch["video_grid_thw"].tolist()
    assert grid == [[16, 4, 4], [64, 4, 4]]  # 56x56 frames: 4x4 patches of 14
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([1.0, 2 / 1.28])
    video_id = tiny_processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    per_row = (batch["input_ids"] == video_id).sum(dim=1).tolist()
    assert per_row == [16 * 4, 64 * 4]  # T/2 * (H/28) * (W/28)
    lengths = batch["attention_mask"].sum(dim=1)
    assert lengths[1] - lengths[0] == (64 - 16) * 4 + _text_difference(samples, tiny_processor)


def _text_difference(samples, processor) -> int:
    """Text tokens of the long sample's prompt minus the short one's (telemetry rows etc.)."""
    collator = Collator(processor, 100000, "train")
    ids = [processor.tokenizer(t)["input_ids"] for t in collator.texts(samples)]
    return len(ids[1]) - len(ids[0])


def test_max_pixels_caps_a_dual_view_frame_to_112x112():
    """420x476 at 16,384 pixels: smart_resize to 112x112, 16 tokens per frame pair, 1,024 per
    128 frames; without the cap 420x476 costs 16,320."""
    from transformers import Qwen2VLVideoProcessor

    assert b.capped_frame_size(420, 476, 16384) == (112, 112)
    assert b.visual_tokens(128, 420, 476) == 64 * (476 // 28) * (420 // 28) == 16320
    assert b.visual_tokens(128, 112, 112) == 64 * 4 * 4 == 1024
    assert b.capped_frame_size(420, 476, None) == (420, 476)
    # Qwen2.5-VL's preprocessor config (pixels 3,136..12,845,056): the processor keeps 112x112
    vp = Qwen2VLVideoProcessor(size={"shortest_edge": 3136, "longest_edge": 12845056})
    qwen = SimpleNamespace(video_processor=vp)
    assert model_frame_size(qwen, 420, 476) == (420, 476)
    assert model_frame_size(qwen, 420, 476, max_pixels=16384) == (112, 112)
    frames = torch.zeros(128, 3, 112, 112, dtype=torch.uint8)
    out = vp(videos=[frames], return_tensors="pt")
    assert out["video_grid_thw"].tolist() == [[64, 8, 8]]  # 64 * 8 * 8 / 4 = 1,024 tokens
    # a processor whose minimum would scale the capped frames back up is refused
    with pytest.raises(ValueError, match="min_pixels 100,352"):
        model_frame_size(SimpleNamespace(video_processor=Qwen2VLVideoProcessor()), 420, 476, 16384)


def test_training_and_infer_decode_at_the_capped_size(synthetic_manifest, tiny_kit, monkeypatch):
    """SceDataModule and `sce infer` both decode frames at 112x112 with the cap, dual view too."""
    import sce.deploy.infer as infer_mod
    from sce.data.datamodule import SceDataModule

    options = {"mode": "whole", "fps": 2.0, "max_frames": 128, "max_pixels": 16384}
    window = WindowSpec(width=420, height=476, **options)
    data = SceDataModule(str(synthetic_manifest), processor_path=str(tiny_kit), window=window)
    data.setup("fit")
    spec = data.dataset("test").spec
    assert (spec.width, spec.height) == (112, 112)
    road, cabin = load_manifest(synthetic_manifest)[:2]
    dual = dataclasses.replace(road, metadata={"driver_video": cabin.video})
    sample = SceDataset([dual], dataclasses.replace(spec, layout="table"), train=False)[0]
    assert sample.videos[0].shape == (14, 112, 112, 3)  # 7 s at 2 fps

    class Stop(Exception):
        pass

    seen = {}

    def spy(clip, record, window, use_imu, questions, *more):  # more: event_wording
        seen.update(shape=clip.frames.shape, fps=clip.fps)
        raise Stop

    monkeypatch.setattr(infer_mod, "prompt_samples", spy)
    infer_spec = WindowSpec(width=420, height=476, **{**options, "max_frames": 4})
    with pytest.raises(Stop):
        infer_mod.infer_clip(None, data.processor, road.path("video"), window=infer_spec)
    # 4 frames spread over the 7 s clip: the prompt gets their rate, 4 / 7 fps, not 2 fps
    assert seen["shape"] == (4, 112, 112, 3)
    assert seen["fps"] == pytest.approx(4 / 7)


def test_window_settings_are_part_of_the_cached_plan(clips, tmp_path):
    cache = FrameCache(tmp_path / "cache")
    spec = dataclasses.replace(WHOLE, width=32, height=32)
    assert len(load_clip(clips["long"], spec, cache).frame_times) == 128
    fewer = load_clip(clips["long"], dataclasses.replace(spec, max_frames=16), cache)
    assert len(fewer.frame_times) == len(fewer.frames) == 16
    assert fewer.fps == pytest.approx(0.16)
    event = load_clip(clips["long"], dataclasses.replace(spec, mode="event", max_frames=None))
    assert len(event.frame_times) == 12  # the default [-4 s, +2 s] at 2 fps


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "whole"}, "max_frames must be an even number"),
        ({"mode": "whole", "max_frames": 127}, "max_frames must be an even number"),
        ({"max_frames": 128}, "data.window.mode=whole only"),
        ({"mode": "clip"}, "data.window.mode must be one of"),
        ({"max_pixels": 0}, "max_pixels must be positive"),
        ({"mode": "whole", "max_frames": 8, "scales": (6.0,)}, "data.window.scales"),
        ({"scales": (6.0, 0.0)}, "scales must be positive seconds"),
        ({"layout": "grid"}, "data.window.layout must be one of"),
    ],
)
def test_bad_window_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        WindowSpec(**options)


def test_paper003_budget_shows_short_and_long_clips_with_the_pixel_cap(tmp_path, capsys):
    config = yaml.safe_load((EXPERIMENTS / "paper003_instruction.yaml").read_text())
    assert {
        k: config["data"]["window"][k] for k in ("mode", "fps", "max_frames", "max_pixels")
    } == {
        "mode": "whole",
        "fps": 2.0,
        "max_frames": 128,
        "max_pixels": 16384,
    }
    config["model"]["model_path"] = "sce-test/not-a-cached-model"
    report = b.budget_report(config)
    assert [(x["duration_s"], x["frames"], x["fps"], x["visual_tokens"]) for x in
            report["whole_clip"]] == [(16.0, 32, 2.0, 256), (100.0, 128, pytest.approx(1.28), 1024)]  # fmt: skip
    assert (report["resized_width"], report["resized_height"]) == (112, 112)
    assert (report["frames_per_clip"], report["visual_tokens_per_clip"]) == (128, 1024)
    path = tmp_path / "paper003.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["budget", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "16 s -> 32 frames at 2 fps, 256 visual tokens" in out
    assert "100 s -> 128 frames at 1.28 fps, 1,024 visual tokens" in out
    assert "420x476 -> 112x112 after resize (max_pixels 16,384 per frame)" in out


def test_whole_clip_budget_equals_the_collated_long_clip(tiny_kit, tiny_processor):
    """The budget's total is the real sequence length of its longest whole-clip item."""
    from sce.data.dataset import Sample

    window = {"mode": "whole", "fps": 2.0, "max_frames": 8, "max_pixels": 4000}
    window.update({"width": 420, "height": 476, "layout": "table"})
    data = {"window": window, "max_length": 4096}
    data["manifest"] = "unused/manifest.jsonl"  # the sce fit parser requires one; unread here
    report = b.budget_report({"model": {"model_path": str(tiny_kit)}, "data": data})
    times, rate = b.whole_clip_item(report["whole_clip"][-1]["duration_s"], 2.0, 8)
    assert (len(times), report["resized_width"], report["resized_height"]) == (8, 56, 56)
    collator = Collator(tiny_processor, 100000, "train")
    content, videos = b.representative_content(8, rate, WindowSpec(**window), True, times=times)
    frames = [np.zeros((len(v), 56, 56, 3), np.uint8) for v in videos]
    sample = Sample("x", content, frames, rate, b.representative_answer(), "mcq", "normal")
    assert collator([sample])["input_ids"].shape[1] == report["total_tokens"]
    assert report["visual_tokens_per_clip"] == 4 * 2 * 2


def test_infer_cli_refuses_a_whole_window_without_max_frames(clips, capsys):
    video = str(Path(clips["short"].root) / clips["short"].video)
    code = main(["infer", "--model", "tiny:0", "--video", video, "--window", "whole"])
    assert code == 2
    assert "max_frames must be an even number" in capsys.readouterr().out
