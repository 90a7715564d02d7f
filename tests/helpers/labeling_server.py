"""Test helpers for sce.labeling: a loopback chat-completions server, canned teacher answers,
synthetic clip inputs, and a child-process entry point for the kill/restart test.

Run as a script (`python tests/helpers/labeling_server.py MANIFEST OUT URL`) it labels MANIFEST against the
server at URL with synthetic inputs; the test kills it midway.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

Responder = Callable[[dict[str, Any], dict[str, str], int], tuple[int, Any]]


@dataclass
class Trickle:
    """A reply written `chunk` bytes at a time, `interval` seconds apart (a hostile or stalled
    server): the body only, or the status line and headers too (`slow_head`); without a
    Content-Length when `length` is False (the body then ends when the connection closes)."""

    body: bytes
    interval: float = 0.1
    chunk: int = 1
    slow_head: bool = False
    length: bool = True


class ChatServer:
    """POST /v1/chat/completions on 127.0.0.1 (free port) in a thread.

    `responder(body, headers, n)` returns (status, payload) or (status, payload, headers): a dict
    payload is sent as JSON, a string as is. Every request is recorded (body, lower-cased headers). Bounded: the server stops by itself
    after `max_requests` requests or `lifetime` seconds, whichever comes first.
    """

    def __init__(self, responder: Responder, max_requests: int = 500, lifetime: float = 60.0):
        self.responder = responder
        self.max_requests = max_requests
        self.requests: list[dict[str, Any]] = []
        self.body_bytes_sent = 0  # of Trickle replies: how much of them the client let through
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    n = len(server.requests)
                    server.requests.append({"path": self.path, "body": body, "headers": headers})
                    last = n + 1 >= server.max_requests
                extra: list[dict[str, str]] = []
                if self.path != "/v1/chat/completions":
                    status, payload = 404, {"error": "not found"}
                else:
                    status, payload, *extra = server.responder(body, headers, n)
                if isinstance(payload, Trickle):
                    self._trickle(status, payload)
                    return
                data = payload if isinstance(payload, bytes) else (
                    payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                )  # fmt: skip
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (extra[0] if extra else {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed
                if last:
                    threading.Thread(target=server.stop, daemon=True).start()

            def _trickle(self, status: int, reply: Trickle) -> None:
                length = f"Content-Length: {len(reply.body)}\r\n" if reply.length else ""
                head = f"HTTP/1.0 {status} OK\r\nContent-Type: application/json\r\n{length}\r\n"
                step = reply.chunk
                pieces = [head.encode()[i : i + step] for i in range(0, len(head), step)]
                pieces = pieces if reply.slow_head else [head.encode()]
                n_head = len(pieces)
                pieces += [reply.body[i : i + step] for i in range(0, len(reply.body), step)]
                self.close_connection = True
                for k, piece in enumerate(pieces):
                    if server._stopped.is_set():
                        return
                    try:
                        self.wfile.write(piece)
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the client gave up
                    if k >= n_head:
                        with server._lock:
                            server.body_bytes_sent += len(piece)
                    if k and reply.interval:  # the head goes at once unless slow_head
                        time.sleep(reply.interval)

            def log_message(self, *args):  # keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            self._httpd.shutdown()

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        self.stop()
        self._thread.join(timeout=5)
        self._httpd.server_close()


def chat_reply(content: str) -> tuple[int, dict[str, Any]]:
    return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


def user_text(body: dict[str, Any]) -> str:
    content = body["messages"][1]["content"]
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def image_urls(body: dict[str, Any]) -> list[str]:
    content = body["messages"][1]["content"]
    return [p["image_url"]["url"] for p in content if p.get("type") == "image_url"]


def task_of(body: dict[str, Any]) -> str:
    text = user_text(body)
    for marker, task in (
        ('"reasons"', "reasoning_vqa"),
        ('"items"', "vqa"),
        ('"think"', "reasoning"),
    ):
        if marker in text:
            return task
    return "caption"


# What the fake teacher sees of a clip of each label when the label is hidden: the experts'
# outputs (paper 000's M), which `write_manifest_files` puts in each record's metadata.
EXPERTS = {
    "collision": {"crash_detected": True},
    "near_collision": {"crash_detected": False, "maneuver": "hard_braking"},
    "normal": {"crash_detected": False},
}
_EXPERT_LINES = (
    ("- harsh-manoeuvre classifier: hard braking", "near_collision"),
    ("- IMU crash detector: crash detected", "collision"),
    ("- IMU crash detector: no crash detected", "normal"),
)


def revealed_label(body: dict[str, Any]) -> str | None:
    """The event type the prompt states (only a run with reveal_label does), else None."""
    text = user_text(body)
    if "A near-collision happens" in text:
        return "near_collision"
    if "A collision happens" in text:
        return "collision"
    if "drives normally" in text:
        return "normal"
    return None


def label_in_prompt(body: dict[str, Any]) -> str:
    """The event the fake teacher recognises: the revealed label, else the experts' outputs."""
    revealed = revealed_label(body)
    if revealed is not None:
        return revealed
    text = user_text(body)
    for line, label in _EXPERT_LINES:
        if line in text:
            return label
    raise AssertionError("neither an event type nor expert outputs in the prompt")


LETTER = {"collision": "A", "near_collision": "B", "normal": "C"}
EVENT_TEXT = {
    "collision": "A collision",
    "near_collision": "A near collision",
    "normal": "Normal driving",
}


def canned_answer(task: str, label: str, reasoning_letter: str | None = None) -> str:
    """A valid answer for `task` on a clip of `label` (reasoning answers `reasoning_letter`)."""
    if task == "caption":
        return json.dumps({
            "caption": f"The ego vehicle is in {EVENT_TEXT[label].lower()} situation with a white car ahead.",
            "questions": [
                {"type": "open", "question": "What does the white car do?", "answer": "It brakes."},
                {"type": "closed", "question": "Is it raining?", "answer": "no"},
            ],
        })  # fmt: skip
    if task == "vqa":
        order = ["collision", "near_collision", "normal"]
        items = [
            {"dimension": "event_type", "question": "What event happens?",
             "options": [EVENT_TEXT[x] for x in order], "answer": "ABC"[order.index(label)]},
        ] + [
            {"dimension": d, "question": f"Question about {d}?", "options": ["yes", "no", "unclear"],
             "answer": "A"}
            for d in ("weather", "road", "ego motion", "scene")
        ]  # fmt: skip
        return "Here you go:\n```json\n" + json.dumps({"items": items}) + "\n```"
    if task == "reasoning_vqa":
        return json.dumps({
            "question": "Why does the white car slow down?",
            "options": ["A. to turn", "B. to park", "C. a red light", "D. a pedestrian"],
            "answer": "D", "reasons": ["The car brakes.", "A person crosses.", "So it yields."],
        })  # fmt: skip
    letter = reasoning_letter or LETTER[label]
    return json.dumps(
        {"think": f"I watch the frames closely and conclude {EVENT_TEXT[label]}.", "answer": letter}
    )


def canned_responder(body: dict[str, Any], headers: dict[str, str], n: int) -> tuple[int, Any]:
    """Answers every task correctly for the label stated in the prompt."""
    return chat_reply(canned_answer(task_of(body), label_in_prompt(body)))


def synthetic_inputs(record, fps=3.0, size=(32, 24), before=4.0, after=2.0, with_frames=True):
    """TeacherClipInputs without decoding anything: frame k is filled with 10*k; a_x = -k m/s^2."""
    from sce.data.imu import FrameTelemetry
    from sce.labeling.prompts import TeacherClipInputs

    n = int(round((before + after) * fps))
    times = np.round(np.arange(n) / fps, 6)
    width, height = (32, 24) if size is None else size
    frames = (
        np.stack([np.full((height, width, 3), 10 * k, np.uint8) for k in range(n)])
        if with_frames
        else None
    )
    accel = np.stack([-np.arange(n, dtype=float), np.full(n, 0.5), np.full(n, 9.8)], axis=1)
    telemetry = FrameTelemetry(times, accel, np.full(n, 0.01), np.linspace(10, 4, n))
    return TeacherClipInputs(frame_times=times, frames=frames, telemetry=telemetry, event_time=before,
                      source_size=(640, 480), fps=fps)  # fmt: skip


def write_manifest_files(
    folder: Path, labels: list[str], metadata: list[dict] | None = None
) -> Path:
    """A manifest of len(labels) clips with placeholder video files (synthetic_inputs ignores
    them); each record's metadata holds its label's expert outputs (EXPERTS), then `metadata`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, label in enumerate(labels):
        (folder / f"clip{i}.mp4").write_bytes(b"")
        meta = {**EXPERTS.get(label, {}), **(metadata or [{}] * len(labels))[i]}
        lines.append(json.dumps({"id": f"clip{i}", "video": f"clip{i}.mp4", "label": label,
                                 "source": "synthetic", "split": "train", "metadata": meta}))  # fmt: skip
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def count_lines_per_key(results: Path) -> dict[tuple[str, str, str], int]:
    counts: dict[tuple[str, str, str], int] = {}
    for line in results.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        key = (r["clip_id"], r["task"], r["version"])
        counts[key] = counts.get(key, 0) + 1
    return counts


_DATA_URL = re.compile(r"^data:image/jpeg;base64,[A-Za-z0-9+/=]+$")


def is_jpeg_data_url(url: str) -> bool:
    return bool(_DATA_URL.match(url))


def main(argv: list[str]) -> int:
    """Child process of the kill test: label a manifest with 2 workers against a server."""
    from sce.labeling import OpenAIChatBackend, run_labeling

    manifest, out, url = argv
    backend = OpenAIChatBackend(url, "teacher", concurrency=2, max_retries=0, timeout=30)
    run_labeling(manifest, "caption,reasoning", backend, out, inputs_loader=synthetic_inputs,
                 size=(32, 24), progress=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
