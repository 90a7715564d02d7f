"""The teacher API key never lands in a file or the console (issue 14 point 9): it is masked
before an error body is cut, and in every reply that is stored."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from helpers.labeling_server import (
    ChatServer,
    canned_answer,
    chat_reply,
    label_in_prompt,
    synthetic_inputs,
    write_manifest_files,
)

from sce.labeling import OpenAIChatBackend, run_labeling

SECRET = "sk-test-9f8e7d6c5b4a3f2e1d0c-SECRET"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MY_TEACHER_KEY", SECRET)


def _label(tmp_path: Path, responder, labels: list[str]):
    manifest = write_manifest_files(tmp_path, labels)
    with ChatServer(responder) as server:
        backend = OpenAIChatBackend(
            server.url, "teacher", api_key_env="MY_TEACHER_KEY", max_retries=0, timeout=10
        )
        return run_labeling(
            manifest, "caption", backend, tmp_path / "m2.jsonl",
            inputs_loader=synthetic_inputs, size=(32, 24), progress=False,
        )  # fmt: skip


def _leaks(tmp_path: Path, text: str) -> list[str]:
    """Where any 8-character piece of the key shows: the given text, or a file."""
    pieces = {SECRET[i : i + 8] for i in range(len(SECRET) - 7)}
    places = {"text": text} | {str(p): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    return [where for where, content in places.items() if any(x in content for x in pieces)]


def test_key_echoed_past_the_cut_of_an_error_body_is_masked(tmp_path, caplog, capsys) -> None:
    """The issue's case: the Authorization header ends at character 301 of a 400 body; cutting
    it to 300 characters before masking left all but the key's last character in the reason."""

    def responder(body, headers, n):
        return 400, ("x" * 249 + f" you sent {headers['authorization']} " + "y" * 100)

    caplog.set_level(logging.DEBUG)
    summary = _label(tmp_path, responder, ["collision"])
    assert summary.failed == 1
    reason = summary.failures[0]["reason"]
    assert reason.startswith("teacher: HTTP 400 from ") and "you sent Bearer ***" in reason
    captured = capsys.readouterr()
    assert _leaks(tmp_path, reason + caplog.text + captured.out + captured.err) == []


def test_key_echoed_in_a_successful_reply_is_masked(tmp_path) -> None:
    """A 200 reply quoting the header is stored (annotations and results) with the key masked."""

    def responder(body, headers, n):
        answer = json.loads(canned_answer("caption", label_in_prompt(body)))
        answer["caption"] += f" Debug: {headers['authorization']}"
        return chat_reply(json.dumps(answer))

    summary = _label(tmp_path, responder, ["collision", "normal"])
    assert summary.done == 2
    labeled = (tmp_path / "m2.jsonl").read_text()
    assert labeled.count("Debug: Bearer ***") == 2
    assert _leaks(tmp_path, "") == []
