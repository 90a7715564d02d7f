"""`sce data preview`: one sample as the model sees it, through the training code path.

The demo config on the tiny kit and the synthetic clips (7 s, 30 fps, event at 4.5 s), with the
paper-000 window: 4 s before + 2 s after the event at 3 fps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import REPO

from sce.cli import main
from sce.data.prompts import NO_TELEMETRY
from sce.data.schema import load_manifest
from sce.tasks.events import mcq_answer
from sce.train.budget import clip_visual_tokens, processor_settings

DEMO = REPO / "experiments" / "demo.yaml"
SAMPLE = "synth_0_00001"  # train split, near_collision, event_time 4.5 s
PLACEHOLDER = re.compile(r"<(video|image) (?:\d+x)?\d+x\d+: (\d+) tokens>")


def _args(tiny_kit: Path, manifest: Path, *extra: str) -> list[str]:
    return [
        "data",
        "preview",
        "--config",
        str(DEMO),
        f"--model.model_path={tiny_kit}",
        "--data.manifest",
        str(manifest),
        "--data.window.fps=3",
        "--data.window.before=4",
        "--data.window.after=2",
        *extra,
    ]


def _preview(capsys, tiny_kit: Path, manifest: Path, *extra: str) -> dict:
    assert main(_args(tiny_kit, manifest, "--json", *extra)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def record(synthetic_manifest):
    return next(r for r in load_manifest(synthetic_manifest) if r.id == SAMPLE)


@pytest.fixture
def with_imu(capsys, tiny_kit, synthetic_manifest) -> dict:
    return _preview(capsys, tiny_kit, synthetic_manifest, "--id", SAMPLE)


def test_window_is_18_frames_a_third_of_a_second_apart_10_source_frames_apart(with_imu, record):
    assert (with_imu["source_fps"], with_imu["source_frames"]) == (30.0, 210)
    (window,) = with_imu["windows"]
    times, indices = np.array(window["frame_times"]), np.array(window["frame_indices"])
    assert len(times) == len(indices) == 18
    np.testing.assert_allclose(np.diff(times), 1 / 3, atol=1e-9)
    assert np.diff(indices).tolist() == [10] * 17
    event = record.event_time
    assert (window["event_time"], window["event_time_source"]) == (event, "manifest")
    assert event - 4 <= times[0] and times[-1] <= event + 2
    assert round((event - 4) * 30) <= indices[0] and indices[-1] <= round((event + 2) * 30)


def test_telemetry_rows_are_the_frames_and_appear_in_the_chat(with_imu):
    (window,) = with_imu["windows"]
    assert window["imu_on"] and window["imu_reason"] == ""
    rows = window["telemetry"]
    assert [row["t"] for row in rows] == window["frame_times"]
    # The collision-free braking of a near-collision: a clear deceleration around the event.
    assert min(row["ax"] for row in rows) < -2.0
    assert window["chat"].count("m/s²") == 18
    # paper 000's a_sync is triaxial: every frame's line gives a_x, a_y and a_z (issue 25)
    for row in rows:
        line = (
            f"t={row['t']:.1f}s: ax {row['ax']:+.1f} ay {row['ay']:+.1f} az {row['az']:+.1f} m/s²"
        )
        assert line in window["chat"]
    assert 9.0 < min(row["az"] for row in rows) <= max(row["az"] for row in rows) < 10.6  # gravity
    assert with_imu["inputs"] == "video + telemetry" and with_imu["channels"] == ["telemetry"]


def test_placeholders_sum_to_the_visual_tokens_of_the_budget(with_imu, tiny_processor):
    (window,) = with_imu["windows"]
    placeholders = PLACEHOLDER.findall(window["chat"])
    assert [kind for kind, _ in placeholders] == ["video"] * 9  # interleaved frame pairs
    tokens = window["tokens"]
    assert sum(int(n) for _, n in placeholders) == tokens["visual"]
    settings = processor_settings(tiny_processor, "tiny")
    assert tokens["visual"] == clip_visual_tokens(18, 112, 56, "interleaved", settings) == 72
    assert "<video 2x56x112: 8 tokens>" in window["chat"]
    assert "<|video_pad|>" not in window["chat"]
    assert tokens["total"] == tokens["text"] + tokens["visual"]


def test_answer_is_the_records_mcq_answer(with_imu, record, tiny_processor):
    (window,) = with_imu["windows"]
    assert with_imu["task"] == "mcq"  # the demo's first evaluation task
    assert (
        window["answer"] == mcq_answer(record.label) + "<|im_end|>" == "B. near-collision<|im_end|>"
    )
    ids = tiny_processor.tokenizer(window["answer"], add_special_tokens=False)["input_ids"]
    assert window["tokens"]["supervised"] == len(ids)
    assert window["chat"].endswith("<|im_start|>assistant\n" + window["answer"] + "\n")


def test_imu_off_has_no_telemetry_text(capsys, tiny_kit, synthetic_manifest, with_imu):
    report = _preview(capsys, tiny_kit, synthetic_manifest, "--id", SAMPLE, "--imu", "off")
    (window,) = report["windows"]
    assert window["telemetry"] is None and not window["imu_on"]
    assert "m/s²" not in window["chat"] and "ax " not in window["chat"]
    assert NO_TELEMETRY in window["chat"]
    # Same frames and visual tokens: only the telemetry text goes.
    (on,) = with_imu["windows"]
    assert window["frame_times"] == on["frame_times"]
    assert window["tokens"]["visual"] == on["tokens"]["visual"]
    assert window["tokens"]["text"] < on["tokens"]["text"]


def test_task_option_gives_the_caption(capsys, tiny_kit, synthetic_manifest, record):
    report = _preview(capsys, tiny_kit, synthetic_manifest, "--id", SAMPLE, "--task", "caption")
    (window,) = report["windows"]
    assert window["answer"] == record.annotations["caption"] + "<|im_end|>"


def test_multiscale_config_shows_one_window_per_scale(capsys, tiny_kit, synthetic_manifest):
    report = _preview(
        capsys, tiny_kit, synthetic_manifest, "--id", SAMPLE, "--data.window.scales=[6, 3, 1.5]"
    )
    windows = report["windows"]
    assert [w["scale"] for w in windows] == [6.0, 3.0, 1.5]
    for w in windows:
        event = w["event_time"]
        assert all(
            max(0.0, event - w["scale"]) - 1e-9 <= t <= event + 1e-9 for t in w["frame_times"]
        )
        assert len(w["frame_indices"]) == len(w["frame_times"])
        blocks = PLACEHOLDER.findall(w["chat"])
        assert sum(int(n) for _, n in blocks) == w["tokens"]["visual"] > 0


def test_text_output_shows_frames_chat_and_tokens(capsys, tiny_kit, synthetic_manifest):
    assert main(_args(tiny_kit, synthetic_manifest, "--id", SAMPLE)) == 0
    out = capsys.readouterr().out
    assert "18 frames at 3 fps" in out
    assert "<|vision_start|><video 2x56x112: 8 tokens><|vision_end|>" in out
    assert "72 visual" in out and "supervised" in out


def test_unknown_id_names_the_id_and_the_manifest(capsys, tiny_kit, synthetic_manifest):
    assert main(_args(tiny_kit, synthetic_manifest, "--id", "synth_0_0001")) == 2
    out = capsys.readouterr().out
    assert "'synth_0_0001' not found" in out and str(synthetic_manifest) in out
    assert "synth_0_00001" in out  # the closest ids are listed


def test_wrong_split_names_the_records_split(capsys, tiny_kit, synthetic_manifest):
    assert main(_args(tiny_kit, synthetic_manifest, "--id", SAMPLE, "--split", "test")) == 2
    assert "is in split 'train'" in capsys.readouterr().out


def test_other_commands_still_reject_unknown_arguments(tmp_path):
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path), "--data.window.fps=3"])  # takes no config


def test_image_and_video_placeholders_are_summarised_in_order(tiny_processor):
    from sce.data.collate import Collator
    from sce.train.preview import summarised_chat, visual_blocks

    processor = Collator(tiny_processor).processor
    content = [{"type": "image"}, {"type": "text", "text": "then"}, {"type": "video"}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
    batch = processor(
        text=[text],
        images=[np.zeros((56, 112, 3), np.uint8)],
        videos=[np.zeros((4, 56, 112, 3), np.uint8)],
        return_tensors="pt",
    )
    blocks = visual_blocks(batch, processor)
    chat = summarised_chat(batch["input_ids"][0].tolist(), processor, blocks)
    assert "<|vision_start|><image 56x112: 8 tokens><|vision_end|>then" in chat
    assert "<|vision_start|><video 4x56x112: 16 tokens><|vision_end|>" in chat
    assert "pad|>" not in chat


def test_window_shrunk_to_the_clip_is_shown(capsys, tiny_kit, synthetic_manifest, with_imu):
    assert with_imu["windows"][0]["window_shrunk"] == 0.0  # 6 s fits the 7 s clip
    # an 8 s window (24 frames at 3 fps) on the 7 s clip keeps 20 frames: 4 frames, 4/3 s lost
    extra = ("--id", SAMPLE, "--data.window.before=5", "--data.window.after=3")
    (window,) = _preview(capsys, tiny_kit, synthetic_manifest, *extra)["windows"]
    assert len(window["frame_times"]) == 20
    assert window["window_shrunk"] == pytest.approx(4 / 3)
    assert main(_args(tiny_kit, synthetic_manifest, *extra)) == 0
    assert "shrunk 1.333 s (4 frames)" in capsys.readouterr().out
