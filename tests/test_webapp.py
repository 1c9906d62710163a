"""The routes langgraph.json's ``http.app`` adds to LangGraph's server: a remote client fetches a run's images.

The app is called as the ASGI application it is (a scope, a ``receive``, a ``send`` that collects the
response): no network and no HTTP client, as LangGraph's server would call it.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from langgraph_spec import ROOT, load

pytest.importorskip("starlette", reason="app/webapp.py needs starlette: pip install 'strokegraph[server]'")

PNG = b"\x89PNG\r\n\x1a\n"


def get(app, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of ``app``'s answer to a request for ``path`` (already percent-decoded)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
    }
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    anyio.run(app, scope, receive, send)
    start = messages[0]
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in messages[1:])


@pytest.fixture
def served(monkeypatch, tmp_path):
    """The server's graph and app, as langgraph.json names them, writing under ``tmp_path/served``."""
    config = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    monkeypatch.setenv("STROKEGRAPH_SERVER_ROOT", str(tmp_path / "served"))
    graph = load(config["graphs"]["strokegraph"], "strokegraph_server")
    app = load(config["http"]["app"], "strokegraph_webapp")
    return graph, app


def test_a_runs_image_urls_serve_its_files(served):
    graph, app = served
    out = graph.invoke({"prompt": "a red cat below a blue kite"})
    run_dir = Path(out["run_dir"])

    status, headers, body = get(app, out["final_image_url"])
    assert status == 200
    assert body == (run_dir / "final.png").read_bytes()
    assert headers["content-type"] == "image/png"
    assert headers["x-content-type-options"] == "nosniff"

    # Every image of the trajectory, in order, is reachable the same way.
    trajectory = json.loads((run_dir / "trajectory.json").read_text(encoding="utf-8"))
    paths = list(dict.fromkeys(e["image"]["path"] for e in trajectory["events"] if e.get("image")))
    assert len(out["image_urls"]) == len(paths) >= 2
    for url, path in zip(out["image_urls"], paths, strict=True):
        assert url.endswith("/" + path)
        status, _, body = get(app, url)
        assert status == 200 and body == (run_dir / path).read_bytes()


def test_a_threads_runs_are_served_under_the_thread(served):
    from langgraph.checkpoint.memory import InMemorySaver

    graph, app = served
    graph = graph.builder.compile(checkpointer=InMemorySaver())  # what the server adds
    out = graph.invoke({"prompt": "a blue cup"}, {"configurable": {"thread_id": "t1"}})
    assert out["final_image_url"].startswith("/strokegraph/images/t1/")
    status, _, body = get(app, out["final_image_url"])
    assert status == 200 and body == Path(out["final_image"]).read_bytes()


@pytest.fixture
def planted(served, tmp_path):
    """A served run, and a PNG outside the root that every hostile path below aims at."""
    graph, app = served
    out = graph.invoke({"prompt": "a blue cup"})
    outside = tmp_path / "outside"
    (outside / "run" / "images").mkdir(parents=True)
    secret = PNG + b"secret"
    for p in (outside / "final.png", outside / "run" / "final.png", outside / "run" / "images" / "x.png"):
        p.write_bytes(secret)
    return app, out, Path(out["run_dir"]), outside


def test_paths_that_leave_the_root_are_404(planted, tmp_path):
    app, out, run_dir, outside = planted
    run = run_dir.name
    for path in [
        "../outside/final.png",
        f"{run}/../../outside/final.png",
        "%2e%2e/outside/final.png",  # a server that did not decode, or a client that encoded twice
        f"{run}/%2e%2e/%2e%2e/outside/final.png",
        f"{run}/images/..%2f..%2f..%2foutside%2ffinal.png",
        str(outside / "final.png"),  # absolute: /strokegraph/images//tmp/.../final.png
        f"/{outside.relative_to('/')}/run/final.png",
        f"{run}/images/../final.png",
        f"{run}\\..\\..\\outside\\final.png",
    ]:
        status, headers, body = get(app, "/strokegraph/images/" + path)
        assert (status, body) == (404, b""), path
        assert headers["x-content-type-options"] == "nosniff"


def test_symlinks_planted_under_the_root_are_404(planted, tmp_path):
    app, out, run_dir, outside = planted
    served = tmp_path / "served"
    (run_dir / "images" / "evil.png").symlink_to(outside / "final.png")  # a file link in the run
    (served / "linked-run").symlink_to(outside / "run")  # a run folder that is a link
    (served / "thread").mkdir()
    (served / "thread" / "run").symlink_to(outside / "run")  # inside a thread folder
    (served / "linked-thread").symlink_to(outside)  # a thread folder that is a link
    (run_dir / "final.png").unlink()
    (run_dir / "final.png").symlink_to(outside / "final.png")  # final.png itself replaced by a link
    for path in [
        f"{run_dir.name}/images/evil.png",
        f"{run_dir.name}/final.png",
        "linked-run/final.png",
        "linked-run/images/x.png",
        "thread/run/final.png",
        "linked-thread/run/final.png",
    ]:
        assert get(app, "/strokegraph/images/" + path)[:3:2] == (404, b""), path


def test_unknown_or_other_files_are_404(planted):
    app, out, run_dir, _ = planted
    run = run_dir.name
    (run_dir / "images" / "not-a-png.png").write_text("<script>alert(1)</script>")
    for path in [
        f"{run}/images/nope.png",  # no such image
        f"{run}/trajectory.json",  # a run's other files are not images
        f"{run}/report.html",
        f"{run}/run.json",
        f"{run}/images",
        f"{run}/images/not-a-png.png",  # named .png, but not a PNG
        "no-such-run/final.png",
        "",
    ]:
        assert get(app, "/strokegraph/images/" + path)[:3:2] == (404, b""), path
    assert get(app, out["final_image_url"], method="POST")[0] == 405
    assert get(app, out["final_image_url"])[0] == 200  # the run itself is still served


def test_the_server_applies_its_authentication_to_the_image_route():
    # Without this flag LangGraph's server leaves routes mounted through http.app open even when
    # `auth` protects its API (checked with langgraph-api 0.16.7 and a token-checking auth handler:
    # the image route answered 200 without the token; with the flag 401, and 200 with it).
    config = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    assert config["http"]["enable_custom_route_auth"] is True
