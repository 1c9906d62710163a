"""Review in LangChain's human-in-the-loop format, the one Agent Chat UI shows with buttons.

The review payload is also a ``HITLRequest`` (``langchain.agents.middleware.human_in_the_loop``:
``action_requests`` and ``review_configs``), and an answer may be that format's
``{"decisions": [decision]}``: approve, edit, reject, and for a critique respond.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from strokegraph.app.runner import generate, resume
from strokegraph.errors import UsageError

PROMPT = "two red apples to the left of a blue cup"


def _decisions(decision: dict) -> dict:
    return {"decisions": [decision]}


def test_each_review_payload_is_a_valid_hitl_request(tmp_path):
    hitl = pytest.importorskip("langchain.agents.middleware.human_in_the_loop", reason="needs langchain")
    from pydantic import TypeAdapter

    requests = TypeAdapter(hitl.HITLRequest)
    r = generate(PROMPT, out=tmp_path / "r", review=True)
    for expected in ("plan", "critique"):
        payload = json.loads(json.dumps(r.interrupt))  # as a client receives it
        assert payload["kind"] == expected
        requests.validate_python(payload)  # TypedDicts: the keys and their types
        (action,), (config,) = payload["action_requests"], payload["review_configs"]
        assert action["name"] == config["action_name"] == f"review_{expected}"
        assert set(config["allowed_decisions"]) <= set(hitl.DecisionType.__args__)
        if expected == "plan":
            assert action["args"] == {"plan": payload["plan"]}
            assert "1. " in action["description"] and "respond" not in config["allowed_decisions"]
        else:
            assert action["args"] == {"violations": payload["critique"]["violations"]}
            assert "respond" in config["allowed_decisions"]
        r = resume(tmp_path / "r", answer=_decisions({"type": "approve"}))


def test_approve_edit_respond_and_reject_stand_for_the_clis_answers(tmp_path):
    out = tmp_path / "r"
    r = generate(PROMPT, out=out, review=True)
    plan = r.interrupt["plan"]
    plan["steps"][0]["instruction"] = "the apples first, edited"
    # A form sends an edited object back as its JSON text.
    edit = {"type": "edit", "edited_action": {"name": "review_plan", "args": {"plan": json.dumps(plan)}}}
    r = resume(out, answer=_decisions(edit))
    assert r.interrupt["kind"] == "critique"
    assert next(e for e in r.trajectory if e.stage == "draft").text.startswith("the apples first, edited")

    asked = "the cup has a handle"
    r = resume(out, answer=_decisions({"type": "respond", "message": f"  {asked}\n"}))
    # The sketch critic cannot judge a request in words: it is carried as unjudged, not dropped.
    critiques = [e for e in r.trajectory if e.stage == "critique"]
    assert f"asked in review: {asked}" in critiques[-1].critique.unjudged

    r = resume(out, answer={"type": "reject", "message": "enough"})  # a decision alone is taken too
    assert r.interrupt is None and not r.passed
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["stopped"] is True
    answers = [x["answer"] for x in doc["reviews"]]
    assert [a["action"] for a in answers] == ["edit", "add", "stop"]
    assert answers[1]["violation"]["message"] == asked
    # What the person's client sent is kept beside the answer it stood for.
    assert doc["reviews"][2]["decision"] == {"type": "reject", "message": "enough"}


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ({"decisions": []}, "a list of one decision"),
        ({"decisions": [{"type": "approve"}, {"type": "approve"}]}, "a list of one decision"),
        (_decisions({"type": "respond", "message": "bigger"}), "'respond' is not one of approve, edit, reject"),
        (_decisions({"type": "maybe"}), "'maybe' is not one of"),
        (_decisions({"type": "edit", "edited_action": {"name": "review_critique", "args": {}}}), "review_plan"),
        (_decisions({"type": "edit", "edited_action": {"name": "review_plan", "args": {"plan": "{"}}}), "not JSON"),
        (_decisions({"type": "edit", "edited_action": {"name": "review_plan", "args": {"x": 1}}}), "must be"),
    ],
)
def test_a_bad_decision_is_one_line_and_the_review_waits(tmp_path, answer, why):
    out = tmp_path / "r"
    generate(PROMPT, out=out, review=True)
    with pytest.raises(UsageError, match=why) as caught:
        resume(out, answer=answer)
    assert "\n" not in str(caught.value)
    assert resume(out, answer=_decisions({"type": "approve"})).interrupt["kind"] == "critique"


def test_a_respond_needs_words_within_the_limit(tmp_path):
    out = tmp_path / "r"
    generate(PROMPT, out=out, review=True)
    resume(out, answer=_decisions({"type": "approve"}))
    for message, why in [("   ", 'needs a "message"'), ("x" * 1001, "at most 1000")]:
        with pytest.raises(UsageError, match=why):
            resume(out, answer=_decisions({"type": "respond", "message": message}))


def test_the_server_graph_takes_decisions_as_agent_chat_ui_sends_them(monkeypatch, tmp_path):
    pytest.importorskip("starlette", reason="app/server.py's image route needs starlette")
    monkeypatch.setenv("STROKEGRAPH_SERVER_ROOT", str(tmp_path / "served"))
    from strokegraph.app import server

    graph = server.review_graph.builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "hitl"}}
    graph.invoke({"prompt": "a red cat below a blue kite"}, config)
    assert graph.get_state(config).interrupts[0].value["action_requests"][0]["name"] == "review_plan"
    for _ in range(20):
        (pending,) = graph.get_state(config).interrupts
        if pending.value["kind"] == "critique":
            break
        graph.invoke(Command(resume=_decisions({"type": "approve"})), config)
    graph.invoke(Command(resume=_decisions({"type": "respond", "message": "the kite has a tail"})), config)
    graph.invoke(Command(resume=_decisions({"type": "reject"})), config)
    out = graph.get_state(config).values
    assert not graph.get_state(config).interrupts and out["passed"] is False
    trajectory = json.loads((Path(out["run_dir"]) / "trajectory.json").read_text(encoding="utf-8"))
    assert trajectory["stopped"] is True
    assert [r["answer"]["action"] for r in trajectory["reviews"]] == ["accept", "add", "stop"]
    assert trajectory["reviews"][1]["answer"]["violation"]["message"] == "the kite has a tail"
