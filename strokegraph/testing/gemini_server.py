"""A loopback server speaking the Gemini API's ``generateContent``, for tests of ``langchain:google_genai:`` backends.

``POST /{version}/models/{model}:generateContent``, as the ``google-genai`` SDK sends it, is
recorded under the endpoint ``generateContent`` whatever the version and model (the key is the
``x-goog-api-key`` header; a JSON-schema reply is asked for with ``generationConfig``'s
``responseMimeType`` and ``responseJsonSchema``, a forced function call with ``tools`` and
``toolConfig``; images are ``inlineData`` parts with base64 ``data``). :func:`chat_reply` answers
with a text part, as Gemini does for a JSON schema (strokegraph's structured output);
:func:`tool_reply` with a ``functionCall`` part; both carry ``usageMetadata``. :func:`error_reply`
answers as the API fails (``{"error": {"code", "message", "status"}}``); the SDK retries 408, 429
and 5xx with its own backoff (a second or so), which no header shortens. :func:`any_prompt_replies`
carries a whole run: a planner request (its schema or function named ``PlannerReply``) gets the
rules planner's reading of the prompt, a critic request no violations.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from strokegraph.testing.loopback_server import NO_VIOLATIONS, LoopbackServer, Reply, Request, Script, rules_plan

__all__ = ["FakeGemini", "any_prompt_replies", "chat_reply", "error_reply", "tool_reply"]

_METHOD = re.compile(r"^[^/]+/models/[^:/]+:(generateContent)$")

#: google.rpc status names the API reports, by HTTP status.
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _response(part: dict[str, Any], prompt_tokens: int, completion_tokens: int) -> Reply:
    return Reply(
        body={
            "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": completion_tokens,
                "totalTokenCount": prompt_tokens + completion_tokens,
            },
            "modelVersion": "gemini-test",
            "responseId": "resp-test",
        }
    )


def chat_reply(text: str, *, prompt_tokens: int = 19, completion_tokens: int = 8) -> Reply:
    """An answer of ``text`` (a JSON-schema reply is its JSON as text)."""
    return _response({"text": text}, prompt_tokens, completion_tokens)


def tool_reply(name: str, arguments: dict[str, Any], *, prompt_tokens: int = 19, completion_tokens: int = 8) -> Reply:
    """A forced function call of ``name`` with ``arguments`` (its ``args``)."""
    return _response({"functionCall": {"name": name, "args": arguments}}, prompt_tokens, completion_tokens)


def error_reply(status: int, message: str = "scripted failure") -> Reply:
    return Reply(
        status=status, body={"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}
    )


def _asked_for(body: dict[str, Any]) -> str | None:
    """The schema's title (JSON-schema output) or the function's name (a forced call) the request asks for."""
    schema = (body.get("generationConfig") or {}).get("responseJsonSchema")
    if isinstance(schema, dict):
        return schema.get("title")
    names = [f.get("name") for tool in body.get("tools") or [] for f in tool.get("functionDeclarations") or []]
    return names[0] if len(names) == 1 else None


def _any_prompt_generate(request: Request) -> Reply:
    body = request.json or {}
    asked = _asked_for(body)
    forced = "responseJsonSchema" not in (body.get("generationConfig") or {})

    def answer(name: str, arguments: dict[str, Any]) -> Reply:
        return tool_reply(name, arguments) if forced else chat_reply(json.dumps(arguments))

    if asked == "CriticReply":
        return answer("CriticReply", NO_VIOLATIONS)
    if asked != "PlannerReply":
        return error_reply(400, f"the fake answers planner and critic requests only, not {asked!r}")
    contents = [body.get("systemInstruction") or {}, *body.get("contents", [])]
    text = "\n".join(part.get("text", "") for content in contents for part in content.get("parts") or [])
    reply = rules_plan(text)
    return error_reply(400, reply) if isinstance(reply, str) else answer("PlannerReply", reply)


def any_prompt_replies() -> dict[str, Script]:
    """A fallback that answers any planner request the rules planner can read, and any critic request."""
    return {"generateContent": _any_prompt_generate}


class FakeGemini(LoopbackServer):
    """The Gemini API on loopback; ``url`` is the ``base_url`` (or ``GOOGLE_GEMINI_BASE_URL``)."""

    ENDPOINTS: ClassVar[tuple[str, ...]] = ("generateContent",)
    _error = staticmethod(error_reply)

    def _endpoint(self, path: str) -> str:
        found = _METHOD.match(path.strip("/"))
        return found.group(1) if found else path.strip("/")
