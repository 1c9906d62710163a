"""OpenAI API backends for every role: chat models for planner and critic, GPT-image for drafter and refiner.

Ids ``openai:<model>`` (see :mod:`strokegraph.registry`) reach the factories at the bottom. Any
OpenAI-compatible server works through ``base_url`` (vLLM, Ollama, LM Studio); without a key there,
a placeholder is sent. The key comes from the ``api_key`` setting, then ``OPENAI_API_KEY``; it is
handed to the client and nowhere else, and it is scrubbed from error messages, as is any user name
and password in ``base_url`` (see :func:`redact_url`).

Every server is treated as hostile. ``timeout`` bounds each request attempt as a whole, connect to
last byte, and ``deadline`` a backend call as a whole, its retries and the waits between them
included; a reply may hold at most :data:`MAX_CHAT_REPLY_BYTES` or :data:`MAX_IMAGE_REPLY_BYTES`,
and a reply image at most :data:`MAX_IMAGE_PIXELS` pixels (or the requested ``size``, if larger).
:func:`cancel_requests` ends the calls in flight at once, e.g. from a SIGINT handler.

Backends with the same endpoint, key, ``timeout`` and ``max_retries`` share one client across
roles and runs (it is thread-safe and holds no run's state): it is costly to make (its TLS context)
and keeps its connections open for the next call. The cache knows a client by a keyed hash of its
endpoint and key, never by the key itself.

Every backend also has an async method (``acomplete``, ``adraft``, ``arefine``; the planner and critic
get ``aplan`` and ``acritique`` from :class:`~strokegraph.agents.chat.ChatModel`'s ``acomplete``),
which :func:`~strokegraph.agenerate` awaits: the same request on an ``AsyncOpenAI`` twin of the
client, with the same deadline, retries, limits and redaction, holding no thread while it waits.
A client has one twin per event loop (an async connection belongs to the loop that opened it),
shared as the client is. Cancelling the awaiting task ends the request at once.

The ``openai`` package is imported only when a backend is built or called.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import os
import re
import secrets
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel

from strokegraph import usage
from strokegraph._drive import blocking, drive
from strokegraph._redact import check_base_url, redact_url
from strokegraph.agents.critic import ChatCritic
from strokegraph.agents.drafter import DraftRequest, DraftResult
from strokegraph.agents.planner import ChatPlanner
from strokegraph.agents.refiner import (
    RefineRequest,
    RefineResult,
    composite,
    refine_text,
    region_mask,
    violation_region,
)
from strokegraph.errors import RunError, UsageError, transient_status
from strokegraph.schema import Refinement

if TYPE_CHECKING:
    from openai import AsyncOpenAI, OpenAI
    from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam
    from PIL import Image

__all__ = [
    "MAX_CHAT_REPLY_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_REPLY_BYTES",
    "OpenAIChat",
    "OpenAIDrafter",
    "OpenAIRefiner",
    "cancel_requests",
    "critic",
    "drafter",
    "planner",
    "redact_url",
    "refiner",
]

Detail = Literal["auto", "low", "high", "original"]
Quality = Literal["low", "medium", "high", "xhigh", "max", "auto"]

#: Sent as the key to a ``base_url`` server when no key is configured; local servers ignore it.
PLACEHOLDER_KEY = "not-needed"

#: The most bytes a chat reply may take on the wire; a longer one fails before it is read whole.
MAX_CHAT_REPLY_BYTES = 8 * 2**20
#: The same for an image reply (base64 inflates a PNG by a third).
MAX_IMAGE_REPLY_BYTES = 64 * 2**20
#: The most pixels a reply image may declare, checked before it is decoded (a 0.4 MB PNG can
#: declare 12000x12000 and take 1.3 GB); a larger requested ``size`` raises it to that size.
MAX_IMAGE_PIXELS = 4096 * 4096
#: What reply images may be; GPT-image answers PNG, JPEG or WebP (``output_format``).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")

_REASONS = {
    400: "bad request",
    401: "authentication failed",
    403: "permission denied",
    404: "not found",
    408: "request timeout",
    409: "conflict",
    413: "request too large",
    422: "unprocessable request",
    429: "rate limited",
}
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
# Bounds of the settings, whether they come from a config file, Python or a resumed run's record.
# A requested size may raise the reply's pixel cap above MAX_IMAGE_PIXELS (a 4608 px side is
# tested), so a side may be twice the cap's: 8192^2 RGB is 192 MiB, where 30000^2 took 2.5 GiB.
_MAX_SIDE = 8192
_MAX_RETRIES = 10
_MAX_TIMEOUT = 3600


def cancel_requests() -> None:
    """End every OpenAI backend call in flight in this process, in whatever thread it runs.

    Each raises a :class:`RunError` (not transient, so the graph does not try it again) within
    moments, from a blocked read or write or from a wait between retries. Takes no lock and does not
    wait, so a SIGINT handler may call it: LangGraph runs nodes in worker threads and waits for them
    before a KeyboardInterrupt leaves ``graph.stream``. The async calls (``acomplete`` ...) are not
    among them: cancelling the task that awaits one ends it.
    """
    # Loaded with the first client; before that no call can be in flight.
    transport = sys.modules.get("strokegraph.tools._openai_transport")
    if transport is not None:
        transport.cancel_all()


# ---------------------------------------------------------------------------------------------
# Calls and their errors
# ---------------------------------------------------------------------------------------------


def _after(retries: int) -> str:
    return f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""


def _secrets(client: OpenAI) -> list[str]:
    """The key, and the user name and password of ``base_url`` in every form a message may show."""
    url = client.base_url  # an httpx2.URL: userinfo as sent (quoted), username and password unquoted
    secrets = [client.api_key] if client.api_key else []
    if url.userinfo:
        plain = f"{url.username}:{url.password or ''}"
        # The client sends them as HTTP Basic auth, which a server may echo in an error.
        secrets += [url.userinfo.decode("ascii", "replace"), plain, base64.b64encode(plain.encode()).decode("ascii")]
        secrets += [part for part in (url.username, url.password) if part and len(part) >= 4]
    return sorted(secrets, key=len, reverse=True)


def _scrub(text: object, client: OpenAI) -> str:
    text = redact_url(" ".join(str(text).split()))
    for secret in _secrets(client):
        text = text.replace(secret, "***")
    return text[:300]


async def _request(
    backend: str,
    client: OpenAI,
    deadline: float,
    send: Callable[[Any], Any],
    *,
    node: str | None,
    step: int | None = None,
    asynchronous: bool,
    max_reply_bytes: int,
) -> Any:
    """``send(client)``, retried within ``deadline``; what fails becomes a one-line :class:`RunError`.

    With ``asynchronous``, ``send`` gets the client's ``AsyncOpenAI`` twin for this event loop (whose
    attempts may receive ``max_reply_bytes``) and its request is awaited; without, the coroutine
    finishes without suspending (see :func:`strokegraph._drive.drive`). The client's own retries are
    turned off for the call: they would sleep where no cancel reaches and know no deadline. A sync
    call is cancellable by :func:`cancel_requests`, an async one by cancelling its task. A call that
    ran out of its deadline is not transient, so the graph does not start it again; nor is a
    connection refused on this machine.
    """
    import openai

    from strokegraph.tools import _openai_transport as transport

    try:
        if asynchronous:
            twin = _twin(client, max_reply_bytes).with_options(max_retries=0)
            return await transport.acall(lambda: send(twin), max_retries=client.max_retries, deadline=deadline)
        once = client.with_options(max_retries=0)
        return transport.call(lambda: send(once), max_retries=client.max_retries, deadline=deadline)
    except transport.Cancelled:
        raise RunError(f"{backend}: cancelled", node=node, step=step) from None
    except transport.RefusedReply as exc:
        raise RunError(f"{backend}: {exc}", node=node, step=step) from None
    except transport.Failed as failed:
        error = failed.error
        after = _after(failed.retries)
        spent = f"; the call's {deadline:g} s deadline ran out" if failed.out_of_time else ""
        if isinstance(error, openai.APIStatusError):
            code = error.status_code
            # A 429 for an exhausted quota is a billing problem: waiting cannot fix it.
            transient = transient_status(code) and getattr(error, "code", None) != "insufficient_quota"
            reason = _REASONS.get(code, "server error" if code >= 500 else "error")
            body = error.body
            detail = body.get("message") if isinstance(body, dict) else body if isinstance(body, str) else None
            detail = f": {_scrub(detail, client)}" if detail else ""
            message = f"{code} {reason}{after}{detail}"
        elif isinstance(error, openai.APITimeoutError):
            timeout = client.timeout
            seconds = f" ({timeout:g} s per try)" if isinstance(timeout, int | float) else ""
            message, transient = f"timed out{seconds}{after}", True
        elif failed.refused:
            message, transient = f"cannot connect to {redact_url(str(client.base_url))}: connection refused", False
        else:
            cause = _scrub(error.__cause__ or error, client)
            message, transient = f"cannot connect to {redact_url(str(client.base_url))}{after}: {cause}", True
        # ``from None``: the chained exception holds the request, headers included.
        raise RunError(
            f"{backend}: {message}{spent}", node=node, step=step, transient=transient and not failed.out_of_time
        ) from None


# The AsyncOpenAI twins of the sync clients, per event loop and reply cap; both go with their loop
# or client. Loops in other threads may look up theirs at the same time, hence the lock.
_TWINS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakKeyDictionary[OpenAI, dict[int, AsyncOpenAI]]]
_TWINS = weakref.WeakKeyDictionary()
_TWINS_LOCK = threading.Lock()


def _twin(client: OpenAI, max_reply_bytes: int) -> AsyncOpenAI:
    """The ``AsyncOpenAI`` client for ``client``'s endpoint and key in the running event loop.

    Made once per loop from ``client``'s key, ``base_url``, ``timeout`` (seconds) and ``max_retries``,
    on a :class:`~strokegraph.tools._openai_transport.BoundedAsyncClient` whose attempts may receive
    ``max_reply_bytes``: backends that share ``client`` share its twin.
    """
    from openai import AsyncOpenAI

    from strokegraph.tools._openai_transport import BoundedAsyncClient

    loop = asyncio.get_running_loop()
    with _TWINS_LOCK:
        twins = _TWINS.setdefault(loop, weakref.WeakKeyDictionary()).setdefault(client, {})
        twin = twins.get(max_reply_bytes)
        if twin is None:
            timeout = client.timeout
            assert isinstance(timeout, int | float), "backends get their clients from _client, in seconds"
            twin = twins[max_reply_bytes] = AsyncOpenAI(
                api_key=client.api_key,
                base_url=client.base_url,
                timeout=timeout,
                max_retries=client.max_retries,
                http_client=BoundedAsyncClient(timeout=timeout, max_reply_bytes=max_reply_bytes),
            )
    return twin


def _png(image: Image.Image, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    image.convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def _files(image: Image.Image, mask: Image.Image | None) -> dict[str, Any]:
    """An edit's uploads, as (name, bytes, type) tuples: a bare upload is sent as octet-stream and refused."""
    files: dict[str, Any] = {"image": ("image.png", _png(image), "image/png")}
    if mask is not None:
        files["mask"] = ("mask.png", _png(mask, "RGBA"), "image/png")
    return files


def _data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(_png(image)).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Chat
# ---------------------------------------------------------------------------------------------


class OpenAIChat:
    """A :class:`~strokegraph.agents.chat.ChatModel` on ``client.chat.completions``.

    With a ``schema``, the request asks for strict structured output (``response_format`` of type
    ``json_schema``, built by openai's own helper). Images become PNG data URLs with ``detail``.
    Each call records its tokens, and its cost when both prices (USD per million tokens) are set.
    ``node`` names the role in errors.
    """

    def __init__(
        self,
        model: str,
        *,
        client: OpenAI,
        deadline: float = 120.0,
        detail: Detail = "auto",
        price_input_per_mtok: float | None = None,
        price_output_per_mtok: float | None = None,
        node: str | None = None,
    ) -> None:
        self.model = model
        self.client = client
        self.deadline = deadline
        self.detail = detail
        self.prices = (
            (price_input_per_mtok, price_output_per_mtok)
            if price_input_per_mtok is not None and price_output_per_mtok is not None
            else None
        )
        self.node = node

    @property
    def backend(self) -> str:
        return f"openai:{self.model}"

    def complete(self, messages: list[dict[str, Any]], *, schema: type[BaseModel] | None = None) -> str:
        return drive(self._complete(messages, schema, asynchronous=False))

    async def acomplete(self, messages: list[dict[str, Any]], *, schema: type[BaseModel] | None = None) -> str:
        """:meth:`complete` on the client's ``AsyncOpenAI`` twin: awaited, cancelled with its task."""
        return await self._complete(messages, schema, asynchronous=True)

    async def _complete(
        self, messages: list[dict[str, Any]], schema: type[BaseModel] | None, *, asynchronous: bool
    ) -> str:
        kwargs: dict[str, Any] = {}
        if schema is not None:
            from openai.lib import type_to_response_format_param

            kwargs["response_format"] = type_to_response_format_param(schema)
        # Images are PNG-encoded here: in a worker thread when awaited, so no other run's task waits on it.
        sent = await blocking(self._messages, messages, asynchronous=asynchronous)
        completion = await _request(
            self.backend,
            self.client,
            self.deadline,
            lambda client: client.chat.completions.create(model=self.model, messages=sent, **kwargs),
            node=self.node,
            asynchronous=asynchronous,
            max_reply_bytes=MAX_CHAT_REPLY_BYTES,
        )
        used = completion.usage
        if used is not None:
            cost = None
            if self.prices is not None:
                cost = (used.prompt_tokens * self.prices[0] + used.completion_tokens * self.prices[1]) / 1e6
            usage.record(prompt_tokens=used.prompt_tokens, completion_tokens=used.completion_tokens, cost_usd=cost)
        else:
            usage.record()
        if not completion.choices:
            raise RunError(f"{self.backend}: the reply has no choices", node=self.node)
        message = completion.choices[0].message
        if message.content is None:
            why = f"the model refused: {_scrub(message.refusal, self.client)}" if message.refusal else "empty reply"
            raise RunError(f"{self.backend}: {why}", node=self.node)
        return message.content

    def _messages(self, messages: list[dict[str, Any]]) -> list[ChatCompletionMessageParam]:
        return [self._message(m) for m in messages]

    def _message(self, message: dict[str, Any]) -> ChatCompletionMessageParam:
        content = message["content"]
        if isinstance(content, str):
            return {"role": message["role"], "content": content}
        if message["role"] == "assistant":
            # Assistant turns (a re-ask quotes the previous answer) take text only.
            return {"role": "assistant", "content": "".join(p["text"] for p in content if p["type"] == "text")}
        parts: list[ChatCompletionContentPartParam] = []
        for part in content:
            if part["type"] == "text":
                parts.append({"type": "text", "text": part["text"]})
            elif part["type"] == "image":
                parts.append(
                    {"type": "image_url", "image_url": {"url": _data_url(part["image"]), "detail": self.detail}}
                )
            else:
                raise ValueError(f"unknown message part type {part['type']!r}; expected 'text' or 'image'")
        return {"role": message["role"], "content": parts}


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


class _ImageAPI:
    """What the GPT-image drafter and refiner share: the calls, decoding, usage and canvas size."""

    def __init__(
        self,
        model: str,
        *,
        client: OpenAI,
        deadline: float = 300.0,
        size: str = "1024x1024",
        quality: Quality | None = None,
        price_per_image: float | None = None,
    ) -> None:
        self.model = model
        self.client = client
        self.deadline = deadline
        self.size = size
        self.quality = quality
        self.price_per_image = price_per_image

    @property
    def backend(self) -> str:
        return f"openai:{self.model}"

    def _options(self) -> dict[str, Any]:
        return {"model": self.model, "n": 1, "size": self.size, **({"quality": self.quality} if self.quality else {})}

    async def _generate(self, prompt: str, node: str, step: int, asynchronous: bool) -> Image.Image:
        return await self._image(
            lambda client: client.images.generate(prompt=prompt, **self._options()), node, step, asynchronous
        )

    async def _edit(
        self, image: Image.Image, prompt: str, node: str, step: int, asynchronous: bool, mask: Image.Image | None = None
    ) -> Image.Image:
        files = await blocking(_files, image, mask, asynchronous=asynchronous)
        return await self._image(
            lambda client: client.images.edit(prompt=prompt, **files, **self._options()), node, step, asynchronous
        )

    async def _image(self, send: Callable[[Any], Any], node: str, step: int, asynchronous: bool) -> Image.Image:
        """The image of the reply to ``send(client)``; decoded in a worker thread when ``asynchronous``."""
        response = await _request(
            self.backend,
            self.client,
            self.deadline,
            send,
            node=node,
            step=step,
            asynchronous=asynchronous,
            max_reply_bytes=MAX_IMAGE_REPLY_BYTES,
        )
        return await blocking(self._decode, response, node, step, asynchronous=asynchronous)

    def _decode(self, response, node: str, step: int) -> Image.Image:
        from PIL import Image

        used = response.usage
        usage.record(
            prompt_tokens=used.input_tokens if used else 0,
            completion_tokens=used.output_tokens if used else 0,
            images=1,
            cost_usd=self.price_per_image,
        )
        # GPT-image models always answer in b64_json; a URL means a server we cannot follow.
        if not response.data or not response.data[0].b64_json:
            raise RunError(f"{self.backend}: the reply holds no b64_json image", node=node, step=step)
        limit = max(MAX_IMAGE_PIXELS, self._canvas_pixels())
        try:
            # PIL reads only the header here; the pixels are decoded by convert, after the check.
            with Image.open(io.BytesIO(base64.b64decode(response.data[0].b64_json)), formats=IMAGE_FORMATS) as im:
                width, height = im.size
                if width * height > limit:
                    raise RunError(
                        f"{self.backend}: the reply's image is {width}x{height}, over the limit of {limit} pixels; "
                        "refused before decoding it",
                        node=node,
                        step=step,
                    )
                return im.convert("RGB")
        except (ValueError, OSError, Image.DecompressionBombError) as exc:
            # ValueError covers bad base64 (binascii.Error); OSError an unknown format or a broken file.
            why = _scrub(exc, self.client) or type(exc).__name__
            raise RunError(f"{self.backend}: the reply's image cannot be read: {why}", node=node, step=step) from None

    def _canvas(self) -> tuple[int, int] | None:
        m = _SIZE.match(self.size)
        return (int(m.group(1)), int(m.group(2))) if m else None

    def _canvas_pixels(self) -> int:
        canvas = self._canvas()
        return canvas[0] * canvas[1] if canvas else 0


def _fit(image: Image.Image, size: tuple[int, int] | None) -> Image.Image:
    from PIL import Image

    return image if size is None or image.size == size else image.resize(size, Image.Resampling.LANCZOS)


class OpenAIDrafter(_ImageAPI):
    """A :class:`~strokegraph.agents.drafter.Drafter` on GPT-image models.

    The first step is generated from its ``<des>``; each later one edits the whole current canvas
    with its ``<des>`` (no mask: anything may change, as with a diffusion img2img). The API picks
    its own output size; results are resized to the canvas, which the first image fixes (``size``,
    or what came back for ``size="auto"``).
    """

    def draft(self, request: DraftRequest) -> DraftResult:
        return drive(self._draft(request, asynchronous=False))

    async def adraft(self, request: DraftRequest) -> DraftResult:
        """:meth:`draft` on the client's ``AsyncOpenAI`` twin: awaited, cancelled with its task."""
        return await self._draft(request, asynchronous=True)

    async def _draft(self, request: DraftRequest, *, asynchronous: bool) -> DraftResult:
        description = request.plan.steps[request.step].description
        if request.image is None:
            image = _fit(await self._generate(description, "drafter", request.step, asynchronous), self._canvas())
        else:
            edited = await self._edit(request.image, description, "drafter", request.step, asynchronous)
            image = _fit(edited, request.image.size)
        return DraftResult(image=image, sampling_steps=0)


def _alpha_mask(mask: Image.Image) -> Image.Image:
    """The API's mask for a diffusers-style one: alpha 0 where ``mask`` is white (edit here)."""
    from PIL import Image, ImageOps

    black = Image.new("L", mask.size, 0)
    return Image.merge("RGBA", (black, black, black, ImageOps.invert(mask.convert("L"))))


class OpenAIRefiner(_ImageAPI):
    """A :class:`~strokegraph.agents.refiner.Refiner` on GPT-image edits.

    The ``<refine>`` text comes from the violations. When they have boxes and none is a relation
    (a move changes more than one place), the union of the boxes is inpainted: the edit gets a mask
    (alpha 0 = edit) and the result is composited locally, since the API treats the mask as a hint
    and may change pixels outside it. Otherwise the whole canvas is edited ("regenerate").
    """

    def __init__(
        self,
        model: str,
        *,
        client: OpenAI,
        deadline: float = 300.0,
        size: str = "1024x1024",
        quality: Quality | None = None,
        price_per_image: float | None = None,
        grow: float = 0.05,
        feather: int = 8,
    ) -> None:
        super().__init__(
            model, client=client, deadline=deadline, size=size, quality=quality, price_per_image=price_per_image
        )
        self.grow = grow
        self.feather = feather

    def refine(self, request: RefineRequest) -> RefineResult:
        return drive(self._refine(request, asynchronous=False))

    async def arefine(self, request: RefineRequest) -> RefineResult:
        """:meth:`refine` on the client's ``AsyncOpenAI`` twin: awaited, cancelled with its task."""
        return await self._refine(request, asynchronous=True)

    async def _refine(self, request: RefineRequest, *, asynchronous: bool) -> RefineResult:
        violations = request.critique.violations
        text = refine_text(violations, request.scene)
        description = request.plan.steps[request.step].description
        prompt = f"{description}\n{text}" if text else description
        original = request.image.convert("RGB")
        region = violation_region(violations)
        if region is not None and not any(v.kind == "relation" for v in violations):
            mask = region_mask(original.size, region, grow=self.grow, feather=self.feather)
            edited = await self._edit(original, prompt, "refiner", request.step, asynchronous, _alpha_mask(mask))
            image = composite(original, edited, mask)
            refinement = Refinement(text=text, operation="inpaint", region=region, violations=violations)
        else:
            image = _fit(await self._edit(original, prompt, "refiner", request.step, asynchronous), original.size)
            refinement = Refinement(text=text, operation="regenerate", violations=violations)
        return RefineResult(image=image, refinement=refinement, sampling_steps=0)


# ---------------------------------------------------------------------------------------------
# Factories (looked up by the registry)
# ---------------------------------------------------------------------------------------------


# Keys the client cache's hash of an endpoint and its key: without a secret of this process, a
# leaked cache key (a debugger, a dump) would let anyone test guesses of the API key against it.
_CLIENT_SALT = secrets.token_bytes(32)


def _client(
    base_url: str | None, api_key: str | None, timeout: float, max_retries: int, max_reply_bytes: int
) -> OpenAI:
    """An OpenAI client whose request attempts each take at most ``timeout`` s and ``max_reply_bytes``.

    The same arguments give the same client, made once per process (while it stays among the recent
    ones or a backend uses it). Raises :class:`UsageError` before any call when no key can be found.
    """
    if not (isinstance(timeout, int | float) and 0 < timeout <= _MAX_TIMEOUT):
        raise UsageError(f"timeout must be a number of seconds in (0, {_MAX_TIMEOUT}], got {timeout!r}")
    if not (isinstance(max_retries, int) and 0 <= max_retries <= _MAX_RETRIES):
        raise UsageError(f"max_retries must be a whole number from 0 to {_MAX_RETRIES}, got {max_retries!r}")
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    if base_url is not None:
        check_base_url(base_url)
    api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
    if api_key is None:
        if base_url is None:
            raise UsageError(
                "no OpenAI API key: set OPENAI_API_KEY or the 'api_key' setting "
                "(or a 'base_url' for a local OpenAI-compatible server)"
            )
        api_key = PLACEHOLDER_KEY
    from openai import OpenAI

    from strokegraph.tools import _cache
    from strokegraph.tools._openai_transport import BoundedClient

    # The endpoint goes into the hash too: it may hold a user name and password.
    endpoint = hmac.new(_CLIENT_SALT, f"{base_url}\0{api_key}".encode(), hashlib.sha256).hexdigest()
    return _cache.CLIENTS.get(
        ("openai", endpoint, float(timeout), max_retries, max_reply_bytes),
        lambda: OpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=float(timeout),
            max_retries=max_retries,
            http_client=BoundedClient(timeout=float(timeout), max_reply_bytes=max_reply_bytes),
        ),
    )


def _check_deadline(deadline: float) -> None:
    if not deadline > 0:
        raise UsageError(f"deadline must be a positive number of seconds, got {deadline!r}")


def _check_price(name: str, value: float | None) -> None:
    if value is not None and not value >= 0:
        raise UsageError(f"{name} must be a price in USD >= 0, got {value!r}")


def _check_choice(name: str, value: Any, choices: Any) -> None:
    if value not in get_args(choices):
        raise UsageError(f"{name} must be one of {', '.join(map(repr, get_args(choices)))}, got {value!r}")


def _chat(
    model: str,
    node: str,
    base_url: str | None,
    api_key: str | None,
    timeout: float,
    deadline: float,
    max_retries: int,
    price_input_per_mtok: float | None,
    price_output_per_mtok: float | None,
    detail: Detail = "auto",
) -> OpenAIChat:
    _check_deadline(deadline)
    _check_choice("detail", detail, Detail)
    _check_price("price_input_per_mtok", price_input_per_mtok)
    _check_price("price_output_per_mtok", price_output_per_mtok)
    if (price_input_per_mtok is None) != (price_output_per_mtok is None):
        raise UsageError("set both price_input_per_mtok and price_output_per_mtok, or neither")
    return OpenAIChat(
        model,
        client=_client(base_url, api_key, timeout, max_retries, MAX_CHAT_REPLY_BYTES),
        deadline=deadline,
        detail=detail,
        price_input_per_mtok=price_input_per_mtok,
        price_output_per_mtok=price_output_per_mtok,
        node=node,
    )


def _image_settings(
    base_url: str | None,
    api_key: str | None,
    timeout: float,
    deadline: float,
    max_retries: int,
    size: str,
    quality: Quality | None,
    price_per_image: float | None,
) -> dict[str, Any]:
    _check_deadline(deadline)
    sides = _SIZE.match(size) if isinstance(size, str) else None
    if size != "auto" and not (sides and all(1 <= int(side) <= _MAX_SIDE for side in sides.groups())):
        raise UsageError(
            f"size must be 'WIDTHxHEIGHT' with sides from 1 to {_MAX_SIDE} (e.g. '1024x1024') or 'auto', got {size!r}"
        )
    if quality is not None:
        _check_choice("quality", quality, Quality)
    _check_price("price_per_image", price_per_image)
    return {
        "client": _client(base_url, api_key, timeout, max_retries, MAX_IMAGE_REPLY_BYTES),
        "deadline": deadline,
        "size": size,
        "quality": quality,
        "price_per_image": price_per_image,
    }


def planner(
    model: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    deadline: float = 120.0,
    max_retries: int = 2,
    preparse: bool = False,
    price_input_per_mtok: float | None = None,
    price_output_per_mtok: float | None = None,
) -> ChatPlanner:
    """A planner on a chat model.

    ``timeout`` is the seconds each request attempt may take as a whole, connect to last byte (a
    server that trickles its reply is cut off there); ``max_retries`` the attempts after the first
    for rate limits, timeouts, connection errors and 5xx; ``deadline`` the seconds the call may take
    in all, its retries and the waits between them included (a call that runs out of it is not
    tried again by the graph). A connection refused on this machine (``localhost``, a loopback
    address) is not retried. A reply over :data:`MAX_CHAT_REPLY_BYTES` fails.
    """
    chat = _chat(
        model,
        "planner",
        base_url,
        api_key,
        timeout,
        deadline,
        max_retries,
        price_input_per_mtok,
        price_output_per_mtok,
    )
    return ChatPlanner(chat, preparse=preparse)


def critic(
    model: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    deadline: float = 120.0,
    max_retries: int = 2,
    detail: Detail = "low",
    price_input_per_mtok: float | None = None,
    price_output_per_mtok: float | None = None,
) -> ChatCritic:
    """A critic on a vision chat model; ``timeout``, ``deadline`` and ``max_retries`` as for :func:`planner`."""
    chat = _chat(
        model,
        "critic",
        base_url,
        api_key,
        timeout,
        deadline,
        max_retries,
        price_input_per_mtok,
        price_output_per_mtok,
        detail,
    )
    return ChatCritic(chat)


def drafter(
    model: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 180.0,
    deadline: float = 300.0,
    max_retries: int = 2,
    size: str = "1024x1024",
    quality: Quality | None = None,
    price_per_image: float | None = None,
) -> OpenAIDrafter:
    """A drafter on GPT-image; ``timeout``, ``deadline`` and ``max_retries`` as for :func:`planner`.

    A reply over :data:`MAX_IMAGE_REPLY_BYTES`, or an image over :data:`MAX_IMAGE_PIXELS` (or over
    ``size``, when that is larger) or not PNG, JPEG or WebP, fails.
    """
    return OpenAIDrafter(
        model, **_image_settings(base_url, api_key, timeout, deadline, max_retries, size, quality, price_per_image)
    )


def refiner(
    model: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 180.0,
    deadline: float = 300.0,
    max_retries: int = 2,
    size: str = "1024x1024",
    quality: Quality | None = None,
    price_per_image: float | None = None,
    grow: float = 0.05,
    feather: int = 8,
) -> OpenAIRefiner:
    """A refiner on GPT-image edits; its limits are those of :func:`drafter`."""
    if not grow >= 0:
        raise UsageError(f"grow must be >= 0 (a share of the image side), got {grow!r}")
    if not (isinstance(feather, int) and feather >= 0):
        raise UsageError(f"feather must be a whole number of pixels >= 0, got {feather!r}")
    return OpenAIRefiner(
        model,
        grow=grow,
        feather=feather,
        **_image_settings(base_url, api_key, timeout, deadline, max_retries, size, quality, price_per_image),
    )
