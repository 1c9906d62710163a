"""A loopback server speaking Ollama's ``/api/chat``, for tests of ``langchain:ollama:`` backends.

Requests are recorded (``format``, the reply's JSON schema, and each message's ``images``, base64
strings, are in ``request.json``). :func:`chat_reply` answers as Ollama streams: one NDJSON line
per chunk, the last with ``done`` and the token counts (``prompt_eval_count``, ``eval_count``);
:func:`error_reply` as Ollama fails (``{"error": ...}``). :func:`any_prompt_replies` carries a
whole run: a planner request (its ``format`` titled ``PlannerReply``) gets the rules planner's
reading of the prompt, a critic request no violations.
"""

from __future__ import annotations

import json
from typing import ClassVar

from strokegraph.testing.loopback_server import NO_VIOLATIONS, LoopbackServer, Reply, Request, Script, rules_plan

__all__ = ["FakeOllama", "any_prompt_replies", "chat_reply", "error_reply"]

_STAMP = "2026-01-01T00:00:00Z"


def chat_reply(content: str, *, prompt_tokens: int = 13, completion_tokens: int = 9) -> Reply:
    """A streamed ``/api/chat`` answer of ``content``: a content chunk, then the final ``done`` chunk."""
    lines = [
        {"model": "test", "created_at": _STAMP, "message": {"role": "assistant", "content": content}, "done": False},
        {
            "model": "test",
            "created_at": _STAMP,
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1000,
            "prompt_eval_count": prompt_tokens,
            "eval_count": completion_tokens,
        },
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return Reply(body=body, headers={"Content-Type": "application/x-ndjson"})


def error_reply(status: int, message: str = "scripted failure") -> Reply:
    return Reply(status=status, body={"error": message})


def _any_prompt_chat(request: Request) -> Reply:
    body = request.json or {}
    title = (body.get("format") or {}).get("title") if isinstance(body.get("format"), dict) else None
    if title == "CriticReply":
        return chat_reply(json.dumps(NO_VIOLATIONS))
    if title != "PlannerReply":
        return error_reply(400, f"the fake answers planner and critic requests only, not {title!r}")
    text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    reply = rules_plan(text)
    return error_reply(400, reply) if isinstance(reply, str) else chat_reply(json.dumps(reply))


def any_prompt_replies() -> dict[str, Script]:
    """A fallback that answers any planner request the rules planner can read, and any critic request."""
    return {"api/chat": _any_prompt_chat}


class FakeOllama(LoopbackServer):
    """An Ollama server on loopback; ``url`` is the ``base_url`` (or ``OLLAMA_HOST``) to give the client."""

    ENDPOINTS: ClassVar[tuple[str, ...]] = ("api/chat",)
    _error = staticmethod(error_reply)
