"""Token, image and cost accounting from backends to the trajectory.

A backend calls :func:`record` after each API or model call; the graph node that called the backend
wraps it in :func:`collect` and stores the total in its trajectory event. Backends stay free of any
reference to the graph, and a backend used outside a graph records into nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from strokegraph.schema import Usage

__all__ = ["collect", "record", "total"]

_current: ContextVar[list[Usage] | None] = ContextVar("strokegraph_usage", default=None)


def record(
    *, prompt_tokens: int = 0, completion_tokens: int = 0, images: int = 0, cost_usd: float | None = None
) -> None:
    """Add one call's usage to the node that is running, if any."""
    sink = _current.get()
    if sink is not None:
        sink.append(
            Usage(
                calls=1,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                images=images,
                cost_usd=cost_usd,
            )
        )


def total(items: Iterable[Usage | None]) -> Usage | None:
    """The sum of ``items`` (Nones skipped), or None when there is nothing to add up."""
    present = [u for u in items if u is not None]
    if not present:
        return None
    costs = [u.cost_usd for u in present if u.cost_usd is not None]
    return Usage(
        calls=sum(u.calls for u in present),
        prompt_tokens=sum(u.prompt_tokens for u in present),
        completion_tokens=sum(u.completion_tokens for u in present),
        images=sum(u.images for u in present),
        cost_usd=sum(costs) if costs else None,
    )


class Collected:
    def __init__(self) -> None:
        self.items: list[Usage] = []

    def total(self) -> Usage | None:
        """The sum of every recorded call, or None when nothing was recorded."""
        return total(self.items)


@contextmanager
def collect() -> Iterator[Collected]:
    """Collect what backends :func:`record` inside the block."""
    collected = Collected()
    token = _current.set(collected.items)
    try:
        yield collected
    finally:
        _current.reset(token)
