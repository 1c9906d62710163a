"""A loopback OpenAI-compatible server for tests and benchmarks: scripted replies, faults, latency.

It speaks ``/v1/chat/completions``, ``/v1/images/generations`` and ``/v1/images/edits`` (multipart)
on ``127.0.0.1`` at a free port (Mistral's chat API is the same chat completions, so it serves
``langchain:mistralai:`` tests too): a :class:`~strokegraph.testing.loopback_server.LoopbackServer`,
which records every request and answers each endpoint from its own queue of :class:`Reply` objects
(or functions of the :class:`Request` returning one), then from its ``fallback``, or else 418.
:func:`any_prompt_replies` are fallbacks that fit any plannable prompt, for driving whole runs.

Hostile servers: a :class:`Reply` may hang (``delay``) or trickle its body a byte at a time
(``drip``); :func:`huge_reply` streams a body of any size without holding it in memory.

For concurrency and cancellation tests the server also records the most requests it held at once
(``most_in_flight``), the requests it answered (``answered``), and those whose client closed the
connection while the server was still waiting to reply (``abandoned``).
"""

from __future__ import annotations

import base64
import io
import json
import time
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import collapse_rfc2231_value
from typing import ClassVar

from PIL import Image

from strokegraph.testing.loopback_server import (
    NO_VIOLATIONS,
    Flood,
    LoopbackServer,
    Reply,
    Request,
    Script,
    Upload,
    rules_plan,
)

__all__ = [
    "ENDPOINTS",
    "FakeOpenAI",
    "Flood",
    "Reply",
    "Request",
    "Script",
    "Upload",
    "any_prompt_replies",
    "chat_reply",
    "error_reply",
    "huge_reply",
    "image_reply",
]

ENDPOINTS = ("chat/completions", "images/generations", "images/edits")


def chat_reply(content: str, *, prompt_tokens: int = 11, completion_tokens: int = 7) -> Reply:
    return Reply(
        body={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "test",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content, "refusal": None},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def image_reply(image: Image.Image, *, input_tokens: int = 50, output_tokens: int = 400) -> Reply:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return Reply(
        body={
            "created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(buf.getvalue()).decode("ascii")}],
            "size": f"{image.width}x{image.height}",
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": input_tokens},
            },
        }
    )


def error_reply(status: int, message: str = "scripted failure") -> Reply:
    # retry-after-ms keeps the client's backoff between retries at a millisecond.
    return Reply(
        status=status,
        body={"error": {"message": message, "type": "test_error", "param": None, "code": None}},
        headers={"retry-after-ms": "1"},
    )


def huge_reply(size: int, *, declare_length: bool = True) -> Reply:
    """A 200 reply of ``size`` bytes that starts like an image reply and is streamed, never held."""
    return Reply(body=Flood(size, prefix=b'{"created": 0, "data": [{"b64_json": "', declare_length=declare_length))


def any_prompt_replies(image_size: tuple[int, int] = (64, 64)) -> dict[str, Script]:
    """Fallbacks that carry a whole run through for any prompt the rules planner can read.

    The planner gets the ``builtin:rules`` reading of the prompt in its request, the critic finds
    no violations, and every image request gets a blank PNG of ``image_size``. A prompt the rules
    planner cannot read, or a chat request that is neither planner nor critic, is answered 400.
    """
    image = image_reply(Image.new("RGB", image_size, "white"))
    return {"chat/completions": _any_prompt_chat, "images/generations": image, "images/edits": image}


def _any_prompt_chat(request: Request) -> Reply:
    body = request.json or {}
    schema = body.get("response_format", {}).get("json_schema", {}).get("name")
    if schema == "CriticReply":
        return chat_reply(json.dumps(NO_VIOLATIONS))
    if schema != "PlannerReply":
        return error_reply(400, f"the fake answers planner and critic requests only, not {schema!r}")
    text = "".join(p.get("text", "") for p in body["messages"][0]["content"] if isinstance(p, dict))
    reply = rules_plan(text)
    return error_reply(400, reply) if isinstance(reply, str) else chat_reply(json.dumps(reply))


class FakeOpenAI(LoopbackServer):
    """Use as a context manager; ``url`` is the ``base_url`` to give the client.

    ``latency`` seconds are added before every reply, as a network and a model would; requests are
    served concurrently, so concurrent clients overlap their waits. ``fallback`` answers an
    endpoint whose queue is empty (see :func:`any_prompt_replies`).
    """

    ENDPOINTS: ClassVar[tuple[str, ...]] = ENDPOINTS
    _error = staticmethod(error_reply)

    @property
    def url(self) -> str:
        return f"{super().url}/v1"

    def _endpoint(self, path: str) -> str:
        return path.removeprefix("/v1/")

    def _parse(self, endpoint: str, headers: dict[str, str], raw: bytes) -> Request:
        content_type = headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return super()._parse(endpoint, headers, raw)
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        fields: dict[str, str] = {}
        files: dict[str, Upload] = {}
        for part in message.iter_parts():
            name, payload = _form_name(part), _payload(part)
            if part.get_filename() is None:
                fields[name] = payload.decode()
            else:
                files[name] = Upload(part.get_filename(), part.get_content_type(), payload)
        return Request(endpoint, headers, raw, fields=fields, files=files)


def _form_name(part: Message) -> str:
    """A multipart part's field name (Content-Disposition's ``name``); "" when it has none."""
    name = part.get_param("name", "", header="content-disposition")
    # get_param gives a (charset, language, value) tuple for an RFC 2231-encoded value (name*=...).
    return collapse_rfc2231_value(name) if isinstance(name, tuple) else name


def _payload(part: Message) -> bytes:
    """A multipart part's body, transfer-decoded."""
    payload = part.get_payload(decode=True)
    # Decoding gives bytes for a leaf part and None for a nested multipart one, never a Message.
    return payload if isinstance(payload, bytes) else b""
