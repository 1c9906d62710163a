"""The part every loopback API server for tests shares: scripted replies per endpoint, recorded requests.

:class:`LoopbackServer` listens on ``127.0.0.1`` at a free port, one thread per request, and
answers each endpoint (a path such as ``api/chat``) from its own queue of
:class:`~strokegraph.testing.openai_server.Reply` objects or functions of the
:class:`~strokegraph.testing.openai_server.Request`; once a queue is empty the endpoint's
``fallback`` answers, or else 418, so a test that asks for more than it scripted fails loudly.
The servers for each provider's protocol (:mod:`~strokegraph.testing.ollama_server`,
:mod:`~strokegraph.testing.anthropic_server`) are subclasses that name their endpoints and build
their replies. A reply body of ``bytes`` is sent as it is, with the reply's own ``Content-Type``.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

from strokegraph.testing.openai_server import Reply, Request, Script

__all__ = ["NO_VIOLATIONS", "LoopbackServer", "rules_plan"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128


class LoopbackServer:
    """Use as a context manager; ``url`` is where the server listens (``http://127.0.0.1:PORT``)."""

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
        endpoint = handler.path.split("?")[0].strip("/")
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        request = Request(endpoint, headers, raw, json=json.loads(raw) if raw else None)
        with self._lock:
            self.requests.append(request)
            queue = self._queues.get(endpoint)
            script = queue.pop(0) if queue else self.fallback.get(endpoint)
        if script is None:
            reply = Reply(status=418, body={"error": f"no scripted reply left for /{endpoint}"})
        else:
            reply = script(request) if callable(script) else script
        delay = self.latency + reply.delay
        if delay and self._stop.wait(delay):
            return
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        headers_out = {"Content-Type": "application/json", **reply.headers}
        try:
            handler.send_response(reply.status)
            for name, value in headers_out.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up


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
