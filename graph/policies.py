"""When the graph runs a node again after it failed: only for failures a backend marked as transient.

LangGraph's default ``RetryPolicy`` retries every exception outside a short list (ValueError,
TypeError, RuntimeError, OSError...), so an ``openai.BadRequestError`` or a parse failure would be
sent again, and paid for, three times. Here the backend decides instead: it raises
``RunError(..., transient=True)`` for what may succeed later (a rate limit, a timeout, a dropped
connection, a 5xx) and a plain :class:`~strokegraph.errors.RunError` for everything else. A bad id or
setting (:class:`~strokegraph.errors.UsageError`), a validation error, a 400 or running out of memory
is never retried: trying again cannot change the answer.

Local backends (the sketch world, diffusers, transformers) mark nothing transient, so the same
policy on every node retries only API backends.
"""

from __future__ import annotations

from langgraph.types import RetryPolicy

from strokegraph.errors import StrokegraphError, UsageError
from strokegraph.registry import ROLES

__all__ = ["is_transient", "retry_policy"]

#: The loop's nodes: one per role.
NODES = ROLES


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is one of ours and its backend marked it as worth trying again."""
    if isinstance(exc, UsageError) or not isinstance(exc, StrokegraphError):
        return False
    return getattr(exc, "transient", False) is True


def retry_policy(node: str) -> RetryPolicy:
    """The retry policy for one of the loop's nodes.

    The OpenAI client has already retried a transient failure twice with short backoff (0.5 to 8 s)
    before the backend raises, so the graph waits longer (2 s, then 4 s, plus jitter) and tries the
    node at most twice more. A retried node starts over: its backend call runs again from the same
    state, so nothing is half written.
    """
    if node not in NODES:
        raise ValueError(f"node {node!r} is not one of strokegraph's nodes ({', '.join(NODES)})")
    return RetryPolicy(
        max_attempts=3, initial_interval=2.0, backoff_factor=2.0, max_interval=30.0, retry_on=is_transient
    )
