"""A loopback OpenAI-compatible server for tests and benchmarks: scripted replies, faults, latency.

It speaks ``/v1/chat/completions``, ``/v1/images/generations`` and ``/v1/images/edits`` (multipart)
on ``127.0.0.1`` at a free port, one thread per request, and records every request. Each endpoint
answers from its own queue of :class:`Reply` objects (or functions of the :class:`Request` returning
one); once a queue is empty the endpoint's ``fallback`` answers, or else 418, so a test that asks for
more than it scripted fails loudly instead of hanging. :func:`any_prompt_replies` are fallbacks that
fit any plannable prompt, for driving whole runs. Delays wait on an event that stopping the server
sets, so no handler outlives the test by more than a moment.

Hostile servers: a :class:`Reply` may hang (``delay``) or trickle its body a byte at a time
(``drip``); :func:`huge_reply` streams a body of any size without holding it in memory.

For concurrency and cancellation tests the server also records the most requests it held at once
(``most_in_flight``), the requests it answered (``answered``), and those whose client closed the
connection while the server was still waiting to reply (``abandoned``).
"""

from __future__ import annotations

import base64
import io
import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import collapse_rfc2231_value
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

__all__ = [
    "ENDPOINTS",
    "FakeOpenAI",
    "Flood",
    "Reply",
    "Request",
    "Script",
    "Upload",
    "any_prompt_replies",
    "chat_reply",
    "error_reply",
    "huge_reply",
    "image_reply",
]

ENDPOINTS = ("chat/completions", "images/generations", "images/edits")


@dataclass(frozen=True)
class Upload:
    filename: str | None
    content_type: str
    data: bytes

    def image(self) -> Image.Image:
        with Image.open(io.BytesIO(self.data)) as im:
            im.load()
            return im.copy()


@dataclass(frozen=True)
class Request:
    endpoint: str
    headers: dict[str, str]
    """Lower-case names."""
    raw: bytes
    json: dict[str, Any] | None = None
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)


@dataclass(frozen=True)
class Flood:
    """A body of ``size`` bytes made while it is sent: ``prefix``, then ``fill`` repeated.

    With ``declare_length`` the reply carries a Content-Length; without, the body ends when the
    server closes the connection, so a client learns its size only by reading it.
    """

    size: int
    prefix: bytes = b""
    fill: bytes = b"A"
    declare_length: bool = True

    def chunks(self, chunk_size: int = 2**20) -> Iterator[bytes]:
        head = self.prefix[: self.size]
        yield head
        left = self.size - len(head)
        block = (self.fill * (chunk_size // len(self.fill) + 1))[:chunk_size]
        while left > 0:
            yield block[:left]
            left -= len(block)


@dataclass(frozen=True)
class Reply:
    """``status`` and ``body`` (JSON-able, ``bytes`` or a :class:`Flood`), after ``delay`` seconds.

    With ``drip`` > 0 the headers go out at once and the body follows one byte every ``drip``
    seconds, as from a server that trickles to keep a client waiting.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0


Script = Reply | Callable[[Request], Reply]


def chat_reply(content: str, *, prompt_tokens: int = 11, completion_tokens: int = 7) -> Reply:
    return Reply(
        body={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "test",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content, "refusal": None},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def image_reply(image: Image.Image, *, input_tokens: int = 50, output_tokens: int = 400) -> Reply:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return Reply(
        body={
            "created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(buf.getvalue()).decode("ascii")}],
            "size": f"{image.width}x{image.height}",
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": input_tokens},
            },
        }
    )


def error_reply(status: int, message: str = "scripted failure") -> Reply:
    # retry-after-ms keeps the client's backoff between retries at a millisecond.
    return Reply(
        status=status,
        body={"error": {"message": message, "type": "test_error", "param": None, "code": None}},
        headers={"retry-after-ms": "1"},
    )


def huge_reply(size: int, *, declare_length: bool = True) -> Reply:
    """A 200 reply of ``size`` bytes that starts like an image reply and is streamed, never held."""
    return Reply(body=Flood(size, prefix=b'{"created": 0, "data": [{"b64_json": "', declare_length=declare_length))


def any_prompt_replies(image_size: tuple[int, int] = (64, 64)) -> dict[str, Script]:
    """Fallbacks that carry a whole run through for any prompt the rules planner can read.

    The planner gets the ``builtin:rules`` reading of the prompt in its request, the critic finds
    no violations, and every image request gets a blank PNG of ``image_size``. A prompt the rules
    planner cannot read, or a chat request that is neither planner nor critic, is answered 400.
    """
    image = image_reply(Image.new("RGB", image_size, "white"))
    return {"chat/completions": _any_prompt_chat, "images/generations": image, "images/edits": image}


_PLANNER_PROMPT = re.compile(r'^Prompt: "(.*)"$', re.MULTILINE)


def _any_prompt_chat(request: Request) -> Reply:
    from strokegraph.errors import UsageError
    from strokegraph.grammar import RulesPlanner

    body = request.json or {}
    schema = body.get("response_format", {}).get("json_schema", {}).get("name")
    if schema == "CriticReply":
        return chat_reply(json.dumps({"violations": [], "detections": []}))
    if schema != "PlannerReply":
        return error_reply(400, f"the fake answers planner and critic requests only, not {schema!r}")
    text = "".join(p.get("text", "") for p in body["messages"][0]["content"] if isinstance(p, dict))
    found = _PLANNER_PROMPT.search(text)
    if found is None:
        return error_reply(400, "no 'Prompt: \"...\"' line in the planner request")
    try:
        scene, plan = RulesPlanner().plan(found.group(1))
    except UsageError as exc:
        return error_reply(400, f"the rules planner cannot read the prompt: {exc}")
    reply = {"scene": scene.model_dump(mode="json", exclude={"prompt"}), "plan": plan.model_dump(mode="json")}
    return chat_reply(json.dumps(reply))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # The default backlog of 5 drops connections when many clients start at once (a benchmark).
    request_queue_size = 128


class FakeOpenAI:
    """Use as a context manager; ``url`` is the ``base_url`` to give the client.

    ``latency`` seconds are added before every reply, as a network and a model would; requests are
    served concurrently, so concurrent clients overlap their waits. ``fallback`` answers an
    endpoint whose queue is empty (see :func:`any_prompt_replies`).
    """

    def __init__(self, *, latency: float = 0.0, fallback: dict[str, Script] | None = None) -> None:
        unknown = set(fallback or {}) - set(ENDPOINTS)
        if unknown:
            raise ValueError(f"fallback for unknown endpoint(s) {sorted(unknown)}; expected {ENDPOINTS}")
        if not latency >= 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
        self.latency = latency
        self.fallback = dict(fallback or {})
        self.requests: list[Request] = []
        self.answered: list[Request] = []
        """Requests whose reply was sent whole."""
        self.abandoned: list[Request] = []
        """Requests whose client closed the connection before the reply's delay was over."""
        self.in_flight = 0
        self.most_in_flight = 0
        """The most requests received and not yet answered (or abandoned) at one time."""
        self._queues: dict[str, list[Script]] = {e: [] for e in ENDPOINTS}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the server is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, endpoint: str, *replies: Script) -> None:
        """Queue replies for ``endpoint`` (one of :data:`ENDPOINTS`), answered in order."""
        if endpoint not in self._queues:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")
        with self._lock:
            self._queues[endpoint].extend(replies)

    def sent(self, endpoint: str) -> list[Request]:
        """The requests ``endpoint`` received, in order."""
        return [r for r in self.requests if r.endpoint == endpoint]

    def left(self) -> dict[str, int]:
        """Scripted replies not used yet, per endpoint that has some."""
        return {e: len(q) for e, q in self._queues.items() if q}

    def __enter__(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
                fake._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        endpoint = path.removeprefix("/v1/")
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        request = _parse(endpoint, {k.lower(): v for k, v in handler.headers.items()}, raw)
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self._reply(handler, request, path)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _reply(self, handler: BaseHTTPRequestHandler, request: Request, path: str) -> None:
        with self._lock:
            queue = self._queues.get(request.endpoint)
            script = queue.pop(0) if queue else self.fallback.get(request.endpoint)
        if script is None:
            reply = Reply(status=418, body={"error": {"message": f"no scripted reply left for {path}"}})
        else:
            reply = script(request) if callable(script) else script
        delay = self.latency + reply.delay
        if delay and not self._wait(handler.connection, delay):
            with self._lock:
                if not self._stop.is_set():
                    self.abandoned.append(request)
            return
        if isinstance(reply.body, Flood):
            chunks, length = reply.body.chunks(), reply.body.size if reply.body.declare_length else None
        else:
            data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            chunks, length = iter((data,)), len(data)
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            if length is not None:
                handler.send_header("Content-Length", str(length))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            for chunk in chunks:
                if not reply.drip:
                    handler.wfile.write(chunk)
                    continue
                for i in range(len(chunk)):  # wfile is unbuffered: each byte leaves at once
                    if self._stop.wait(reply.drip):
                        return
                    handler.wfile.write(chunk[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (a timeout test)
        with self._lock:
            self.answered.append(request)

    def _wait(self, connection: socket.socket, seconds: float) -> bool:
        """Wait ``seconds`` before replying; False if the server stops or the client hangs up first.

        A client waiting for its reply sends nothing more (HTTP/1.1), so a readable socket here
        means it closed the connection (or reset it).
        """
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._stop.is_set():
                return False
            readable, _, _ = select.select([connection], [], [], min(left, 0.05))
            if readable:
                try:
                    gone = connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    gone = True
                if gone:
                    return False
                self._stop.wait(min(left, 0.05))  # bytes of a next request: not a hang-up
        return not self._stop.is_set()


def _form_name(part: Message) -> str:
    """A multipart part's field name (Content-Disposition's ``name``); "" when it has none."""
    name = part.get_param("name", "", header="content-disposition")
    # get_param gives a (charset, language, value) tuple for an RFC 2231-encoded value (name*=...).
    return collapse_rfc2231_value(name) if isinstance(name, tuple) else name


def _payload(part: Message) -> bytes:
    """A multipart part's body, transfer-decoded."""
    payload = part.get_payload(decode=True)
    # Decoding gives bytes for a leaf part and None for a nested multipart one, never a Message.
    return payload if isinstance(payload, bytes) else b""


def _parse(endpoint: str, headers: dict[str, str], raw: bytes) -> Request:
    content_type = headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        fields: dict[str, str] = {}
        files: dict[str, Upload] = {}
        for part in message.iter_parts():
            name, payload = _form_name(part), _payload(part)
            if part.get_filename() is None:
                fields[name] = payload.decode()
            else:
                files[name] = Upload(part.get_filename(), part.get_content_type(), payload)
        return Request(endpoint, headers, raw, fields=fields, files=files)
    body = json.loads(raw) if raw else None
    return Request(endpoint, headers, raw, json=body)
