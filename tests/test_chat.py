"""Chat-model roles: JSON replies checked by pydantic, re-asked once, then a run error."""

from __future__ import annotations

import json

import pytest
from conftest import CRITIC_REPLY, GOOD, PROMPT

from strokegraph.agents.chat import PlannerReply
from strokegraph.agents.planner import ChatPlanner
from strokegraph.errors import RunError, UsageError
from strokegraph.testing import ScriptedChatModel


def _text(message) -> str:
    return "".join(p["text"] for p in message["content"] if p["type"] == "text")


def test_valid_reply_becomes_scene_and_plan():
    model = ScriptedChatModel([json.dumps(GOOD)])
    scene, plan = ChatPlanner(model).plan(PROMPT)
    assert [e.noun for e in scene.entities] == ["cat", "kite"]
    assert scene.relations[0].predicate == "below"
    assert plan.steps[0].entity_ids == ("e1",)
    messages, schema = model.calls[0]
    assert schema is PlannerReply
    assert PROMPT in _text(messages[0]) and "<ins>" in _text(messages[0])


def test_fenced_json_is_accepted():
    model = ScriptedChatModel(["Here you go:\n```json\n" + json.dumps(GOOD) + "\n```"])
    scene, _ = ChatPlanner(model).plan(PROMPT)
    assert len(scene.entities) == 2


def test_invalid_reply_is_reasked_once_with_the_error():
    bad = json.loads(json.dumps(GOOD))
    bad["scene"]["entities"][0]["colour"] = "teal"
    model = ScriptedChatModel([json.dumps(bad), json.dumps(GOOD)])
    scene, _ = ChatPlanner(model).plan(PROMPT)
    assert scene.entities[0].colour == "red"
    second = model.calls[1][0]
    assert second[1]["role"] == "assistant" and "teal" in _text(second[1])
    assert "not valid" in _text(second[2]) and "colour" in _text(second[2])


def test_plan_that_skips_an_entity_is_invalid():
    bad = json.loads(json.dumps(GOOD))
    bad["plan"]["steps"] = bad["plan"]["steps"][:1]
    model = ScriptedChatModel([json.dumps(bad), "not json at all"])
    with pytest.raises(RunError, match=r"invalid PlannerReply after one re-ask: .*node 'planner'"):
        ChatPlanner(model).plan(PROMPT)
    assert "every entity exactly once" in _text(model.calls[1][0][-1])


def test_preparse_sends_the_rules_reading():
    model = ScriptedChatModel([json.dumps(GOOD)])
    ChatPlanner(model, preparse=True).plan(PROMPT)
    text = _text(model.calls[0][0][0])
    assert '"noun": "kite"' in text and '"predicate": "below"' in text


def test_empty_prompt_never_reaches_the_model():
    model = ScriptedChatModel([])
    with pytest.raises(UsageError):
        ChatPlanner(model).plan("  ")
    assert model.calls == []


def _critique_request():
    from PIL import Image

    from strokegraph.agents.critic import CritiqueRequest
    from strokegraph.grammar import parse

    scene = parse(PROMPT)
    image = Image.new("RGB", (64, 64), (153, 153, 153))
    return CritiqueRequest(
        scene=scene, scope=frozenset({"e0", "e1"}), image=image, description="A red cat below a blue kite."
    )


def test_chat_critic_sends_the_image_and_reads_violations():
    from strokegraph.agents.chat import CriticReply
    from strokegraph.agents.critic import ChatCritic

    model = ScriptedChatModel([json.dumps(CRITIC_REPLY)])
    critique = ChatCritic(model).critique(_critique_request())
    assert not critique.passed
    assert critique.violations[0].kind == "relation" and critique.violations[0].box == (0.1, 0.1, 0.4, 0.3)
    assert critique.detections[0].colour == "red"
    messages, schema = model.calls[0]
    assert schema is CriticReply
    assert [p["type"] for p in messages[0]["content"]] == ["image", "text"]
    assert "A red cat below a blue kite." in _text(messages[0]) and "e0, e1" in _text(messages[0])


def test_chat_critic_rejects_unknown_ids_then_gives_up():
    from strokegraph.agents.critic import ChatCritic

    bad = json.loads(json.dumps(CRITIC_REPLY))
    bad["violations"][0]["entity_ids"] = ["e7"]
    model = ScriptedChatModel([json.dumps(bad), json.dumps({"violations": "none"})])
    with pytest.raises(RunError, match="invalid CriticReply after one re-ask.*node 'critic'"):
        ChatCritic(model).critique(_critique_request())
    assert "unknown entity ids" in _text(model.calls[1][0][-1])
