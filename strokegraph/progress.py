"""Progress events from inside a node: what the node and its backend report while they work.

A node sends its events to the run's listeners: :attr:`RunContext.on_progress
<strokegraph.graph.state.RunContext.on_progress>`, called directly, and LangGraph's ``custom`` stream
mode (for the LangGraph server and for graphs that embed the loop). Streaming ``custom`` makes
LangGraph run every node in a worker thread so it can yield events while the node works, which
costs milliseconds per node; a caller that only needs a callback passes ``on_progress`` and streams
no ``custom`` at all.

A backend reports through :func:`emit`, as it records usage through :func:`strokegraph.usage.record`:
it needs no reference to the graph, and outside a node the event goes nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["emit", "listening"]

Writer = Callable[[dict[str, Any]], None]

_current: ContextVar[Writer | None] = ContextVar("strokegraph_progress", default=None)


def emit(event: dict[str, Any]) -> None:
    """Send ``event`` to the listeners of the node that is running, if any."""
    writer = _current.get()
    if writer is not None:
        writer(event)


def writer_for(on_progress: Writer | None, stream_writer: Writer | None) -> Writer | None:
    """One writer that calls ``on_progress`` and then LangGraph's ``stream_writer``; None when neither is set."""
    writers = [w for w in (on_progress, stream_writer) if w is not None]
    if not writers:
        return None
    if len(writers) == 1:
        return writers[0]

    def both(event: dict[str, Any]) -> None:
        for w in writers:
            w(event)

    return both


@contextmanager
def listening(writer: Writer | None) -> Iterator[None]:
    """Route :func:`emit` to ``writer`` inside the block (the node's backend call)."""
    token = _current.set(writer)
    try:
        yield
    finally:
        _current.reset(token)
