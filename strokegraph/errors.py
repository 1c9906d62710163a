"""The two families of errors strokegraph raises.

A :class:`UsageError` means the caller asked for something that cannot work (a bad prompt, backend
id, setting or path); it is raised before any model runs. A :class:`RunError` means a run failed
while working (a backend failed, its output could not be parsed); it names where.
The CLI turns both into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

__all__ = ["InvalidAnswer", "RunError", "StrokegraphError", "UsageError", "transient_status"]


class StrokegraphError(Exception):
    """Base class of every error strokegraph raises on purpose."""


class UsageError(StrokegraphError, ValueError):
    """Bad input from the caller: fix the named argument and try again."""


class InvalidAnswer(UsageError):
    """A review answer that is not one the review takes: the review stays open, so ask again."""


class RunError(StrokegraphError, RuntimeError):
    """A run failed while working; ``node`` and ``step`` say where, when known."""

    def __init__(
        self, message: str, *, node: str | None = None, step: int | None = None, transient: bool = False
    ) -> None:
        where = ", ".join(
            p for p in (f"node {node!r}" if node else "", f"step {step}" if step is not None else "") if p
        )
        super().__init__(f"{message} ({where})" if where else message)
        self.node = node
        self.step = step
        self.transient = transient
        """Whether trying again later may succeed (rate limit, timeout, lost connection, 5xx)."""


def transient_status(status: int) -> bool:
    """Whether a reply with HTTP ``status`` may succeed when tried again: a timeout (408), a conflict
    (409), a rate limit (429) or a server error (5xx). Every backend that retries asks this."""
    return status in (408, 409, 429) or status >= 500
