"""A loopback server speaking Anthropic's Messages API, for tests of ``langchain:anthropic:`` backends.

``POST /v1/messages`` is recorded (the ``x-api-key`` header, ``tools`` and ``tool_choice``, and
``image`` content blocks with a base64 ``source`` are in the request). :func:`tool_reply` answers
with a ``tool_use`` content block, as Claude does when a tool call is forced (strokegraph's
structured output); :func:`text_reply` with text; :func:`error_reply` as the API fails
(``{"type": "error", "error": {...}}``, with ``retry-after-ms`` so that the client's backoff is a
millisecond). :func:`any_prompt_replies` carries a whole run: a planner call (its tool named
``PlannerReply``) gets the rules planner's reading of the prompt, a critic call no violations.
"""

from __future__ import annotations

from typing import Any, ClassVar

from strokegraph.testing.loopback_server import NO_VIOLATIONS, LoopbackServer, Reply, Request, Script, rules_plan

__all__ = ["FakeAnthropic", "any_prompt_replies", "error_reply", "text_reply", "tool_reply"]


def _message(content: list[dict[str, Any]], stop: str, input_tokens: int, output_tokens: int) -> Reply:
    return Reply(
        body={
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
    )


def tool_reply(name: str, arguments: dict[str, Any], *, input_tokens: int = 17, output_tokens: int = 8) -> Reply:
    """A forced tool call of ``name`` with ``arguments`` (its ``input``)."""
    block = {"type": "tool_use", "id": "toolu_test", "name": name, "input": arguments}
    return _message([block], "tool_use", input_tokens, output_tokens)


def text_reply(text: str, *, input_tokens: int = 17, output_tokens: int = 8) -> Reply:
    return _message([{"type": "text", "text": text}], "end_turn", input_tokens, output_tokens)


def error_reply(status: int, message: str = "scripted failure", kind: str = "api_error") -> Reply:
    return Reply(
        status=status,
        body={"type": "error", "error": {"type": kind, "message": message}},
        headers={"retry-after-ms": "1"},
    )


def _any_prompt_messages(request: Request) -> Reply:
    body = request.json or {}
    tools = [t.get("name") for t in body.get("tools") or []]
    if "CriticReply" in tools:
        return tool_reply("CriticReply", NO_VIOLATIONS)
    if "PlannerReply" not in tools:
        why = f"the fake answers planner and critic tool calls only, not {tools!r}"
        return error_reply(400, why, "invalid_request_error")
    text = "\n".join(
        block.get("text", "") if isinstance(block, dict) else str(block)
        for message in body.get("messages", [])
        for block in (message["content"] if isinstance(message["content"], list) else [message["content"]])
    )
    reply = rules_plan(text)
    if isinstance(reply, str):
        return error_reply(400, reply, "invalid_request_error")
    return tool_reply("PlannerReply", reply)


def any_prompt_replies() -> dict[str, Script]:
    """A fallback that answers any planner call the rules planner can read, and any critic call."""
    return {"v1/messages": _any_prompt_messages}


class FakeAnthropic(LoopbackServer):
    """An Anthropic Messages API on loopback; ``url`` is the ``base_url`` (or ``ANTHROPIC_BASE_URL``)."""

    ENDPOINTS: ClassVar[tuple[str, ...]] = ("v1/messages",)
    _error = staticmethod(error_reply)
