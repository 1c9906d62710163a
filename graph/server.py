"""The graph that ``langgraph.json`` hands to LangGraph's own server (``langgraph dev``, LangGraph Platform).

A server sends state, and at most a context dict and ``configurable``; it cannot build backends. So
this graph takes backend *ids* as its context (:class:`ServerContext`, all optional: the offline
sketch world by default) and its one node runs :func:`strokegraph.run.generate`, which builds the
backends, runs the loop and writes the usual files (``final.png``, ``trajectory.json``,
``report.html``) into ``<root>/<thread id>/<timestamp>-<slug>/``, one directory per run. The loop's
progress events reach the server's ``custom`` stream mode.

``<root>`` is ``$STROKEGRAPH_SERVER_ROOT`` (default ``runs/server``, relative to the server's working
directory). It is the operator's choice, not part of the context, so that a request cannot choose
where the server writes.

The server's own checkpoints hold only this small state; the loop's checkpoints stay in the run
directory, as for any other run. ``graph.invoke({"prompt": "..."})`` works with no context at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel

from strokegraph.graph.state import Budget
from strokegraph.run import generate, new_run_dir

__all__ = ["ServerContext", "ServerState", "graph"]


@dataclass
class ServerContext:
    """What a server request may choose: the backend ids and the seed."""

    planner: str = "builtin:rules"
    drafter: str = "builtin:sketch"
    critic: str = "builtin:pixels"
    refiner: str = "builtin:sketch"
    seed: int = 0


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


def run(state: ServerState, runtime: Runtime[ServerContext], config: RunnableConfig) -> dict:
    ctx = runtime.context or ServerContext()
    root = Path(os.environ.get("STROKEGRAPH_SERVER_ROOT") or "runs/server")
    thread = config.get("configurable", {}).get("thread_id")
    run_dir = new_run_dir(state.prompt, root=root / str(thread) if thread else root)
    try:
        result = generate(
            state.prompt,
            out=run_dir,
            planner=ctx.planner,
            drafter=ctx.drafter,
            critic=ctx.critic,
            refiner=ctx.refiner,
            seed=ctx.seed,
            budget=state.budget,
            single_pass=state.single_pass,
            on_progress=runtime.stream_writer,
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
    }


def _build():
    builder = StateGraph(ServerState, context_schema=ServerContext)
    builder.add_node("strokegraph", run)
    builder.add_edge(START, "strokegraph")
    builder.add_edge("strokegraph", END)
    return builder.compile(name="strokegraph")


graph = _build()
