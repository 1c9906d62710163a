"""Any LangChain chat model as a strokegraph :class:`~strokegraph.agents.chat.ChatModel`.

So Anthropic, Google, Ollama, Bedrock or any other LangChain provider can back the planner or the
critic from the Python API::

    from langchain_anthropic import ChatAnthropic
    from strokegraph import generate
    from strokegraph.agents.critic import ChatCritic
    from strokegraph.agents.planner import ChatPlanner
    from strokegraph.tools.langchain_chat import LangChainChat

    llm = LangChainChat(ChatAnthropic(model="claude-sonnet-4-5"))
    generate("a red cat below a blue kite", planner=ChatPlanner(llm), critic=ChatCritic(llm))

Needs ``pip install 'strokegraph[langchain]'`` plus the provider's own package.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from pydantic import BaseModel

from strokegraph import usage

__all__ = ["LangChainChat"]


class LangChainChat:
    """Wraps a LangChain ``BaseChatModel``; images are sent as PNG data URLs."""

    def __init__(self, chat_model: Any) -> None:
        from langchain_core.language_models import BaseChatModel

        if not isinstance(chat_model, BaseChatModel):
            raise TypeError(f"expected a LangChain BaseChatModel, got {type(chat_model).__name__}")
        self.chat_model = chat_model

    def complete(self, messages: list[dict[str, Any]], *, schema: type[BaseModel] | None = None) -> str:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        kinds = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}
        converted = [kinds[m["role"]](content=[_part(p) for p in m["content"]]) for m in messages]
        reply = self.chat_model.invoke(converted)
        meta = getattr(reply, "usage_metadata", None) or {}
        usage.record(prompt_tokens=meta.get("input_tokens", 0), completion_tokens=meta.get("output_tokens", 0))
        content = reply.content
        if isinstance(content, list):  # providers that answer in content blocks
            content = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
        return content


def _part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "text":
        return {"type": "text", "text": part["text"]}
    buffer = io.BytesIO()
    part["image"].save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}
