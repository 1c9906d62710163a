"""The part every loopback API server for tests shares: scripted replies per endpoint, recorded requests.

:class:`LoopbackServer` listens on ``127.0.0.1`` at a free port, one thread per request, and
answers each endpoint (a path such as ``api/chat``) from its own queue of :class:`Reply` objects
or functions of the :class:`Request`; once a queue is empty the endpoint's ``fallback`` answers,
or else 418, so a test that asks for more than it scripted fails loudly instead of hanging. A
reply body is JSON, ``bytes`` sent as they are, or a :class:`Flood` streamed without being held;
a reply may hang (``delay``) or trickle its body a byte at a time (``drip``). Delays wait on an
event that stopping the server sets, so no handler outlives the test by more than a moment.

For concurrency and cancellation tests the server records the most requests it held at once
(``most_in_flight``), the requests it answered (``answered``), and those whose client closed the
connection while the server was still waiting to reply (``abandoned``).

The servers for each provider's protocol (:mod:`~strokegraph.testing.openai_server`,
:mod:`~strokegraph.testing.ollama_server`, :mod:`~strokegraph.testing.anthropic_server`,
:mod:`~strokegraph.testing.gemini_server`, :mod:`~strokegraph.testing.bedrock_server`) are
subclasses that name their endpoints and build their replies; one whose paths, request bodies or
error shape differ overrides the hooks ``_endpoint``, ``_parse`` or ``_error``.
"""

from __future__ import annotations

import io
import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

from PIL import Image

__all__ = ["NO_VIOLATIONS", "Flood", "LoopbackServer", "Reply", "Request", "Script", "Upload", "rules_plan"]


@dataclass(frozen=True)
class Upload:
    """A file of a multipart request."""

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

    The ``Content-Type`` is ``application/json`` unless ``headers`` name another. With ``drip`` > 0
    the headers go out at once and the body follows one byte every ``drip`` seconds, as from a
    server that trickles to keep a client waiting.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0


Script = Reply | Callable[[Request], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # The default backlog of 5 drops connections when many clients start at once (a benchmark).
    request_queue_size = 128


class LoopbackServer:
    """Use as a context manager; ``url`` is where the server listens (``http://127.0.0.1:PORT``).

    ``latency`` seconds are added before every reply, as a network and a model would; requests are
    served concurrently, so concurrent clients overlap their waits. ``fallback`` answers an
    endpoint whose queue is empty.
    """

    ENDPOINTS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, latency: float = 0.0, fallback: dict[str, Script] | None = None) -> None:
        unknown = set(fallback or {}) - set(self.ENDPOINTS)
        if unknown:
            raise ValueError(f"fallback for unknown endpoint(s) {sorted(unknown)}; expected {self.ENDPOINTS}")
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
        self._queues: dict[str, list[Script]] = {e: [] for e in self.ENDPOINTS}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the server is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, endpoint: str, *replies: Script) -> None:
        """Queue replies for ``endpoint`` (one of :attr:`ENDPOINTS`), answered in order."""
        if endpoint not in self._queues:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {self.ENDPOINTS}")
        with self._lock:
            self._queues[endpoint].extend(replies)

    def sent(self, endpoint: str) -> list[Request]:
        """The requests ``endpoint`` received, in order."""
        return [r for r in self.requests if r.endpoint == endpoint]

    def left(self) -> dict[str, int]:
        """Scripted replies not used yet, per endpoint that has some."""
        return {e: len(q) for e, q in self._queues.items() if q}

    def _endpoint(self, path: str) -> str:
        """The endpoint a request path (without its query) names: the path without its slashes."""
        return path.strip("/")

    def _parse(self, endpoint: str, headers: dict[str, str], raw: bytes) -> Request:
        """The request as recorded: a JSON body parsed into ``json``."""
        return Request(endpoint, headers, raw, json=json.loads(raw) if raw else None)

    @staticmethod
    def _error(status: int, message: str) -> Reply:
        """A failure in the protocol's error shape; a subclass names its module's ``error_reply``."""
        return Reply(status=status, body={"error": message})

    def _unscripted(self, path: str) -> Reply:
        """The 418 answer to a request for ``path`` with no scripted reply left, in the protocol's error shape."""
        return self._error(418, f"no scripted reply left for {path}")

    def __enter__(self) -> Self:
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
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        request = self._parse(self._endpoint(path), {k.lower(): v for k, v in handler.headers.items()}, raw)
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
            reply = self._unscripted(path)
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
        headers = {"Content-Type": "application/json", **reply.headers}
        if length is not None:
            headers["Content-Length"] = str(length)
        try:
            handler.send_response(reply.status)
            for name, value in headers.items():
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


_PLANNER_PROMPT = re.compile(r'^Prompt: "(.*)"$', re.MULTILINE)


def rules_plan(text: str) -> dict[str, Any] | str:
    """The planner reply that fits the request ``text`` (the ``builtin:rules`` reading of its
    ``Prompt: "..."`` line), or why there is none; what fake servers answer a planner with."""
    from strokegraph.errors import UsageError
    from strokegraph.grammar import RulesPlanner

    found = _PLANNER_PROMPT.search(text)
    if found is None:
        return "no 'Prompt: \"...\"' line in the planner request"
    try:
        scene, plan = RulesPlanner().plan(found.group(1))
    except UsageError as exc:
        return f"the rules planner cannot read the prompt: {exc}"
    return {"scene": scene.model_dump(mode="json", exclude={"prompt"}), "plan": plan.model_dump(mode="json")}


#: The critic reply that fake servers answer with by default: nothing wrong.
NO_VIOLATIONS: dict[str, Any] = {"violations": [], "detections": []}
