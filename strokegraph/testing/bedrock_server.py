"""A loopback server speaking the Bedrock Runtime Converse API, for tests of ``langchain:bedrock_converse:``.

botocore sends ``POST /model/<model id>/converse`` (the id percent-encoded), SigV4-signed: the
``authorization`` header names the access key id (``Credential=<id>/<date>/<region>/bedrock/...``);
the server records it and checks no signature. The body is JSON: ``messages`` of ``content``
blocks (``{"text": ...}``, ``{"image": {"format": "png", "source": {"bytes": <base64>}}}``),
``system``, ``inferenceConfig``, and ``toolConfig`` with ``tools`` (``toolSpec``: ``name``,
``inputSchema.json``) and ``toolChoice`` (``{"tool": {"name": ...}}`` when a tool call is forced,
strokegraph's structured output). Every such request is the endpoint ``converse``; the model ids
the paths named are in :attr:`FakeBedrock.models`.

:func:`tool_reply` answers with a ``toolUse`` content block, as a model does when a tool call is
forced; :func:`text_reply` with text; both carry ``usage`` (``inputTokens``, ``outputTokens``).
:func:`error_reply` fails as Bedrock does: the status, the exception's name in the
``x-amzn-ErrorType`` header and ``{"message": ...}``. :func:`any_prompt_replies` carries a whole
run: a planner call (its tool named ``PlannerReply``) gets the rules planner's reading of the
prompt, a critic call no violations.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar
from urllib.parse import unquote

from strokegraph.testing.loopback_server import NO_VIOLATIONS, LoopbackServer, Reply, Request, Script, rules_plan

__all__ = ["FakeBedrock", "any_prompt_replies", "error_reply", "text_reply", "tool_reply"]

#: The exception Bedrock names for a status (Converse's documented errors).
_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    418: "ValidationException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}

_CONVERSE = re.compile(r"^/model/([^/]+)/converse$")


def _message(content: list[dict[str, Any]], stop: str, input_tokens: int, output_tokens: int) -> Reply:
    return Reply(
        body={
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": {
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "totalTokens": input_tokens + output_tokens,
            },
            "metrics": {"latencyMs": 12},
        },
        headers={"x-amzn-RequestId": "00000000-0000-4000-8000-000000000000"},
    )


def tool_reply(name: str, arguments: dict[str, Any], *, input_tokens: int = 19, output_tokens: int = 8) -> Reply:
    """A forced tool call of ``name`` with ``arguments`` (its ``input``)."""
    block = {"toolUse": {"toolUseId": "tooluse_test", "name": name, "input": arguments}}
    return _message([block], "tool_use", input_tokens, output_tokens)


def text_reply(text: str, *, input_tokens: int = 19, output_tokens: int = 8) -> Reply:
    return _message([{"text": text}], "end_turn", input_tokens, output_tokens)


def error_reply(status: int, message: str = "scripted failure", kind: str | None = None) -> Reply:
    """Bedrock's error for ``status``; ``kind`` names another exception than the status's usual one."""
    name = kind or _ERRORS.get(status, "InternalServerException")
    return Reply(
        status=status,
        body={"message": message},
        headers={"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"},
    )


def _any_prompt_converse(request: Request) -> Reply:
    body = request.json or {}
    tools = [t.get("toolSpec", {}).get("name") for t in (body.get("toolConfig") or {}).get("tools", [])]
    if "CriticReply" in tools:
        return tool_reply("CriticReply", NO_VIOLATIONS)
    if "PlannerReply" not in tools:
        return error_reply(400, f"the fake answers planner and critic tool calls only, not {tools!r}")
    blocks = [*body.get("system", []), *(b for m in body.get("messages", []) for b in m.get("content", []))]
    reply = rules_plan("\n".join(b.get("text", "") for b in blocks if isinstance(b, dict)))
    return error_reply(400, reply) if isinstance(reply, str) else tool_reply("PlannerReply", reply)


def any_prompt_replies() -> dict[str, Script]:
    """A fallback that answers any planner call the rules planner can read, and any critic call."""
    return {"converse": _any_prompt_converse}


class FakeBedrock(LoopbackServer):
    """A Bedrock Runtime on loopback; ``url`` is the ``base_url`` (the class's ``endpoint_url``)."""

    ENDPOINTS: ClassVar[tuple[str, ...]] = ("converse",)
    _error = staticmethod(error_reply)

    def __init__(self, *, latency: float = 0.0, fallback: dict[str, Script] | None = None) -> None:
        super().__init__(latency=latency, fallback=fallback)
        self.models: list[str] = []
        """The model id of each converse request, decoded, in the order they came."""

    def _endpoint(self, path: str) -> str:
        found = _CONVERSE.match(path)
        if found is None:
            return path.strip("/")  # converse-stream or another operation: no queue, so it is refused
        with self._lock:
            self.models.append(unquote(found.group(1)))
        return "converse"
