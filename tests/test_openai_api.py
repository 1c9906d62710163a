"""OpenAI backends against a loopback server: requests as the API wants them, faults, usage, no leaked key."""

from __future__ import annotations

import base64
import io
import json
import socket

import numpy as np
import pytest
from PIL import Image

from strokegraph import registry, usage
from strokegraph.agents.chat import CriticReply, PlannerReply
from strokegraph.agents.critic import CritiqueRequest
from strokegraph.agents.drafter import DraftRequest
from strokegraph.agents.refiner import RefineRequest, region_mask
from strokegraph.app.runner import generate
from strokegraph.errors import RunError, UsageError
from strokegraph.schema import Critique, Entity, Plan, PlanStep, Relation, SceneGraph, Violation
from strokegraph.testing.openai_server import Reply, chat_reply, error_reply, image_reply
from strokegraph.tools import openai_api

pytestmark = pytest.mark.usefixtures("no_ambient_openai_env")

SECRET = "sk-test-secret"
#: The roles an ``openai:`` backend serves.
OPENAI_ROLES = [r.role for r in registry.registered() if r.provider == "openai"]
CHAT, IMAGE = "gpt-4.1-mini", "gpt-image-1.5"
PROMPT = "a red apple to the left of a blue cup"
PLANNED = {
    "scene": {
        "entities": [
            {"id": "e0", "noun": "apple", "count": 1, "colour": "red", "attributes": []},
            {"id": "e1", "noun": "cup", "count": 1, "colour": "blue", "attributes": []},
        ],
        "relations": [{"subject": "e0", "predicate": "left of", "object": "e1"}],
        "constraints": [],
    },
    "plan": {
        "steps": [
            {"instruction": "Draw a red apple.", "description": "A red apple on the left.", "entity_ids": ["e0"]},
            {
                "instruction": "Add a blue cup right of it.",
                "description": "A red apple to the left of a blue cup.",
                "entity_ids": ["e1"],
            },
        ]
    },
}
SCENE = SceneGraph(
    prompt=PROMPT,
    entities=(Entity(id="e0", noun="apple", colour="red"), Entity(id="e1", noun="cup", colour="blue")),
    relations=(Relation(subject="e0", predicate="left of", object="e1"),),
)
PLAN = Plan(
    steps=(
        PlanStep(instruction="Draw a red apple.", description="A red apple on the left.", entity_ids=("e0",)),
        PlanStep(
            instruction="Add a blue cup.", description="A red apple to the left of a blue cup.", entity_ids=("e1",)
        ),
    )
)
CUP_BOX = [0.55, 0.3, 0.9, 0.7]


def _critic_json(violations=()) -> str:
    return json.dumps({"violations": list(violations), "detections": []})


WRONG_CUP = {
    "kind": "attribute",
    "entity_ids": ["e1"],
    "relation": None,
    "expected": "blue",
    "observed": "green",
    "box": CUP_BOX,
    "message": "expected a blue cup, found a green cup",
}


def _settings(server, **more):
    return {"base_url": server.url, "api_key": SECRET, **more}


def _canvas(size=(96, 64)) -> Image.Image:
    """A noisy canvas, so that any changed pixel shows."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------
# Chat: planner and critic
# ---------------------------------------------------------------------------------------------


def test_planner_sends_a_strict_schema_and_the_key_and_records_tokens_and_cost(server):
    server.script("chat/completions", chat_reply(json.dumps(PLANNED), prompt_tokens=1000, completion_tokens=500))
    planner = openai_api.planner(CHAT, **_settings(server, price_input_per_mtok=0.4, price_output_per_mtok=1.6))
    with usage.collect() as collected:
        scene, plan = planner.plan(PROMPT)
    assert [e.noun for e in scene.entities] == ["apple", "cup"] and len(plan.steps) == 2

    (request,) = server.sent("chat/completions")
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.json["model"] == CHAT
    fmt = request.json["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["name"] == PlannerReply.__name__
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False
    (message,) = request.json["messages"]
    assert message["role"] == "user" and PROMPT in message["content"][0]["text"]

    total = collected.total()
    assert (total.calls, total.prompt_tokens, total.completion_tokens) == (1, 1000, 500)
    assert total.cost_usd == pytest.approx((1000 * 0.4 + 500 * 1.6) / 1e6)


def test_critic_sends_the_image_as_a_png_data_url(server):
    server.script("chat/completions", chat_reply(_critic_json([WRONG_CUP])))
    critic = openai_api.critic(CHAT, **_settings(server))
    image = _canvas()
    with usage.collect() as collected:
        critique = critic.critique(CritiqueRequest(scene=SCENE, scope=frozenset({"e0", "e1"}), image=image))
    assert [v.kind for v in critique.violations] == ["attribute"]
    assert critique.violations[0].box == tuple(CUP_BOX)
    assert collected.total().cost_usd is None  # no prices set

    (request,) = server.sent("chat/completions")
    assert request.json["response_format"]["json_schema"]["name"] == CriticReply.__name__
    image_part, text_part = request.json["messages"][0]["content"]
    assert text_part["type"] == "text" and PROMPT in text_part["text"]
    assert image_part["type"] == "image_url" and image_part["image_url"]["detail"] == "low"
    prefix = "data:image/png;base64,"
    url = image_part["image_url"]["url"]
    assert url.startswith(prefix)
    sent = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))
    assert sent.format == "PNG" and np.array_equal(np.asarray(sent.convert("RGB")), np.asarray(image))


def test_malformed_json_is_reasked_and_the_second_answer_used(server):
    server.script("chat/completions", chat_reply('{"scene": {"entities": ['), chat_reply(json.dumps(PLANNED)))
    scene, _ = openai_api.planner(CHAT, **_settings(server)).plan(PROMPT)
    assert len(scene.entities) == 2
    first, second = server.sent("chat/completions")
    roles = [m["role"] for m in second.json["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert second.json["messages"][1]["content"] == '{"scene": {"entities": ['  # assistant turns are text
    assert "not valid" in second.json["messages"][2]["content"][0]["text"]


def test_a_reply_that_breaks_the_schema_twice_is_a_run_error(server):
    bad = json.loads(json.dumps(PLANNED))
    bad["scene"]["entities"][0]["colour"] = "teal"
    server.script("chat/completions", chat_reply(json.dumps(bad)), chat_reply(json.dumps(bad)))
    with pytest.raises(RunError, match=r"invalid PlannerReply after one re-ask.*node 'planner'"):
        openai_api.planner(CHAT, **_settings(server)).plan(PROMPT)
    assert len(server.sent("chat/completions")) == 2


# ---------------------------------------------------------------------------------------------
# Faults: retries, errors, timeouts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500])
def test_retryable_failures_are_retried_by_the_client(server, status):
    server.script("chat/completions", error_reply(status), chat_reply(json.dumps(PLANNED)))
    scene, _ = openai_api.planner(CHAT, **_settings(server)).plan(PROMPT)
    assert len(scene.entities) == 2
    assert len(server.sent("chat/completions")) == 2


def test_a_bad_request_is_not_retried_and_becomes_one_line(server):
    server.script("chat/completions", error_reply(400, "Invalid schema for response_format"))
    with pytest.raises(RunError) as info:
        openai_api.planner(CHAT, **_settings(server)).plan(PROMPT)
    message = str(info.value)
    assert message.startswith(f"openai:{CHAT}: 400 bad request: Invalid schema for response_format")
    assert not info.value.transient  # the graph's retry policy must not try it again
    assert "node 'planner'" in message and "\n" not in message
    assert len(server.sent("chat/completions")) == 1


def test_rate_limits_past_the_retries_name_status_and_retries(server):
    server.script("chat/completions", *[error_reply(429, "Rate limit reached")] * 3)
    with pytest.raises(
        RunError, match=rf"^openai:{CHAT}: 429 rate limited after 2 retries: Rate limit reached"
    ) as info:
        openai_api.planner(CHAT, **_settings(server)).plan(PROMPT)
    assert len(server.sent("chat/completions")) == 3
    assert info.value.transient


@pytest.mark.parametrize("after", ["600", "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_a_retry_after_over_two_minutes_is_not_waited_for(server, after):
    # As openai's own retries did: a server that asks for more than two minutes is not retried.
    limited = Reply(status=429, body=error_reply(429, "Rate limit reached").body, headers={"retry-after": after})
    server.script("chat/completions", limited)
    with pytest.raises(RunError, match=rf"^openai:{CHAT}: 429 rate limited: Rate limit reached \(node 'planner'\)$"):
        openai_api.planner(CHAT, **_settings(server)).plan(PROMPT)
    assert len(server.sent("chat/completions")) == 1


def test_a_server_slower_than_the_timeout_is_a_run_error(server):
    server.script("chat/completions", Reply(body={}, delay=3.0))
    planner = openai_api.planner(CHAT, **_settings(server, timeout=0.5, max_retries=0))
    with pytest.raises(RunError, match=rf"^openai:{CHAT}: timed out \(0.5 s per try\) \(node \'planner\'\)$") as info:
        planner.plan(PROMPT)
    assert info.value.transient


def test_an_unreachable_server_is_a_run_error(closed_port):
    port = closed_port
    planner = openai_api.planner(CHAT, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(RunError, match=rf"^openai:{CHAT}: cannot connect to http://127.0.0.1:{port}/v1"):
        planner.plan(PROMPT)


def _count_connects(monkeypatch, port: int) -> list[int]:
    """One entry per TCP connection attempt to ``port`` from now on (counted where sockets connect)."""
    tries: list[int] = []
    real = socket.create_connection

    def counting(address, *args, **kwargs):
        if address[1] == port:
            tries.append(1)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    return tries


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_refused_connection_on_this_machine_is_not_retried(closed_port, monkeypatch, host):
    # Nothing listens on a closed local port, and waiting seconds will not change that: one try,
    # one line (the retries used to take seconds, and the graph's three tries of them 11 s).
    tries = _count_connects(monkeypatch, closed_port)
    planner = openai_api.planner(CHAT, base_url=f"http://{host}:{closed_port}/v1", max_retries=2)
    with pytest.raises(RunError) as info:
        planner.plan(PROMPT)
    assert str(info.value) == (
        f"openai:{CHAT}: cannot connect to http://{host}:{closed_port}/v1/: connection refused (node 'planner')"
    )
    assert not info.value.transient and len(tries) == 1


def test_a_run_against_a_closed_local_port_makes_one_attempt(closed_port, monkeypatch, tmp_path):
    tries = _count_connects(monkeypatch, closed_port)
    url = f"http://alice:hunter2pw@127.0.0.1:{closed_port}/v1"
    with pytest.raises(RunError, match=r"cannot connect to http://\*\*\*@127\.0\.0\.1:\d+/v1/: connection refused"):
        generate(PROMPT, out=tmp_path / "run", planner=f"openai:{CHAT}", settings={"planner": {"base_url": url}})
    assert len(tries) == 1


def test_image_errors_name_the_node_and_step(server):
    server.script("images/generations", error_reply(404, "The model 'gpt-image-0' does not exist"))
    drafter = openai_api.drafter("gpt-image-0", **_settings(server))
    request = DraftRequest(scene=SCENE, plan=PLAN, step=0, image=None, seed=0)
    with pytest.raises(RunError, match=r"^openai:gpt-image-0: 404 not found: .*\(node 'drafter', step 0\)$"):
        drafter.draft(request)


# ---------------------------------------------------------------------------------------------
# Images: drafter and refiner
# ---------------------------------------------------------------------------------------------


def test_drafter_generates_the_first_step_then_edits_the_whole_canvas(server):
    server.script("images/generations", image_reply(Image.new("RGB", (64, 64), "red")))
    server.script("images/edits", image_reply(Image.new("RGB", (64, 64), "blue")))
    drafter = openai_api.drafter(IMAGE, **_settings(server, size="128x96", quality="low", price_per_image=0.04))

    with usage.collect() as collected:
        first = drafter.draft(DraftRequest(scene=SCENE, plan=PLAN, step=0, image=None, seed=0))
        second = drafter.draft(DraftRequest(scene=SCENE, plan=PLAN, step=1, image=first.image, seed=0))
    assert first.image.size == (128, 96) and first.sampling_steps == 0  # the setting fixes the canvas
    assert second.image.size == (128, 96) and second.image.getpixel((5, 5)) == (0, 0, 255)

    (generation,) = server.sent("images/generations")
    assert generation.json == {
        "model": IMAGE,
        "prompt": PLAN.steps[0].description,
        "n": 1,
        "size": "128x96",
        "quality": "low",
    }
    (edit,) = server.sent("images/edits")
    assert edit.fields["prompt"] == PLAN.steps[1].description and edit.fields["model"] == IMAGE
    assert set(edit.files) == {"image"}  # no mask: the whole canvas may change
    upload = edit.files["image"]
    assert (upload.filename, upload.content_type) == ("image.png", "image/png")
    assert upload.image().size == (128, 96)

    total = collected.total()
    assert (total.calls, total.images, total.prompt_tokens, total.completion_tokens) == (2, 2, 100, 800)
    assert total.cost_usd == pytest.approx(0.08)


def _refine_request(image, violations) -> RefineRequest:
    return RefineRequest(
        scene=SCENE, plan=PLAN, step=1, round=1, image=image, critique=Critique(violations=violations), seed=0
    )


def test_refiner_inpaints_with_an_alpha_mask_and_keeps_every_pixel_outside_it(server):
    server.script("images/edits", image_reply(Image.new("RGB", (64, 64), (0, 0, 255))))
    refiner = openai_api.refiner(IMAGE, **_settings(server, grow=0.0, feather=4))
    original = _canvas((96, 64))
    violation = Violation(**{**WRONG_CUP, "box": tuple(CUP_BOX)})
    result = refiner.refine(_refine_request(original, (violation,)))

    assert result.refinement.operation == "inpaint" and result.refinement.region == tuple(CUP_BOX)
    assert result.refinement.text == "Redraw the cup in blue."
    (edit,) = server.sent("images/edits")
    assert "A red apple to the left of a blue cup." in edit.fields["prompt"]
    assert "Redraw the cup in blue." in edit.fields["prompt"]
    mask_upload = edit.files["mask"]
    assert mask_upload.content_type == "image/png"
    mask = mask_upload.image()
    assert mask.mode == "RGBA" and mask.size == original.size == edit.files["image"].image().size
    alpha = np.asarray(mask)[..., 3]
    assert alpha[32, 70] == 0  # inside the cup's box: edit here
    assert alpha[5, 5] == 255 and alpha[32, 10] == 255  # far outside: keep

    keep = np.asarray(region_mask(original.size, tuple(CUP_BOX), grow=0.0, feather=4)) == 0
    out = np.asarray(result.image)
    assert result.image.size == original.size
    assert np.array_equal(out[keep], np.asarray(original)[keep])
    assert tuple(out[32, 70]) == (0, 0, 255)


def test_refiner_regenerates_the_whole_canvas_for_a_relation(server):
    server.script("images/edits", image_reply(Image.new("RGB", (32, 32), "white")))
    refiner = openai_api.refiner(IMAGE, **_settings(server))
    relation = Violation(
        kind="relation",
        entity_ids=("e0", "e1"),
        relation=SCENE.relations[0],
        expected="left of",
        observed="right of",
        box=(0.6, 0.2, 0.9, 0.8),
        message="expected the apple left of the cup, found it right of the cup",
    )
    result = refiner.refine(_refine_request(_canvas((96, 64)), (relation,)))
    assert result.refinement.operation == "regenerate" and result.refinement.region is None
    assert result.refinement.text == "Move the apple to the left of the cup."
    assert result.image.size == (96, 64)
    (edit,) = server.sent("images/edits")
    assert set(edit.files) == {"image"}


# ---------------------------------------------------------------------------------------------
# Keys, base URLs and settings
# ---------------------------------------------------------------------------------------------


def test_the_key_never_shows_in_errors_or_results(server):
    echo = lambda request: error_reply(401, f"Incorrect API key provided: {request.headers['authorization']}")  # noqa: E731
    server.script("chat/completions", echo)
    with pytest.raises(RunError) as info:
        openai_api.planner(CHAT, **_settings(server)).plan(PROMPT)
    assert "401 authentication failed" in str(info.value) and SECRET not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__

    server.script("chat/completions", chat_reply(json.dumps(PLANNED)))
    server.script("images/generations", image_reply(Image.new("RGB", (8, 8))))
    with usage.collect() as collected:
        results = [
            openai_api.planner(CHAT, **_settings(server)).plan(PROMPT),
            openai_api.drafter(IMAGE, **_settings(server, size="16x16")).draft(
                DraftRequest(scene=SCENE, plan=PLAN, step=0, image=None, seed=0)
            ),
        ]
    assert SECRET not in repr(results) + repr(collected.items)


@pytest.mark.parametrize("factory", [openai_api.planner, openai_api.critic, openai_api.drafter, openai_api.refiner])
def test_no_key_and_no_base_url_is_a_usage_error_before_any_call(factory):
    with pytest.raises(UsageError, match="OPENAI_API_KEY"):
        factory("some-model")


def test_base_url_from_the_environment_needs_no_key(server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    server.script("chat/completions", chat_reply(json.dumps(PLANNED)))
    openai_api.planner(CHAT).plan(PROMPT)
    (request,) = server.sent("chat/completions")
    assert request.headers["authorization"] == f"Bearer {openai_api.PLACEHOLDER_KEY}"


def test_key_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script("chat/completions", chat_reply(json.dumps(PLANNED)))
    openai_api.planner(CHAT, base_url=server.url).plan(PROMPT)
    assert server.sent("chat/completions")[0].headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("factory", "settings", "named"),
    [
        (openai_api.drafter, {"size": "big"}, "size"),
        (openai_api.drafter, {"quality": "ultra"}, "quality"),
        (openai_api.refiner, {"feather": -1}, "feather"),
        (openai_api.critic, {"detail": "tiny"}, "detail"),
        (openai_api.planner, {"timeout": 0}, "timeout"),
        (openai_api.critic, {"deadline": 0}, "deadline"),
        (openai_api.refiner, {"deadline": -1.0}, "deadline"),
        (openai_api.planner, {"price_input_per_mtok": 1.0}, "price_output_per_mtok"),
    ],
)
def test_bad_settings_are_usage_errors_naming_the_setting(factory, settings, named):
    with pytest.raises(UsageError, match=named):
        factory("some-model", api_key=SECRET, **settings)


def test_the_registry_accepts_the_documented_settings():
    for role in OPENAI_ROLES:
        registry.check(role, f"openai:{CHAT}", {"base_url": "http://127.0.0.1:1/v1", "api_key": SECRET})
    registry.check("refiner", f"openai:{IMAGE}", {"size": "auto", "grow": 0.1, "feather": 4, "price_per_image": 0.1})
    with pytest.raises(UsageError, match="unknown setting"):
        registry.check("drafter", f"openai:{IMAGE}", {"detail": "low"})


# ---------------------------------------------------------------------------------------------
# The whole loop
# ---------------------------------------------------------------------------------------------


def test_the_whole_loop_through_the_loopback_server(server, tmp_path):
    server.script(
        "chat/completions",
        chat_reply(json.dumps(PLANNED)),  # planner
        chat_reply(_critic_json()),  # step 1: the apple is right
        chat_reply(_critic_json([WRONG_CUP])),  # step 2: the cup is green
        chat_reply(_critic_json()),  # after the inpaint: right
    )
    server.script("images/generations", image_reply(Image.new("RGB", (1024, 1024), "red")))
    server.script(
        "images/edits",
        image_reply(Image.new("RGB", (1024, 1024), "green")),
        image_reply(Image.new("RGB", (1024, 1024), "blue")),
    )
    connection = {"base_url": server.url, "api_key": SECRET}
    result = generate(
        PROMPT,
        out=tmp_path / "run",
        planner=f"openai:{CHAT}",
        critic=f"openai:{CHAT}",
        drafter=f"openai:{IMAGE}",
        refiner=f"openai:{IMAGE}",
        settings={role: dict(connection) for role in OPENAI_ROLES},
    )
    assert result.passed and result.rounds == 1 and server.left() == {}
    run = result.run_dir
    for name in ("final.png", "trajectory.json", "report.html", "checkpoints.journal"):
        assert (run / name).is_file()
    images = sorted(p.name for p in (run / "images").iterdir())
    assert images == ["step01-draft.png", "step02-draft.png", "step02-refine1.png"]
    assert Image.open(run / "final.png").size == (1024, 1024)

    trajectory = json.loads((run / "trajectory.json").read_text())
    stages = [(e["stage"], e["step"]) for e in trajectory["events"]]
    assert stages == [
        ("plan", -1),
        ("draft", 0),
        ("critique", 0),
        ("draft", 1),
        ("critique", 1),
        ("refine", 1),
        ("critique", 1),
    ]
    refine = trajectory["events"][5]
    assert refine["refinement"]["operation"] == "inpaint" and refine["usage"]["images"] == 1
    assert trajectory["events"][0]["usage"]["prompt_tokens"] == 11
    assert trajectory["events"][0]["backend"] == f"openai:{CHAT}"

    for path in run.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
