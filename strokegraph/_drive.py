"""One body for a sync function and its async twin: write it as a coroutine, and drive it here.

A role's logic (building the prompt, re-asking, checking the reply) is the same whether its
backend call blocks or is awaited. It is written once as a coroutine whose only awaits are the
backend's async calls; the sync variant runs it with ``asynchronous=False``, where each of those
awaits is a plain call instead, so the coroutine finishes without ever suspending and
:func:`drive` returns its result without an event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["blocking", "drive", "either"]

T = TypeVar("T")


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end in this thread; it must not wait on anything (no event loop runs here).

    Raises ``RuntimeError`` (and closes ``coro``) if it suspends: a sync path that awaited an
    asynchronous operation, which is a bug.
    """
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError(f"{getattr(coro, '__qualname__', coro)} waited on the event loop in its synchronous variant")


async def either(obj: Any, method: str, *args: Any, asynchronous: bool, **kwargs: Any) -> Any:
    """``obj.<method>(...)``; when ``asynchronous``, ``obj.a<method>(...)`` awaited if ``obj`` has it,
    else ``obj.<method>(...)`` in a worker thread, so that it holds up no other task of the loop."""
    if not asynchronous:
        return getattr(obj, method)(*args, **kwargs)
    native = getattr(obj, "a" + method, None)
    if native is not None:
        return await native(*args, **kwargs)
    return await asyncio.to_thread(getattr(obj, method), *args, **kwargs)


async def blocking(fn: Callable[..., T], *args: Any, asynchronous: bool) -> T:
    """``fn(*args)``, in a worker thread when ``asynchronous`` (file or store I/O that would stall the loop)."""
    return await asyncio.to_thread(fn, *args) if asynchronous else fn(*args)
