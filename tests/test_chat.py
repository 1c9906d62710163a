"""Chat-model roles: JSON replies checked by pydantic, re-asked once, then a run error."""

from __future__ import annotations

import json

import pytest

from strokegraph.agents.chat import PlannerReply
from strokegraph.agents.planner import ChatPlanner
from strokegraph.errors import RunError, UsageError
from strokegraph.testing import ScriptedChatModel

PROMPT = "a red cat below a blue kite"
GOOD = {
    "scene": {
        "entities": [
            {"id": "e0", "noun": "cat", "count": 1, "colour": "red", "attributes": []},
            {"id": "e1", "noun": "kite", "count": 1, "colour": "blue", "attributes": []},
        ],
        "relations": [{"subject": "e0", "predicate": "below", "object": "e1"}],
        "constraints": [],
    },
    "plan": {
        "steps": [
            {"instruction": "Draw a blue kite.", "description": "A blue kite.", "entity_ids": ["e1"]},
            {
                "instruction": "Add a red cat below it.",
                "description": "A red cat below a blue kite.",
                "entity_ids": ["e0"],
            },
        ]
    },
}


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
