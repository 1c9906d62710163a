"""The graphs langgraph.json hands to LangGraph's server (app/server.py), run in-process as the server runs them.

The server compiles each graph with its own checkpointer (here an ``InMemorySaver``) and streams
with ``subgraphs=True`` (LangGraph Studio, Agent Chat UI); the images are fetched through
app/webapp.py with starlette's TestClient, as a remote client fetches them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from langgraph_spec import ROOT, load

from strokegraph.app.runs import load_run
from strokegraph.errors import UsageError

pytest.importorskip("starlette", reason="app/webapp.py needs starlette: pip install 'strokegraph[server]'")
from starlette.testclient import TestClient  # noqa: E402

LOOP_NODES = {"planner", "drafter", "critic", "refiner"}


@pytest.fixture
def server(monkeypatch, tmp_path):
    """langgraph.json's graphs (by name) and a client of its http app, writing under ``tmp_path/served``."""
    config = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    assert config["dependencies"] == ["."]
    monkeypatch.setenv("STROKEGRAPH_SERVER_ROOT", str(tmp_path / "served"))
    graphs = {name: load(spec, f"strokegraph_server_{name}") for name, spec in config["graphs"].items()}
    client = TestClient(load(config["http"]["app"], "strokegraph_webapp"))
    return graphs, client


def with_checkpointer(graph):
    return graph.builder.compile(checkpointer=InMemorySaver(), name=graph.name)  # what the server adds


def test_the_server_graphs_show_the_loops_nodes_and_routing(server):
    graphs, _ = server
    assert set(graphs) == {"strokegraph", "strokegraph_review"}
    for name, graph in graphs.items():
        assert set(graph.get_graph().nodes) == {"__start__", "prepare", "loop", "__end__"}
        drawn = graph.get_graph(xray=True)
        inner = {n.partition(":")[2] for n in drawn.nodes if n.startswith("loop:")}
        reviews = {"review_plan", "review_critique"} if name == "strokegraph_review" else set()
        assert inner == LOOP_NODES | reviews | {"__end__"}, name
        edges = {(e.source, e.target, e.conditional) for e in drawn.edges}
        # The routing: the critic (or its review) chooses among refiner, next drafter and the end.
        router = "loop:review_critique" if reviews else "loop:critic"
        assert {
            (router, "loop:refiner", True),
            (router, "loop:drafter", True),
            ("loop:refiner", "loop:critic", False),
        } <= edges
        assert ("prepare", "loop:planner", False) in edges


def test_server_graph_runs_with_state_alone(server, tmp_path):
    graphs, client = server
    out = graphs["strokegraph"].invoke({"prompt": "a red cat below a blue kite"})
    run_dir = Path(out["run_dir"])
    assert run_dir.parent == tmp_path / "served"
    assert Path(out["final_image"]) == run_dir / "final.png" and (run_dir / "final.png").is_file()
    assert (run_dir / "trajectory.json").is_file() and (run_dir / "report.html").is_file()
    assert out["run_url"] == f"/strokegraph/images/{run_dir.name}"
    assert out["final_image_url"] == f"{out['run_url']}/final.png"
    assert out["image_urls"] and all(u.startswith(f"{out['run_url']}/images/") for u in out["image_urls"])
    assert out["critique"]["passed"] == out["passed"]
    response = client.get(out["final_image_url"])
    assert response.status_code == 200 and response.content == (run_dir / "final.png").read_bytes()
    # The run directory reads like any other: strokegraph export takes it.
    run = load_run(run_dir)
    assert run.prompt == "a red cat below a blue kite" and run.backends["drafter"] == "builtin:sketch"


def test_stream_events_carry_image_urls_the_app_serves(server, tmp_path):
    graphs, client = server
    graph = with_checkpointer(graphs["strokegraph"])
    config = {"configurable": {"thread_id": "t1"}}
    images, stages, updated = [], [], []
    for namespace, mode, data in graph.stream(
        {"prompt": "two red apples"}, config, context={"seed": 3}, stream_mode=["updates", "custom"], subgraphs=True
    ):
        if mode == "custom" and data["kind"] == "image":
            images.append(data)
        elif mode == "custom":
            stages.append(data["stage"])
        else:
            updated.extend((namespace[0].partition(":")[0] if namespace else "", node) for node in data)
    out = graph.get_state(config).values
    run_dir = Path(out["run_dir"])
    assert run_dir.parent == tmp_path / "served" / "t1"
    # The loop's own nodes reach the client, inside the server graph's "loop" node.
    assert ("", "prepare") in updated and ("", "loop") in updated
    assert {node for ns, node in updated if ns == "loop"} >= {"planner", "drafter", "critic"}
    assert stages[:2] == ["plan", "plan"] and "draft" in stages
    # One event per image saved, whose URL the app serves: the image's bytes as the run wrote them.
    assert [e["url"] for e in images] == out["image_urls"]
    for event in images:
        assert event["url"] == f"{out['run_url']}/{event['path']}"
        response = client.get(event["url"])
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.content == (run_dir / event["path"]).read_bytes()
    # A second run on the thread gets a directory of its own.
    graph.invoke({"prompt": "a blue cup"}, config)
    runs = sorted((tmp_path / "served" / "t1").iterdir())
    assert len(runs) == 2 and all((r / "final.png").is_file() for r in runs)


def test_review_interrupts_reach_the_client_and_resume_with_a_command(server):
    graphs, client = server
    graph = with_checkpointer(graphs["strokegraph_review"])
    config = {"configurable": {"thread_id": "review"}}
    todo: object = {"prompt": "a red cat below a blue kite"}
    payloads = []
    for _ in range(20):
        interrupts = []
        for _namespace, mode, data in graph.stream(todo, config, stream_mode=["updates", "custom"], subgraphs=True):
            if mode == "updates" and "__interrupt__" in data:
                interrupts.extend(i.value for i in data["__interrupt__"])
        if not interrupts:
            break
        payloads.append(interrupts[-1])
        state = graph.get_state(config)
        as_json = json.loads(json.dumps(interrupts[-1]))  # what a client gets over HTTP
        assert [json.loads(json.dumps(i.value)) for i in state.interrupts] == [as_json]
        if interrupts[-1]["kind"] == "critique":
            # The image under review: its path in the run, a URL under the run's URL, served by the app.
            url = f"{state.values['run_url']}/{interrupts[-1]['image']}"
            response = client.get(url)
            assert response.status_code == 200
            assert response.content == (Path(state.values["run_dir"]) / interrupts[-1]["image"]).read_bytes()
            # What the run made so far is on disk while it waits.
            assert (Path(state.values["run_dir"]) / "report.html").is_file()
        todo = Command(resume={"action": "accept"})
    else:
        pytest.fail("the run never ended")
    assert [p["kind"] for p in payloads][:2] == ["plan", "critique"] and len(payloads) >= 3
    out = graph.get_state(config).values
    assert out["passed"] is True and out["final_image_url"] == f"{out['run_url']}/final.png"
    trajectory = json.loads((Path(out["run_dir"]) / "trajectory.json").read_text(encoding="utf-8"))
    assert [r["answer"] for r in trajectory["reviews"]] == [{"action": "accept"}] * len(payloads)
    assert trajectory["error"] is None


def test_a_stop_answer_ends_the_run_and_a_bad_answer_is_asked_again(server):
    graphs, _ = server
    graph = with_checkpointer(graphs["strokegraph_review"])
    config = {"configurable": {"thread_id": "stopped"}}
    graph.invoke({"prompt": "a blue cup"}, config)
    assert graph.get_state(config).interrupts[0].value["kind"] == "plan"
    out = graph.invoke(Command(resume={"action": "stop"}), config)
    assert not graph.get_state(config).interrupts and out["passed"] is False and out["final_image"] is None
    trajectory = json.loads((Path(out["run_dir"]) / "trajectory.json").read_text(encoding="utf-8"))
    assert trajectory["stopped"] is True
    # An invalid answer is refused and the review asked again with the reason; the thread still takes a
    # valid answer afterwards (LangGraph replays a node's answers on resume, so one refused must not stick).
    config = {"configurable": {"thread_id": "bad-answer"}}
    graph.invoke({"prompt": "a blue cup"}, config)
    graph.invoke(Command(resume={"action": "maybe"}), config)
    pending = graph.get_state(config).interrupts[0].value
    assert pending["kind"] == "plan" and "invalid review answer" in pending["error"]
    out = graph.invoke(Command(resume={"action": "stop"}), config)
    assert not graph.get_state(config).interrupts and out["final_image"] is None


def test_urls_outside_the_runs_root_are_refused(server, tmp_path):
    graphs, client = server
    out = graphs["strokegraph"].invoke({"prompt": "a blue cup"})
    outside = tmp_path / "outside"
    (outside / "images").mkdir(parents=True)
    (outside / "final.png").write_bytes(Path(out["final_image"]).read_bytes())
    run = Path(out["run_dir"]).name
    for path in [
        "..%2Foutside/final.png",
        f"{run}/..%2F..%2Foutside/final.png",
        f"%2F{outside.relative_to('/')}/final.png",
    ]:
        response = client.get("/strokegraph/images/" + path)
        assert (response.status_code, response.content) == (404, b""), path
    assert client.get(out["final_image_url"]).status_code == 200


def test_a_run_directory_edited_into_the_state_is_refused(server, tmp_path):
    # A client can edit a thread's state through the server's API; the loop never writes outside the root.
    graphs, _ = server
    graph = with_checkpointer(graphs["strokegraph_review"])
    config = {"configurable": {"thread_id": "edited"}}
    graph.invoke({"prompt": "a blue cup"}, config)
    outside = tmp_path / "outside"
    outside.mkdir()
    graph.update_state(config, {"run_dir": str(outside)}, as_node="prepare")
    with pytest.raises(UsageError, match="not a run directory under the server's root"):
        graph.invoke(Command(resume={"action": "accept"}), config)
    assert not any(outside.iterdir())


def test_server_graph_rejects_an_unknown_backend_id(server, tmp_path):
    graphs, _ = server
    with pytest.raises(UsageError, match="did you mean 'builtin:sketch'"):
        graphs["strokegraph"].invoke({"prompt": "a blue cup"}, context={"drafter": "builtin:skecth"})
    assert not (tmp_path / "served").exists() or not any((tmp_path / "served").iterdir())


def test_server_thread_ids_never_name_a_path(server, tmp_path):
    graphs, _ = server
    graph = with_checkpointer(graphs["strokegraph"])
    out = graph.invoke({"prompt": "a blue cup"}, {"configurable": {"thread_id": "../../escaped"}})
    run_dir = Path(out["run_dir"]).resolve()
    assert run_dir.is_relative_to((tmp_path / "served").resolve())
    assert not (tmp_path / "escaped").exists()


def test_server_requests_load_only_backends_the_operator_allows(server, tmp_path, monkeypatch):
    graphs, _ = server
    for graph in graphs.values():
        with pytest.raises(UsageError, match="not allowed on this server"):
            graph.invoke({"prompt": "a blue cup"}, context={"drafter": "diffusers:/anywhere/weights"})
    monkeypatch.setenv("STROKEGRAPH_SERVER_BACKENDS", "openai:, diffusers:/srv/models/sdxl")
    with pytest.raises(UsageError, match="not allowed on this server"):
        graphs["strokegraph"].invoke({"prompt": "a blue cup"}, context={"drafter": "diffusers:/anywhere/weights"})
    assert not (tmp_path / "served").exists() or not any((tmp_path / "served").iterdir())


def test_a_resuming_request_is_checked_against_the_allow_list_too(server, tmp_path):
    graphs, _ = server
    graph = with_checkpointer(graphs["strokegraph_review"])
    config = {"configurable": {"thread_id": "swap"}}
    graph.invoke({"prompt": "a blue cup"}, config)
    with pytest.raises(UsageError, match="not allowed on this server"):
        graph.invoke(Command(resume={"action": "accept"}), config, context={"drafter": "diffusers:/anywhere/weights"})
    assert graph.get_state(config).interrupts  # the review still waits
