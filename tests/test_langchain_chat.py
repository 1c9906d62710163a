"""Any LangChain chat model behind the planner and the critic, given as an object from Python."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("langchain_core", reason="needs the langchain extra")

from conftest import CRITIC_REPLY, GOOD, PROMPT  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402

from strokegraph.agents.critic import ChatCritic  # noqa: E402
from strokegraph.agents.planner import ChatPlanner  # noqa: E402
from strokegraph.app.runner import generate  # noqa: E402
from strokegraph.tools.langchain import LangChainChat  # noqa: E402


class Recording(GenericFakeChatModel):
    seen: list = []

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(messages)
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def test_planner_and_critic_on_a_langchain_model(tmp_path):
    passing = {"violations": [], "detections": CRITIC_REPLY["detections"]}
    replies = [json.dumps(GOOD), json.dumps(CRITIC_REPLY), json.dumps(passing), json.dumps(passing)]
    fake = Recording(
        messages=iter(
            AIMessage(content=r, usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15})
            for r in replies
        )
    )
    llm = LangChainChat(fake)
    result = generate(
        PROMPT,
        out=tmp_path / "r",
        planner=ChatPlanner(llm),
        critic=ChatCritic(llm),
        settings={},
    )
    assert [e.noun for e in result.scene.entities] == ["cat", "kite"]
    stages = [(e.stage, e.usage.prompt_tokens if e.usage else None) for e in result.trajectory]
    assert stages[0] == ("plan", 10)
    # The critic's message carried the image as LangChain's standard image block.
    critic_message = fake.seen[1][0]
    assert critic_message.content[0]["type"] == "image"
    assert critic_message.content[0]["mime_type"] == "image/png" and critic_message.content[0]["base64"]
    # A model whose profile claims no structured output is asked for the schema in the prompt.
    assert llm.method == "prompt"
    assert '"title": "PlannerReply"' in fake.seen[0][-1].content[0]["text"]
    assert result.trajectory[0].backend == "custom:ChatPlanner"
    doc = json.loads((tmp_path / "r" / "trajectory.json").read_text())
    assert doc["usage"]["calls"] == 4 and doc["usage"]["prompt_tokens"] == 40
    assert "4 API/model call(s), 60 token(s)" in (tmp_path / "r" / "report.html").read_text()


def test_rejects_what_is_not_a_langchain_chat_model():
    with pytest.raises(TypeError, match="BaseChatModel"):
        LangChainChat(object())


@pytest.mark.parametrize(
    ("profile", "method"),
    [({"structured_output": True, "tool_calling": True}, "json_schema"), ({"tool_calling": True}, "function_calling")],
)
def test_auto_asks_for_structured_output_as_the_models_profile_allows(profile, method):
    assert LangChainChat(GenericFakeChatModel(messages=iter([]), profile=profile)).method == method


def test_images_are_png_encoded_in_a_worker_thread_when_awaited(monkeypatch):
    # PNG encoding takes tens of ms at 1024x1024: on the event loop it would hold up every other run.
    import asyncio
    import threading

    from PIL import Image

    from strokegraph.tools import langchain as lc

    encoded_on: list[threading.Thread] = []
    part = lc._part

    def recording(p):
        if p["type"] == "image":
            encoded_on.append(threading.current_thread())
        return part(p)

    monkeypatch.setattr(lc, "_part", recording)
    chat = LangChainChat(GenericFakeChatModel(messages=iter([AIMessage(content="fine")])))
    image = Image.new("RGB", (64, 64), "white")
    message = {"role": "user", "content": [{"type": "text", "text": "judge"}, {"type": "image", "image": image}]}

    async def ask() -> threading.Thread:
        assert await chat.acomplete([message]) == "fine"
        return threading.current_thread()

    loop_thread = asyncio.run(ask())
    assert encoded_on and loop_thread not in encoded_on
