"""The graph that ``langgraph.json`` hands to LangGraph's own server (``langgraph dev``, LangGraph Platform).

A server sends state, and at most a context dict and ``configurable``; it cannot build backends. So
this graph takes backend *ids* as its context (:class:`ServerContext`, all optional: the offline
sketch world by default) and its one node runs :func:`strokegraph.app.runner.generate`, which builds the
backends, runs the loop and writes the usual files (``final.png``, ``trajectory.json``,
``report.html``) into ``<root>/<thread id>/<timestamp>-<slug>/``, one directory per run. The loop's
progress events reach the server's ``custom`` stream mode.

``<root>`` is ``$STROKEGRAPH_SERVER_ROOT`` (default ``runs/server``, relative to the server's working
directory). It is the operator's choice, not part of the context, so that a request cannot choose
where the server writes.

The server's own checkpoints hold only this small state; the loop's checkpoints stay in the run
directory, as for any other run, unless the operator sets ``$STROKEGRAPH_SERVER_CHECKPOINT`` (a
``postgres://`` URL) and ``$STROKEGRAPH_SERVER_STORE`` (``s3://bucket/prefix`` or a directory; the
endpoint from ``$AWS_ENDPOINT_URL``): then each run's checkpoints and images go there, and its
``thread_id`` (in the returned state) resumes it on any machine with ``strokegraph resume --thread``.
Like the root, these come from the operator's environment, never from a request.

The returned state names the images twice: as paths on the server (``final_image``) and as URLs a
remote client can fetch (``final_image_url``, ``image_urls``), paths under :data:`IMAGE_ROUTE` that
``app/webapp.py`` serves when ``langgraph.json``'s ``http.app`` mounts it. A client prefixes them
with the server's base URL (``base.rstrip("/") + url``).
``graph.invoke({"prompt": "..."})`` works with no context at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import field, make_dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel

from strokegraph.app.runner import generate, new_run_dir
from strokegraph.errors import UsageError
from strokegraph.graph.state import Budget
from strokegraph.registry import DEFAULT_IDS, ROLES, capabilities

__all__ = ["IMAGE_ROUTE", "ServerContext", "ServerState", "graph", "server_root"]

#: Where ``app/webapp.py`` serves a run's PNGs: ``<route>/<run dir under the root>/final.png`` and
#: ``<route>/<run dir under the root>/images/<name>.png``.
IMAGE_ROUTE = "/strokegraph/images"


# A field per role of the registry, so that a request may choose any role's backend. Made at runtime,
# it is a plain type to mypy (hence Runtime[Any] below).
ServerContext: type = make_dataclass(
    "ServerContext",
    [*((role, str, field(default=DEFAULT_IDS[role])) for role in ROLES), ("seed", int, 0)],
)
ServerContext.__module__ = __name__
ServerContext.__doc__ = "What a server request may choose: each role's backend id (a field per role) and the seed."


class ServerState(BaseModel):
    prompt: str
    single_pass: bool = False
    budget: Budget = Budget()
    # Written by the run; a new run on the same thread replaces them.
    run_dir: str | None = None
    final_image: str | None = None
    passed: bool | None = None
    rounds: int | None = None
    critique: dict | None = None
    """The final critique as JSON: server checkpoints then hold only plain data."""
    thread_id: str | None = None
    """The loop's thread (its run.json's ``thread_id``), which ``strokegraph resume --thread`` takes."""
    final_image_url: str | None = None
    """``final.png`` as a path under :data:`IMAGE_ROUTE`, for a client to prefix with the server's URL."""
    image_urls: list[str] = []
    """Each image of the trajectory (plan, drafts, refinements), in order, as such a path."""


def server_root() -> Path:
    """Where the server writes its runs: ``$STROKEGRAPH_SERVER_ROOT``, else ``runs/server``."""
    return Path(os.environ.get("STROKEGRAPH_SERVER_ROOT") or "runs/server")


def _url(root: Path, run_dir: Path, file: str) -> str:
    """``file`` of ``run_dir`` (a folder under ``root``) as a path under :data:`IMAGE_ROUTE`."""
    return quote(f"{IMAGE_ROUTE}/{run_dir.relative_to(root).as_posix()}/{file}")


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _thread_dir(root: Path, thread: object) -> Path:
    """The folder of a thread under ``root``: its id when that is a plain name, else a hash of it.

    The thread id comes from the request, so it may never name a path (``../..``, ``/etc``).
    """
    name = str(thread)
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        name = "thread-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return root / name


def _allowed(ctx: Any) -> None:
    """Refuse backend ids the operator did not allow: a request may not load a model or spend a key.

    The offline ``builtin:`` backends are always allowed; ``$STROKEGRAPH_SERVER_BACKENDS`` lists more,
    comma-separated, as whole ids (``openai:gpt-4.1-mini``) or providers (``openai:``).
    """
    allowed = [a.strip() for a in os.environ.get("STROKEGRAPH_SERVER_BACKENDS", "").split(",") if a.strip()]
    for role in ROLES:
        backend_id = getattr(ctx, role)
        ok = capabilities(role, backend_id).offline or any(
            backend_id == a or (a.endswith(":") and backend_id.startswith(a)) for a in allowed
        )
        if not ok:
            raise UsageError(
                f"{role} {backend_id!r} is not allowed on this server; its operator lists allowed ids in "
                "$STROKEGRAPH_SERVER_BACKENDS"
            )


def run(state: ServerState, runtime: Runtime[Any], config: RunnableConfig) -> dict:
    ctx = runtime.context or ServerContext()
    _allowed(ctx)
    root = server_root()
    thread = config.get("configurable", {}).get("thread_id")
    run_dir = new_run_dir(state.prompt, root=_thread_dir(root, thread) if thread else root)
    try:
        result = generate(
            state.prompt,
            out=run_dir,
            **{role: getattr(ctx, role) for role in ROLES},
            seed=ctx.seed,
            budget=state.budget,
            single_pass=state.single_pass,
            on_progress=runtime.stream_writer,
            checkpoint=os.environ.get("STROKEGRAPH_SERVER_CHECKPOINT") or None,
            store=os.environ.get("STROKEGRAPH_SERVER_STORE") or None,
        )
    except BaseException:
        # A bad id fails before generate writes anything: leave no empty run directory behind.
        if run_dir.exists() and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    return {
        "run_dir": str(result.run_dir),
        "final_image": str(result.final_image) if result.final_image else None,
        "passed": result.passed,
        "rounds": result.rounds,
        "critique": result.critique.model_dump(mode="json") if result.critique else None,
        "thread_id": json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))["thread_id"],
        "final_image_url": _url(root, run_dir, "final.png") if result.final_image else None,
        "image_urls": list(dict.fromkeys(_url(root, run_dir, e.image.path) for e in result.trajectory if e.image)),
    }


def _build():
    builder = StateGraph(ServerState, context_schema=ServerContext)
    builder.add_node("strokegraph", run)
    builder.add_edge(START, "strokegraph")
    builder.add_edge("strokegraph", END)
    return builder.compile(name="strokegraph")


graph = _build()
