"""strokegraph inside other graphs: as a subgraph, next to a user's own node, and behind LangGraph's server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime

from strokegraph.graph import RunContext, RunState, after_critic, nodes
from strokegraph.registry import build_backends
from strokegraph.schema import Critique, Violation

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path, name: str):
    """Import a file by path, as LangGraph's server and ``python examples/...`` do."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def offline_context(run_dir: Path) -> RunContext:
    backends, ids = build_backends()
    return RunContext(backends, run_dir=run_dir, ids=ids)


# ---------------------------------------------------------------------------------------------
# The compiled graph as a subgraph (examples/embed_subgraph.py)
# ---------------------------------------------------------------------------------------------


def test_embedded_graph_draws_and_the_parent_captions_it(tmp_path):
    example = load(ROOT / "examples" / "embed_subgraph.py", "embed_subgraph")
    out = example.build_parent().invoke(
        {"request": "Please draw: two red apples to the left of a blue cup!"},
        context=example.offline_context(tmp_path),
    )
    assert out["prompt"] == "two red apples to the left of a blue cup"
    # The subgraph's nodes found their backends in the parent's context and wrote into its run_dir.
    image = Path(out["image_path"])
    assert image.is_file() and image.parent.parent == tmp_path
    assert out["image"].path in out["image_path"]
    assert "apple" in out["caption"] and "blue cup" in out["caption"]
    assert out["critique"].passed == ("matches the prompt" in out["caption"])
    # Only the shared keys came back from the child.
    assert "trajectory" not in out and "plan" not in out


# ---------------------------------------------------------------------------------------------
# strokegraph's nodes next to a node of the user's own
# ---------------------------------------------------------------------------------------------


def strict_first_draft_critic(state: RunState, runtime: Runtime[RunContext]) -> dict:
    """A user's critic: every step's first draft is redone once; a blank canvas never passes."""
    # After a draft, the state holds the scene, the plan and the image.
    assert state.image is not None and state.plan is not None and state.scene is not None
    image = state.image.open(runtime.context.run_dir)
    blank = len(image.getcolors(maxcolors=2) or ()) == 1
    if state.round == 0 or blank:
        ids = state.plan.steps[state.step].entity_ids
        redo = Violation(
            kind="missing",
            entity_ids=ids,
            expected=", ".join(state.scene.entity(i).phrase() for i in ids),
            observed="blank canvas" if blank else "a first draft",
            message="first drafts are always redone",
        )
        return {"critique": Critique(violations=(redo,))}
    return {"critique": Critique()}


def test_custom_critic_with_strokegraphs_other_nodes(tmp_path):
    builder = StateGraph(RunState, context_schema=RunContext)
    builder.add_node("planner", nodes.planner)
    builder.add_node("drafter", nodes.drafter)
    builder.add_node("critic", strict_first_draft_critic)
    builder.add_node("refiner", nodes.refiner)
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "drafter")
    builder.add_edge("drafter", "critic")
    builder.add_conditional_edges("critic", after_critic, ["refiner", "drafter", "__end__"])
    builder.add_edge("refiner", "critic")
    graph = builder.compile()

    state = RunState.model_validate(
        graph.invoke({"prompt": "a red cat below a blue kite"}, context=offline_context(tmp_path))
    )
    steps = len(state.plan.steps)
    assert steps == 2
    assert [e.stage for e in state.trajectory] == ["plan"] + ["draft", "refine"] * steps
    assert state.rounds_total == steps
    assert state.critique.passed and state.step == steps - 1
    assert (tmp_path / state.image.path).is_file()
    assert state.image.path.endswith(f"step{steps:02d}-refine1.png")
