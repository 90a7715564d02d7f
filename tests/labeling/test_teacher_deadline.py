"""Issue 26.3: `sce label --timeout` is a deadline per HTTP request, not per read, and a teacher
reply has a size cap. Loopback servers that trickle or flood their replies (helpers.labeling_server)."""

from __future__ import annotations

import argparse
import json
import time

import pytest
from helpers.labeling_server import ChatServer, Trickle, synthetic_inputs, write_manifest_files

from sce.data.schema import ClipRecord
from sce.labeling import (
    OpenAIChatBackend,
    TeacherError,
    add_label_arguments,
    build_teacher_prompt,
    get_template,
    label_command,
)

REPLY = json.dumps({"choices": [{"message": {"content": "a" * 150}}]}).encode()


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


@pytest.fixture(scope="module")
def prompt():
    record = ClipRecord(
        id="c0", video="c0.mp4", label="collision", source="synthetic", split="train"
    )
    return build_teacher_prompt(record, synthetic_inputs(record), get_template("reasoning"))


@pytest.mark.parametrize("slow_head", [False, True], ids=["body", "status-and-headers"])
def test_a_trickled_reply_ends_at_the_deadline_of_the_request(prompt, slow_head):
    """A byte every 0.05 s never trips a per-read timeout of 1 s; the reply (~190 bytes, ~10 s)
    must still end at 1 s, and each retry gets its own 1 s."""
    reply = Trickle(REPLY, interval=0.05, slow_head=slow_head)
    with ChatServer(lambda body, headers, n: (200, reply)) as server:
        backend = OpenAIChatBackend(
            server.url, "m", timeout=1.0, max_retries=1, sleep=lambda s: None
        )
        start = time.monotonic()
        with pytest.raises(TeacherError, match="no complete reply within the 1 s deadline"):
            backend.complete(prompt)
        elapsed = time.monotonic() - start
        assert len(server.requests) == 2
    assert 2.0 <= elapsed < 3.0  # two attempts of 1 s each, not 2 x 10 s
    if not slow_head:  # ~20 body bytes per attempt before its deadline, of 190
        assert server.body_bytes_sent < 2 * 30


def test_a_reply_within_the_deadline_is_read_whole(prompt):
    reply = Trickle(REPLY, interval=0.0, chunk=16)
    with ChatServer(lambda body, headers, n: (200, reply)) as server:
        assert OpenAIChatBackend(server.url, "m", timeout=5.0).complete(prompt) == "a" * 150


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-length"])
def test_an_oversized_reply_fails_the_item_once_without_reading_it_all(prompt, declared):
    """A reply over max_reply_bytes is not retried (it would come again, whole); with a
    Content-Length it is refused before its body is read, without one after limit + 1 bytes."""
    big = b'{"choices": [{"message": {"content": "' + b"x" * (4 << 20) + b'"}}]}'
    reply = Trickle(big, interval=0.0, chunk=1 << 16, length=declared)
    with ChatServer(lambda body, headers, n: (200, reply)) as server:
        backend = OpenAIChatBackend(server.url, "m", max_reply_bytes=1 << 20, max_retries=3)
        expected = f"reply of {len(big)} bytes is larger" if declared else "reply larger than"
        with pytest.raises(
            TeacherError, match=f"{expected} than 1048576 bytes|{expected} 1048576 bytes"
        ):
            backend.complete(prompt)
        assert len(server.requests) == 1


def test_sce_label_timeout_bounds_a_trickling_teacher(tmp_path, monkeypatch, capsys):
    """The issue's probe through `sce label`: --timeout 1 against a server trickling a byte
    every 0.05 s; every item fails at its deadline instead of after the whole reply."""
    import sce.labeling.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_clip_inputs", synthetic_inputs)
    manifest = write_manifest_files(tmp_path, ["collision", "normal"])
    reply = Trickle(REPLY, interval=0.05)
    with ChatServer(lambda body, headers, n: (200, reply)) as server:
        args = add_label_arguments(argparse.ArgumentParser()).parse_args([
            "--manifest", str(manifest), "--out", str(tmp_path / "m2.jsonl"), "--tasks", "caption",
            "--base-url", server.url, "--model", "m", "--timeout", "1", "--max-retries", "0",
            "--concurrency", "2", "--no-progress", "--max-reply-mb", "0.5",
        ])  # fmt: skip
        start = time.monotonic()
        assert label_command(args) == 1
        elapsed = time.monotonic() - start
    assert elapsed < 3.0
    out = capsys.readouterr().out
    assert "labeling: 2 items: 0 done, 2 failed" in out
    assert "no complete reply within the 1 s deadline of a request" in out
