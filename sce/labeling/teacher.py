"""Teacher backends: an OpenAI-compatible chat-completions endpoint, or a local transformers VLM.

Both take a `TeacherPrompt` (system text + ordered text/frame parts) and return the reply text.

`OpenAIChatBackend` speaks POST {base_url}/chat/completions (vLLM, SGLang, hosted APIs) with the
standard library only. Frames travel as base64 JPEG data URLs in `image_url` parts, in prompt
order. The API key is read from an environment variable (default SCE_TEACHER_API_KEY; none is
sent when it is unset), goes only into the Authorization header, and is scrubbed from every error
message and every reply (masked before any text is cut, so no part of it survives a cut); `repr`
never shows it. Transient failures (connection errors, timeouts, HTTP 408/409/425/
429/5xx) are retried with exponential backoff (honouring Retry-After); 401/403/404 stop the run
(`TeacherFatalError`: a wrong key or model name would fail every request); other 4xx fail the
one item. A semaphore caps the requests in flight, whatever the number of calling threads.

`timeout` is a deadline per HTTP request (connect, send, status, headers and the whole reply),
not per read: socket timeouts apply to each read, so a server sending a byte a second never
trips them (a 3 s timeout kept a trickled reply running past 40 s). At the deadline a timer
shuts the request's socket down, which ends any read in progress; the request then counts as a
timeout (retried, each retry with its own deadline). A reply larger than `max_reply_bytes`
(default 8 MiB; a chat reply of 2,048 tokens is some 10 kB) fails the item without a retry, and
is refused from its Content-Length before any of it is read (a 300 MB reply was read whole, then
parsed, and downloaded again on each retry).

`TransformersBackend` loads a VLM folder with AutoProcessor / AutoModelForImageTextToText and
generates locally (one request at a time).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sce.labeling.prompts import ImagePart, TeacherPrompt, TextPart

log = logging.getLogger("sce.labeling")

DEFAULT_API_KEY_ENV = "SCE_TEACHER_API_KEY"
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
FATAL_STATUS = frozenset({401, 403, 404})
ERROR_BODY_CHARS = 300  # of an HTTP error body, in the error message
ERROR_BODY_READ = 1 << 16  # bytes read of it: the key is masked in these before the cut
DEFAULT_MAX_REPLY_BYTES = 8 << 20


class TeacherError(RuntimeError):
    """A teacher request failed (after its retries); the item is recorded as failed."""


class TeacherFatalError(TeacherError):
    """A failure every later request would repeat (bad key, unknown model): stop the run."""


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Deadline:
    """One HTTP request's deadline: `seconds` after it starts, the request's socket is shut down
    (both ways), which ends a read in progress at once; `expired` then says why it ended."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def attach(self, sock: socket.socket) -> socket.socket:
        """Watch the request's (latest) socket: the raw one, then its TLS wrapper."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


def _watched(connection_class: type[HTTPConnection], deadline: _Deadline) -> type:
    """`connection_class` whose sockets the deadline watches from their creation on."""

    class Watched(connection_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            create = self._create_connection
            self._create_connection = lambda *a, **k: deadline.attach(create(*a, **k))

        def connect(self) -> None:
            super().connect()
            deadline.attach(self.sock)  # HTTPS: the TLS socket now wraps the raw one

    return Watched


class _DeadlineMixin:
    """A urllib handler opening its connections under a deadline (proxies keep working: the
    ProxyHandler only rewrites the request)."""

    deadline: _Deadline

    def do_open(self, http_class: type[HTTPConnection], req: Any, **kwargs: Any) -> Any:
        return super().do_open(_watched(http_class, self.deadline), req, **kwargs)  # type: ignore[misc]


class _DeadlineHTTPHandler(_DeadlineMixin, urllib.request.HTTPHandler):
    pass


class _DeadlineHTTPSHandler(_DeadlineMixin, urllib.request.HTTPSHandler):
    pass


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    handlers = (_DeadlineHTTPHandler(), _DeadlineHTTPSHandler())
    for handler in handlers:
        handler.deadline = deadline
    return urllib.request.build_opener(*handlers)


class TeacherBackend(Protocol):
    """What the pipeline needs from a teacher."""

    name: str
    concurrency: int

    def complete(self, prompt: TeacherPrompt, schema: dict[str, Any] | None = None) -> str:
        """The reply to `prompt` (`schema`: the JSON answer's schema, for structured output)."""
        ...


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of a uint8 [H, W, 3] RGB frame."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB").save(
        buffer, format="JPEG", quality=quality
    )
    return buffer.getvalue()


def jpeg_data_url(image: np.ndarray, quality: int = 90) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(image, quality)).decode("ascii")


def openai_messages(prompt: TeacherPrompt, jpeg_quality: int = 90) -> list[dict[str, Any]]:
    """Chat-completions messages: the system text, then the user turn's text and image parts."""
    content: list[dict[str, Any]] = []
    for part in prompt.parts:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            url = jpeg_data_url(part.image, jpeg_quality)
            content.append({"type": "image_url", "image_url": {"url": url}})
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": content}]


def reply_text(data: Any) -> str:
    """The assistant text of a chat-completions response; a separate reasoning field (vLLM's
    `reasoning_content`, some servers' `reasoning`) is put back in front as <think>...</think>."""
    try:
        message = data["choices"][0]["message"]
    except (KeyError, IndexError, TypeError) as err:
        raise _Transient(f"response without choices[0].message ({type(err).__name__})") from err
    content = message.get("content") or ""
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning.strip() and "<think>" not in content:
        content = f"<think>{reasoning.strip()}</think>\n{content}"
    return content


class OpenAIChatBackend:
    """Teacher behind an OpenAI-compatible chat-completions endpoint (stdlib HTTP).

    Args:
        base_url: the API root, e.g. "http://127.0.0.1:8000/v1" (a URL that already ends with
            /chat/completions is used as is).
        model: the served model name.
        api_key_env: environment variable holding the API key (unset: no Authorization header).
        timeout: deadline in seconds of one HTTP request, the whole reply included (each
            retry has its own).
        max_reply_bytes: largest reply accepted; a larger one fails the item, not retried.
        max_retries: retries of a transient failure (total attempts = max_retries + 1).
        backoff: first retry delay in seconds, doubled each retry, capped by max_backoff.
        concurrency: most requests in flight at once.
        max_tokens, temperature: generation settings sent with every request.
        jpeg_quality: quality of the frames' JPEG encoding.
        json_mode: send the task's JSON schema as `response_format` (servers with structured
            output: vLLM, SGLang, OpenAI).
        extra_body: more request fields (e.g. {"top_p": 0.9}).
        sleep: the sleep function (tests pass a fake one).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        timeout: float = 120.0,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        concurrency: int = 4,
        max_tokens: int = 2048,
        temperature: float = 0.2,
        jpeg_quality: int = 90,
        json_mode: bool = False,
        extra_body: dict[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if concurrency < 1 or max_retries < 0 or timeout <= 0 or max_reply_bytes < 1:
            raise ValueError(
                "concurrency >= 1, max_retries >= 0, timeout > 0 and max_reply_bytes >= 1 are "
                "required"
            )
        base = base_url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model
        self.name = model
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or None
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.jpeg_quality = jpeg_quality
        self.json_mode = json_mode
        self.extra_body = dict(extra_body or {})
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(concurrency)

    def __repr__(self) -> str:  # never the key
        key = f"${self.api_key_env} set" if self._api_key else f"${self.api_key_env} unset"
        return f"OpenAIChatBackend(url={self.url!r}, model={self.model!r}, key={key})"

    def _scrub(self, text: str) -> str:
        """`text` with the API key masked: apply it to whole texts, before any cut (a cut key
        no longer matches and would leak all but its cut-off end)."""
        return text.replace(self._api_key, "***") if self._api_key else text

    def request_body(self, prompt: TeacherPrompt, schema: dict[str, Any] | None = None) -> dict:
        """The JSON body of a request (exposed for tests and dry runs)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": openai_messages(prompt, self.jpeg_quality),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.json_mode and schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema},
            }
        body.update(self.extra_body)
        return body

    def complete(self, prompt: TeacherPrompt, schema: dict[str, Any] | None = None) -> str:
        """Send one prompt (retrying transient failures) and return the reply text."""
        payload = json.dumps(self.request_body(prompt, schema)).encode("utf-8")
        last = ""
        with self._slots:
            for attempt in range(self.max_retries + 1):
                try:
                    return self._post(payload)
                except _Transient as err:
                    last = self._scrub(str(err))
                    if attempt == self.max_retries:
                        break
                    delay = min(self.max_backoff, self.backoff * 2**attempt)
                    delay *= 1.0 + 0.1 * random.random()  # jitter: workers do not retry in step
                    if err.retry_after is not None:
                        delay = max(delay, min(err.retry_after, self.max_backoff))
                    log.warning(
                        "teacher request failed (%s); retry %d/%d in %.2f s",
                        last,
                        attempt + 1,
                        self.max_retries,
                        delay,
                    )
                    self._sleep(delay)
        raise TeacherError(f"request failed after {self.max_retries + 1} attempts: {last}")

    def _post(self, payload: bytes) -> str:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
        late = f"no complete reply within the {self.timeout:g} s deadline of a request"
        with _Deadline(self.timeout) as deadline:
            try:
                with _opener(deadline).open(request, timeout=self.timeout) as response:
                    raw = self._read_reply(response)
            except urllib.error.HTTPError as err:
                self._raise_for_status(err)
            except (TimeoutError, urllib.error.URLError, HTTPException, OSError) as err:
                if deadline.expired:
                    raise _Transient(late) from None
                reason = getattr(err, "reason", err)
                raise _Transient(f"{type(err).__name__}: {reason}") from None
            if deadline.expired:  # a reply without a length ends at the shutdown: cut short
                raise _Transient(late)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            text = self._scrub(raw.decode("utf-8", "replace"))
            raise _Transient(f"response is not JSON: {text[:200]!r}") from None
        # A server may echo the request (key included) in a 200 reply: the reply is stored.
        return self._scrub(reply_text(data))

    def _read_reply(self, response: Any) -> bytes:
        """The reply body, at most max_reply_bytes (refused from its Content-Length unread)."""
        limit = self.max_reply_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TeacherError(f"reply of {int(declared)} bytes is larger than {limit} bytes")
        raw = response.read(limit + 1)
        if len(raw) > limit:
            raise TeacherError(f"reply larger than {limit} bytes")
        return raw

    def _raise_for_status(self, err: urllib.error.HTTPError) -> None:
        try:
            body = err.read(ERROR_BODY_READ).decode("utf-8", "replace")
        except Exception:  # the body is only for the message
            body = ""
        detail = self._scrub(body)[:ERROR_BODY_CHARS]
        message = self._scrub(f"HTTP {err.code} from {self.url}: {detail}".strip())
        if err.code in RETRY_STATUS:
            retry_after = err.headers.get("Retry-After") if err.headers else None
            try:
                seconds = float(retry_after) if retry_after is not None else None
            except ValueError:
                seconds = None
            raise _Transient(message, seconds) from None
        if err.code in FATAL_STATUS:
            raise TeacherFatalError(message) from None
        raise TeacherError(message) from None


class TransformersBackend:
    """A local VLM teacher loaded from a folder (AutoProcessor + AutoModelForImageTextToText).

    Args:
        model_dir: folder written by save_pretrained (model + processor).
        device: torch device (default: cuda when available, else cpu).
        dtype: torch dtype name or "auto".
        max_new_tokens: generation length.
        temperature: 0 decodes greedily.
    """

    concurrency = 1

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str | None = None,
        dtype: str = "auto",
        max_new_tokens: int = 1024,
        temperature: float = 0.0,
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.processor = AutoProcessor.from_pretrained(model_dir)
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch_dtype)
        self.model.to(self.device).eval()
        self.name = Path(model_dir).name
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self._lock = threading.Lock()

    def messages(self, prompt: TeacherPrompt) -> tuple[list[dict[str, Any]], list[Any]]:
        """Chat messages with image placeholders, and the PIL images in the same order."""
        from PIL import Image

        content: list[dict[str, Any]] = []
        images = []
        for part in prompt.parts:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            else:
                content.append({"type": "image"})
                images.append(Image.fromarray(np.asarray(part.image, dtype=np.uint8), "RGB"))
        messages = [
            {"role": "system", "content": [{"type": "text", "text": prompt.system}]},
            {"role": "user", "content": content},
        ]
        return messages, images

    def complete(self, prompt: TeacherPrompt, schema: dict[str, Any] | None = None) -> str:
        """Generate the reply locally (schema is ignored: no constrained decoding here)."""
        import torch

        messages, images = self.messages(prompt)
        text = self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt")
        inputs = inputs.to(self.device)
        sampling = (
            {"do_sample": True, "temperature": self.temperature}
            if self.temperature > 0
            else {"do_sample": False}
        )
        with self._lock, torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, **sampling)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]
