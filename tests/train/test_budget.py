"""Token budget: frames, visual tokens (Qwen2-VL smart_resize), text tokens, `sce budget`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.paths import EXPERIMENTS

from sce.cli import main
from sce.train import budget as b

NO_MODEL = "sce-test/not-a-cached-model"  # not a folder, not in any cache: defaults + estimate
NO_MANIFEST = "unused/manifest.jsonl"  # the parser requires one; the budget reads none


def test_paper000_window_is_18_frames_and_1215_visual_tokens():
    assert b.frames_per_clip(fps=3.0, before=4.0, after=2.0) == 18
    assert b.visual_tokens(2, 420, 240) == 135  # 420x252: 15 x 9 merged patches per frame pair
    assert b.visual_tokens(18, 420, 240) == 1215


@pytest.mark.parametrize(
    ("fps", "before", "after", "frames"),
    [(1.0, 2.0, 1.0, 4), (1.4, 4.0, 1.0, 8), (15.0, 4.0, 2.0, 90), (2.0, 4.0, 2.0, 12)],
)
def test_frames_per_clip_rounds_up_to_even(fps, before, after, frames):
    assert b.frames_per_clip(fps, before, after) == frames


def test_odd_frame_counts_pad_to_the_next_temporal_patch():
    assert b.visual_tokens(17, 420, 240) == 1215
    assert b.visual_tokens(1, 420, 240) == 135
    assert b.visual_tokens(3, 112, 56) == 2 * 4 * 2


@pytest.mark.parametrize(
    ("size", "kwargs", "resized"),
    [
        ((240, 420), {}, (252, 420)),  # 8.57 -> 9 rows of 28
        ((128, 224), {}, (140, 224)),  # 4.57 -> 5
        ((360, 640), {}, (364, 644)),  # 12.86 -> 13, 22.86 -> 23
        ((70, 98), {}, (56, 112)),  # 2.5 -> 2 and 3.5 -> 4: Python rounds half to even
        ((240, 420), {"max_pixels": 28 * 28 * 64}, (168, 280)),  # scaled down into the cap
        ((128, 224), {"min_pixels": 128 * 28 * 28}, (252, 420)),  # scaled up to the minimum
    ],
)
def test_smart_resize_cases(size, kwargs, resized):
    assert b.smart_resize(*size, **kwargs) == resized


def test_smart_resize_matches_transformers():
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize

    for h in range(14, 760, 37):
        for w in range(14, 1300, 53):
            for lo, hi in ((56 * 56, 12845056), (1568, 50176), (128 * 28 * 28, 768 * 28 * 28)):
                if max(h, w) / min(h, w) > 200:
                    continue
                ours = b.smart_resize(h, w, 28, lo, hi)
                assert ours == smart_resize(h, w, 28, lo, hi), (h, w, lo, hi)


def test_visual_tokens_with_processor_limits():
    assert b.visual_tokens(18, 420, 240, max_pixels=50176) == 9 * 6 * 10  # 168x280
    assert b.visual_tokens(2, 224, 128, min_pixels=100352) == 135  # 252x420
    with pytest.raises(TypeError, match="unknown processor setting"):
        b.visual_tokens(2, 224, 128, max_pixel=1)
    with pytest.raises(ValueError, match="num_frames"):
        b.visual_tokens(0, 224, 128)


def test_cap_pixels_per_frame_shares_the_video_budget():
    # 0.9 * 1000 tokens * 784 px = 705,600 px for the video; 2 / 20 of it per frame: 70,560 px.
    s = dataclasses.replace(b.DEFAULT_SETTINGS, cap_pixels_per_frame=True, max_video_tokens=1000)
    assert b.smart_resize(360, 640, 28, s.min_pixels, 70560) == (196, 336)
    assert b.visual_tokens(20, 640, 360, s) == 10 * 7 * 12


def test_layouts_split_frames_into_video_blocks():
    assert b.video_lengths(18, "interleaved") == [2] * 9
    assert b.video_lengths(18, "table") == [18]
    with pytest.raises(ValueError, match="layout"):
        b.video_lengths(18, "grid")


def test_estimate_counts_digits_words_and_symbols():
    assert b.estimate_tokens("t=10.3s: ax -12.3") == 14  # t = 1 0 . 3 s : ax - 1 2 . 3
    assert b.estimate_tokens("<|im_start|>user\n") == 3
    assert b.estimate_tokens("internationalization") == 3  # 20 letters: one token per 8


def _tiny_config(tiny_kit: Path, **window) -> dict:
    base = {"fps": 3.0, "before": 4.0, "after": 2.0, "width": 112, "height": 56}
    data = {"manifest": NO_MANIFEST, "window": {**base, **window}, "max_length": 900}
    return {"model": {"model_path": str(tiny_kit)}, "data": data}


@pytest.mark.parametrize(
    ("layout", "fps", "size", "visual"),
    [("interleaved", 3.0, (112, 56), 72), ("table", 2.0, (224, 128), 240)],
)
def test_report_matches_the_collated_sequence(tiny_kit, tiny_processor, layout, fps, size, visual):
    """Budget totals equal the real processor's sequence length for the same prompt."""
    from sce.data.collate import Collator
    from sce.data.dataset import Sample

    width, height = size
    config = _tiny_config(tiny_kit, fps=fps, width=width, height=height, layout=layout)
    report = b.budget_report(config)
    assert report["visual_tokens_per_clip"] == visual
    assert report["text_tokens_method"] == "tokenizer"
    assert report["processor"]["max_pixels"] == 50176
    collator = Collator(tiny_processor, 100000, "train")
    for imu, total in ((True, "total_tokens"), (False, "total_tokens_video_only")):
        window = b.config_window(b.resolved(config))
        content, videos = b.representative_content(report["frames_per_clip"], fps, window, imu)
        frames = [np.zeros((len(v), height, width, 3), np.uint8) for v in videos]
        sample = Sample("x", content, frames, fps, b.representative_answer(), "mcq", "normal")
        assert collator([sample])["input_ids"].shape[1] == report[total]
    assert report["telemetry_tokens"] == report["text_tokens"] - report["text_tokens_video_only"]
    assert report["telemetry_tokens"] > 0
    assert report["fits"] == (report["total_tokens"] <= 900)


def test_report_without_processor_uses_qwen_defaults():
    config = yaml.safe_load((EXPERIMENTS / "paper000_dora.yaml").read_text())
    config["model"]["model_path"] = NO_MODEL
    report = b.budget_report(config)
    assert report["processor"]["source"] == "Qwen2.5-VL defaults"
    assert (report["frames_per_clip"], report["videos_per_clip"]) == (18, 9)
    assert (report["resized_width"], report["resized_height"]) == (420, 252)
    assert report["visual_tokens_per_clip"] == 1215
    assert report["text_tokens_method"] == "estimate"
    assert report["total_tokens"] == 1215 + report["text_tokens"]
    assert report["headroom"] == 4096 - report["total_tokens"]


def test_missing_data_keys_take_the_datamodule_defaults():
    report = b.budget_report(
        {
            "model": {"model_path": NO_MODEL},
            "data": {"manifest": NO_MANIFEST, "window": {"fps": 1.0}},
        }
    )
    window = report["window"]  # data.window's defaults fill what the config leaves out
    assert (window["width"], window["height"], window["layout"]) == (420, 240, "interleaved")
    assert report["frames_per_clip"] == 6
    assert report["visual_tokens_per_clip"] == 3 * 135


def test_grid_marks_what_fits():
    data = {"manifest": NO_MANIFEST, "window": {"before": 4.0, "after": 2.0}}
    config = {"model": {"model_path": NO_MODEL}, "data": data}
    rows = b.budget_grid(config, 2000, fps_values=(1.0, 3.0), sizes=((420, 240), (640, 360)))
    cells = {(r["fps"], r["width"]): r for r in rows}
    assert cells[(3.0, 420)]["visual_tokens"] == 1215
    assert cells[(3.0, 640)]["visual_tokens"] == 9 * 23 * 13
    assert cells[(1.0, 420)]["frames"] == 6
    # Text depends on the frame count only: the same for every size at one fps.
    text = {
        fps: cells[(fps, 420)]["total_tokens"] - cells[(fps, 420)]["visual_tokens"]
        for fps in (1.0, 3.0)
    }
    assert cells[(3.0, 640)]["total_tokens"] == 9 * 23 * 13 + text[3.0]
    assert all(r["fits"] == (r["total_tokens"] <= 2000) for r in rows)
    assert cells[(1.0, 420)]["fits"] and not cells[(3.0, 640)]["fits"]
    table = b.format_grid(rows, 2000)
    assert "420x240" in table and "640x360" in table and "*" in table


def test_budget_overrides_use_the_fit_syntax_and_parser(capsys):
    """`sce budget --config X --data.window.fps=15`: the `sce fit` parser resolves the override
    (types checked), so the window of paper 000 (4 s + 2 s) has 5x the frames of its 3 fps."""
    config = str(EXPERIMENTS / "paper000_dora.yaml")
    assert main(["budget", "--config", config, "--json"]) == 0
    at_3 = json.loads(capsys.readouterr().out)["report"]
    main(["budget", "--config", config, "--data.window.fps=15", "--json"])
    at_15 = json.loads(capsys.readouterr().out)["report"]
    assert (at_3["window"]["fps"], at_3["frames_per_clip"]) == (3.0, 18)
    assert (at_15["window"]["fps"], at_15["frames_per_clip"]) == (15.0, 90)
    assert at_15["visual_tokens_per_clip"] == 5 * at_3["visual_tokens_per_clip"] == 6075
    assert main(["budget", "--config", config, "--data.window.fps=fast"]) == 2
    assert 'Parser key "data.window.fps"' in capsys.readouterr().err  # a float, as for sce fit
    with pytest.raises(SystemExit):  # the removed --set names the new syntax
        main(["budget", "--config", config, "--set", "data.window.fps=15"])
    assert "--data.window.fps=15" in capsys.readouterr().err


def test_budget_command_prints_the_report(tmp_path, capsys):
    config = yaml.safe_load((EXPERIMENTS / "paper000_dora.yaml").read_text())
    config["model"]["model_path"] = NO_MODEL
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert (
        main(["budget", "--config", str(path), "--data.window.fps=1", "--max-tokens", "1000"]) == 0
    )
    out = capsys.readouterr().out
    assert "-> 6 frames" in out
    assert "420x240 -> 420x252" in out
    assert "visual tokens per clip: 405" in out
    assert "token budget 1,000" in out


def test_keyframe_items_are_3_images_at_one_frame_per_interval():
    """Paper 002: 3 keyframes (e - scale, e - scale / 2, e), none repeated."""
    assert b.keyframes() == (0.0, 0.5, 1.0)
    assert b.keyframe_frames((0.0, 0.5, 1.0)) == 3
    assert b.keyframe_frames((0.0, 1.0)) == 2
    assert b.keyframe_fps(6.0, (0.0, 0.5, 1.0)) == pytest.approx(1 / 3)
    assert b.keyframe_fps(1.5, (0.0, 0.5, 1.0)) == pytest.approx(4 / 3)
    np.testing.assert_allclose(b.keyframe_times(3.0, (0.0, 0.5, 1.0)), [10.0, 11.5, 13.0])


def test_image_tokens_are_one_temporal_patch():
    assert b.image_tokens(448, 252) == 16 * 9  # 448x252: 16 x 9 merged patches
    assert b.image_tokens(420, 240) == 15 * 9  # resized to 420x252 like a video frame
    assert b.image_tokens(112, 56) == 4 * 2


def test_paper002_report_is_per_scale_item():
    config = yaml.safe_load((EXPERIMENTS / "paper002_risk.yaml").read_text())
    config["model"]["model_path"] = NO_MODEL
    report = b.budget_report(config)
    assert report["window"]["scales"] == [6.0, 3.0, 1.5]
    assert report["items_per_record"] == 3
    assert report["frames_per_clip"] == 3
    assert (report["images_per_clip"], report["videos_per_clip"]) == (3, 0)
    assert report["visual_tokens_per_image"] == 16 * 9  # 448x252
    assert report["visual_tokens_per_clip"] == 3 * 144
    assert report["total_tokens"] == 432 + report["text_tokens"]
    text = b.format_report(report)
    assert "3 frames per item (3 images, layout table)" in text
    assert "3 items per record" in text
    assert "144 visual tokens per image" in text
    assert "visual tokens per item: 432" in text
    # Paper 002's model gets no telemetry (issue 25): the budget says so and counts none.
    assert (report["inputs"], report["telemetry_tokens"]) == ("video only", 0)
    assert "inputs: video only (data.window.channels: []; prompt paper002)" in text
    assert "(no telemetry: not an input)" in text
    # With telemetry (sce's prompt), then without data.window.scales: the 6 s window at 3 fps,
    # 18 frames.
    config["data"]["window"].update(channels=["telemetry"], prompt="sce")
    keyframes = b.budget_report(config)
    del config["data"]["window"]["scales"]
    plain = b.budget_report(config)
    assert plain["frames_per_clip"] == 18 and "items_per_record" not in plain
    assert plain["telemetry_tokens"] > keyframes["telemetry_tokens"] > 0  # 18 rows, not 3


@pytest.mark.parametrize("layout", ["interleaved", "table"])
def test_keyframe_report_matches_the_collated_item(tiny_kit, tiny_processor, layout):
    """Per-item totals equal the real processor's sequence for a 3-image keyframe item."""
    from sce.data.collate import Collator
    from sce.data.dataset import Sample

    scales = [6.0, 3.0, 1.5]
    config = _tiny_config(tiny_kit, scales=scales, layout=layout)
    report = b.budget_report(config)
    assert report["frames_per_clip"] == report["images_per_clip"] == 3
    assert report["visual_tokens_per_clip"] == 3 * 8  # 112x56: 4 x 2 merged patches per image
    assert report["processor"]["source"].startswith("image processor of")
    collator = Collator(tiny_processor, 100000, "train")
    kf = b.keyframes(b.config_window(config))
    image_pad = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for imu, key in ((True, "total_tokens"), (False, "total_tokens_video_only")):
        lengths = []
        for scale in scales:
            fps, times = b.keyframe_fps(scale, kf), b.keyframe_times(scale, kf)
            content, images = b.representative_content(
                3, fps, b.config_window(b.resolved(config)), imu, times=times, keyframes=True
            )
            frames = [np.zeros((56, 112, 3), np.uint8) for _ in images]
            sample = Sample("x", content, frames, fps, b.representative_answer(), "mcq", "normal")
            ids = collator([sample])["input_ids"]
            assert int((ids == image_pad).sum()) == report["visual_tokens_per_clip"]
            lengths.append(ids.shape[1])
        assert max(lengths) == report[key]
