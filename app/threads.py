"""Where the runs of a shared checkpoint database stand: ``strokegraph runs --checkpoint postgres://...``.

A run whose checkpoints live in PostgreSQL can be resumed on any machine by its thread id; this
lists each thread with the state of its latest checkpoint, read through the same strict serializer
as a resume (a checkpoint that does not load is listed as unreadable, never trusted).
"""

from __future__ import annotations

from dataclasses import dataclass

from strokegraph.graph import builder, engine
from strokegraph.graph.state import RunState

__all__ = ["Thread", "list_threads"]


@dataclass(frozen=True)
class Thread:
    """One thread of a checkpoint database, as its latest checkpoint leaves it."""

    thread_id: str
    updated: str
    """When its latest checkpoint was written (ISO 8601, as LangGraph records it)."""
    status: str
    """``finished: passed``, ``finished: N violation(s) left``, ``waiting for review``,
    ``stopped in review``, ``resumable (...)`` saying how far it got, or ``unreadable: ...``."""
    prompt: str = ""


def _status(state: RunState, waiting: bool) -> str:
    if waiting:
        return "waiting for review"
    if state.stopped:
        return "stopped in review"
    if state.plan is None:
        return "resumable (not planned yet)"
    if state.critique is not None and builder.after_critic(state) == "__end__":
        left = len(state.critique.violations)
        return "finished: passed" if not left else f"finished: {left} violation(s) left"
    drawn = f"step {state.step + 1} of {len(state.plan.steps)} drawn" if state.step >= 0 else "planned"
    return f"resumable ({drawn}" + (f", {state.round} refine round(s))" if state.round else ")")


def list_threads(checkpoint: str, limit: int = 1000) -> list[Thread]:
    """The threads of the PostgreSQL database ``checkpoint``, the latest written first.

    Reads the newest checkpoints until ``limit`` threads are found. Raises
    :class:`~strokegraph.errors.UsageError` for a URL that is not ``postgres://`` or a database
    that cannot be reached (named without its password).
    """
    from strokegraph.app.runner import _load_state

    url = engine.checkpoint_url(checkpoint)
    if url is None:
        from strokegraph.errors import UsageError

        raise UsageError("strokegraph runs lists a shared database: give --checkpoint postgres://...")
    seen: dict[str, Thread] = {}
    with engine.checkpointer(url) as saver:
        for found in saver.list(None):
            config = found.config.get("configurable", {})
            thread, ns = str(config.get("thread_id", "")), config.get("checkpoint_ns", "")
            if ns or thread in seen:
                continue  # only the newest checkpoint of each thread's own graph
            updated = str(found.checkpoint.get("ts", ""))
            try:
                values = found.checkpoint.get("channel_values", {})
                state = _load_state({k: v for k, v in values.items() if k in RunState.model_fields})
            except Exception as exc:  # noqa: BLE001 - whatever a damaged checkpoint makes the loader raise
                seen[thread] = Thread(thread, updated, f"unreadable: {type(exc).__name__}")
                continue
            waiting = any(write[1] == "__interrupt__" for write in found.pending_writes or ())
            seen[thread] = Thread(thread, updated, _status(state, waiting), state.prompt)
            if len(seen) >= limit:
                break
    return list(seen.values())
