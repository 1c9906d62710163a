"""The server graphs as a chat, for chat clients such as Agent Chat UI: a human message is a prompt,
and each finished run answers with an AI message holding its verdict and final image's URL.

Agent Chat UI reads a thread's ``messages`` and cannot show a thread without one (it failed with a
TypeError on an interrupt of a thread with no messages); its chat box sends ``{"messages": [...]}``.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from strokegraph.errors import UsageError

pytest.importorskip("starlette", reason="app/server.py's image route needs starlette")


@pytest.fixture
def server(monkeypatch, tmp_path):
    monkeypatch.setenv("STROKEGRAPH_SERVER_ROOT", str(tmp_path / "served"))
    monkeypatch.delenv("STROKEGRAPH_SERVER_URL", raising=False)
    from strokegraph.app import server

    return server


def _compiled(graph):
    return graph.builder.compile(checkpointer=InMemorySaver(), name=graph.name)  # what the server adds


def test_a_human_message_is_the_prompt_and_the_run_answers_in_the_chat(server):
    graph = _compiled(server.graph)
    config = {"configurable": {"thread_id": "chat"}}
    out = graph.invoke({"messages": [{"role": "user", "content": "a red cat below a blue kite"}]}, config)
    assert out["prompt"] == "a red cat below a blue kite" and out["passed"] is True
    asked, answer = out["messages"]
    assert isinstance(asked, HumanMessage) and isinstance(answer, AIMessage)
    assert answer.text == f"passed: {out['final_image_url']}"

    # The next turn of the chat is the next run's prompt; a {"prompt"} input still works on the thread.
    out = graph.invoke({"messages": [{"role": "user", "content": [{"type": "text", "text": "a blue cup"}]}]}, config)
    assert out["prompt"] == "a blue cup" and len(out["messages"]) == 4
    out = graph.invoke({"prompt": "a green apple"}, config)
    assert out["prompt"] == "a green apple"
    assert [m.text for m in out["messages"][-2:]] == ["a green apple", f"passed: {out['final_image_url']}"]
    assert len({m.id for m in out["messages"]}) == 6


def test_a_prompt_becomes_a_human_message_so_a_chat_client_can_show_the_review(server):
    graph = _compiled(server.review_graph)
    config = {"configurable": {"thread_id": "review"}}
    graph.invoke({"prompt": "a red cat below a blue kite"}, config)
    state = graph.get_state(config)
    assert state.interrupts[0].value["kind"] == "plan"
    assert [m.text for m in state.values["messages"]] == ["a red cat below a blue kite"]
    graph.invoke(Command(resume={"decisions": [{"type": "reject", "message": "not now"}]}), config)
    answer = graph.get_state(config).values["messages"][-1]
    assert isinstance(answer, AIMessage) and answer.text == "stopped in review: nothing drawn"


def test_the_answer_shows_the_image_where_the_operator_gives_the_servers_url(server, monkeypatch):
    monkeypatch.setenv("STROKEGRAPH_SERVER_URL", "http://127.0.0.1:2024/")
    out = _compiled(server.graph).invoke({"prompt": "a blue cup"}, {"configurable": {"thread_id": "shown"}})
    url = out["final_image_url"]
    assert out["messages"][-1].text == f"passed: {url}\n\n![the final image](http://127.0.0.1:2024{url})"


def test_a_thread_with_nothing_to_draw_is_one_line(server):
    graph = _compiled(server.graph)
    with pytest.raises(UsageError, match="nothing to draw"):
        graph.invoke({"messages": [{"role": "assistant", "content": "hello"}]}, {"configurable": {"thread_id": "x"}})
    with pytest.raises(UsageError, match="prompt is empty"):
        graph.invoke({"messages": [{"role": "user", "content": "  "}]}, {"configurable": {"thread_id": "y"}})
