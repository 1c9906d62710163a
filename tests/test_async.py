"""agenerate: the same runs as generate, several at once in one event loop."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import FailingDrafter
from PIL import Image

from strokegraph import agenerate, registry
from strokegraph.app.runner import generate
from strokegraph.errors import RunError, UsageError
from strokegraph.graph import RunState, build_graph, engine
from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies

PROMPT = "three purple stars above a green circle"


def _images(result) -> list[str]:
    return [e.image.sha256 for e in result.trajectory if e.image]


def _progress(events: list[dict]) -> list[tuple]:
    return [(e["kind"], e["stage"], e["step"], e["round"]) for e in events]


def test_agenerate_makes_what_generate_makes(tmp_path):
    sync_events, async_events = [], []
    a = generate(PROMPT, out=tmp_path / "sync", seed=5, on_progress=sync_events.append)
    b = asyncio.run(agenerate(PROMPT, out=tmp_path / "async", seed=5, on_progress=async_events.append))

    assert b.final_image.read_bytes() == a.final_image.read_bytes()
    assert _images(b) == _images(a) and (b.passed, b.rounds) == (a.passed, a.rounds)
    assert _progress(async_events) == _progress(sync_events) and async_events
    for name in ("final.png", "trajectory.json", "report.html", engine.JOURNAL):
        assert (b.run_dir / name).is_file()

    # The async checkpointer wrote the final state with strokegraph's serializer.
    with engine.checkpointer(b.run_dir / engine.JOURNAL) as saver:
        snapshot = build_graph(checkpointer=saver).get_state({"configurable": {"thread_id": b.run_dir.name}})
    restored = RunState.model_validate(snapshot.values)
    assert snapshot.next == () and restored.trajectory == b.trajectory


def test_four_prompts_at_once_each_get_their_own_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The same prompt twice: both runs are named in the same second and must not share a directory.
    prompts = [PROMPT, PROMPT, "a dog right of a teddy bear", "two red apples and a blue cup"]

    async def main():
        return await asyncio.gather(*(agenerate(p, seed=i) for i, p in enumerate(prompts)))

    results = asyncio.run(main())
    assert len({r.run_dir.resolve() for r in results}) == 4
    for i, (prompt, result) in enumerate(zip(prompts, results, strict=True)):
        assert result.run_dir.parent.resolve() == (tmp_path / "runs").resolve()
        assert json.loads((result.run_dir / "trajectory.json").read_text())["prompt"] == prompt
        # Running beside others changes nothing: each run draws what it draws alone.
        alone = generate(prompt, out=tmp_path / f"alone{i}", seed=i)
        assert result.final_image.read_bytes() == alone.final_image.read_bytes()
        assert _images(result) == _images(alone)


def test_an_empty_prompt_is_a_usage_error_and_makes_nothing(tmp_path):
    with pytest.raises(UsageError, match="prompt is empty"):
        asyncio.run(agenerate("  ", out=tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_an_unplannable_prompt_leaves_no_run_behind(tmp_path):
    with pytest.raises(UsageError, match="names no object"):
        asyncio.run(agenerate("red and blue", out=tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_a_failing_backend_keeps_what_was_made(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(RunError, match=r"MemoryError: out of memory \(node 'drafter', step 1\)"):
        asyncio.run(agenerate("a dog right of a teddy bear", out=out, drafter=FailingDrafter()))
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["error"].startswith("RunError")
    assert [e["stage"] for e in doc["events"]][:3] == ["plan", "draft", "critique"]
    with Image.open(out / "final.png") as im:
        assert im.size == (512, 512)
    assert (out / "images" / "step01-draft.png").is_file()
    assert (out / "report.html").is_file()


def test_api_backends_run_concurrently_against_the_loopback_server(tmp_path, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    prompts = ["a photo of a bench left of a cat", "a red apple to the left of a blue cup", "a photo of a dog"]
    with FakeOpenAI(latency=0.05, fallback=any_prompt_replies()) as server:
        connection = {"base_url": server.url, "api_key": "sk-test", "max_retries": 0}
        settings = {r.role: dict(connection) for r in registry.registered() if r.provider == "openai"}
        settings["drafter"]["size"] = settings["refiner"]["size"] = "128x128"

        async def main():
            runs = (
                agenerate(
                    p,
                    out=tmp_path / str(i),
                    planner="openai:gpt-4.1-mini",
                    critic="openai:gpt-4.1-mini",
                    drafter="openai:gpt-image-1.5",
                    refiner="openai:gpt-image-1.5",
                    settings=settings,
                )
                for i, p in enumerate(prompts)
            )
            return await asyncio.gather(*runs)

        results = asyncio.run(main())
    assert all(r.passed and r.rounds == 0 for r in results)
    assert [len(r.plan.steps) for r in results] == [2, 2, 1]
    # One planner call, then a draft and a critique per step.
    assert len(server.requests) == sum(1 + 2 * len(r.plan.steps) for r in results)
    assert {r.final_image.stat().st_size > 0 for r in results} == {True}
