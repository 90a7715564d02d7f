"""A crafted checkpoint whose unpickling writes a marker file, and a local HTTP server for it:
the stand-ins for a malicious checkpoint URL (tests of checkpoint loading)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch


class Payload:
    """Unpickling this runs Path.touch(marker): code from the file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def crafted_checkpoint(folder: Path) -> tuple[Path, Path]:
    """(checkpoint path, marker path): loading the checkpoint without weights_only creates
    the marker."""
    marker = folder / "code_ran"
    path = folder / "crafted.ckpt"
    torch.save({"state_dict": {}, "x": Payload(marker)}, path)
    return path, marker


@contextmanager
def serving(data: bytes) -> Iterator[tuple[str, list[str]]]:
    """(base URL, request paths seen): a local HTTP server answering every GET with `data`."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server naming)
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", requests
    finally:
        server.shutdown()
        server.server_close()
