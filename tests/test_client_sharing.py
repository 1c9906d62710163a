"""OpenAI backends share one client per endpoint, key and limits, across roles and runs.

Clients are counted where they are made, ``httpx2.Client.__init__`` (each OpenAI client makes one
HTTP client), wrapped by a counter that still builds them. The server is the loopback fake.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx2
import pytest

from strokegraph import registry
from strokegraph.app.runner import generate
from strokegraph.errors import RunError
from strokegraph.testing.openai_server import FakeOpenAI, Reply, any_prompt_replies
from strokegraph.tools import _cache, openai_api

pytestmark = pytest.mark.usefixtures("no_ambient_openai_env")

SECRET = "sk-test-very-secret-key"
CHAT, IMAGE = "openai:gpt-4.1-mini", "openai:gpt-image-1.5"
IDS = {"planner": CHAT, "critic": CHAT, "drafter": IMAGE, "refiner": IMAGE}


@pytest.fixture
def clients_made(monkeypatch) -> Iterator[list[int]]:
    """One entry per HTTP client made since the test began (with an empty cache)."""
    made: list[int] = []
    real = httpx2.Client.__init__

    def counting(self, *args, **kwargs):
        made.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(httpx2.Client, "__init__", counting)
    registry.clear_cache()
    yield made
    registry.clear_cache()


@pytest.fixture
def server():
    with FakeOpenAI(fallback=any_prompt_replies()) as fake:
        yield fake


def _settings(server, **extra) -> dict[str, dict]:
    connection = {"base_url": server.url, "api_key": SECRET, "max_retries": 0, **extra}
    settings: dict[str, dict] = {r.role: dict(connection) for r in registry.registered() if r.provider == "openai"}
    settings["drafter"]["size"] = settings["refiner"]["size"] = "64x64"
    return settings


def test_two_runs_share_one_client_per_endpoint_and_reply_limit(server, clients_made, tmp_path):
    prompt = "a photo of a cat and a dog"
    for run in ("first", "second"):
        result = generate(prompt, out=tmp_path / run, **IDS, settings=_settings(server))
        assert result.passed
    # Chat replies and image replies have different caps, so two clients; four roles, two runs.
    assert len(clients_made) == 2
    assert len(server.sent("chat/completions")) == 2 * 3 and len(server.sent("images/generations")) == 2


def test_the_backends_share_the_client_but_nothing_else(server, clients_made):
    settings = _settings(server)
    first, _ = registry.build_backends(IDS, settings)
    second, _ = registry.build_backends(IDS, settings)
    assert first.planner.model.client is second.critic.model.client is first.critic.model.client
    assert first.drafter.client is second.refiner.client
    assert first.planner is not second.planner and first.planner.model is not second.planner.model
    assert first.drafter is not second.drafter
    assert len(clients_made) == 2


@pytest.mark.parametrize(
    "change",
    [{"timeout": 30.0}, {"max_retries": 1}, {"api_key": "sk-another-key"}, {"base_url": "http://127.0.0.1:9/v1"}],
)
def test_a_different_endpoint_key_or_limit_gets_its_own_client(server, clients_made, change):
    base = openai_api.planner("gpt-4.1-mini", base_url=server.url, api_key=SECRET, timeout=60.0, max_retries=0)
    settings = {"base_url": server.url, "api_key": SECRET, "timeout": 60.0, "max_retries": 0} | change
    other = openai_api.planner("gpt-4.1-mini", **settings)
    assert other.model.client is not base.model.client and len(clients_made) == 2


def test_the_cache_knows_a_client_by_neither_its_key_nor_its_credentials(server, clients_made):
    url = server.url.replace("http://", "http://alice:hunter2-password@")
    openai_api.planner("gpt-4.1-mini", base_url=url, api_key=SECRET)
    (key,) = _cache.CLIENTS.keys()
    shown = repr(key)
    for secret in (SECRET, "hunter2-password", "alice", server.url.split("//")[1]):
        assert secret not in shown


def test_cancel_requests_ends_every_call_on_a_shared_client(clients_made):
    with FakeOpenAI() as hung:
        hung.script("chat/completions", Reply(body={}, delay=300), Reply(body={}, delay=300))
        planners = [
            openai_api.planner("gpt-4.1-mini", base_url=hung.url, api_key=SECRET, timeout=300) for _ in range(2)
        ]
        assert planners[0].model.client is planners[1].model.client
        raised: list[BaseException] = []

        def plan(planner):
            try:
                planner.plan("a red apple")
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                raised.append(exc)

        threads = [threading.Thread(target=plan, args=(p,), daemon=True) for p in planners]
        for thread in threads:
            thread.start()
        for _ in range(600):
            if len(hung.sent("chat/completions")) == 2:
                break
            time.sleep(0.05)
        openai_api.cancel_requests()
        for thread in threads:
            thread.join(60)  # a liveness bound: the hang lasts 300 s
        assert not any(t.is_alive() for t in threads)
    assert [str(e) for e in raised] == ["openai:gpt-4.1-mini: cancelled (node 'planner')"] * 2
    assert all(isinstance(e, RunError) for e in raised)
