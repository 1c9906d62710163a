"""strokegraph inside a larger LangGraph: rewrite a request, draw it, caption what was drawn.

    rewrite -> strokegraph -> caption

The middle node is the compiled strokegraph graph itself (``build_graph()``), added as a subgraph.
Parent and child exchange data through the keys their states share: the parent writes ``prompt``
and reads back ``scene``, ``image`` and ``critique``; the child's other keys (plan, budget
counters, trajectory) stay inside it, and the parent's own keys (``request``, ``caption``) never
reach it.

The backends travel once, as the parent's runtime context: ``parent.invoke(state,
context=RunContext(...))``. In langgraph 1.2.24 a compiled graph added as a node sees its parent's
context, so strokegraph's nodes find their backends there with no wrapper function. The parent
declares the same ``context_schema`` so that its own nodes can read ``run_dir`` too.

Run it with the offline sketch-world backends (no GPU, no key)::

    python examples/embed_subgraph.py "Please draw: a red cat below a blue kite!"
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel

from strokegraph.graph import RunContext, build_graph
from strokegraph.registry import build_backends
from strokegraph.schema import Critique, ImageRef, SceneGraph


class ParentState(BaseModel):
    request: str
    prompt: str = ""
    # Written by the strokegraph subgraph: the same names and types as in its RunState.
    scene: SceneGraph | None = None
    image: ImageRef | None = None
    critique: Critique | None = None
    # Written by the caption node.
    image_path: str | None = None
    caption: str = ""


_POLITE = re.compile(r"^\s*(please\s+)?(draw|paint|sketch|make|show)(\s+me)?\s*:?\s*", re.IGNORECASE)


def rewrite(state: ParentState) -> dict:
    """Turn a chatty request into the plain description strokegraph's planner expects."""
    text = _POLITE.sub("", state.request)
    return {"prompt": " ".join(text.split()).rstrip(".!").lower()}


def caption(state: ParentState, runtime: Runtime[RunContext]) -> dict:
    """Describe the final image from the critic's detections, and say whether it passed."""
    seen = Counter(" ".join(p for p in (d.colour, d.noun) if p) for d in state.critique.detections)
    things = ", ".join(f"{n} {what}" for what, n in sorted(seen.items())) or "nothing recognisable"
    verdict = "matches the prompt" if state.critique.passed else f"{len(state.critique.violations)} problem(s) left"
    return {
        "image_path": str(runtime.context.run_dir / state.image.path),
        "caption": f"A sketch showing {things}; it {verdict}.",
    }


def build_parent():
    """The compiled parent graph. Invoke it with ``context=RunContext(...)``."""
    builder = StateGraph(ParentState, context_schema=RunContext)
    builder.add_node("rewrite", rewrite)
    builder.add_node("strokegraph", build_graph())
    builder.add_node("caption", caption)
    builder.add_edge(START, "rewrite")
    builder.add_edge("rewrite", "strokegraph")
    builder.add_edge("strokegraph", "caption")
    builder.add_edge("caption", END)
    return builder.compile()


def offline_context(run_dir: Path, seed: int = 0) -> RunContext:
    """The default offline backends, writing their images under ``run_dir``."""
    backends, ids = build_backends()
    return RunContext(backends, run_dir=run_dir, seed=seed, ids=ids)


def main(request: str) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="strokegraph-embed-"))
    out = build_parent().invoke({"request": request}, context=offline_context(run_dir))
    print(f"prompt:  {out['prompt']}\nimage:   {out['image_path']}\ncaption: {out['caption']}")
    return out


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "Please draw: a red cat below a blue kite!")
