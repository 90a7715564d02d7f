"""Issue 11's data points seen end to end, as a researcher sees them: `sce data preview --json`.

Each test builds the data module `sce fit` would build (a paper's experiment YAML with the tiny
kit and a small manifest) and reads one sample's preview: frame times, source frame indices,
telemetry rows, chat text and supervised answer. The values are the papers':
paper 000's [-4 s, +2 s] window at 3 fps, paper 001's 5 s / 2.5 s chunks, paper 002's 6 / 3 /
1.5 s keyframe windows ending at the event (3 images each, "Collision Probability: 0.872"),
paper 003's whole clip at 2 fps, at most 128 frames of at most 16,384 pixels, and Nexar's
binary (event / no event) labels. The mechanisms' own unit tests are in test_windows.py,
test_video.py, test_whole_clip.py, test_prompts.py and test_data_preview.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import poisoned_telemetry
from helpers.paths import EXPERIMENTS

from sce.cli import main
from sce.data.schema import ClipRecord, load_manifest, write_manifest
from sce.prepare.synthetic import encode_video, generate_clip
from sce.tasks.events import BINARY_EVENT_QUESTION, EVENT_QUESTION

DEMO = EXPERIMENTS / "demo.yaml"  # paper 000's window: 4 s before + 2 s after, 3 fps, 112x56
PAPER000 = EXPERIMENTS / "paper000_dora.yaml"
PAPER001 = EXPERIMENTS / "paper001_sft.yaml"
PAPER002 = EXPERIMENTS / "paper002_risk.yaml"
PAPER003 = EXPERIMENTS / "paper003_instruction.yaml"
SMALL = (
    "--data.window.width=112",
    "--data.window.height=56",
)  # the papers' frame sizes cost seconds here
IMU_RATE = 100.0  # Hz, the synthetic IMU
VIDEO_FPS = 30.0  # the synthetic video
# generate_clip's collision for this seed: 10 s, impact (argmax |a_x|) at 4.78 s.
CRASH_SEED, CRASH_TIME = 3, 4.78


def preview(config: Path, kit: Path, manifest: Path, sample_id: str, *extra: str) -> dict:
    """`sce data preview --config CONFIG --data.manifest M --id ID --json ...`, parsed."""
    out = io.StringIO()
    args = ["data", "preview", "--config", str(config), f"--model.model_path={kit}"]
    args += ["--data.manifest", str(manifest), "--id", sample_id, "--json", *extra]
    with contextlib.redirect_stdout(out):
        code = main(args)
    assert code == 0, out.getvalue()
    return json.loads(out.getvalue())


def _moved(record: ClipRecord, **changes) -> ClipRecord:
    """A copy of `record` with absolute file paths (for a manifest in another folder)."""
    paths = {name: str(record.path(name)) for name in ("video", "imu", "gps") if record.path(name)}
    return dataclasses.replace(record, **{**paths, **changes})


def _rows(window: dict) -> list[tuple]:
    return [tuple(row.values()) for row in window["telemetry"]]


@pytest.fixture(scope="module")
def crash(tmp_path_factory) -> ClipRecord:
    """A 10 s synthetic collision (30 fps 112x56 video, 100 Hz IMU, 1 Hz GPS), impact 4.78 s."""
    root = tmp_path_factory.mktemp("crash")
    rng = np.random.default_rng([CRASH_SEED, 0])
    record = generate_clip(root, "crash", "collision", "train", rng, 10.0, 30, 112, 56)
    assert record.event_time == CRASH_TIME  # the fixture's premise
    imu = pd.read_csv(record.path("imu"))
    assert imu["t"][imu["ax"].abs().idxmax()] == CRASH_TIME  # paper 000's t_e = argmax |a_x|
    return record


def _imu(record: ClipRecord) -> pd.DataFrame:
    return pd.read_csv(record.path("imu"))


# ------------------------------------------------------------------- 1. chunks (paper 001)
@pytest.fixture(scope="module")
def chunks(crash, tmp_path_factory) -> tuple[Path, list[ClipRecord]]:
    """`sce data chunk --chunk 3 --stride 2` of the crash: [4, 7] s is the collision chunk
    (impact 0.78 s in), [2, 5] and [6, 9] cut the event's guard band + IMU excursion (dropped:
    a chunk on the post-impact braking is never normal), [0, 3] is a normal chunk ending 1.78 s
    before the impact and [7, 10] one starting 2.22 s after it."""
    root = tmp_path_factory.mktemp("chunks")
    source = write_manifest([_moved(crash)], root / "source.jsonl")
    out = root / "chunks" / "manifest.jsonl"
    args = ["data", "chunk", str(source), "--out", str(out), "--chunk", "3", "--stride", "2"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(args) == 0, printed.getvalue()
    records = load_manifest(out)
    spans = [(r.metadata["clip_start"], r.metadata["clip_end"], r.label) for r in records]
    assert spans == [(0.0, 3.0, "normal"), (4.0, 7.0, "collision"), (7.0, 10.0, "normal")]
    return out, records


def test_chunk_previews_show_only_their_span(chunks, tiny_kit, tmp_path):
    manifest, records = chunks
    for chunk in records:
        lo, hi = chunk.metadata["clip_start"], chunk.metadata["clip_end"]
        (window,) = preview(DEMO, tiny_kit, manifest, chunk.id)["windows"]
        times = np.array(window["frame_times"])
        # the 6 s window shrinks to the 8 frames (2.67 s) at 3 fps that fit in the 3 s chunk
        assert len(times) == 8
        np.testing.assert_allclose(np.diff(times), 1 / 3, atol=1e-9)
        assert lo <= times.min() and times.max() <= hi
        indices = np.array(window["frame_indices"])  # the source frames decoded
        assert lo <= indices.min() / VIDEO_FPS and indices.max() / VIDEO_FPS <= hi
        assert [row["t"] for row in window["telemetry"]] == window["frame_times"]
        # Every telemetry sample comes from the span: poisoning all IMU/GPS samples outside
        # it changes nothing the preview shows.
        inside = poisoned_telemetry(
            chunk, lambda t, a=lo, b=hi: (t >= a) & (t <= b), tmp_path / chunk.id, id="inside"
        )
        write_manifest([inside], tmp_path / chunk.id / "manifest.jsonl")
        (clean,) = preview(DEMO, tiny_kit, tmp_path / chunk.id / "manifest.jsonl", "inside")[
            "windows"
        ]
        assert clean["frame_times"] == window["frame_times"]
        assert _rows(clean) == _rows(window)


def test_normal_chunk_after_the_impact_does_not_show_it(chunks, crash, tiny_kit):
    manifest, (_, collision, normal) = chunks
    (hit,) = preview(DEMO, tiny_kit, manifest, collision.id)["windows"]
    (after,) = preview(DEMO, tiny_kit, manifest, normal.id)["windows"]
    assert hit["event_time"] == pytest.approx(CRASH_TIME)
    hit_ax = min(row["ax"] for row in hit["telemetry"])
    after_ax = min(row["ax"] for row in after["telemetry"])
    # The collision chunk shows the impact's 1/3 s block mean (peak -9.95 m/s^2 in the CSV);
    # the normal chunk from 7.0 s shows no more than the driving inside its span.
    imu = _imu(crash)
    assert imu["ax"].min() == pytest.approx(-9.95, abs=0.4)
    assert hit_ax < -6.0
    span_ax = imu["ax"][(imu["t"] >= 7.0) & (imu["t"] <= 10.0)]
    assert after_ax >= span_ax.min() > -6.0
    assert after_ax > hit_ax + 2.0


# ------------------------------------------- 2. frame times -> distinct source frames
@pytest.fixture(scope="module")
def timed(crash, tmp_path_factory) -> Path:
    """The crash video with other event times (the window follows the manifest's)."""
    root = tmp_path_factory.mktemp("timed")
    # no telemetry: 180 frames of sensor text would not fit the demo's max_length
    records = [
        _moved(crash, id=f"at_{t:.2f}", event_time=t, imu=None, gps=None)
        for t in (4.05, 4.1, 4.15, 5.25)
    ]
    return write_manifest(records, root / "manifest.jsonl")


def test_30fps_window_is_180_consecutive_source_frames(timed, tiny_kit):
    """A 30 fps window of a 30 fps video: every frame time falls halfway between two video
    frames (the window [0.1, 6.1] s starts on the frame grid), and each takes its own frame."""
    event_time = 4.1
    long_enough = "--data.max_length=4096"  # 90 frame pairs: 2,250 tokens
    report = preview(DEMO, tiny_kit, timed, "at_4.10", "--data.window.fps=30", long_enough)
    assert (report["source_fps"], report["source_frames"]) == (30.0, 300)
    (window,) = report["windows"]
    times, indices = np.array(window["frame_times"]), window["frame_indices"]
    assert len(times) == 180
    ticks = times * VIDEO_FPS - 0.5
    np.testing.assert_allclose(ticks, np.round(ticks), atol=1e-6)  # all half-frame ties
    assert len(set(indices)) == 180
    assert np.diff(indices).tolist() == [1] * 179
    assert indices[0] == round((event_time - 4.0) * VIDEO_FPS) == 3


@pytest.mark.parametrize("event_time", [4.05, 4.15, 5.25])
def test_3fps_window_takes_every_10th_source_frame(timed, tiny_kit, event_time):
    """Paper 000's 3 fps window: an event on an odd multiple of 0.05 s puts every frame time on
    a half-frame tie of the 30 fps video; the frames are still exactly 10 apart. (3.05 s, the
    issue's example, would shift the 6 s window to [0, 6] s, off the ties: 4.05 s is the same
    case with the window inside the clip.)"""
    (window,) = preview(DEMO, tiny_kit, timed, f"at_{event_time:.2f}")["windows"]
    times, indices = np.array(window["frame_times"]), window["frame_indices"]
    assert len(times) == 18
    ticks = times * VIDEO_FPS - 0.5
    np.testing.assert_allclose(ticks, np.round(ticks), atol=1e-6)  # all half-frame ties
    assert np.diff(indices).tolist() == [10] * 17
    # ties go to the earlier frame: the first frame, at event - 4 s + 1/6 s, is
    # 30 x (event - 4) + 5 frames in: a tie, it takes frame 30 x (event - 4) + 4.5
    assert indices[0] == round(VIDEO_FPS * (event_time - 4.0) + 4.5)


# --------------------------------------- 3, 5, 8. paper 002's keyframe windows
@pytest.fixture(scope="module")
def risk(crash, tmp_path_factory) -> Path:
    """The crash with paper 002's probability annotation 0.872 ("risk"), a copy whose telemetry
    after the event (the last keyframe of every scale) is poisoned ("future"), and one
    annotated 0.1 ("low")."""
    root = tmp_path_factory.mktemp("risk")
    record = _moved(crash, id="risk", annotations={"probability": 0.872})
    future = poisoned_telemetry(
        record, lambda t: t <= CRASH_TIME + 1e-9, root / "future", id="future"
    )
    low = dataclasses.replace(record, id="low", annotations={"probability": 0.1})
    return write_manifest([record, future, low], root / "manifest.jsonl")


@pytest.fixture(scope="module")
def risk_preview(risk, tiny_kit) -> dict:
    return preview(PAPER002, tiny_kit, risk, "risk", *SMALL)


# Paper 002's model gets no telemetry; the keyframe telemetry mechanism is still checked, with
# the channel switched on (data.window.channels), for a recipe that adds it.
WITH_TELEMETRY = "--data.window.channels=[telemetry]"


@pytest.fixture(scope="module")
def risk_telemetry_preview(risk, tiny_kit) -> dict:
    return preview(PAPER002, tiny_kit, risk, "risk", *SMALL, WITH_TELEMETRY)


def test_keyframe_windows_end_at_the_event(risk_preview):
    windows = risk_preview["windows"]
    assert [w["scale"] for w in windows] == [6.0, 3.0, 1.5]
    for w in windows:  # start, middle, end of each scale; 6 s before 4.78 s starts at 0
        scale = w["scale"]
        expected = [max(0.0, CRASH_TIME - scale), CRASH_TIME - scale / 2, CRASH_TIME]
        np.testing.assert_allclose(w["frame_times"], expected, atol=1e-9)
        assert w["frame_indices"][-1] == round(CRASH_TIME * VIDEO_FPS) == 143


def test_keyframe_telemetry_is_causal(risk_telemetry_preview, risk, crash, tiny_kit):
    """Each keyframe's IMU block is the W = 100 Hz x keyframe spacing samples up to it
    (300 / 150 / 75 samples for the 6 / 3 / 1.5 s scales), nothing after the last keyframe."""
    imu = _imu(crash)
    for w in risk_telemetry_preview["windows"]:
        assert w["imu_on"] and w["imu_reason"] == ""
        last = w["frame_times"][-1]
        assert all(row["t"] <= last for row in w["telemetry"])
        samples = int(round(IMU_RATE * w["scale"] / 2))
        t = imu["t"].to_numpy()
        block = imu[(t > last - samples / IMU_RATE + 1e-6) & (t <= last + 1e-6)]
        assert len(block) == samples
        row = w["telemetry"][-1]
        assert row["ax"] == pytest.approx(block["ax"].mean(), abs=1e-6)
        assert row["ay"] == pytest.approx(block["ay"].mean(), abs=1e-6)
        assert row["az"] == pytest.approx(block["az"].mean(), abs=1e-6)
        assert f"| {row['ay']:+.1f} | {row['az']:+.1f} | " in w["chat"]  # a_z in the table
        heading = np.degrees(block["gz"].sum() / IMU_RATE)
        assert row["heading_change_deg"] == pytest.approx(heading, abs=1e-6)
        # a block centred on the event averages the impact and the braking after it
        centred = imu[np.abs(t - last) <= samples / IMU_RATE / 2]
        assert abs(centred["ax"].mean() - row["ax"]) > 0.5
    # Poisoning every sample after the event changes nothing the preview shows.
    future = preview(PAPER002, tiny_kit, risk, "future", *SMALL, WITH_TELEMETRY)["windows"]
    for clean, poisoned in zip(risk_telemetry_preview["windows"], future, strict=True):
        assert _rows(poisoned) == _rows(clean)


def test_keyframes_are_three_images_per_window(risk_preview):
    """Paper 002's prompt as written (Fig. 3): "<image>\\n<image>\\n<image>\\n", its analyst
    line, "Below are three frames at times [T1, T2, T3] seconds", no table (the object table
    needs the perception stage; never an IMU table), its "Task:" and "Note:" lines; no system
    prompt of sce's (the chat template's default turn); never a video."""
    image = "<|vision_start|><image 56x112: 8 tokens><|vision_end|>\n"
    for w in risk_preview["windows"]:
        chat = w["chat"]
        assert len(re.findall(r"<image \d+x\d+: \d+ tokens>", chat)) == 3
        assert "<video" not in chat
        times = ", ".join(f"{t:.1f}" for t in w["frame_times"])
        user = (
            image
            * 3
            + "You are a traffic-safety risk analyst tasked with real-time collision probability "
            "assessment.\n"
            f"Below are three frames at times [{times}] seconds.\n"
            "Task:\n"
            "Output only a single floating-point number between 0.00 and 1.00;\n"
            "indicating the probability of a collision occurring within the next few seconds.\n"
            "Do not output any additional text or labels.\n"
            "Note: the downstream detection tracker may miss objects that are extremely close;\n"
            "if you know from the images that another vehicle is about to collide, factor that in."
        )
        assert chat.startswith(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            + user
            + "<|im_end|>\n<|im_start|>assistant\n"
        )
        assert "driving safety analyst" not in chat and "A. collision" not in chat
        assert "Telemetry" not in chat and "m/s" not in chat
        assert w["tokens"]["visual"] == 3 * 8
        assert [b["kind"] for b in w["visual_blocks"]] == ["image"] * 3


def test_probability_answer_keeps_three_decimals(risk_preview, risk, tiny_kit):
    assert risk_preview["task"] == "probability"  # paper 002's only task
    for w in risk_preview["windows"]:
        assert w["answer"] == "Collision Probability: 0.872<|im_end|>"
    (low, *_) = preview(PAPER002, tiny_kit, risk, "low", *SMALL)["windows"]
    assert low["answer"] == "Collision Probability: 0.100<|im_end|>"


@pytest.fixture(scope="module")
def unannotated(crash, tmp_path_factory) -> Path:
    """The crash without a probability annotation, labelled each of the three classes."""
    root = tmp_path_factory.mktemp("unannotated")
    labels = ("collision", "near_collision", "normal")
    records = [_moved(crash, id=label, label=label, annotations={}) for label in labels]
    return write_manifest(records, root / "manifest.jsonl")


@pytest.mark.parametrize(
    ("label", "target"), [("collision", "1.000"), ("near_collision", "1.000"), ("normal", "0.000")]
)
def test_probability_target_without_annotation_is_the_label(unannotated, tiny_kit, label, target):
    """No annotated probability: 1 for a collision or near-miss (paper 002's positives), 0 for
    normal driving."""
    (window, *_) = preview(PAPER002, tiny_kit, unannotated, label, *SMALL)["windows"]
    assert window["answer"] == f"Collision Probability: {target}<|im_end|>"


# ------------------------------------------- the model's inputs: telemetry only for paper 000
TELEMETRY_TEXT = ("m/s²", "m/s", "Telemetry", "telemetry", "heading", " ax ", "ax (")


@pytest.mark.parametrize(
    ("config", "extra"),
    [
        (PAPER001, ()),
        (PAPER002, ()),
        (PAPER003, ("--task", "mcq")),  # the crash has no instruction annotation
    ],
    ids=["paper001", "paper002", "paper003"],
)
def test_video_only_recipes_show_no_telemetry(crash, risk, tiny_kit, config, extra):
    """Papers 001, 002 and 003 give the model video only: a clip whose record carries IMU and
    GPS gets no telemetry text in any prompt, not even an 'unavailable' line or the system
    prompt's mention; the preview says the inputs are video only."""
    assert crash.path("imu") and crash.path("gps")  # the record has telemetry to leak
    report = preview(config, tiny_kit, risk, "risk", *SMALL, *extra)
    assert (report["inputs"], report["channels"]) == ("video only", [])
    for window in report["windows"]:
        assert not window["imu_on"] and window["telemetry"] is None
        assert window["imu_reason"] == "telemetry is not an input: data.window.channels"
        assert [t for t in TELEMETRY_TEXT if t in window["chat"]] == []


def test_paper000_shows_triaxial_telemetry_on_every_frame(risk, tiny_kit):
    """Paper 000's model gets video and telemetry: 18 frame lines with a_x, a_y, a_z."""
    report = preview(PAPER000, tiny_kit, risk, "risk", *SMALL)
    (window,) = report["windows"]
    assert (report["inputs"], report["channels"]) == ("video + telemetry", ["telemetry"])
    assert window["imu_on"] and len(window["telemetry"]) == 18
    assert window["chat"].count(" az ") == window["chat"].count("m/s²") == 18
    assert "read the vehicle telemetry" in window["chat"]


# ------------------------------------------------- 4. paper 003's whole clip
@pytest.fixture(scope="module")
def dual_view(tmp_path_factory) -> Path:
    """A 16 s dual-view clip (road and driver videos at 4 fps, 112x56) with an instruction."""
    root = tmp_path_factory.mktemp("dual")
    for name, shade in (("road", 60), ("driver", 180)):
        frames = (np.full((56, 112, 3), (shade + 3 * i) % 256, np.uint8) for i in range(64))
        encode_video(frames, root / f"{name}.mp4", 4, "ultrafast")
    record = ClipRecord(
        "dual",
        "road.mp4",
        "normal",
        "test",
        "train",
        metadata={"driver_video": "driver.mp4"},
        annotations={"instruction": "Keep a safe distance."},
    )
    return write_manifest([record], root / "manifest.jsonl")


def test_whole_clip_is_32_capped_frames_at_2fps(dual_view, tiny_kit):
    report = preview(PAPER003, tiny_kit, dual_view, "dual")
    assert (report["source_fps"], report["source_frames"]) == (4.0, 64)
    (window,) = report["windows"]
    times = np.array(window["frame_times"])
    # 16 s at 2 fps: 32 frames at the centres of the half-second intervals, 0.25 ... 15.75 s
    np.testing.assert_allclose(times, 0.25 + 0.5 * np.arange(32), atol=1e-9)
    assert window["fps"] == 2.0
    assert window["frame_indices"] == list(range(1, 64, 2))  # every other 4 fps frame, distinct
    # 420x476 (two 420x238 views) capped to 16,384 pixels by smart_resize: 112x112, 8x8
    # patches of 14 px, 16 tokens per frame pair (2x2 merge), 256 for 16 pairs
    assert "<video 32x112x112: 256 tokens>" in window["chat"]
    assert window["visual_blocks"] == [
        {"kind": "video", "frames": 32, "height": 112, "width": 112, "tokens": 256}
    ]
    assert window["tokens"]["visual"] == 16 * 16
    # paper 003's chain of thought: the events (none here), then the instruction
    assert window["answer"] == (
        "Events: no risky event.\nInstruction: Keep a safe distance.<|im_end|>"
    )


def test_synthetic_driver_view_clip_previews_events_then_instruction(tiny_kit, tmp_path):
    """Issue 25, point 10: `sce synth --driver-view` gives paper 003's recipe a dual-view clip
    whose answer lists the driver and road events, then the instruction."""
    from sce.prepare.synthetic import SynthOptions

    rng = np.random.default_rng([CRASH_SEED, 0])
    options = SynthOptions(driver_view=True)
    record = generate_clip(tmp_path, "crash", "collision", "train", rng, 10.0, 4, 112, 56,
                           options=options)  # fmt: skip
    write_manifest([record], tmp_path / "manifest.jsonl")
    (window,) = preview(PAPER003, tiny_kit, tmp_path / "manifest.jsonl", "crash")["windows"]
    events = "; ".join(
        {"phone_use": "mobile phone use", "collision": "collision"}[e]
        for e in record.annotations["driving_events"]
    )
    assert "collision" in record.annotations["driving_events"]
    assert window["answer"] == (
        f"Events: {events}.\nInstruction: {record.annotations['instruction']}<|im_end|>"
    )
    assert window["visual_blocks"][0]["height"] == window["visual_blocks"][0]["width"] == 112


# -------------------------------------------------------- 6. Nexar's binary labels
@pytest.fixture(scope="module")
def nexar(crash, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nexar")
    common = {"source": "nexar", "label_scope": "binary"}
    records = [
        _moved(crash, id="positive", label="event", **common),
        _moved(crash, id="negative", label="normal", **common),
    ]
    return write_manifest(records, root / "manifest.jsonl")


@pytest.mark.parametrize(("sample", "answer"), [("positive", "A. yes"), ("negative", "B. no")])
def test_binary_record_is_asked_the_yes_no_question(nexar, tiny_kit, sample, answer):
    report = preview(DEMO, tiny_kit, nexar, sample)
    (window,) = report["windows"]
    assert report["task"] == "mcq"
    assert BINARY_EVENT_QUESTION in window["chat"]
    assert EVENT_QUESTION not in window["chat"] and "A. collision" not in window["chat"]
    assert window["answer"] == answer + "<|im_end|>"
    assert "collision" not in window["answer"]


def test_paper001_preview_asks_the_papers_question(crash, tiny_kit, tmp_path):
    """Issue 25, point 6: paper 001's recipe asks its appendix A.3 question, options in its
    order and words; a near-collision's answer is C. sce's recipes keep sce's wording."""
    manifest = write_manifest([_moved(crash, label="near_collision")], tmp_path / "m.jsonl")
    fast = (*SMALL, "--data.window.fps=3")  # the question does not depend on the frame count
    (window,) = preview(PAPER001, tiny_kit, manifest, "crash", *fast)["windows"]
    question = (
        "In this video, the ego vehicle's dashcam captures a driving event. "
        "What type of driving event occurs?\n"
        "A. The vehicle collides with another vehicle or object.\n"
        "B. The vehicle drives normally with no incident.\n"
        "C. The vehicle nearly collides but avoids an accident."
    )
    assert window["chat"].count(question) == 1 and EVENT_QUESTION not in window["chat"]
    assert window["answer"].startswith("C. The vehicle nearly collides but avoids an accident.")
    (demo,) = preview(DEMO, tiny_kit, manifest, "crash", *fast)["windows"]
    assert EVENT_QUESTION in demo["chat"] and demo["answer"].startswith("B. near-collision")
