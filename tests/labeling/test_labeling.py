"""sce.labeling: metadata captions, teacher prompts, backends over real loopback HTTP, validation,
the resumable labeling run (including a killed child process), and the `sce label` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.labeling_server import (
    ChatServer,
    canned_answer,
    canned_responder,
    chat_reply,
    count_lines_per_key,
    image_urls,
    is_jpeg_data_url,
    label_in_prompt,
    revealed_label,
    synthetic_inputs,
    task_of,
    user_text,
    write_manifest_files,
)
from helpers.paths import HELPERS, REPO

from sce.data.imu import FrameTelemetry
from sce.data.schema import ClipRecord, load_manifest
from sce.labeling import (
    AnswerError,
    OpenAIChatBackend,
    PromptOptions,
    TeacherError,
    TeacherFatalError,
    add_label_arguments,
    build_teacher_prompt,
    get_template,
    label_command,
    parse_answer,
    run_labeling,
    structured_caption,
)
from sce.labeling.prompts import ImagePart, TextPart
from sce.labeling.templates import telemetry_peaks

FRAMES = 18  # 3 fps x [-4 s, +2 s]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SCE_TEACHER_API_KEY", raising=False)


def _backend(server: ChatServer, **kw) -> OpenAIChatBackend:
    kw = {"concurrency": 2, "max_retries": 0, "timeout": 10, "backoff": 0.01, **kw}
    return OpenAIChatBackend(server.url, "teacher-model", **kw)


def _run(manifest, tasks, backend, out, **kw):
    kw = {"inputs_loader": synthetic_inputs, "size": (32, 24), "progress": False, **kw}
    return run_labeling(manifest, tasks, backend, out, **kw)


def _record(label="collision", metadata=None) -> ClipRecord:
    return ClipRecord(id="c0", video="c0.mp4", label=label, source="synthetic", split="train",
                      metadata=metadata or {})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Metadata caption template


def test_structured_caption_from_metadata():
    meta = {
        "weather": "rain", "light": "night", "scene": "urban", "road": "wet",
        "other_agent": "car", "other_motion": "turning left", "impact_side": "front",
        "other_impact_side": "rear", "blame": "other", "ego_motion": "going straight",
    }  # fmt: skip
    text = structured_caption(meta, "collision", event_time=3.96)
    assert text == (
        "The ego vehicle is driving on a wet road in an urban setting; the weather is rainy and it "
        "is night. A collision happens at about t = 4.0 s: the ego vehicle, while going straight, "
        "makes contact with a car that is turning left. The ego vehicle is struck on its front "
        "side. The car is struck on its rear side. The other road user is responsible for the "
        "incident."
    )
    near = structured_caption(
        {"other_agents": [{"type": "truck", "motion": "cutting in"}]}, "near_collision"
    )
    assert near == (
        "A near-collision happens: the ego vehicle comes dangerously close to a truck that is "
        "cutting in, but no contact is made."
    )
    synthetic = {  # the keys sce.prepare.synthetic writes
        "weather": "fog", "light": "dusk", "scene": "rural", "road": "dry", "other_agent": "car",
        "agent_color": "white", "crossing_from": "right", "evasive_action": "hard braking",
        "impact_side": None, "min_distance_m": 1.23, "peak_decel_ms2": -6.81,
        "ego_speed_kmh": 41.6, "heading_change_deg": -3.2,
    }  # fmt: skip
    assert structured_caption(synthetic, "near_collision", 4.0) == (
        "The ego vehicle is driving on a dry road in a rural setting; the weather is foggy and it "
        "is dusk. A near-collision happens at about t = 4.0 s: the ego vehicle comes dangerously "
        "close to a white car that is crossing from the right, but no contact is made thanks to "
        "hard braking. The smallest gap between them is 1.2 m. The strongest longitudinal "
        "deceleration is -6.8 m/s^2. The heading changes by -3 degrees over the clip. At the "
        "moment of the event the speed is 42 km/h."
    )
    assert structured_caption({"blame": "ego"}, "normal") == (
        "The ego vehicle drives normally and no incident takes place."  # no blame without incident
    )
    with pytest.raises(ValueError, match="unknown label 'crash'"):
        structured_caption({}, "crash")


def test_structured_caption_telemetry_peaks():
    times = np.array([0.0, 1 / 3, 2 / 3, 1.0])
    tele = FrameTelemetry(
        frame_times=times,
        accel=np.array([[0.5, 0.1, 9.8], [-7.25, -2.0, 9.8], [-1.0, 0.4, 9.8], [0.2, 0.0, 9.8]]),
        yaw_delta=np.radians([1.0, 2.0, 3.0, 4.0]),
        speed=np.array([12.0, 10.0, 6.0, 5.0]),
    )
    peaks = telemetry_peaks(tele, event_time=0.3)
    assert peaks["peak_long_accel"] == -7.25 and peaks["peak_long_time"] == pytest.approx(1 / 3)
    assert peaks["peak_lat_accel"] == 2.0
    assert peaks["heading_change_deg"] == pytest.approx(10.0)
    assert peaks["speed_at_event"] == 10.0  # the frame nearest to t = 0.3 s
    text = structured_caption({}, None, event_time=0.3, telemetry=tele)
    assert text == (
        "The strongest longitudinal deceleration is -7.2 m/s^2 at t = 0.3 s. The heading changes "
        "by +10 degrees over the clip. The speed goes from 12.0 m/s to 5.0 m/s. At the moment of "
        "the event the speed is 10.0 m/s."
    )


# ---------------------------------------------------------------------------------------------
# Teacher prompt (paper 000)

DETECTIONS = [
    {"t": 1 / 3, "class": "car", "track_id": 3, "box": [0.2, 0.4, 0.4, 0.6]},
    {"t": 2 / 3, "class": "car", "track_id": 3, "box": [0.3, 0.4, 0.5, 0.6]},
    {"t": 1 / 3, "class": "person", "box": [0.7, 0.5, 0.8, 0.9]},
    {"t": 7.0, "class": "bus", "box": [0.0, 0.0, 0.1, 0.1]},  # after the window: not shown
]


def test_teacher_prompt_interleaves_frames_telemetry_and_expert_outputs():
    meta = {
        "experts": {"crash_detected": True, "maneuver": "hard_braking", "violations": ["red_light"],
                    "stop_sign_violation": 0.8},
        "detections": DETECTIONS,
    }  # fmt: skip
    record = _record("collision", meta)
    inputs = synthetic_inputs(record, size=(64, 48))
    prompt = build_teacher_prompt(record, inputs, get_template("caption"))
    assert prompt.system == get_template("caption").system
    kinds = [type(p) for p in prompt.parts]
    # header+frame-1 text, then (image, text) per frame: text and frames alternate.
    assert kinds == [TextPart] + [ImagePart, TextPart] * FRAMES
    assert len(prompt.images) == FRAMES
    text = prompt.text
    assert "The candidate event time is t_e = 4.00 s." in text
    # frame 2 (k=1): a_x = -1, a_y = 0.5, a_z = 9.8; yaw 0.01 rad = 0.57 deg; speed 10 - 6/17.
    assert (
        "Frame 2/18, t = 0.33 s (-3.67 s from t_e): a=(-1.00, +0.50, +9.80) m/s^2, heading +0.57 "
        "deg, speed 9.6 m/s; objects: car#3 at (0.30, 0.50), person at (0.75, 0.70)"
    ) in text
    assert "Frame 3/18, t = 0.67 s (-3.33 s from t_e): a=(-2.00" in text
    assert "bus" not in text
    for line in (
        "- IMU crash detector: crash detected",
        "- harsh-manoeuvre classifier: hard braking",
        "- violation detectors: red light, stop sign violation (severity 0.80)",
        "- object detector, counts: car 1, person 1",
        "- track car#3: frames 2-3, centroid (0.30, 0.50) -> (0.40, 0.50)",
    ):
        assert line in text
    # The label is hidden by default: the metadata caption gives the telemetry peaks only.
    assert "What the clip shows: The strongest longitudinal deceleration is -17.0 m/s^2" in text
    assert "A collision happens" not in text
    told = PromptOptions(reveal_label=True)
    revealed = build_teacher_prompt(record, inputs, get_template("caption"), told).text
    assert "What the clip shows: A collision happens at about t = 4.0 s" in revealed
    assert text.endswith(get_template("caption").instruction)
    # Boxes drawn on frame 2 only: its left box edge x=12 (0.2 * 64) is yellow; frame 1 is intact.
    frame2 = prompt.images[1]
    assert (frame2[20:28, 12] == [255, 255, 0]).all()
    assert (prompt.images[0] == 0).all() and (frame2[0, 0] == 10).all()
    plain = build_teacher_prompt(
        record, inputs, get_template("caption"), PromptOptions(draw_boxes=False)
    )
    assert (plain.images[1] == 10).all()


def test_teacher_prompt_without_telemetry_or_frames():
    record = _record("normal")
    inputs = synthetic_inputs(record)
    inputs.telemetry, inputs.telemetry_reason = None, "no IMU file"  # what load_clip_inputs gives
    prompt = build_teacher_prompt(
        record, inputs, get_template("vqa"), PromptOptions(include_frames=False)
    )
    assert prompt.images == []
    assert "Telemetry: unavailable (no IMU file)." in prompt.text
    assert "Frame 1/18, t = 0.00 s (-4.00 s from t_e)\n" in prompt.text
    told = build_teacher_prompt(
        record, inputs, get_template("vqa"), PromptOptions(include_frames=False, reveal_label=True)
    )
    assert "drives normally" in told.text and "drives normally" not in prompt.text


# ---------------------------------------------------------------------------------------------
# Validation


def test_parse_answer_accepts_common_variants():
    paper_style = json.dumps([
        {"Dimension": "Event type", "Question": "What happens?",
         "Options": "A. A collision\nB. A near collision\nC. Normal driving", "Answer": "B."},
    ] + [
        {"Dimension": d, "Question": "q?", "Options": ["A.x", "B.y", "C.z", "D.w"], "Answer": "(D)"}
        for d in ("weather", "road", "scene", "ego motion")
    ])  # fmt: skip
    vqa = parse_answer("vqa", paper_style, "near_collision")
    assert not vqa.filtered
    assert vqa.value["items"][0] == {
        "dimension": "Event type", "question": "What happens?",
        "options": ["A collision", "A near collision", "Normal driving"], "answer": "B",
    }  # fmt: skip
    assert vqa.value["items"][1]["options"] == ["x", "y", "z", "w"]
    assert vqa.value["items"][1]["answer"] == "D"
    contradicted = parse_answer("vqa", paper_style, "collision")
    assert contradicted.filtered and "answers 'near_collision'" in contradicted.filter_reason

    reasoning = parse_answer(
        "reasoning",
        "<think>The car ahead stops and we brake hard.</think>\nANSWER: B",
        "near_collision",
    )
    assert reasoning.value == {
        "think": "The car ahead stops and we brake hard.",
        "answer": "B",
        "label": "near_collision",
    }
    assert not reasoning.filtered
    wrong = parse_answer(
        "reasoning",
        '{"think": "Nothing much happens in this clip at all.", "answer": "C"}',
        "collision",
    )
    assert wrong.filtered and wrong.value["label"] == "normal"
    from sce.labeling.templates import structured_caption

    assert "A collision or a near-collision happens at about t = 3.0 s" in structured_caption(
        {}, "event", 3.0
    )  # a binary record's caption claims no more than its source knows
    # a binary Nexar "event" (collision or near-collision) accepts either event class only
    assert not parse_answer("vqa", paper_style, "event").filtered
    assert not parse_answer(
        "reasoning", '{"think": "The car hits us hard.", "answer": "A"}', "event"
    ).filtered
    assert parse_answer(
        "reasoning", '{"think": "Nothing happens at all here.", "answer": "C"}', "event"
    ).filtered


@pytest.mark.parametrize(
    ("task", "text", "reason"),
    [
        ("caption", "Sorry, I cannot help.", "no JSON object found"),
        ("caption", '{"caption": "too short", "questions": []}', "$.caption: shorter than 20"),
        ("vqa", json.dumps({"items": [{"dimension": "weather", "question": "q", "options": ["a", "b", "c"], "answer": "A"}] * 5}),
         "no event-type question"),
        ("vqa", json.dumps({"items": [{"dimension": "event_type", "question": "q", "options": ["a", "b", "c"], "answer": "D"}] * 5}),
         "vqa item 0: answer D but only 3 options"),
        ("reasoning_vqa", '{"question": "q", "options": ["a", "b", "c", "d"], "answer": "E", "reasons": ["r"]}',
         "$.answer: 'E' is not one of"),
        ("reasoning", '{"think": "The ego vehicle brakes very hard.", "answer": "D"}', "$.answer: 'D' is not one of"),
        ("reasoning", "", "empty answer"),
    ],
)  # fmt: skip
def test_parse_answer_rejects_malformed(task, text, reason):
    with pytest.raises(AnswerError) as err:
        parse_answer(task, text, "collision")
    assert reason in str(err.value)


# ---------------------------------------------------------------------------------------------
# The labeling run over a real loopback chat-completions server


def test_run_labeling_over_http_fills_the_manifest(tmp_path):
    labels = ["collision", "near_collision", "normal"]
    manifest = write_manifest_files(tmp_path / "data", labels, [{"weather": "fog"}, {}, {}])
    out = tmp_path / "out" / "labeled.jsonl"
    tasks = "structured_caption,caption,vqa,reasoning_vqa,reasoning"
    with ChatServer(canned_responder) as server:
        summary = _run(manifest, tasks, _backend(server), out)
        requests = list(server.requests)
        assert summary.done == 15 and summary.failed == 0 and summary.filtered == 0
        assert len(requests) == 12  # 4 teacher tasks x 3 clips; structured_caption is local
        for req in requests:
            body = req["body"]
            assert req["path"] == "/v1/chat/completions" and body["model"] == "teacher-model"
            assert body["messages"][0]["role"] == "system"
            urls = image_urls(body)
            assert len(urls) == FRAMES and all(is_jpeg_data_url(u) for u in urls)
            assert "a=(-5.00, +0.50, +9.80) m/s^2" in user_text(body)  # frame 6 telemetry
            assert "authorization" not in req["headers"]  # no key in the environment
        reasoning = [r for r in requests if task_of(r["body"]) == "reasoning"]
        assert all(
            "Scene description: The ego vehicle is in" in user_text(r["body"]) for r in reasoning
        )
        again = _run(manifest, tasks, _backend(server), out)  # everything done: no request
        assert len(server.requests) == 12 and again.skipped == 15 and again.labeled_now == 0

    records = {r.id: r for r in load_manifest(out)}  # paths now resolve from out/
    assert records["clip0"].path("video").resolve() == (tmp_path / "data" / "clip0.mp4").resolve()
    notes = records["clip1"].annotations
    assert notes["caption"].startswith("The ego vehicle is in a near collision situation")
    assert notes["qa"][1] == {"type": "closed", "question": "Is it raining?", "answer": "no"}
    assert len(notes["vqa"]) == 5 and notes["vqa"][0]["answer"] == "B"
    assert notes["vqa"][0]["options"] == ["A collision", "A near collision", "Normal driving"]
    assert notes["reasoning"]["answer"] == "B" and notes["reasoning"]["label"] == "near_collision"
    assert (
        notes["reasoning_vqa"]["options"][3] == "a pedestrian"
        and notes["reasoning_vqa"]["answer"] == "D"
    )
    assert notes["structured_caption"].startswith("A near-collision happens at about t = 4.0 s")
    assert notes["provenance"]["vqa"] == {
        "template": "vqa/v1", "model": "teacher-model", "label_revealed": False
    }  # fmt: skip
    assert (
        records["clip0"]
        .annotations["structured_caption"]
        .startswith("The ego vehicle is driving; the weather is foggy.")
    )
    saved = json.loads((tmp_path / "out" / "labeled.summary.json").read_text())
    assert saved["done"] == 15 and saved["per_task"]["reasoning"] == {
        "ok": 3,
        "failed": 0,
        "filtered": 0,
    }


def test_the_teacher_is_not_told_the_label_unless_asked_and_the_labels_say_which(tmp_path):
    """Issue 25.8: the label is hidden by default (paper 000's teacher sees video, telemetry and
    expert outputs only); revealing it is an opt-in that every result and provenance records,
    and results of the other setting are never reused."""
    labels = ["collision", "near_collision", "normal"]
    manifest = write_manifest_files(tmp_path / "data", labels)
    out = tmp_path / "m2.jsonl"
    tasks = "structured_caption,caption,vqa,reasoning"
    with ChatServer(canned_responder) as server:
        hidden = _run(manifest, tasks, _backend(server), out)
        assert len(server.requests) == 9  # 3 teacher tasks x 3 clips
        assert [revealed_label(r["body"]) for r in server.requests] == [None] * 9
        for request in server.requests:  # the caption gives conditions and telemetry only
            shown = user_text(request["body"]).split("What the clip shows: ")[1]
            assert shown.startswith("The strongest longitudinal deceleration is -17.0 m/s^2")
            assert not any(w in shown.split("\n")[0] for w in ("collision", "normally"))
        assert hidden.done == 12 and not hidden.label_revealed
        assert "label hidden from the teacher" in hidden.format()
        notes = {r.id: r.annotations for r in load_manifest(out)}
        assert {t: p["label_revealed"] for t, p in notes["clip0"]["provenance"].items()} == {
            "structured_caption": True, "caption": False, "vqa": False, "reasoning": False
        }  # fmt: skip
        # Opting in asks every teacher item again (the metadata caption is not teacher work).
        told = _run(
            manifest, tasks, _backend(server), out, options=PromptOptions(reveal_label=True)
        )
        asked = server.requests[9:]
        assert len(asked) == 9 and told.skipped == 3 and told.labeled_now == 9
        by_task = [(task_of(r["body"]), revealed_label(r["body"])) for r in asked]
        assert sorted(label for _, label in by_task) == sorted(labels * 3)
        assert "label revealed to the teacher" in told.format()
    lines = [json.loads(x) for x in (tmp_path / "m2.labels.jsonl").read_text().splitlines()]
    assert [x["label_revealed"] for x in lines if x["task"] == "caption"] == [False] * 3 + [
        True
    ] * 3
    notes = {r.id: r.annotations for r in load_manifest(out)}
    assert notes["clip1"]["provenance"]["vqa"]["label_revealed"] is True


def test_a_caption_written_knowing_the_label_is_not_shown_to_a_hidden_run(tmp_path):
    """The reasoning prompt quotes the clip's caption; one written with the label revealed (its
    provenance says so) would tell a hidden run the class."""
    manifest = write_manifest_files(tmp_path / "data", ["collision"])
    record = json.loads(manifest.read_text())
    record["annotations"] = {
        "caption": "A collision with a white car.",
        "provenance": {"caption": {"template": "caption/v1", "label_revealed": True}},
    }
    manifest.write_text(json.dumps(record) + "\n")
    with ChatServer(canned_responder) as server:
        _run(manifest, "reasoning", _backend(server), tmp_path / "hidden.jsonl")
        _run(manifest, "reasoning", _backend(server), tmp_path / "told.jsonl",
             options=PromptOptions(reveal_label=True))  # fmt: skip
        hidden, told = (user_text(r["body"]) for r in server.requests)
    assert "Scene description" not in hidden and "collision with a white" not in hidden
    assert "Scene description: A collision with a white car." in told


def test_malformed_answers_are_retried_then_reported_failed(tmp_path):
    manifest = write_manifest_files(tmp_path, ["collision", "normal"])
    calls: dict[str, int] = {}

    def responder(body, headers, n):
        label = label_in_prompt(body)
        calls[label] = calls.get(label, 0) + 1
        if label == "normal":
            return chat_reply("I am not able to describe this video.")  # always malformed
        if calls[label] == 1:
            return chat_reply('{"caption": 42}')  # malformed once, then fine
        return chat_reply(canned_answer("caption", label))

    out = tmp_path / "m2.jsonl"
    with ChatServer(responder) as server:
        summary = _run(manifest, "caption", _backend(server), out, answer_retries=2)
        assert calls == {"collision": 2, "normal": 3}
        assert summary.done == 1 and summary.failed == 1
        assert summary.failures == [{
            "clip_id": "clip1", "task": "caption",
            "reason": "malformed answer after 3 attempts: no JSON object found in the answer",
        }]  # fmt: skip
        lines = [json.loads(x) for x in (tmp_path / "m2.labels.jsonl").read_text().splitlines()]
        by_clip = {x["clip_id"]: x for x in lines}
        assert by_clip["clip0"]["status"] == "ok" and by_clip["clip0"]["attempts"] == 2
        assert by_clip["clip1"]["raw"] == "I am not able to describe this video."
        assert "caption" not in {r.id: r for r in load_manifest(out)}["clip1"].annotations
        _run(manifest, "caption", _backend(server), out)  # failed items stay failed by default
        assert calls["normal"] == 3
        retried = _run(
            manifest, "caption", _backend(server), out, retry_failed=True, answer_retries=0
        )
        assert calls["normal"] == 4 and retried.failed == 1
        assert "after 1 attempts" in retried.failures[0]["reason"]


def test_reasoning_traces_kept_only_when_answer_matches_label(tmp_path):
    labels = ["collision", "near_collision", "near_collision", "normal"]
    manifest = write_manifest_files(tmp_path, labels)

    def always_collision(body, headers, n):  # the teacher always answers A (collision)
        return chat_reply(canned_answer("reasoning", label_in_prompt(body), reasoning_letter="A"))

    out = tmp_path / "m2.jsonl"
    with ChatServer(always_collision) as server:
        summary = _run(manifest, "reasoning", _backend(server), out)
    assert (summary.done, summary.filtered, summary.failed) == (1, 3, 0)
    assert summary.keep_rate["reasoning"] == 0.25
    assert "reasoning: 1 done, 0 failed, 3 filtered, keep rate 25.0%" in summary.format()
    kept = {r.id: "reasoning" in r.annotations for r in load_manifest(out)}
    assert kept == {"clip0": True, "clip1": False, "clip2": False, "clip3": False}
    lines = [json.loads(x) for x in (tmp_path / "m2.labels.jsonl").read_text().splitlines()]
    filtered = [x for x in lines if x["status"] == "filtered"]
    assert len(filtered) == 3
    assert filtered[0]["reason"].startswith("answer A (collision) but ground truth is")


def test_api_key_sent_in_header_but_never_logged(tmp_path, monkeypatch, caplog, capsys):
    secret = "sk-test-9f8e7d6c5b4a-SECRET"
    monkeypatch.setenv("MY_TEACHER_KEY", secret)
    manifest = write_manifest_files(tmp_path, ["collision", "normal"])

    def responder(body, headers, n):
        if n == 0:  # a transient error whose body echoes the header back
            return 503, {"error": f"overloaded, your header was {headers['authorization']}"}
        if label_in_prompt(body) == "normal":
            return 400, {"error": f"bad request for {headers['authorization']}"}
        return canned_responder(body, headers, n)

    caplog.set_level(logging.DEBUG)
    out = tmp_path / "m2.jsonl"
    with ChatServer(responder) as server:
        backend = _backend(server, api_key_env="MY_TEACHER_KEY", max_retries=2, concurrency=1)
        summary = _run(manifest, "caption", backend, out)
        assert {r["headers"]["authorization"] for r in server.requests} == {f"Bearer {secret}"}
    assert summary.done == 1 and summary.failed == 1
    assert (
        "HTTP 400" in summary.failures[0]["reason"]
        and "Bearer ***" in summary.failures[0]["reason"]
    )
    assert "retry 1/2" in caplog.text and "Bearer ***" in caplog.text
    captured = capsys.readouterr()
    assert secret not in caplog.text + captured.out + captured.err + repr(backend)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 4  # manifest, results, labeled manifest, summary
    assert all(secret.encode() not in p.read_bytes() for p in files)


def test_transient_errors_retried_with_exponential_backoff():
    statuses = [503, 500, 200, 429, 200]
    record = _record()
    prompt = build_teacher_prompt(record, synthetic_inputs(record), get_template("reasoning"))

    def responder(body, headers, n):
        if statuses[n] == 429:
            return 429, {"error": "slow down"}, {"Retry-After": "2"}
        return (statuses[n], {"error": "boom"}) if statuses[n] != 200 else chat_reply("fine")

    delays: list[float] = []
    with ChatServer(responder) as server:
        backend = _backend(server, max_retries=3, backoff=0.5, max_backoff=2.5, sleep=delays.append)
        assert backend.complete(prompt) == "fine"
        assert len(delays) == 2
        assert 0.5 <= delays[0] <= 0.55 and 1.0 <= delays[1] <= 1.1  # doubled, 10 % jitter at most
        assert backend.complete(prompt) == "fine"
        assert delays[2] == 2.0  # Retry-After wins over the 0.5 s backoff
        with pytest.raises(TeacherFatalError, match="HTTP 404"):  # wrong URL: not retried
            OpenAIChatBackend(server.url + "/x", "m", max_retries=3, sleep=delays.append).complete(
                prompt
            )
        assert len(delays) == 3
        gone = _backend(server, max_retries=1, sleep=delays.append)
    with pytest.raises(TeacherError, match="request failed after 2 attempts: URLError"):
        gone.complete(prompt)  # the server is stopped: connection refused, retried once
    assert len(delays) == 4


def test_fatal_http_error_stops_the_run(tmp_path, monkeypatch):
    import sce.labeling.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_clip_inputs", synthetic_inputs)
    manifest = write_manifest_files(tmp_path, ["collision"] * 4)
    with ChatServer(lambda body, headers, n: (401, {"error": "invalid key"})) as server:
        with pytest.raises(TeacherFatalError, match="HTTP 401"):
            _run(manifest, "caption,vqa", _backend(server), tmp_path / "m2.jsonl")
        assert len(server.requests) <= 2  # two workers, nothing started after the first refusal
        parser = add_label_arguments(argparse.ArgumentParser())
        args = parser.parse_args([
            "--manifest", str(manifest), "--out", str(tmp_path / "m3.jsonl"), "--tasks", "caption",
            "--base-url", server.url, "--model", "m", "--max-retries", "0", "--no-progress",
        ])  # fmt: skip
        assert label_command(args) == 2
    assert not (tmp_path / "m3.jsonl").exists()


def test_label_command_runs_and_reports(tmp_path, monkeypatch, capsys):
    import sce.labeling.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_clip_inputs", synthetic_inputs)
    manifest = write_manifest_files(tmp_path, ["collision", "normal"])
    parser = add_label_arguments(argparse.ArgumentParser())
    with ChatServer(canned_responder) as server:
        args = parser.parse_args([
            "--manifest", str(manifest), "--out", str(tmp_path / "m2.jsonl"),
            "--tasks", "caption,reasoning", "--backend", "openai", "--base-url", server.url,
            "--model", "teacher", "--size", "32x24", "--text-only", "--no-progress",
        ])  # fmt: skip
        assert label_command(args) == 0
        assert all(image_urls(r["body"]) == [] for r in server.requests)  # --text-only
    out = capsys.readouterr().out
    assert "labeling: 4 items: 4 done, 0 failed, 0 filtered, 0 pending" in out
    assert "reasoning: 2 done, 0 failed, 0 filtered, keep rate 100.0%" in out


def test_killed_run_restarts_and_labels_every_item_exactly_once(tmp_path):
    manifest = write_manifest_files(tmp_path, ["collision", "near_collision", "normal"] * 2)
    out = tmp_path / "m2.jsonl"
    results = tmp_path / "m2.labels.jsonl"
    release = threading.Event()

    def responder(body, headers, n):
        if n >= 4:  # from the 5th request on, hold the answer: the child is killed meanwhile
            release.wait(timeout=20)
        return canned_responder(body, headers, n)

    with ChatServer(responder) as server:
        child = subprocess.Popen(
            [sys.executable, str(HELPERS / "labeling_server.py"), str(manifest), str(out), server.url],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while len(server.requests) < 6 and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(server.requests) == 6, (
                child.stderr.read().decode() if child.poll() is not None else ""
            )
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            child.stderr.close()
            release.set()
        assert child.returncode == -signal.SIGKILL
        before = count_lines_per_key(results)
        assert len(before) == 4 and not out.exists()  # the 4 answered items; 2 in flight lost
        summary = _run(manifest, "caption,reasoning", _backend(server), out)
        assert len(server.requests) == 6 + 8  # only the 8 unfinished items were asked again
    assert summary.skipped == 4 and summary.labeled_now == 8 and summary.done == 12
    counts = count_lines_per_key(results)
    assert len(counts) == 12 and set(counts.values()) == {1}
    assert all({"caption", "reasoning"} <= set(r.annotations) for r in load_manifest(out))


def test_results_store_tolerates_a_line_cut_by_a_kill(tmp_path):
    manifest = write_manifest_files(tmp_path, ["collision", "normal"])
    results = tmp_path / "m2.labels.jsonl"
    done = {"clip_id": "clip0", "task": "structured_caption", "version": "v1", "status": "ok",
            "annotation": {"text": "kept"}, "label_revealed": True}  # fmt: skip
    results.write_text(json.dumps(done) + "\n" + '{"clip_id": "clip1", "task": "struc')
    summary = run_labeling(manifest, "structured_caption", None, tmp_path / "m2.jsonl",
                           inputs_loader=synthetic_inputs, progress=False)  # fmt: skip
    assert summary.skipped == 1 and summary.labeled_now == 1
    lines = results.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["clip_id"] == "clip1"  # on a fresh line
    notes = {r.id: r.annotations for r in load_manifest(tmp_path / "m2.jsonl")}
    assert notes["clip0"]["structured_caption"] == "kept"
    assert notes["clip1"]["structured_caption"].startswith("The ego vehicle drives normally")
    assert (
        "The strongest longitudinal deceleration is -17.0 m/s^2"
        in notes["clip1"]["structured_caption"]
    )


# ---------------------------------------------------------------------------------------------
# Real inputs: an mp4 and an IMU CSV decoded by sce.data (video + imu), through the CLI entry


def _write_clip(folder: Path) -> None:
    """An 8 s, 10 fps, 64x48 mp4 and a 100 Hz IMU CSV: a_x spike of -9 at t = 5 s, gz = 0.1."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(folder / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(80):
            frame = np.full((48, 64, 3), (3 * k) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    t = np.arange(800) / 100.0
    ax = np.where(np.isclose(t, 5.0), -9.0, 0.0)
    rows = ["t,ax,ay,az,gx,gy,gz"] + [
        f"{ti:.2f},{a:.3f},0.000,9.810,0.0,0.0,0.1" for ti, a in zip(t, ax, strict=True)
    ]
    (folder / "clip.imu.csv").write_text("\n".join(rows) + "\n")
    record = {"id": "real0", "video": "clip.mp4", "imu": "clip.imu.csv", "label": "collision",
              "source": "private", "split": "test",
              "metadata": {"weather": "clear", "crash_detected": True}}  # fmt: skip
    (folder / "manifest.jsonl").write_text(json.dumps(record) + "\n")


def test_label_command_end_to_end_with_video_and_imu(tmp_path, capsys):
    pytest.importorskip("decord")
    data = tmp_path / "data"
    _write_clip(data)
    parser = add_label_arguments(argparse.ArgumentParser())
    with ChatServer(canned_responder) as server:
        args = parser.parse_args([
            "--manifest", str(data / "manifest.jsonl"), "--out", str(tmp_path / "m2" / "m2.jsonl"),
            "--tasks", "structured_caption,caption,reasoning", "--base-url", server.url,
            "--model", "teacher", "--size", "56x42", "--no-progress",
        ])  # fmt: skip
        assert label_command(args) == 0, capsys.readouterr().out
        assert len(server.requests) == 2
        body = server.requests[0]["body"]
    text = user_text(body)
    assert len(image_urls(body)) == FRAMES  # [5 - 4, 5 + 2] s at 3 fps
    assert "The candidate event time is t_e = 5.00 s." in text  # argmax |a_x| of the CSV
    assert (
        "Frame 1/18, t = 1.17 s (-3.83 s from t_e): a=(+0.00, +0.00, +9.81) m/s^2, heading +1.89 deg"
        in text
    )
    assert text.count("heading +1.89 deg") == FRAMES  # 33 samples x 0.1 rad/s / 100 Hz = 0.033 rad
    import base64
    import io

    from PIL import Image

    first = Image.open(io.BytesIO(base64.b64decode(image_urls(body)[0].split(",", 1)[1])))
    assert first.size == (56, 42) and first.format == "JPEG"
    record = load_manifest(tmp_path / "m2" / "m2.jsonl")[0]
    assert record.annotations["reasoning"]["label"] == "collision"
    assert record.annotations["structured_caption"].startswith(
        "The ego vehicle is driving; the weather is clear. A collision happens at about t = 5.0 s"
    )


@pytest.mark.slow
def test_transformers_backend_on_the_tiny_kit(tmp_path, tiny_kit):
    from sce.labeling.teacher import TransformersBackend

    backend = TransformersBackend(tiny_kit, device="cpu", max_new_tokens=8)
    record = _record("collision")
    prompt = build_teacher_prompt(
        record, synthetic_inputs(record, fps=1.0, size=(56, 56)), get_template("reasoning")
    )
    assert len(prompt.images) == 6
    messages, images = backend.messages(prompt)
    assert [p["type"] for p in messages[1]["content"]].count("image") == 6 and len(images) == 6
    text = backend.processor.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    assert text.count("<|image_pad|>") == 6 and text.endswith("<|im_start|>assistant\n")
    reply = backend.complete(prompt)
    assert isinstance(reply, str) and reply == backend.complete(prompt)  # greedy: deterministic
    manifest = write_manifest_files(tmp_path / "data", ["collision"])
    summary = _run(
        manifest,
        "reasoning",
        backend,
        tmp_path / "m2.jsonl",
        fps=1.0,
        size=(56, 56),
        answer_retries=0,
    )
    assert summary.failed == 1  # random weights do not write JSON: recorded, not dropped
    assert summary.failures[0]["reason"].startswith("malformed answer after 1 attempts")


def test_teacher_inputs_hold_the_students_telemetry(synthetic_manifest):
    """The teacher prompt states the student's per-frame telemetry (one telemetry type)."""
    from sce.data.clip import WindowSpec, load_clip
    from sce.labeling.prompts import frame_telemetry_text, load_clip_inputs

    record = load_manifest(synthetic_manifest)[0]
    inputs = load_clip_inputs(record, size=(32, 24), with_frames=False)
    student = load_clip(record, WindowSpec(fps=3.0, before=4.0, after=2.0, width=32, height=24))
    assert type(inputs.telemetry) is FrameTelemetry and len(inputs.frame_times) == 18
    for name in ("frame_times", "accel", "yaw_delta", "speed"):
        np.testing.assert_array_equal(
            getattr(inputs.telemetry, name), getattr(student.telemetry, name)
        )
    prompt = build_teacher_prompt(
        record, inputs, get_template("vqa"), PromptOptions(include_frames=False)
    )
    assert prompt.text.count("m/s^2, heading") == 18
    assert frame_telemetry_text(student.telemetry, 17) in prompt.text


# ---------------------------------------------------------------------------------------------
# Paper 003's chain-of-thought answers (issue 25, point 10)


def test_instruction_template_writes_events_then_instruction_from_the_structured_events():
    """The teacher sees the clip's structured events (no frames: paper 003's GPT-4o writes from
    annotations); its reply becomes annotations.driving_events + instruction, and the student's
    answer is the events, then the instruction."""
    import dataclasses
    import random

    from sce.labeling.pipeline import apply_result
    from sce.labeling.prompts import TeacherClipInputs
    from sce.tasks import INSTRUCTION, TaskSource

    record = dataclasses.replace(
        _record("near_collision"), annotations={"driving_events": ["phone_use", "near_collision"]}
    )
    template = get_template(INSTRUCTION.name)
    assert (template.uses_frames, template.uses_events) == (False, True)
    inputs = TeacherClipInputs(np.array([0.0, 0.5]), event_time=0.5, fps=2.0)
    prompt = build_teacher_prompt(record, inputs, template)
    assert prompt.images == []
    assert (
        "Annotated events (driving_events): phone_use (driver camera: mobile phone use), "
        "near_collision (road camera: near-collision)." in prompt.text
    )
    reply = '{"events": ["phone_use", "near_collision"], "instruction": "Put the phone away."}'
    value = parse_answer(INSTRUCTION.name, reply, record.label).value
    assert value == {"driving_events": ["phone_use", "near_collision"],
                     "instruction": "Put the phone away."}  # fmt: skip
    with pytest.raises(AnswerError):
        parse_answer(INSTRUCTION.name, '{"events": ["drifting"], "instruction": "Slow down."}')
    labeled = dataclasses.replace(record, annotations={})
    apply_result(labeled, {"task": INSTRUCTION.name, "annotation": value, "version": "v1"})
    item = INSTRUCTION.item(TaskSource(labeled.label, labeled.annotations), random.Random(0))
    assert item.answer == (
        "Events: mobile phone use; near-collision.\nInstruction: Put the phone away."
    )


def test_instruction_answers_record_that_they_were_written_knowing_the_label(tmp_path):
    """The hidden teacher label (issue 25.8) meets paper 003's template: its prompt lists the
    clip's annotated events, the label's event among them, with `--reveal-label` off too; so its
    results and provenance say label_revealed: true (as the metadata caption's do), and a run
    that reveals the label reuses them instead of asking again."""
    manifest = write_manifest_files(tmp_path / "data", ["collision", "normal"])
    out = tmp_path / "m2.jsonl"
    reply = json.dumps({"events": [], "instruction": "Keep a safe distance."})
    with ChatServer(lambda body, headers, n: chat_reply(reply)) as server:
        hidden = _run(manifest, "instruction", _backend(server), out)
        prompts = sorted(user_text(r["body"]) for r in server.requests)
        told = _run(
            manifest, "instruction", _backend(server), out, options=PromptOptions(reveal_label=True)
        )
        assert len(server.requests) == 2  # the revealing run asks nothing again
    stated = [p for p in prompts if "(driving_events): collision (road camera: collision)." in p]
    assert len(stated) == 1 and sum("none (good driving)" in p for p in prompts) == 1
    assert (hidden.done, hidden.label_revealed) == (2, False)
    assert (told.skipped, told.labeled_now) == (2, 0)
    notes = [r.annotations for r in load_manifest(out)]
    assert [n["provenance"]["instruction"]["label_revealed"] for n in notes] == [True, True]
    lines = [json.loads(x) for x in (tmp_path / "m2.labels.jsonl").read_text().splitlines()]
    assert [x["label_revealed"] for x in lines] == [True, True]
