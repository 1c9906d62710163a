"""The HTTP client under the OpenAI backends: a deadline per request, a cap on reply bytes, cancellation.

openai 3.x sends through an ``httpx2.Client``, whose timeouts bound each network operation, not a
request: a server that sends a byte every few seconds holds a call for ever, and a reply is read
whole however large it is. And a call blocked in one of LangGraph's worker threads cannot be
interrupted: Ctrl-C reaches the main thread, which then waits for the worker.

:class:`BoundedClient` fixes the three where the bytes move, in the network streams of its
connection pools: every read and write of a request attempt waits at most until the attempt's
deadline, the bytes received per attempt are counted against a cap, and a stream in use by a call
that :func:`cancel_all` cancelled is shut down, which wakes the thread blocked on it.

Imports httpx2 and httpcore2; :mod:`strokegraph.tools.openai_api` imports this module only when it
builds a client.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore2
import httpx2
from openai import DefaultHttpxClient, OpenAI

__all__ = ["BoundedClient", "CancellableOpenAI", "Cancelled", "RefusedReply", "ReplyTooLarge", "cancel_all", "tracked"]

# Writes go out in pieces of this size, each under the deadline: a socket's own timeout restarts
# with every send that makes progress, so one large write to a slow reader could overrun it.
_PIECE = 64 * 1024


class Cancelled(Exception):
    """The call was cancelled by :func:`cancel_all` while it ran."""


class RefusedReply(Exception):
    """The reply breaks a limit; the message says which, in one line."""


class ReplyTooLarge(RefusedReply):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the reply is larger than the {_size(limit)} limit; refused before reading it all")
        self.limit = limit


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


class _Call:
    """One tracked call: whether it was cancelled, and the streams it is reading or writing now."""

    __slots__ = ("cancelled", "streams")

    def __init__(self) -> None:
        self.cancelled = False
        self.streams: set[_Stream] = set()


# The calls in flight, and per thread: its call, and the deadline and byte budget of its attempt.
# No locks: cancel_all runs in a signal handler, which may interrupt the main thread anywhere.
_calls: set[_Call] = set()
_local = threading.local()


@contextmanager
def tracked() -> Iterator[None]:
    """Make the requests this thread sends inside the block cancellable by :func:`cancel_all`.

    A cancelled request raises :class:`Cancelled` from the client's call, without the client's
    retries; the block's later requests raise it before they are sent.
    """
    call = _Call()
    outer = getattr(_local, "call", None)
    _calls.add(call)
    _local.call = call
    try:
        yield
    finally:
        _local.call = outer
        _calls.discard(call)


def cancel_all() -> None:
    """Cancel every tracked call in flight in this process, and wake the threads blocked in them.

    Takes no lock and does not wait, so a SIGINT handler may call it.
    """
    for call in list(_calls):
        call.cancelled = True
        # Set before the streams are read: a stream added after this loop sees the flag itself.
        for stream in list(call.streams):
            stream.abort()


def _current() -> _Call | None:
    return getattr(_local, "call", None)


def _check_cancelled() -> None:
    call = _current()
    if call is not None and call.cancelled:
        raise Cancelled


def _clamp(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of the attempt's deadline; ``expired`` once nothing is left."""
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired(f"the request took longer than {_local.total:g} s")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore2.NetworkStream):
    """A pool's network stream that keeps its thread's deadline, byte budget and cancellation."""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._io(self._inner.read, max_bytes, timeout, httpcore2.ReadTimeout)
        left = getattr(_local, "budget", None)
        if left is not None:
            _local.budget = left - len(data)
            if _local.budget < 0:
                raise ReplyTooLarge(_local.limit)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _PIECE):
            self._io(self._inner.write, buffer[start : start + _PIECE], timeout, httpcore2.WriteTimeout)

    def _io(self, op: Callable[[Any, float | None], Any], arg: Any, timeout: float | None, expired: type[Exception]):
        call = _current()
        if call is None:
            return op(arg, _clamp(timeout, expired))
        call.streams.add(self)
        try:
            if call.cancelled:
                raise Cancelled
            try:
                result = op(arg, _clamp(timeout, expired))
            except Exception:
                if call.cancelled:  # the error is the shutdown that cancel_all made
                    raise Cancelled from None
                raise
            if call.cancelled:  # a read the shutdown ended early returns b""
                raise Cancelled
            return result
        finally:
            call.streams.discard(self)

    def abort(self) -> None:
        """Shut the socket down (not close it: only a shutdown wakes a thread blocked in it)."""
        sock = self._inner.get_extra_info("socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed or never connected: nothing blocks on it

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None):
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _clamp(timeout, httpcore2.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore2.NetworkBackend):
    def __init__(self, inner: httpcore2.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        _check_cancelled()
        timeout = _clamp(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        _check_cancelled()
        timeout = _clamp(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _refuse_encoded(response: httpx2.Response) -> None:
    # A compressed body is decoded in one go per chunk read: a few KB of zstd can become gigabytes,
    # past any cap on the bytes received. Requests ask for none (identity), so refuse what comes.
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RefusedReply(f"the reply is compressed ({encoding!r}) although no compression was asked for")
    declared = response.headers.get("content-length", "")
    limit = getattr(_local, "limit", None)
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise ReplyTooLarge(limit)


class BoundedClient(DefaultHttpxClient):
    """An ``httpx2.Client`` with openai's defaults whose every request attempt is bounded.

    Each :meth:`send` (one attempt; the SDK retries by calling it again) must finish, connect to
    last byte and redirects included, within ``timeout`` seconds, or raises ``httpx2.ReadTimeout``
    (or the connect or write kind), which the SDK treats as any timeout. It may receive at most
    ``max_reply_bytes`` (headers included) or raises :class:`ReplyTooLarge`; a declared length
    over the cap is refused before the body is read. Replies are always read in full within the
    attempt, even when the caller asks for a stream. Requests ask for an uncompressed reply, and a
    compressed one raises :class:`RefusedReply`. Inside :func:`tracked`, requests are cancellable.
    """

    def __init__(self, *, timeout: float, max_reply_bytes: int) -> None:
        super().__init__(event_hooks={"response": [_refuse_encoded]})
        self.total_timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        # httpx2 takes no network backend, so the pools it built get ours (proxies included).
        transports = [self._transport, *(t for t in self._mounts.values() if t is not None)]
        for transport in transports:
            pool = getattr(transport, "_pool", None)
            backend = getattr(pool, "_network_backend", None)
            if pool is None or not isinstance(backend, httpcore2.NetworkBackend):
                raise RuntimeError(
                    f"this httpx2 ({httpx2.__version__}) builds its connection pools differently; "
                    "strokegraph cannot bound its requests"
                )
            pool._network_backend = _Backend(backend)

    def send(self, request: httpx2.Request, *, stream: bool = False, **kwargs: Any) -> httpx2.Response:
        _check_cancelled()
        request.headers["Accept-Encoding"] = "identity"
        _local.deadline = time.monotonic() + self.total_timeout
        _local.total = self.total_timeout
        _local.budget = _local.limit = self.max_reply_bytes
        try:
            return super().send(request, stream=False, **kwargs)
        finally:
            _local.deadline = _local.budget = _local.limit = None


def _sleep_cancellable(seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        _check_cancelled()
        time.sleep(min(left, 0.1))
    _check_cancelled()


class CancellableOpenAI(OpenAI):
    """openai's client, whose waits between retries end as soon as a tracked call is cancelled.

    The SDK sleeps between retries as the server asks (``retry-after``, up to two minutes), which no
    shutdown of a socket can cut short.
    """

    def _sleep_for_retry(self, *, retries_taken, max_retries, options, response) -> None:
        headers = response.headers if response is not None else None
        _sleep_cancellable(self._calculate_retry_timeout(max_retries - retries_taken, options, headers))
