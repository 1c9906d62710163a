"""LangGraph's own development server (``langgraph dev``) serving langgraph.json, driven by its SDK client.

Needs ``langgraph-cli[inmem]`` (langgraph-api and langgraph-sdk), which strokegraph does not install;
skipped without it. The server runs on a loopback port, in a folder of its own.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LANGGRAPH = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("langgraph_api") is None or LANGGRAPH is None,
        reason="needs LangGraph's server: pip install 'langgraph-cli[inmem]'",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dev_server(tmp_path):
    """The base URL of ``langgraph dev`` serving this repository's langgraph.json."""
    import httpx

    port = free_port()
    env = {**os.environ, "STROKEGRAPH_SERVER_ROOT": str(tmp_path / "served"), "LANGSMITH_TRACING": "false"}
    log = (tmp_path / "dev.log").open("wb")
    server = subprocess.Popen(
        [LANGGRAPH, "dev", "--config", str(ROOT / "langgraph.json"), "--host", "127.0.0.1", "--port", str(port)]
        + ["--no-browser", "--no-reload"],
        cwd=ROOT,  # langgraph.json's http.app path is taken from the working directory
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if server.poll() is not None:
                pytest.fail(f"langgraph dev exited: {(tmp_path / 'dev.log').read_text()[-2000:]}")
            try:
                if httpx.get(base + "/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail(f"langgraph dev did not start: {(tmp_path / 'dev.log').read_text()[-2000:]}")
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_langgraph_dev_serves_the_loop_its_reviews_and_its_images(dev_server):
    import httpx
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=dev_server)
    drawn = client.assistants.get_graph("strokegraph_review", xray=True)
    assert {"loop:planner", "loop:drafter", "loop:critic", "loop:refiner"} <= {n["id"] for n in drawn["nodes"]}

    thread = client.threads.create()["thread_id"]
    run = {"input": {"prompt": "a red cat below a blue kite"}}
    images, kinds = [], []
    for _ in range(20):
        for part in client.runs.stream(
            thread, "strokegraph_review", stream_mode=["updates", "custom"], stream_subgraphs=True, **run
        ):
            if part.event.startswith("custom") and part.data.get("kind") == "image":
                images.append(part.data["url"])
        state = client.threads.get_state(thread)
        if not state["interrupts"]:
            break
        payload = state["interrupts"][0]["value"]
        kinds.append(payload["kind"])
        if payload["kind"] == "critique":
            # The image under review, fetched from the server by its URL.
            url = f"{state['values']['run_url']}/{payload['image']}"
            response = httpx.get(dev_server + url)
            assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
        run = {"command": {"resume": {"action": "accept"}}}
    else:
        pytest.fail("the run never ended")
    assert kinds[:2] == ["plan", "critique"]
    values = state["values"]
    assert values["passed"] is True and images == values["image_urls"]
    final = httpx.get(dev_server + values["final_image_url"])
    assert final.status_code == 200 and final.headers["content-type"] == "image/png"
    assert final.content == Path(values["final_image"]).read_bytes()
