"""agenerate's async path: nodes await a backend's async method, so runs waiting on a server hold no thread.

The OpenAI backends' async methods run on an ``AsyncOpenAI`` twin of their client, against the
loopback server, with the limits of the sync calls; chat roles await a model's ``acomplete``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image
from red_apple import CHAT, IMAGE, PLAN, PROMPT, SCENE

from strokegraph import agenerate
from strokegraph._drive import drive
from strokegraph.agents.chat import CriticReply, PlannerReply
from strokegraph.agents.critic import ChatCritic
from strokegraph.agents.drafter import DraftRequest
from strokegraph.agents.planner import ChatPlanner
from strokegraph.agents.refiner import RefineRequest
from strokegraph.app.runner import resume
from strokegraph.errors import RunError
from strokegraph.grammar import RulesPlanner
from strokegraph.schema import Critique, Violation
from strokegraph.testing.openai_server import (
    FakeOpenAI,
    Reply,
    Request,
    any_prompt_replies,
    chat_reply,
    error_reply,
    huge_reply,
    image_reply,
)
from strokegraph.tools import openai_api

pytestmark = pytest.mark.usefixtures("no_ambient_openai_env")

SECRET = "sk-test-async-secret"
IDS = {"planner": f"openai:{CHAT}", "critic": f"openai:{CHAT}"} | {
    role: f"openai:{IMAGE}" for role in ("drafter", "refiner")
}


def _settings(server: FakeOpenAI) -> dict[str, dict]:
    connection = {"base_url": server.url, "api_key": SECRET, "max_retries": 0}
    settings: dict[str, dict] = {role: dict(connection) for role in IDS}  # the roles on the server
    settings["drafter"]["size"] = settings["refiner"]["size"] = "64x64"
    return settings


def _is_planner(request: Request) -> bool:
    return (request.json or {}).get("response_format", {}).get("json_schema", {}).get("name") == "PlannerReply"


def _planner_reply(prompt: str) -> str:
    scene, plan = RulesPlanner().plan(prompt)
    reply = {"scene": scene.model_dump(mode="json", exclude={"prompt"}), "plan": plan.model_dump(mode="json")}
    return json.dumps(reply)


# ---------------------------------------------------------------------------------------------
# Many runs at once, no thread per call
# ---------------------------------------------------------------------------------------------


def test_sixteen_runs_wait_on_the_server_together_with_a_one_thread_executor(tmp_path):
    # Each planner request is answered only once all 16 are in flight at once. With a thread per
    # backend call, the one thread would hold the first request and the barrier would break.
    runs = 16
    barrier = threading.Barrier(runs)
    chat = any_prompt_replies()["chat/completions"]
    assert callable(chat)

    def gathered(request: Request) -> Reply:
        if _is_planner(request):
            barrier.wait(30)  # a liveness bound: the barrier breaks instead of hanging the test
        return chat(request)

    with FakeOpenAI(fallback={**any_prompt_replies(), "chat/completions": gathered}) as server:

        async def main():
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
            return await asyncio.gather(
                *(agenerate(PROMPT, out=tmp_path / str(i), settings=_settings(server), **IDS) for i in range(runs))
            )

        results = asyncio.run(main())
    assert not barrier.broken
    assert server.most_in_flight >= runs
    assert all(r.passed for r in results)
    # Usage recorded inside awaited calls reaches each run's events: one call per event, the fake's tokens.
    for result in results:
        plan = result.trajectory[0]
        assert plan.stage == "plan" and plan.usage is not None
        assert (plan.usage.calls, plan.usage.prompt_tokens, plan.usage.completion_tokens) == (1, 11, 7)
        draft = result.trajectory[1]
        assert draft.usage is not None and draft.usage.images == 1


# ---------------------------------------------------------------------------------------------
# Cancelling a run
# ---------------------------------------------------------------------------------------------


def test_cancelling_agenerate_abandons_the_request_in_flight_and_the_run_resumes(tmp_path):
    slow = threading.Event()
    slow.set()
    chat = any_prompt_replies()["chat/completions"]
    assert callable(chat)

    def critic_hangs(request: Request) -> Reply:
        reply = chat(request)
        # Long enough that a run waiting for it is seen waiting; short enough to end a test that does.
        return dataclasses.replace(reply, delay=20) if slow.is_set() and not _is_planner(request) else reply

    out = tmp_path / "run"
    events: list[dict] = []
    with FakeOpenAI(fallback={**any_prompt_replies(), "chat/completions": critic_hangs}) as server:
        settings = _settings(server)

        async def main():
            task = asyncio.create_task(agenerate(PROMPT, out=out, settings=settings, on_progress=events.append, **IDS))
            while len(server.sent("chat/completions")) < 2:  # the planner's request, then the critic's
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            answered = list(server.answered)
            critic_request = server.sent("chat/completions")[1]
            for _ in range(500):  # a liveness bound: the server polls for a closed connection
                if critic_request in server.abandoned:
                    break
                await asyncio.sleep(0.01)
            return info.value, critic_request, answered

        error, critic_request, answered_when_cancelled = asyncio.run(main())
        # The run ended without waiting for the critic's reply (a thread blocked in the request would
        # have held it until the reply came), and its request was abandoned.
        assert critic_request not in answered_when_cancelled
        assert critic_request in server.abandoned
        assert getattr(error, "run_dir", None) == out

        doc = json.loads((out / "trajectory.json").read_text())
        assert [e["stage"] for e in doc["events"]] == ["plan", "draft"]
        assert [(e["kind"], e["stage"]) for e in events] == [
            ("start", "plan"),
            ("end", "plan"),
            ("start", "draft"),
            ("end", "draft"),
            ("start", "critique"),
        ]

        slow.clear()
        result = resume(out, settings=settings, **IDS)
    assert result.passed
    assert [e.stage for e in result.trajectory] == ["plan", "draft", "critique"]
    # The planner and the drafter did not run again.
    assert sum(_is_planner(r) for r in server.requests) == 1
    assert len(server.sent("images/generations")) == 1


def test_an_awaited_backend_failure_names_its_node_and_step_and_keeps_the_run(tmp_path):
    out = tmp_path / "run"
    with FakeOpenAI(fallback=any_prompt_replies()) as server:
        server.script("images/generations", error_reply(400, "no drawing today"))
        with pytest.raises(RunError, match=r": 400 bad request: no drawing today \(node 'drafter', step 0\)"):
            asyncio.run(agenerate(PROMPT, out=out, settings=_settings(server), **IDS))
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["error"].startswith("RunError") and [e["stage"] for e in doc["events"]] == ["plan"]


def test_the_graph_tries_an_awaited_node_again_after_a_transient_failure(tmp_path):
    # The client makes no retries of its own here (max_retries=0): the 503 reaches the graph, whose
    # retry policy runs the coroutine node again.
    with FakeOpenAI(fallback=any_prompt_replies()) as server:
        server.script("chat/completions", error_reply(503))
        result = asyncio.run(agenerate(PROMPT, out=tmp_path / "run", settings=_settings(server), **IDS))
    assert result.passed
    # The failed planner request, the planner's again, then the critic's.
    assert [_is_planner(r) for r in server.sent("chat/completions")] == [True, True, False]


# ---------------------------------------------------------------------------------------------
# The async OpenAI calls keep the limits of the sync ones
# ---------------------------------------------------------------------------------------------


def _plan_both(server: FakeOpenAI, script: list[Reply], **settings) -> tuple[str, str]:
    """The errors of ``plan`` and of ``aplan`` on the same script, each given its own copy."""
    planner = openai_api.planner(CHAT, base_url=server.url, api_key=SECRET, **settings)
    messages = []
    for call in (lambda: planner.plan(PROMPT), lambda: asyncio.run(planner.aplan(PROMPT))):
        server.script("chat/completions", *script)
        with pytest.raises(RunError) as info:
            call()
        messages.append(str(info.value))
    return messages[0], messages[1]


TRICKLE = Reply(body=chat_reply("{}").body | {"padding": "x" * 600}, drip=0.05)


@pytest.mark.parametrize(
    ("script", "settings", "expected"),
    [
        ([TRICKLE], {"timeout": 1, "max_retries": 0}, r"timed out \(1 s per try\)"),
        ([huge_reply(64 * 2**20, declare_length=False)], {"max_retries": 0}, r"larger than the 8 MiB limit"),
        ([huge_reply(64 * 2**20)], {"max_retries": 0}, r"larger than the 8 MiB limit"),
        ([error_reply(500)] * 3, {"max_retries": 2}, r"500 server error after 2 retries: scripted failure"),
        ([error_reply(400, f"bad key {SECRET}")], {}, r"400 bad request: bad key \*\*\*"),
    ],
    ids=["trickle", "huge-undeclared", "huge-declared", "retries", "redaction"],
)
def test_the_async_call_fails_as_the_sync_one_does(server, script, settings, expected):
    sync, asynchronous = _plan_both(server, script, **settings)
    assert sync == asynchronous
    assert SECRET not in asynchronous
    assert re.search(expected, asynchronous)


def test_the_deadline_ends_an_async_call_across_its_retries(server):
    server.script("chat/completions", *[TRICKLE] * 6)
    planner = openai_api.planner(CHAT, base_url=server.url, api_key=SECRET, timeout=0.5, deadline=1.2, max_retries=5)
    with pytest.raises(RunError, match=r"the call's 1.2 s deadline ran out \(node 'planner'\)$") as info:
        asyncio.run(planner.aplan(PROMPT))
    assert not info.value.transient
    assert 1 <= len(server.sent("chat/completions")) <= 2


def test_a_retried_async_call_succeeds_with_the_second_reply(server):
    server.script("chat/completions", error_reply(503), chat_reply(_planner_reply(PROMPT)))
    planner = openai_api.planner(CHAT, base_url=server.url, api_key=SECRET, max_retries=1)
    scene, plan = asyncio.run(planner.aplan(PROMPT))
    assert [e.noun for e in scene.entities] == ["apple"] and len(plan.steps) == 1
    assert len(server.sent("chat/completions")) == 2


def test_a_huge_async_image_reply_is_refused_at_its_cap(server):
    server.script("images/generations", huge_reply(100 * 2**20, declare_length=False))
    drafter = openai_api.drafter(IMAGE, base_url=server.url, api_key=SECRET, max_retries=0)
    request = DraftRequest(scene=SCENE, plan=PLAN, step=0, image=None, seed=0)
    with pytest.raises(RunError, match=r"the reply is larger than the 64 MiB limit.*\(node 'drafter', step 0\)$"):
        asyncio.run(drafter.adraft(request))


def test_adraft_draws_what_draft_draws(server):
    drafter = openai_api.drafter(IMAGE, base_url=server.url, api_key=SECRET, size="64x64")
    server.fallback.update(any_prompt_replies((32, 32)))
    request = DraftRequest(scene=SCENE, plan=PLAN, step=0, image=None, seed=0)
    sync, asynchronous = drafter.draft(request), asyncio.run(drafter.adraft(request))
    assert asynchronous.image.size == sync.image.size == (64, 64)
    assert asynchronous.image.tobytes() == sync.image.tobytes()
    first, second = server.sent("images/generations")
    assert first.json == second.json


def test_arefine_inpaints_what_refine_inpaints(server):
    blue = image_reply(Image.new("RGB", (64, 64), (0, 0, 255)))
    server.script("images/edits", blue, blue)
    refiner = openai_api.refiner(IMAGE, base_url=server.url, api_key=SECRET, grow=0.0, feather=4)
    violation = Violation(
        kind="attribute",
        entity_ids=("e0",),
        relation=None,
        expected="red",
        observed="green",
        box=(0.25, 0.25, 0.75, 0.75),
        message="the apple is green, not red",
    )
    request = RefineRequest(
        scene=SCENE,
        plan=PLAN,
        step=0,
        round=1,
        image=Image.new("RGB", (64, 64), "white"),
        critique=Critique(violations=(violation,)),
        seed=0,
    )
    sync, asynchronous = refiner.refine(request), asyncio.run(refiner.arefine(request))
    assert asynchronous.refinement == sync.refinement and sync.refinement.operation == "inpaint"
    assert asynchronous.image.tobytes() == sync.image.tobytes()
    first, second = server.sent("images/edits")
    assert first.fields == second.fields and first.files["mask"].data == second.files["mask"].data


def test_backends_that_share_a_client_share_its_async_twin_per_event_loop(server):
    server.fallback.update(any_prompt_replies())
    planner = openai_api.planner(CHAT, base_url=server.url, api_key=SECRET)
    critic = openai_api.critic(CHAT, base_url=server.url, api_key=SECRET)
    assert planner.model.client is critic.model.client

    async def twins():
        return openai_api._twin(planner.model.client, 1), openai_api._twin(critic.model.client, 1)

    first, second = asyncio.run(twins()), asyncio.run(twins())
    assert first[0] is first[1]
    # A new loop gets a twin of its own: an async connection belongs to the loop that opened it.
    assert second[0] is not first[0]
    assert str(first[0].base_url) == str(planner.model.client.base_url)


# ---------------------------------------------------------------------------------------------
# Chat roles await a model's acomplete
# ---------------------------------------------------------------------------------------------


class AsyncModel:
    """A chat model with ``acomplete``: its replies in order; ``complete`` must not be called."""

    def __init__(self, replies: list[str], schema: type = PlannerReply) -> None:
        self.replies = list(replies)
        self.schema = schema
        self.asked: list[list[dict]] = []

    def complete(self, messages, *, schema=None) -> str:
        raise AssertionError("the async path called complete")

    async def acomplete(self, messages, *, schema=None) -> str:
        assert schema is self.schema
        await asyncio.sleep(0)  # a real await: this runs on the event loop
        self.asked.append(list(messages))
        return self.replies.pop(0)


class SyncModel:
    """A chat model without ``acomplete``: records the thread each call ran in."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.threads: list[str] = []

    def complete(self, messages, *, schema=None) -> str:
        self.threads.append(threading.current_thread().name)
        return self.reply


def test_aplan_awaits_acomplete_and_reasks_once_as_plan_does():
    model = AsyncModel(["not json", _planner_reply(PROMPT)])
    scene, plan = asyncio.run(ChatPlanner(model).aplan(PROMPT))
    assert [e.noun for e in scene.entities] == ["apple"] and len(plan.steps) == 1
    assert len(model.asked) == 2
    reask = model.asked[1][-1]["content"][0]["text"]
    assert reask.startswith("That answer was not valid:")


def test_aplan_gives_up_after_one_reask_with_the_run_error_of_plan():
    model = AsyncModel(["{}", "{}"])
    with pytest.raises(RunError, match=r"^invalid PlannerReply after one re-ask: .* \(node 'planner'\)$"):
        asyncio.run(ChatPlanner(model).aplan(PROMPT))


def test_aplan_runs_complete_in_a_worker_thread_for_a_model_without_acomplete():
    model = SyncModel(_planner_reply(PROMPT))
    asyncio.run(ChatPlanner(model).aplan(PROMPT))
    assert model.threads and model.threads[0] != threading.main_thread().name


def test_agenerate_awaits_a_chat_models_acomplete(tmp_path):
    model = AsyncModel([_planner_reply(PROMPT)])
    judge = AsyncModel([json.dumps({"violations": [], "detections": []})], schema=CriticReply)
    result = asyncio.run(agenerate(PROMPT, out=tmp_path / "run", planner=ChatPlanner(model), critic=ChatCritic(judge)))
    assert result.passed and len(model.asked) == 1 and len(judge.asked) == 1
    # The critic saw the drawn canvas as an image part.
    assert any(part["type"] == "image" for part in judge.asked[0][0]["content"])


def test_the_coroutine_loop_is_compiled_once_beside_the_sync_one():
    from strokegraph.graph import engine, nodes

    assert engine.compiled(asynchronous=True) is engine.compiled(asynchronous=True)
    assert engine.compiled(asynchronous=True) is not engine.compiled()
    assert asyncio.iscoroutinefunction(nodes.aplanner) and not asyncio.iscoroutinefunction(nodes.planner)
    assert (nodes.planner.__name__, nodes.arefiner.__name__) == ("planner", "arefiner")


def test_drive_refuses_a_coroutine_that_waits_on_the_event_loop():
    class Suspends:
        def __await__(self):
            yield  # what a pending future does: hand control to the event loop

    async def waits():
        await Suspends()

    with pytest.raises(RuntimeError, match="waited on the event loop"):
        drive(waits())


def test_a_canvas_image_is_read_in_a_worker_thread_under_agenerate(tmp_path):
    # The drafter of step 2 gets the canvas that step 1 saved; under agenerate the node opens it in
    # a worker thread. The run's images match generate's, so the files went through unchanged.
    from strokegraph.app.runner import generate

    prompt = "a red apple to the left of a blue cup"
    a = generate(prompt, out=tmp_path / "sync", seed=3)
    b = asyncio.run(agenerate(prompt, out=tmp_path / "async", seed=3))
    assert [e.image.sha256 for e in b.trajectory if e.image] == [e.image.sha256 for e in a.trajectory if e.image]
    with Image.open(b.final_image) as im:
        assert im.size == (512, 512)


def test_images_are_png_encoded_in_a_worker_thread_when_awaited(server, monkeypatch):
    # PNG encoding takes tens of ms at 1024x1024: on the event loop it would hold up every other run.
    encoded_on: list[threading.Thread] = []
    png = openai_api._png

    def recording(image, mode="RGB"):
        encoded_on.append(threading.current_thread())
        return png(image, mode)

    monkeypatch.setattr(openai_api, "_png", recording)
    server.fallback.update(any_prompt_replies((64, 64)))
    chat = openai_api.critic(CHAT, base_url=server.url, api_key=SECRET).model
    refiner = openai_api.refiner(IMAGE, base_url=server.url, api_key=SECRET)
    canvas = Image.new("RGB", (64, 64), "white")
    message = {"role": "user", "content": [{"type": "text", "text": "judge"}, {"type": "image", "image": canvas}]}
    violation = Violation(
        kind="missing",
        entity_ids=("e0",),
        expected="a red apple",
        observed="nothing",
        box=(0.2, 0.2, 0.6, 0.6),
        message="no apple",
    )
    request = RefineRequest(
        scene=SCENE, plan=PLAN, step=0, round=1, image=canvas, critique=Critique(violations=(violation,)), seed=0
    )

    async def both() -> threading.Thread:
        await chat.acomplete([message], schema=CriticReply)
        await refiner.arefine(request)
        return threading.current_thread()

    loop_thread = asyncio.run(both())
    assert len(encoded_on) >= 3  # the critic's image, the refiner's canvas and its mask
    assert loop_thread not in encoded_on
