"""Prompt layouts (interleaved frame pairs + telemetry, table), tasks and task sampling."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from helpers.paths import FIXTURES

from sce import tasks
from sce.data import prompts as P
from sce.data.channels import Channel, TelemetryChannel, telemetry_line
from sce.data.imu import FrameTelemetry
from sce.data.prompts import build_messages, build_user_content
from sce.tasks import make_task
from sce.tasks.caption import CAPTION_QUESTION
from sce.tasks.events import BINARY_EVENT_QUESTION, EVENT_QUESTION, mcq_options
from sce.tasks.instruction import INSTRUCTION_QUESTION
from sce.tasks.probability import PROBABILITY_QUESTION
from sce.tasks.reasoning import REASONING_SUFFIX

T = 18


def _frames(n: int = T) -> np.ndarray:
    """n tiny frames, frame k filled with the value k (to check the pair order)."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 6, 3)).copy()


def _telemetry(speed: bool = True) -> FrameTelemetry:
    k = np.arange(T)
    accel = np.stack([-9.7 + 0.5 * k, np.full(T, 0.3), np.full(T, 9.8)], axis=1)
    yaw = np.tile([0.01, -0.02], T // 2)  # 0.573 deg, -1.146 deg
    return FrameTelemetry(
        frame_times=1.0 + k / 3.0,
        accel=accel,
        yaw_delta=yaw,
        speed=12.1 - 0.1 * k if speed else None,
    )


def test_interleaved_pairs_with_telemetry() -> None:
    tele = _telemetry()
    content, videos = build_user_content(
        _frames(), tele.frame_times, [TelemetryChannel(tele)], "Q?"
    )
    assert len(videos) == 9
    assert [v[:, 0, 0, 0].tolist() for v in videos] == [[2 * i, 2 * i + 1] for i in range(9)]
    assert len(content) == 2 * 9 + 1
    assert [c["type"] for c in content[:-1]] == ["video", "text"] * 9
    assert content[1]["text"] == (
        "t=1.0s: ax -9.7 ay +0.3 az +9.8 m/s², heading +0.6°, 12.1 m/s\n"
        "t=1.3s: ax -9.2 ay +0.3 az +9.8 m/s², heading -1.1°, 12.0 m/s\n"
    )
    assert content[17]["text"] == (
        "t=6.3s: ax -1.7 ay +0.3 az +9.8 m/s², heading +0.6°, 10.5 m/s\n"
        "t=6.7s: ax -1.2 ay +0.3 az +9.8 m/s², heading -1.1°, 10.4 m/s\n"
    )
    assert all(c["text"].count("\n") == 2 for c in content[1:-1:2])
    assert content[-1] == {"type": "text", "text": "Q?"}
    assert not any(P.NO_TELEMETRY in c.get("text", "") for c in content)


def test_interleaved_without_speed_omits_it() -> None:
    tele = _telemetry(speed=False)
    content, _ = build_user_content(_frames(), tele.frame_times, [TelemetryChannel(tele)], "Q?")
    assert (
        content[1]["text"].splitlines()[0] == "t=1.0s: ax -9.7 ay +0.3 az +9.8 m/s², heading +0.6°"
    )
    assert "m/s\n" not in content[1]["text"].replace("m/s²", "")


def test_interleaved_without_telemetry_keeps_time_stamps() -> None:
    tele = _telemetry()
    content, videos = build_user_content(
        _frames(), tele.frame_times, [TelemetryChannel(None)], "Q?"
    )
    with_imu, videos_imu = build_user_content(
        _frames(), tele.frame_times, [TelemetryChannel(tele)], "Q?"
    )
    assert content[1]["text"] == "t=1.0s\nt=1.3s\n"
    assert content[17]["text"] == "t=6.3s\nt=6.7s\n"
    assert content[-2] == {"type": "text", "text": "Telemetry: unavailable.\n"}
    assert content[-1]["text"] == "Q?"
    # the visual part of the prompt is identical with and without IMU
    assert [c["type"] for c in content[:18]] == [c["type"] for c in with_imu[:18]]
    assert all(np.array_equal(a, b) for a, b in zip(videos, videos_imu, strict=True))
    assert not any("ax " in c.get("text", "") for c in content)


def test_table_layout() -> None:
    tele = _telemetry()
    content, videos = build_user_content(
        _frames(), tele.frame_times, [TelemetryChannel(tele)], "Q?", layout="table"
    )
    assert len(videos) == 1 and videos[0].shape == (T, 4, 6, 3)
    assert [c["type"] for c in content] == ["video", "text", "text"]
    lines = content[1]["text"].splitlines()
    assert lines[0] == "Telemetry:"
    assert lines[1] == P.TELEMETRY_HEADER
    assert len(lines) == 2 + T
    assert lines[2] == "1.0 | -9.7 | +0.3 | +9.8 | +0.6 | 12.1"
    assert lines[3] == "1.3 | -9.2 | +0.3 | +9.8 | -1.1 | 12.0"
    assert lines[-1] == "6.7 | -1.2 | +0.3 | +9.8 | -1.1 | 10.4"
    assert content[2]["text"] == "Q?"


def test_table_layout_without_telemetry_or_speed() -> None:
    tele = _telemetry(speed=False)
    content, _ = build_user_content(
        _frames(), tele.frame_times, [TelemetryChannel(None)], "Q?", layout="table"
    )
    assert content[1]["text"] == "Telemetry: unavailable.\n"
    content, _ = build_user_content(
        _frames(), tele.frame_times, [TelemetryChannel(tele)], "Q?", layout="table"
    )
    assert content[1]["text"].splitlines()[2] == "1.0 | -9.7 | +0.3 | +9.8 | +0.6 | -"


def _keyframe_telemetry() -> FrameTelemetry:
    return FrameTelemetry(
        frame_times=np.array([4.0, 5.5, 7.0]),
        accel=np.array([[-0.4, 0.3, 9.8], [-2.0, 0.1, 9.6], [-9.7, -1.2, 11.3]]),  # a_z moves
        yaw_delta=np.array([0.0, 0.01, -0.02]),
        speed=np.array([12.1, 11.0, 8.4]),
    )


def test_keyframes_table_layout_is_three_images_then_times_and_table() -> None:
    """Paper 002's prompt: "<image>\\n<image>\\n<image>\\n", the frame times, the table."""
    tele = _keyframe_telemetry()
    frames = _frames(3)
    content, images = build_user_content(
        frames, tele.frame_times, [TelemetryChannel(tele)], "Q?", layout="table", keyframes=True
    )
    assert [c["type"] for c in content].count("image") == 3
    assert not any(c["type"] == "video" for c in content)
    assert [c["type"] for c in content[:6]] == ["image", "text"] * 3
    assert [c["text"] for c in content[1:6:2]] == ["\n"] * 3
    assert content[6]["text"] == "Keyframes at t=4.0s, t=5.5s, t=7.0s.\n"
    rows = content[7]["text"].splitlines()
    assert rows[1] == P.TELEMETRY_HEADER and len(rows) == 2 + 3  # one row per keyframe
    assert rows[4] == "7.0 | -9.7 | -1.2 | +11.3 | -1.1 | 8.4"  # a_z between a_y and heading
    assert content[-1]["text"] == "Q?"
    # one [H, W, 3] image per keyframe, in order, none repeated
    assert len(images) == 3 and all(im.shape == (4, 6, 3) for im in images)
    assert [int(im[0, 0, 0]) for im in images] == [0, 1, 2]


def test_keyframes_interleaved_put_each_image_before_its_line() -> None:
    tele = _keyframe_telemetry()
    content, images = build_user_content(
        _frames(3), tele.frame_times, [TelemetryChannel(None)], "Q?", keyframes=True
    )
    assert [c["type"] for c in content] == ["image", "text"] * 3 + ["text", "text"]
    assert [content[k]["text"] for k in (1, 3, 5)] == ["t=4.0s\n", "t=5.5s\n", "t=7.0s\n"]
    assert content[6]["text"] == P.NO_TELEMETRY + "\n"
    assert len(images) == 3  # an odd count is fine: images have no temporal patch to fill


def test_odd_frame_count_and_unknown_layout_raise() -> None:
    times = np.arange(17) / 3.0
    with pytest.raises(ValueError, match="even.*17"):
        build_user_content(_frames(17), times, [TelemetryChannel(None)], "Q?")
    with pytest.raises(ValueError, match="layout 'grid'"):
        build_user_content(
            _frames(), np.arange(T) / 3.0, [TelemetryChannel(None)], "Q?", layout="grid"
        )


def test_build_messages_roles() -> None:
    content = [{"type": "text", "text": "Q?"}]
    messages = build_messages(content, "A. collision")
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[0]["content"][0]["text"] == P.SYSTEM_PROMPT
    assert messages[2]["content"] == [{"type": "text", "text": "A. collision"}]
    assert [m["role"] for m in build_messages(content)] == ["system", "user"]


def test_mcq_task_and_options() -> None:
    rng = random.Random(0)
    item = make_task("mcq", "near_collision", {}, rng)
    assert item.question == EVENT_QUESTION
    assert item.answer == "B. near-collision"
    assert item.probability_target is None
    assert EVENT_QUESTION.splitlines()[1:4] == [
        "A. collision",
        "B. near-collision",
        "C. normal driving",
    ]
    assert mcq_options() == ["A. collision", "B. near-collision", "C. normal driving"]


@pytest.mark.parametrize(
    ("label", "annotations", "answer", "target"),
    [
        ("collision", {}, "Collision Probability: 1.000", 1.0),
        # paper 002: windows end at "the annotated collision (or near-miss) time": positives
        ("near_collision", {}, "Collision Probability: 1.000", 1.0),
        ("event", {}, "Collision Probability: 1.000", 1.0),
        ("normal", {}, "Collision Probability: 0.000", 0.0),
        # paper 002's answer keeps the annotation's 3 decimals: text and MSE target agree
        ("normal", {"probability": 0.872}, "Collision Probability: 0.872", 0.872),
        ("normal", {"probability": 0.05}, "Collision Probability: 0.050", 0.05),
        # more decimals than the answer states: the target is the stated value, not the raw one
        (
            "normal",
            {"probability": 0.8725},
            "Collision Probability: 0.873",
            0.873,
        ),  # float > 0.8725
        ("normal", {"probability": 0.87249}, "Collision Probability: 0.872", 0.872),
        ("collision", {"probability": 0.99951}, "Collision Probability: 1.000", 1.0),
        ("collision", {"probability": 1}, "Collision Probability: 1.000", 1.0),
        ("normal", {"probability": None}, "Collision Probability: 0.000", 0.0),
    ],
)
def test_probability_task(label: str, annotations: dict, answer: str, target: float) -> None:
    from sce.metrics.parsing import parse_probability

    item = make_task("probability", label, annotations, random.Random(0))
    assert item.question == PROBABILITY_QUESTION
    assert item.answer == answer
    assert item.probability_target == target  # exactly, not approximately
    # what the evaluation parses from this answer is the MSE target, to all 3 decimals
    assert parse_probability(item.answer) == item.probability_target


def test_probability_question_asks_what_the_target_scores() -> None:
    """Paper 002: the probability of a collision "within the next few seconds", with near-miss
    windows as positives; a near-collision's target is 1, so the question must count it."""
    question = PROBABILITY_QUESTION
    near = make_task("probability", "near_collision", {}, random.Random(0))
    assert near.probability_target == 1.0 and "near-collision" in question
    assert "within the next few seconds" in question
    assert "collides in this clip" not in question  # the old wording left near-collisions out
    assert question.endswith("Answer only as 'Collision Probability: X' with X between 0 and 1.")
    assert question in P.template_corpus()  # the tiny tokenizer learns the asked wording


def test_caption_reasoning_instruction_tasks() -> None:
    rng = random.Random(0)
    ann = {
        "caption": "The ego car hits a truck.",
        "reasoning": {"think": "Sharp decel spike."},
        "instruction": "Keep a larger gap.",
    }
    caption = make_task("caption", "collision", ann, rng)
    assert (caption.question, caption.answer) == (CAPTION_QUESTION, "The ego car hits a truck.")
    reasoning = make_task("reasoning", "collision", ann, rng)
    assert reasoning.question == EVENT_QUESTION + REASONING_SUFFIX
    assert reasoning.answer == "<think>Sharp decel spike.</think>A. collision"
    plain = make_task("reasoning", "normal", {"reasoning": "Steady."}, rng)
    assert plain.answer == "<think>Steady.</think>C. normal driving"
    instr = make_task("instruction", "collision", ann, rng)
    assert instr.question == INSTRUCTION_QUESTION
    assert instr.answer == "Events: collision.\nInstruction: Keep a larger gap."
    normal = make_task("instruction", "normal", {"instruction": "Carry on."}, rng)
    assert normal.answer == "Events: no risky event.\nInstruction: Carry on."


def test_vqa_task_formats_options() -> None:
    qa_list = {"question": "What is ahead?", "options": ["a car", "a bus"], "answer": "B"}
    qa_dict = {"question": "Weather?", "options": {"X": "rain", "Y": "fog"}, "answer": "X"}
    qa_open = {"question": "Speed?", "answer": "About 40 km/h."}
    rng = random.Random(0)
    item = make_task("vqa", "normal", {"vqa": [qa_list]}, rng)
    assert item.question == "What is ahead?\nA. a car\nB. a bus\nAnswer with the letter."
    assert item.answer == "B"
    item = make_task("vqa", "normal", {"vqa": [qa_dict]}, rng)
    assert item.question == "Weather?\nX. rain\nY. fog\nAnswer with the letter."
    item = make_task("vqa", "normal", {"vqa": [qa_open]}, rng)
    assert (item.question, item.answer) == ("Speed?", "About 40 km/h.")
    drawn = {make_task("vqa", "normal", {"vqa": [qa_open, qa_dict]}, rng).answer for _ in range(50)}
    assert drawn == {"About 40 km/h.", "X"}


def test_unknown_task_raises() -> None:
    with pytest.raises(ValueError, match="unknown task 'story'"):
        make_task("story", "normal", {}, random.Random(0))
    with pytest.raises(ValueError, match="story"):
        tasks.training_tasks({"mcq": 1.0, "story": 1.0}, "normal", {})
    with pytest.raises(ValueError, match="caption"):
        tasks.training_tasks({"caption": -1.0}, "normal", {})


def test_available_tasks() -> None:
    assert tasks.available_tasks("normal", {}) == ["mcq", "probability"]
    full = {
        "caption": "c",
        "vqa": [{"question": "q", "answer": "a"}],
        "reasoning": "r",
        "instruction": "i",
    }
    assert tasks.available_tasks("normal", full) == [
        "mcq",
        "probability",
        "caption",
        "vqa",
        "reasoning",
        "instruction",
    ]
    assert "reasoning" not in tasks.available_tasks("normal", {"reasoning": {"think": ""}})


def test_training_tasks_are_the_weighted_tasks_a_record_serves() -> None:
    weights = dict.fromkeys(tasks.task_names(), 1.0)
    assert tasks.training_tasks(weights, "collision", {"caption": "c"}) == [
        "mcq",
        "probability",
        "caption",
    ]
    weights = {"mcq": 1.0, "probability": 3.0, "caption": 0.0}
    assert tasks.training_tasks(weights, "normal", {"caption": "c"}) == ["mcq", "probability"]
    # a record without a caption falls back to mcq when only caption is weighted
    assert tasks.training_tasks({"caption": 1.0}, "normal", {}) == ["mcq"]
    assert tasks.training_tasks({"caption": 1.0, "mcq": 0.0}, "normal", {}) == ["mcq"]


def test_binary_event_question_and_answers() -> None:
    """A binary-scope record (event / no event) gets the yes/no question; its label never becomes a
    3-class answer, and a 3-class answer cannot be asked of it."""
    rng = random.Random(0)
    assert BINARY_EVENT_QUESTION.splitlines()[1:3] == ["A. yes", "B. no"]
    event = make_task("mcq", "event", {}, rng, scope="binary")
    assert (event.question, event.answer) == (BINARY_EVENT_QUESTION, "A. yes")
    normal = make_task("mcq", "normal", {}, rng, scope="binary")
    assert (normal.question, normal.answer) == (BINARY_EVENT_QUESTION, "B. no")
    think = make_task("reasoning", "event", {"reasoning": "Brakes."}, rng, scope="binary")
    assert think.question == BINARY_EVENT_QUESTION + REASONING_SUFFIX
    assert think.answer == "<think>Brakes.</think>A. yes"
    with pytest.raises(ValueError, match="'event' is not a 'three_class' label"):
        make_task("mcq", "event", {}, rng)
    with pytest.raises(ValueError, match="'collision' is not a 'binary' label"):
        make_task("mcq", "collision", {}, rng, scope="binary")


def test_template_corpus() -> None:
    corpus = P.template_corpus()
    assert len(corpus) > 10 and all(isinstance(t, str) and t for t in corpus)
    assert P.SYSTEM_PROMPT in corpus and EVENT_QUESTION in corpus
    assert "Collision Probability: 0.872" in corpus
    assert any("ax -9.7 ay +0.3 az +9.8 m/s²" in t for t in corpus)


def test_telemetry_line_signs_and_units() -> None:
    line = telemetry_line(0.0, [2.04, -0.35, 9.8], -0.5, float("nan"))
    assert line == "ax +2.0 ay -0.3 az +9.8 m/s², heading -28.6°"  # NaN speed is left out
    assert (
        telemetry_line(0.0, [0.0, 0.0, 9.8], 0.0, 3.25)
        == "ax +0.0 ay +0.0 az +9.8 m/s², heading +0.0°, 3.2 m/s"
    )


# ---------------------------------------------------------------------------------------------
# Channels: the prompt text is the golden one (tests/fixtures/prompt_golden.json), captured before
# per-frame inputs became channels and changed since on purpose only: a_z in every telemetry line
# and table row (paper 000's triaxial a_sync, issue 25), paper 002's own prompt and video-only
# prompts (no channels) added.

GOLDEN = FIXTURES / "prompt_golden.json"
VARIANTS = ("telemetry", "no_speed", "none", "no_channels")


def _golden_telemetry(n: int, speed: bool) -> FrameTelemetry:
    k = np.arange(n)
    return FrameTelemetry(
        frame_times=1.0 + k * (1 / 3),
        accel=np.stack([-9.7 + 0.5 * k, 0.3 - 0.25 * k, np.full(n, 9.8)], axis=1),
        yaw_delta=np.tile([0.01, -0.02], n // 2 + 1)[:n],
        speed=(12.1 - 0.1 * k) if speed else None,
    )


def golden_prompt(keyframes: bool, layout: str, variant: str, prompt: str = "sce") -> dict:
    """build_user_content's output (content, visual shapes) of a golden fixture entry."""
    n = 3 if keyframes else 6
    tele = _golden_telemetry(n, speed=variant != "no_speed")
    channels = (
        [] if variant == "no_channels" else [TelemetryChannel(None if variant == "none" else tele)]
    )
    content, visuals = build_user_content(
        np.zeros((n, 2, 2, 3), np.uint8),
        tele.frame_times,
        channels,
        "Q?",
        layout,
        keyframes=keyframes,
        prompt=prompt,
    )
    return {"content": content, "visual_shapes": [list(v.shape) for v in visuals]}


def golden_key(keyframes: bool, layout: str, variant: str) -> str:
    return f"{'keyframes' if keyframes else 'video'}/{layout}/{variant}"


@pytest.mark.parametrize("keyframes", [False, True])
@pytest.mark.parametrize("layout", P.LAYOUTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_prompt_text_is_the_golden_one(keyframes, layout, variant) -> None:
    """tests/fixtures/prompt_golden.json holds build_user_content's output for every layout, with
    and without telemetry (and speed), and with no channel at all (video only)."""
    golden = json.loads(GOLDEN.read_text())
    expected = golden[golden_key(keyframes, layout, variant)]
    assert golden_prompt(keyframes, layout, variant) == expected


def test_paper002_prompt_is_the_golden_one() -> None:
    """Paper 002's keyframe prompt (video only), as the fixture holds it."""
    golden = json.loads(GOLDEN.read_text())["keyframes/table/paper002"]
    assert golden_prompt(True, "table", "no_channels", "paper002") == golden


def test_template_corpus_is_the_golden_one() -> None:
    """The tiny tokenizer is trained on this corpus: it must not move (pinned losses)."""
    assert P.template_corpus() == json.loads(GOLDEN.read_text())["template_corpus"]


class _Objects(Channel):
    """A second per-frame input, as a perception stage would add one."""

    def __init__(self, names: list[str] | None) -> None:
        self.names = names

    @property
    def available(self) -> bool:
        return self.names is not None

    def frame_text(self, k: int) -> str:
        return f"objects: {self.names[k]}"

    def table_text(self) -> str:
        return "Objects:\n" + "\n".join(self.names) + "\n"

    def missing_text(self) -> str:
        return "Objects: unavailable.\n"


def test_a_new_input_is_a_new_channel() -> None:
    """A channel class is all a new per-frame input needs: its text joins each frame's line
    (interleaved) or follows the telemetry table (table), and it says when it is missing."""
    tele = _golden_telemetry(2, speed=True)
    objects = _Objects(["car", "car, cyclist"])
    channels = [TelemetryChannel(tele), objects]
    content, _ = build_user_content(_frames(2), tele.frame_times, channels, "Q?")
    assert content[1]["text"] == (
        "t=1.0s: ax -9.7 ay +0.3 az +9.8 m/s², heading +0.6°, 12.1 m/s; objects: car\n"
        "t=1.3s: ax -9.2 ay +0.0 az +9.8 m/s², heading -1.1°, 12.0 m/s; objects: car, cyclist\n"
    )
    table, _ = build_user_content(_frames(2), tele.frame_times, channels, "Q?", "table")
    assert [c.get("text", "").split("\n")[0] for c in table] == ["", "Telemetry:", "Objects:", "Q?"]
    missing = [TelemetryChannel(None), _Objects(None)]
    content, _ = build_user_content(_frames(2), tele.frame_times, missing, "Q?")
    assert content[1]["text"] == "t=1.0s\nt=1.3s\n"
    assert [c["text"] for c in content[2:]] == [
        P.NO_TELEMETRY + "\n",
        "Objects: unavailable.\n",
        "Q?",
    ]


# ---------------------------------------------------------------------------------------------
# The model's inputs (data.window.channels) and paper 002's prompt (issue 25, points 1 and 3).


def test_system_prompt_names_only_the_configured_channels() -> None:
    assert P.system_prompt(("telemetry",)) == P.SYSTEM_PROMPT
    video_only = P.system_prompt(())
    assert video_only == (
        "You are a driving safety analyst. You watch dashcam video and report safety-critical "
        "events: collision, near-collision or normal driving."
    )
    assert P.system_prompt((), "paper002") is None  # paper 002 sends no system turn
    messages = build_messages([{"type": "text", "text": "Q?"}], "0.5", system=None)
    assert [m["role"] for m in messages] == ["user", "assistant"]


def test_clip_channels_follow_the_setting() -> None:
    from sce.data.channels import clip_channels
    from sce.data.clip import ClipInputs

    tele = _keyframe_telemetry()
    clip = ClipInputs(_frames(3), tele.frame_times, tele, 7.0, "manifest", "", 0.0, 0.0, 3.0)
    assert clip_channels(clip, []) == []
    (on,) = clip_channels(clip, ["telemetry"])
    (dropped,) = clip_channels(clip, ["telemetry"], dropped=["telemetry"])
    assert (on.available, dropped.available) == (True, False)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"channels": ["imu"]}, "data.window.channels must be distinct names of"),
        ({"channels": ["telemetry", "telemetry"]}, "data.window.channels must be distinct"),
        ({"prompt": "paper999"}, "data.window.prompt must be one of"),
        ({"prompt": "paper002"}, "needs data.window.scales"),
        ({"prompt": "paper002", "scales": [3.0]}, "data.window.layout=table"),
    ],
)
def test_window_refuses_unknown_inputs_and_a_misplaced_paper002_prompt(settings, message):
    from sce.data.clip import WindowSpec

    with pytest.raises(ValueError, match=message):
        WindowSpec(**settings)


def test_window_inputs_in_words() -> None:
    from sce.data.clip import WindowSpec

    assert WindowSpec().inputs == "video + telemetry" and WindowSpec().telemetry
    video_only = WindowSpec(channels=[])
    assert (video_only.inputs, video_only.telemetry, video_only.channels) == (
        "video only",
        False,
        (),
    )


def test_paper002_prompt_as_written() -> None:
    """Paper 002, Fig. 3: three images, the analyst and scenario lines, (the object table, not
    yet: no table, and no IMU table), then its Task: and Note: lines, verbatim."""
    from sce.tasks.probability import PAPER002_QUESTION

    assert PAPER002_QUESTION.splitlines() == [
        "Task:",
        "Output only a single floating-point number between 0.00 and 1.00;",
        "indicating the probability of a collision occurring within the next few seconds.",
        "Do not output any additional text or labels.",
        "Note: the downstream detection tracker may miss objects that are extremely close;",
        "if you know from the images that another vehicle is about to collide, factor that in.",
    ]
    tele = _keyframe_telemetry()
    question = make_task("probability", "normal", {}, random.Random(0), prompt="paper002").question
    assert question == PAPER002_QUESTION
    content, images = build_user_content(
        _frames(3), tele.frame_times, [], question, "table", keyframes=True, prompt="paper002"
    )
    assert [c["type"] for c in content] == ["image", "text"] * 3 + ["text", "text"]
    assert len(images) == 3
    assert "".join(c.get("text", "<image>") for c in content) == (
        "<image>\n<image>\n<image>\n"
        "You are a traffic-safety risk analyst tasked with real-time collision probability "
        "assessment.\n"
        "Below are three frames at times [4.0, 5.5, 7.0] seconds.\n" + PAPER002_QUESTION
    )
    with pytest.raises(ValueError, match="keyframe prompt in the table layout"):
        build_user_content(_frames(2), tele.frame_times[:2], [], "Q?", prompt="paper002")


@pytest.mark.parametrize(
    ("label", "annotations", "answer", "target"),
    [
        ("collision", {"probability": 0.872}, "Collision Probability: 0.872", 0.872),
        ("normal", {"probability": 0.1}, "Collision Probability: 0.100", 0.1),
        ("collision", {}, "Collision Probability: 1.000", 1.0),
        ("near_collision", {}, "Collision Probability: 1.000", 1.0),
        ("normal", {}, "Collision Probability: 0.000", 0.0),
    ],
)
def test_paper002_targets(label, annotations, answer, target) -> None:
    """The annotated probability when the record has one, else 1 / 0 from the label."""
    for prompt in ("sce", "paper002"):
        item = make_task("probability", label, annotations, random.Random(0), prompt=prompt)
        assert (item.answer, item.probability_target) == (answer, target)
