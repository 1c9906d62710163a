"""strokegraph inside other graphs: as a subgraph, next to a user's own node, and behind LangGraph's server."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime

from strokegraph.errors import UsageError
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


# ---------------------------------------------------------------------------------------------
# langgraph.json and app/server.py
# ---------------------------------------------------------------------------------------------
# langgraph-cli and langgraph-api install from PyPI, and `langgraph dev` serves this langgraph.json
# (checked by hand with langgraph-cli 0.4.40 and langgraph-api 0.16.7: runs/wait and runs/stream on a
# thread). They bring a web stack, so they are not test dependencies; these tests load the graph the
# way the server does: the file and variable that langgraph.json names.


@pytest.fixture
def server_graph(monkeypatch, tmp_path):
    config = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    assert config["dependencies"] == ["."]
    file, _, variable = config["graphs"]["strokegraph"].partition(":")
    monkeypatch.setenv("STROKEGRAPH_SERVER_ROOT", str(tmp_path / "served"))
    return getattr(load(ROOT / file, "strokegraph_server"), variable)


def test_server_graph_runs_with_state_alone(server_graph, tmp_path):
    out = server_graph.invoke({"prompt": "a red cat below a blue kite"})
    run_dir = Path(out["run_dir"])
    assert run_dir.parent == tmp_path / "served"
    assert Path(out["final_image"]) == run_dir / "final.png" and (run_dir / "final.png").is_file()
    assert (run_dir / "trajectory.json").is_file()
    # What a remote client fetches from app/webapp.py (tests/test_webapp.py serves it).
    assert out["final_image_url"] == f"/strokegraph/images/{run_dir.name}/final.png"
    assert out["image_urls"] and all(
        u.startswith(f"/strokegraph/images/{run_dir.name}/images/") for u in out["image_urls"]
    )
    assert out["critique"]["passed"] == out["passed"]


def test_server_graph_keeps_each_threads_runs_apart(server_graph, tmp_path):
    graph = server_graph.builder.compile(checkpointer=InMemorySaver())  # what the server adds
    config = {"configurable": {"thread_id": "t1"}}
    progress = []
    for mode, data in graph.stream(
        {"prompt": "two red apples"}, config, context={"seed": 3}, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            progress.append(data["stage"])
    second = graph.invoke({"prompt": "a blue cup"}, config)
    runs = sorted((tmp_path / "served" / "t1").iterdir())
    assert len(runs) == 2 and all((r / "final.png").is_file() for r in runs)
    assert Path(second["final_image"]).parent in runs
    assert progress[:2] == ["plan", "plan"] and "draft" in progress


def test_server_graph_rejects_an_unknown_backend_id(server_graph, tmp_path):
    with pytest.raises(UsageError, match="did you mean 'builtin:sketch'"):
        server_graph.invoke({"prompt": "a blue cup"}, context={"drafter": "builtin:skecth"})
    assert not (tmp_path / "served").exists() or not any((tmp_path / "served").iterdir())


def test_server_thread_ids_never_name_a_path(server_graph, tmp_path):
    graph = server_graph.builder.compile(checkpointer=InMemorySaver())
    out = graph.invoke({"prompt": "a blue cup"}, {"configurable": {"thread_id": "../../escaped"}})
    run_dir = Path(out["run_dir"]).resolve()
    assert run_dir.is_relative_to((tmp_path / "served").resolve())
    assert not (tmp_path / "escaped").exists()


def test_server_requests_load_only_backends_the_operator_allows(server_graph, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="not allowed on this server"):
        server_graph.invoke({"prompt": "a blue cup"}, context={"drafter": "diffusers:/anywhere/weights"})
    monkeypatch.setenv("STROKEGRAPH_SERVER_BACKENDS", "openai:, diffusers:/srv/models/sdxl")
    with pytest.raises(UsageError, match="not allowed on this server"):
        server_graph.invoke({"prompt": "a blue cup"}, context={"drafter": "diffusers:/anywhere/weights"})
    assert not (tmp_path / "served").exists() or not any((tmp_path / "served").iterdir())
