"""The HTTP layer under the OpenAI backends: deadlines, a cap on reply bytes, retries, cancellation.

openai 3.x sends through an ``httpx2.Client``, whose timeouts bound each network operation, not a
request: a server that sends a byte every few seconds holds a call for ever, and a reply is read
whole however large it is. The client's own retries multiply that, and sleep between tries (up to
two minutes, as a server's ``retry-after`` asks) where nothing can wake them. And a call blocked in
a worker thread cannot be interrupted: Ctrl-C reaches the main thread only.

Everything here rests on public APIs. :class:`BoundedClient` is an ``httpx2.Client`` whose
transport sends through an ``httpcore2.ConnectionPool`` built with our ``network_backend``: every
read and write of a request attempt waits at most until the attempt's deadline, the bytes received
per attempt are counted against a cap, and a stream in use by a call that :func:`cancel_all`
cancelled is shut down, which wakes the thread blocked on it. :func:`call` runs one backend call
(the openai client makes none of its own retries) and retries it as openai would, within a total
deadline, in waits that a cancel ends.

:class:`BoundedAsyncClient` and :func:`acall` are the same for ``AsyncOpenAI``, on an
``httpcore2.AsyncConnectionPool``: the same deadlines, cap, retries and waits, where a call holds no
thread while it waits. It needs no :func:`cancel_all`: cancelling the task that awaits the call
ends it at once, its connection closed, wherever it waits.

Imports openai, httpx2 and httpcore2; :mod:`strokegraph.tools.openai_api` imports this module only
when it builds a client.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import math
import random
import socket
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import httpcore2
import httpx2
import openai

from strokegraph.errors import UsageError, transient_status

__all__ = [
    "BoundedAsyncClient",
    "BoundedClient",
    "Cancelled",
    "Failed",
    "RefusedReply",
    "ReplyTooLarge",
    "acall",
    "call",
    "cancel_all",
]

T = TypeVar("T")

# Writes go out in pieces of this size, each under the deadline: a socket's own timeout restarts
# with every send that makes progress, so one large write to a slow reader could overrun it.
_PIECE = 64 * 1024

# openai's own retry schedule (its _constants): 0.5 s doubling up to 8 s, less up to a quarter at
# random; a server's retry-after is followed up to two minutes, and past that not retried at all.
_FIRST_WAIT, _MAX_WAIT, _MAX_RETRY_AFTER = 0.5, 8.0, 120.0


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


class Failed(Exception):
    """A call that :func:`call` gave up on: ``error`` is openai's error from the last try.

    ``retries`` were made before it; ``out_of_time`` says the call's deadline ended it (the last try
    was cut, or no time was left for another); ``refused`` that a server on this machine refused the
    connection, which is not tried again.
    """

    def __init__(self, error: openai.OpenAIError, *, retries: int, out_of_time: bool, refused: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.retries = retries
        self.out_of_time = out_of_time
        self.refused = refused


# ---------------------------------------------------------------------------------------------
# Cancellation
# ---------------------------------------------------------------------------------------------


class _Call:
    """One tracked call: whether it was cancelled, and the streams it is reading or writing now."""

    __slots__ = ("cancelled", "streams")

    def __init__(self) -> None:
        self.cancelled = False
        self.streams: set[_Stream] = set()


# The sync calls in flight, and per thread its call. No locks: cancel_all runs in a signal handler,
# which may interrupt the main thread anywhere.
_calls: set[_Call] = set()
_local = threading.local()


@dataclass
class _Attempt:
    """One request attempt: when it must end (``time.monotonic``), and the bytes it may still receive."""

    deadline: float
    budget: int
    limit: int


# Per thread, or per task for async calls: the end of the call's deadline, and the attempt in flight.
_call_end: ContextVar[float | None] = ContextVar("strokegraph_openai_call_end", default=None)
_attempt: ContextVar[_Attempt | None] = ContextVar("strokegraph_openai_attempt", default=None)


@contextmanager
def _tracked() -> Iterator[_Call]:
    call = _Call()
    outer = getattr(_local, "call", None)
    _calls.add(call)
    _local.call = call
    try:
        yield call
    finally:
        _local.call = outer
        _calls.discard(call)


def cancel_all() -> None:
    """Cancel every call of :func:`call` in flight in this process, and wake the threads blocked in them.

    Takes no lock and does not wait, so a SIGINT handler may call it.
    """
    for tracked in list(_calls):
        tracked.cancelled = True
        # Set before the streams are read: a stream added after this loop sees the flag itself.
        for stream in list(tracked.streams):
            stream.abort()


def _current() -> _Call | None:
    return getattr(_local, "call", None)


def _check_cancelled() -> None:
    tracked = _current()
    if tracked is not None and tracked.cancelled:
        raise Cancelled


def _sleep_cancellable(seconds: float) -> None:
    # Polled, not an Event: setting one takes a lock, which a signal handler must not.
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        _check_cancelled()
        time.sleep(min(left, 0.1))
    _check_cancelled()


# ---------------------------------------------------------------------------------------------
# Calls and their retries
# ---------------------------------------------------------------------------------------------


def call(fn: Callable[[], T], *, max_retries: int, deadline: float) -> T:
    """``fn()`` (one request of an openai client that makes no retries), tried again as openai would.

    Rate limits, 408, 409, 5xx, timeouts and connection errors are retried up to ``max_retries``
    times, after openai's waits, while ``deadline`` seconds from now leave time: a request attempt
    ends at its own timeout or at the deadline, whichever comes first, and a wait that would end
    past the deadline is not started. A connection refused by a server on this machine is not
    retried: nothing listens there, and seconds will not change that.

    Raises :class:`Failed` with openai's last error when it gives up; :class:`Cancelled` when
    :func:`cancel_all` ended the call; :class:`RefusedReply` for a reply over a limit.
    """
    end = time.monotonic() + deadline
    with _tracked():
        retries = 0
        while True:
            _check_cancelled()
            token = _call_end.set(end)
            try:
                return fn()
            except (openai.APIStatusError, openai.APIConnectionError) as exc:
                error = exc
            finally:
                _call_end.reset(token)
            _check_cancelled()  # a request the cancel cut short fails as a connection error
            _sleep_cancellable(_next_wait(error, retries, max_retries, end))
            retries += 1


async def acall(fn: Callable[[], Awaitable[T]], *, max_retries: int, deadline: float) -> T:
    """:func:`call` for an ``AsyncOpenAI`` request: ``await fn()``, tried again as openai would.

    The same retries, waits and deadline, and the same errors, but for :class:`Cancelled`:
    cancelling the awaiting task ends the call (``asyncio.CancelledError``), in a request or a wait.
    """
    end = time.monotonic() + deadline
    retries = 0
    while True:
        token = _call_end.set(end)
        try:
            return await fn()
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            error = exc
        finally:
            _call_end.reset(token)
        await asyncio.sleep(_next_wait(error, retries, max_retries, end))
        retries += 1


def _next_wait(
    error: openai.APIStatusError | openai.APIConnectionError, retries: int, max_retries: int, end: float
) -> float:
    """Seconds to wait before the next try after ``error``; raises :class:`Failed` when there is none."""
    refused = isinstance(error, openai.APIConnectionError) and _refused_here(error)
    wait = None if refused else _wait(error, retries)
    if wait is None or retries == max_retries:
        # Out of time only if the deadline, not the try's own timeout, cut the last try.
        out_of_time = wait is not None and end - time.monotonic() <= 0
        raise Failed(error, retries=retries, out_of_time=out_of_time, refused=refused) from None
    if time.monotonic() + wait >= end:
        raise Failed(error, retries=retries, out_of_time=True) from None
    return wait


def _wait(error: openai.APIStatusError | openai.APIConnectionError, retries: int) -> float | None:
    """Seconds to wait before trying again after ``error``; None: do not try again."""
    if isinstance(error, openai.APIStatusError):
        headers = error.response.headers
        should = headers.get("x-should-retry")
        if should == "false" or (should != "true" and not transient_status(error.status_code)):
            return None
        after = _retry_after(headers)
        if after is not None and after > _MAX_RETRY_AFTER:
            return None
        if after is not None and after > 0:
            return after
    return min(_FIRST_WAIT * 2.0**retries, _MAX_WAIT) * (1 - 0.25 * random.random())


def _retry_after(headers: httpx2.Headers) -> float | None:
    """A server's ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date) in seconds, as openai reads them."""
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) else _MAX_RETRY_AFTER + 1
    date = email.utils.parsedate_tz(headers.get("retry-after", ""))  # an HTTP date
    try:
        return None if date is None else email.utils.mktime_tz(date) - time.time()
    except (ValueError, OverflowError):
        return None


def _refused_here(error: openai.APIConnectionError) -> bool:
    """Whether a server on this machine (loopback, by name or address) refused the connection."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, ConnectionRefusedError):
        cause = cause.__cause__ or cause.__context__
    return cause is not None and _is_local(error.request.url.host)


def _is_local(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost`` (and its subdomains) or a loopback address."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# The network streams: deadline, byte budget and cancellation where the bytes move
# ---------------------------------------------------------------------------------------------


def _clamp(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of the attempt's deadline; ``expired`` once nothing is left."""
    attempt = _attempt.get()
    if attempt is None:
        return timeout
    left = attempt.deadline - time.monotonic()
    if left <= 0:
        raise expired("the request attempt ran out of time")
    return left if timeout is None else min(timeout, left)


def _received(data: bytes) -> bytes:
    """``data``, counted against the attempt's byte budget; :class:`ReplyTooLarge` past it."""
    attempt = _attempt.get()
    if attempt is not None:
        attempt.budget -= len(data)
        if attempt.budget < 0:
            raise ReplyTooLarge(attempt.limit)
    return data


def _pieces(buffer: bytes) -> Iterator[bytes]:
    return (buffer[start : start + _PIECE] for start in range(0, len(buffer), _PIECE))


class _Stream(httpcore2.NetworkStream):
    """A pool's network stream that keeps its thread's deadline, byte budget and cancellation."""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _received(self._io(self.inner.read, max_bytes, timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for piece in _pieces(buffer):
            self._io(self.inner.write, piece, timeout, httpcore2.WriteTimeout)

    def _io(self, op: Callable[[Any, float | None], Any], arg: Any, timeout: float | None, expired: type[Exception]):
        tracked = _current()
        if tracked is None:
            return op(arg, _clamp(timeout, expired))
        tracked.streams.add(self)
        try:
            if tracked.cancelled:
                raise Cancelled
            try:
                result = op(arg, _clamp(timeout, expired))
            except Exception:
                if tracked.cancelled:  # the error is the shutdown that cancel_all made
                    raise Cancelled from None
                raise
            if tracked.cancelled:  # a read the shutdown ended early returns b""
                raise Cancelled
            return result
        finally:
            tracked.streams.discard(self)

    def abort(self) -> None:
        """Shut the socket down (not close it: only a shutdown wakes a thread blocked in it)."""
        sock = self.inner.get_extra_info("socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed or never connected: nothing blocks on it

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None):
        return _Stream(self.inner.start_tls(ssl_context, server_hostname, _clamp(timeout, httpcore2.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _Backend(httpcore2.NetworkBackend):
    def __init__(self, inner: httpcore2.NetworkBackend) -> None:
        self.inner = inner

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        _check_cancelled()
        timeout = _clamp(timeout, httpcore2.ConnectTimeout)
        return _Stream(self.inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        _check_cancelled()
        timeout = _clamp(timeout, httpcore2.ConnectTimeout)
        return _Stream(self.inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _AsyncStream(httpcore2.AsyncNetworkStream):
    """:class:`_Stream` for async pools: the task's deadline and byte budget (a cancel is the task's)."""

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self.inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _received(await self.inner.read(max_bytes, _clamp(timeout, httpcore2.ReadTimeout)))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for piece in _pieces(buffer):
            await self.inner.write(piece, _clamp(timeout, httpcore2.WriteTimeout))

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None):
        timeout = _clamp(timeout, httpcore2.ConnectTimeout)
        return _AsyncStream(await self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _AsyncBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self, inner: httpcore2.AsyncNetworkBackend) -> None:
        self.inner = inner

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        timeout = _clamp(timeout, httpcore2.ConnectTimeout)
        return _AsyncStream(await self.inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        timeout = _clamp(timeout, httpcore2.ConnectTimeout)
        return _AsyncStream(await self.inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


# ---------------------------------------------------------------------------------------------
# The transport and the client
# ---------------------------------------------------------------------------------------------

# httpcore2's errors as the httpx2 ones that openai knows (a timeout is retried as a timeout),
# subclasses before their bases.
_ERRORS: tuple[tuple[type[Exception], type[httpx2.TransportError]], ...] = (
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout),
    (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout),
    (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
    (httpcore2.ConnectError, httpx2.ConnectError),
    (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError),
    (httpcore2.NetworkError, httpx2.NetworkError),
    (httpcore2.ProxyError, httpx2.ProxyError),
    (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError),
    (httpcore2.ProtocolError, httpx2.ProtocolError),
)


@contextmanager
def _as_httpx() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class _Body(httpx2.SyncByteStream):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx():
            yield from self.inner

    def close(self) -> None:
        with _as_httpx():
            self.inner.close()


class _AsyncBody(httpx2.AsyncByteStream):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx():
            async for chunk in self.inner:
                yield chunk

    async def aclose(self) -> None:
        with _as_httpx():
            await self.inner.aclose()


@cache
def _ssl_context() -> Any:
    """httpx2's default TLS context (the OS trust store), made once: it costs ~0.1 s of CPU, and each
    event loop gets async clients of its own. A context holds no connection, and is thread-safe."""
    return httpx2.create_ssl_context()


class _Pools:
    """httpx2's choice of connection pool, on pools whose network backend is ours: direct, or through
    the proxy the environment names for the URL's scheme.

    Proxies come from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, less
    ``NO_PROXY``), as httpx2 itself reads them; http and https proxies only. ``pool`` and ``proxy``
    are httpcore2's sync or async pool classes, ``backend`` the network backend of the same kind.
    """

    def __init__(self, limits: httpx2.Limits, backend: Any, pool: type, proxy: type) -> None:
        options: dict[str, Any] = {
            "ssl_context": _ssl_context(),
            "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry,
            "network_backend": backend,
        }
        self.direct = pool(**options)
        proxies = urllib.request.getproxies()
        self.proxies: dict[str, Any] = {}
        for scheme in ("http", "https"):
            url = proxies.get(scheme) or proxies.get("all")
            if url:
                self.proxies[scheme] = _proxy_pool(proxy, url, options)

    def route(self, request: httpx2.Request) -> tuple[Any, httpcore2.Request]:
        """The pool for ``request``, and ``request`` as httpcore2 takes it."""
        url = request.url
        pool = self.proxies.get(url.scheme)
        if pool is None or urllib.request.proxy_bypass(url.host):
            pool = self.direct
        core = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        return pool, core

    def all(self) -> list[Any]:
        return [self.direct, *self.proxies.values()]


def _response(response: httpcore2.Response, stream: httpx2.SyncByteStream | httpx2.AsyncByteStream) -> httpx2.Response:
    return httpx2.Response(
        status_code=response.status, headers=response.headers, stream=stream, extensions=response.extensions
    )


class _Transport(httpx2.BaseTransport):
    """httpx2's HTTP transport, on connection pools whose network backend is :class:`_Backend` (see :class:`_Pools`)."""

    def __init__(self, limits: httpx2.Limits) -> None:
        self.pools = _Pools(limits, _Backend(httpcore2.SyncBackend()), httpcore2.ConnectionPool, httpcore2.HTTPProxy)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        pool, core = self.pools.route(request)
        with _as_httpx():
            response = pool.handle_request(core)
        return _response(response, _Body(response.stream))

    def close(self) -> None:
        for pool in self.pools.all():
            pool.close()


class _AsyncTransport(httpx2.AsyncBaseTransport):
    """:class:`_Transport` on async pools, whose network backend is :class:`_AsyncBackend` over anyio."""

    def __init__(self, limits: httpx2.Limits) -> None:
        backend = _AsyncBackend(httpcore2.AnyIOBackend())
        self.pools = _Pools(limits, backend, httpcore2.AsyncConnectionPool, httpcore2.AsyncHTTPProxy)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        pool, core = self.pools.route(request)
        with _as_httpx():
            response = await pool.handle_async_request(core)
        return _response(response, _AsyncBody(response.stream))

    async def aclose(self) -> None:
        for pool in self.pools.all():
            await pool.aclose()


def _proxy_pool(proxy_class: type, url: str, options: dict[str, Any]) -> Any:
    proxy = httpx2.Proxy(url if "://" in url else f"http://{url}")
    if proxy.url.scheme not in ("http", "https"):
        raise UsageError(
            f"the proxy of the environment is {proxy.url.scheme}://, which the OpenAI backends do not support; "
            "use an http:// or https:// proxy, or name the host in NO_PROXY"
        )
    target = httpcore2.URL(
        scheme=proxy.url.raw_scheme, host=proxy.url.raw_host, port=proxy.url.port, target=proxy.url.raw_path
    )
    return proxy_class(
        proxy_url=target,
        proxy_auth=proxy.raw_auth,
        proxy_headers=proxy.headers.raw,
        proxy_ssl_context=proxy.ssl_context,
        **options,
    )


def _refuse_encoded(response: httpx2.Response) -> None:
    # A compressed body is decoded in one go per chunk read: a few KB of zstd can become gigabytes,
    # past any cap on the bytes received. Requests ask for none (identity), so refuse what comes.
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RefusedReply(f"the reply is compressed ({encoding!r}) although no compression was asked for")
    declared = response.headers.get("content-length", "")
    attempt = _attempt.get()
    if attempt is not None and declared.isdigit() and int(declared) > attempt.limit:
        raise ReplyTooLarge(attempt.limit)


async def _arefuse_encoded(response: httpx2.Response) -> None:
    _refuse_encoded(response)  # an AsyncClient awaits its event hooks


@contextmanager
def _bounded(request: httpx2.Request, timeout: float, max_reply_bytes: int) -> Iterator[None]:
    """One request attempt of a bounded client: its deadline and byte budget, for the code below it."""
    _check_cancelled()
    request.headers["Accept-Encoding"] = "identity"
    deadline = time.monotonic() + timeout
    call_end = _call_end.get()
    token = _attempt.set(
        _Attempt(deadline if call_end is None else min(deadline, call_end), max_reply_bytes, max_reply_bytes)
    )
    try:
        yield
    finally:
        _attempt.reset(token)


def _client_options(timeout: float, transport: Any, hook: Callable[[httpx2.Response], Any]) -> dict[str, Any]:
    return {"timeout": timeout, "follow_redirects": True, "transport": transport, "event_hooks": {"response": [hook]}}


class BoundedClient(httpx2.Client):
    """An ``httpx2.Client`` with openai's defaults whose every request attempt is bounded.

    Each :meth:`send` (one attempt) must finish, connect to last byte and redirects included, within
    ``timeout`` seconds, and by the deadline of the :func:`call` it belongs to, or raises
    ``httpx2.ReadTimeout`` (or the connect or write kind), which openai treats as any timeout. It
    may receive at most ``max_reply_bytes`` (headers included) or raises :class:`ReplyTooLarge`; a
    declared length over the cap is refused before the body is read. Replies are always read in
    full within the attempt, even when the caller asks for a stream. Requests ask for an
    uncompressed reply, and a compressed one raises :class:`RefusedReply`. Inside :func:`call`,
    requests are cancellable.
    """

    def __init__(self, *, timeout: float, max_reply_bytes: int) -> None:
        super().__init__(**_client_options(timeout, _Transport(openai.DEFAULT_CONNECTION_LIMITS), _refuse_encoded))
        self.total_timeout = timeout
        self.max_reply_bytes = max_reply_bytes

    def send(self, request: httpx2.Request, *, stream: bool = False, **kwargs: Any) -> httpx2.Response:
        with _bounded(request, self.total_timeout, self.max_reply_bytes):
            return super().send(request, stream=False, **kwargs)


class BoundedAsyncClient(httpx2.AsyncClient):
    """:class:`BoundedClient` for ``AsyncOpenAI``: the same bounds on every attempt, by the deadline of
    the :func:`acall` it belongs to. It belongs to the event loop it is first used in."""

    def __init__(self, *, timeout: float, max_reply_bytes: int) -> None:
        transport = _AsyncTransport(openai.DEFAULT_CONNECTION_LIMITS)
        super().__init__(**_client_options(timeout, transport, _arefuse_encoded))
        self.total_timeout = timeout
        self.max_reply_bytes = max_reply_bytes

    async def send(self, request: httpx2.Request, *, stream: bool = False, **kwargs: Any) -> httpx2.Response:
        with _bounded(request, self.total_timeout, self.max_reply_bytes):
            return await super().send(request, stream=False, **kwargs)
