"""A scripted chat model: the chat roles (planner, critic) without a model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

__all__ = ["ScriptedChatModel"]


class ScriptedChatModel:
    """A :class:`~strokegraph.agents.chat.ChatModel` that answers from a script.

    Each reply is a string, or a function of the messages returning one. Every call is recorded in
    ``calls`` as ``(messages, schema)``. Running out of replies raises ``AssertionError``.
    """

    def __init__(self, replies: list[str | Callable[[list[dict]], str]]) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[list[dict[str, Any]], type[BaseModel] | None]] = []

    def complete(self, messages: list[dict[str, Any]], *, schema: type[BaseModel] | None = None) -> str:
        self.calls.append((list(messages), schema))
        if not self.replies:
            raise AssertionError(f"ScriptedChatModel ran out of replies after {len(self.calls) - 1} call(s)")
        reply = self.replies.pop(0)
        return reply(messages) if callable(reply) else reply
