"""Hosted and local chat models from any LangChain provider, behind the planner and the critic.

An id ``langchain:<provider>:<model>`` (``langchain:anthropic:claude-sonnet-4-5``,
``langchain:ollama:qwen2.5vl:7b``: the model may hold ``:``) is built with LangChain's
``init_chat_model`` for the providers in :data:`PROVIDERS`. Before anything is built,
:func:`check_model` refuses an unknown provider, a provider package that is not installed (with the
``pip install`` line that fixes it) and bad settings. Keys come from each provider's own environment
variable (``ANTHROPIC_API_KEY``...), read by its class: no setting takes one, so none reaches
``run.json``; a ``base_url`` is redacted in every message and never taken from a run's record.

:class:`LangChainChat` makes any LangChain ``BaseChatModel`` a
:class:`~strokegraph.agents.chat.ChatModel`: it asks for structured output the provider's way
(``with_structured_output(schema, method=..., include_raw=True)``: a JSON schema in the request or a
forced tool call), or describes the schema in the prompt for a model that does neither. Images go as
LangChain's standard content blocks; token usage, and the cost when prices are set, come from the
raw reply. ``acomplete`` is the same call on ``ainvoke``.

Nothing here imports LangChain until a backend is built.
"""

from __future__ import annotations

import base64
import difflib
import io
import json
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel

from strokegraph import usage
from strokegraph._drive import blocking, drive, either
from strokegraph._redact import check_base_url, redact_url
from strokegraph.errors import RunError, UsageError, transient_status
from strokegraph.tools.langchain._providers import PROVIDERS, Method, Provider, Settings

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from strokegraph.agents.critic import ChatCritic
    from strokegraph.agents.planner import ChatPlanner

__all__ = ["PROVIDERS", "LangChainChat", "StructuredOutput", "check_model", "critic", "planner"]

StructuredOutput = Literal["auto", "json_schema", "function_calling", "prompt"]
"""How a reply schema is asked for: ``auto`` (the provider's way, or what the model's LangChain
profile says it supports), a JSON schema in the request, a forced tool call, or the prompt alone."""

#: Sent as the key to a ``base_url`` server when no key is set, for classes that refuse to start without one.
PLACEHOLDER_KEY = "not-needed"

_MAX_RETRIES = 10
_MAX_TIMEOUT = 3600


class LangChainChat:
    """A :class:`~strokegraph.agents.chat.ChatModel` on a LangChain ``BaseChatModel``.

    ``structured_output`` picks how a reply schema is asked for (see :data:`StructuredOutput`);
    ``auto`` follows the model's LangChain profile (``structured_output``, then ``tool_calling``) and
    falls back to the prompt. ``retry_on(exc)`` marks the failures to retry, up to ``max_retries``
    times, for a class without retries of its own. ``name`` is the backend in error messages,
    ``node`` the role; ``secrets`` are values scrubbed from error messages (a key an error may echo).
    """

    def __init__(
        self,
        chat_model: Any,
        *,
        structured_output: StructuredOutput = "auto",
        price_input_per_mtok: float | None = None,
        price_output_per_mtok: float | None = None,
        retry_on: Callable[[BaseException], bool] | None = None,
        max_retries: int = 2,
        name: str | None = None,
        node: str | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        from langchain_core.language_models import BaseChatModel

        if not isinstance(chat_model, BaseChatModel):
            raise TypeError(f"expected a LangChain BaseChatModel, got {type(chat_model).__name__}")
        _check_choice("structured_output", structured_output, StructuredOutput)
        _check_prices(price_input_per_mtok, price_output_per_mtok)
        self.chat_model: BaseChatModel = chat_model
        self.method: Method = _method(chat_model) if structured_output == "auto" else structured_output
        self.prices = (
            (price_input_per_mtok, price_output_per_mtok)
            if price_input_per_mtok is not None and price_output_per_mtok is not None
            else None
        )
        self.retry_on = retry_on
        self.max_retries = max_retries
        self.name = name or f"langchain:{type(chat_model).__name__}"
        self.node = node
        self.secrets = tuple(sorted((s for s in secrets if s), key=len, reverse=True))
        self._runnables: dict[type[BaseModel] | None, Any] = {}

    @property
    def backend(self) -> str:
        return self.name

    def complete(self, messages: list[dict[str, Any]], *, schema: type[BaseModel] | None = None) -> str:
        return drive(self._complete(messages, schema, asynchronous=False))

    async def acomplete(self, messages: list[dict[str, Any]], *, schema: type[BaseModel] | None = None) -> str:
        """:meth:`complete` on ``ainvoke``, for callers that run on an event loop."""
        return await self._complete(messages, schema, asynchronous=True)

    async def _complete(
        self, messages: list[dict[str, Any]], schema: type[BaseModel] | None, *, asynchronous: bool
    ) -> str:
        """The one body of both: ``invoke`` when not ``asynchronous`` (it never suspends then), else ``ainvoke``."""
        # Images are PNG-encoded here: in a worker thread when awaited, so no other run's task waits on it.
        runnable, sent = await blocking(self._request, messages, schema, asynchronous=asynchronous)
        try:
            out = await either(runnable, "invoke", sent, asynchronous=asynchronous)
        except Exception as exc:  # noqa: BLE001 - each provider raises its own errors; one line names it
            raise self._error(exc) from None
        return self._reply(out)

    def _request(self, messages: list[dict[str, Any]], schema: type[BaseModel] | None) -> tuple[Any, list[Any]]:
        sent = _messages(messages)
        if schema is not None and self.method == "prompt":
            sent = _with_schema_text(sent, schema)
        key = schema if self.method != "prompt" else None
        runnable = self._runnables.get(key)
        if runnable is None:
            runnable = self.chat_model
            if key is not None:
                # The JSON schema, not the pydantic class: with the class some clients validate the
                # reply themselves (openai's parse) and raise, where ask_json should re-ask.
                shape = key.model_json_schema()
                runnable = runnable.with_structured_output(shape, method=self.method, include_raw=True)
            if self.retry_on is not None and self.max_retries > 0:
                runnable = runnable.with_retry(
                    retry_if_exception_type=self.retry_on,
                    stop_after_attempt=self.max_retries + 1,
                    # From 1 s, doubling to 8 s, plus up to half a second (tenacity's own "initial").
                    exponential_jitter_params={"max": 8.0, "jitter": 0.5},
                )
            self._runnables[key] = runnable
        return runnable, sent

    def _reply(self, out: Any) -> str:
        """The reply as text: the parsed object's JSON, or what the model said when it did not parse
        (so that :func:`~strokegraph.agents.chat.ask_json` checks it against the schema and re-asks
        with the error)."""
        raw = out["raw"] if isinstance(out, dict) else out
        self._record(raw)
        if isinstance(out, dict):
            parsed = out.get("parsed")
            if parsed is not None:
                return json.dumps(parsed)
            calls = getattr(raw, "tool_calls", None)
            if calls:
                return json.dumps(calls[0].get("args", {}))
        return _text(raw)

    def _record(self, raw: Any) -> None:
        meta = getattr(raw, "usage_metadata", None) or {}
        prompt, completion = int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0))
        cost = None
        if self.prices is not None and meta:
            cost = (prompt * self.prices[0] + completion * self.prices[1]) / 1e6
        usage.record(prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost)

    def _error(self, exc: Exception) -> RunError:
        status = _status(exc)
        timed_out = isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower()
        transient = timed_out or (isinstance(status, int) and transient_status(status))
        text = redact_url(" ".join(str(exc).split()))
        for secret in self.secrets:
            text = text.replace(secret, "***")
        code = f"{status} " if isinstance(status, int) else ""
        return RunError(f"{self.name}: {code}{type(exc).__name__}: {text[:300]}", node=self.node, transient=transient)


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a failure, or of the client error it was raised from (Google's class
    re-raises a 4xx as its own error, without one); botocore keeps it in its error's response dict."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:  # a chain may loop, as traceback's guard knows
        seen.add(id(cause))
        status, response = getattr(cause, "status_code", None), getattr(cause, "response", None)
        if not isinstance(status, int):
            status = getattr(response, "status_code", None)
        if not isinstance(status, int) and isinstance(response, dict):  # botocore's ClientError (Bedrock)
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
        cause = cause.__cause__
    return None


def _method(chat_model: Any) -> Method:
    profile = getattr(chat_model, "profile", None) or {}
    if profile.get("structured_output"):
        return "json_schema"
    if profile.get("tool_calling"):
        return "function_calling"
    return "prompt"


def _messages(messages: list[dict[str, Any]]) -> list[BaseMessage]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}
    out: list[BaseMessage] = []
    for message in messages:
        content = message["content"]
        parts = content if isinstance(content, str) else [_part(p) for p in content]
        out.append(kinds[message["role"]](content=parts))
    return out


def _part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "text":
        return {"type": "text", "text": part["text"]}
    buffer = io.BytesIO()
    part["image"].convert("RGB").save(buffer, format="PNG")
    # LangChain's standard image block: each provider class converts it to its own API's form.
    return {"type": "image", "base64": base64.b64encode(buffer.getvalue()).decode("ascii"), "mime_type": "image/png"}


def _with_schema_text(messages: list[BaseMessage], schema: type[BaseModel]) -> list[BaseMessage]:
    """``messages`` with the reply's JSON schema added to the last one, for a model with no structured output."""
    from langchain_core.messages import HumanMessage

    shape = json.dumps(schema.model_json_schema())
    text = f"Answer with one JSON object, and nothing else, that matches this JSON schema: {shape}"
    return [*messages, HumanMessage(content=[{"type": "text", "text": text}])]


def _text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):  # providers that answer in content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


# ---------------------------------------------------------------------------------------------
# Ids and settings
# ---------------------------------------------------------------------------------------------


def _provider(model: str) -> tuple[Provider, str]:
    name, sep, model_name = model.partition(":")
    provider = PROVIDERS.get(name)
    if provider is None or not sep or not model_name.strip():
        if provider is not None:
            raise UsageError(f"langchain id {('langchain:' + model)!r} names no model; use langchain:{name}:<model>")
        close = difflib.get_close_matches(name, list(PROVIDERS), n=2, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UsageError(
            f"langchain id {('langchain:' + model)!r} names no known provider; {hint}"
            f"use langchain:<provider>:<model> with a provider of {', '.join(PROVIDERS)}"
        )
    return provider, model_name


def check_model(model: str, settings: dict[str, Any]) -> None:
    """The registry's check of a ``langchain:`` id (``model`` is ``<provider>:<model>``) and its settings.

    Raises :class:`UsageError` for an unknown provider, a provider package that is not installed
    (with the ``pip install`` line), a setting the provider's class does not take, and bad values.
    """
    import importlib.util

    provider, _ = _provider(model)
    given = {k for k, v in settings.items() if v is not None and k in Settings.__dataclass_fields__}
    unsupported = sorted(given - provider.settings)
    if unsupported:
        raise UsageError(
            f"langchain:{provider.name} takes no {', '.join(map(repr, unsupported))} setting; "
            f"its settings: {', '.join(sorted(provider.settings))}"
        )
    _settings(settings)
    _check_choice("structured_output", settings.get("structured_output", "auto"), StructuredOutput)
    _check_prices(settings.get("price_input_per_mtok"), settings.get("price_output_per_mtok"))
    if importlib.util.find_spec(provider.module) is None:
        raise UsageError(
            f"langchain:{provider.name} needs {provider.package} (not installed); "
            f"run: pip install 'strokegraph[{provider.package}]'"
        )


def _settings(settings: dict[str, Any]) -> Settings:
    temperature, max_tokens = settings.get("temperature"), settings.get("max_tokens")
    base_url, timeout, max_retries = settings.get("base_url"), settings.get("timeout"), settings.get("max_retries")
    if temperature is not None and not (_number(temperature) and 0 <= temperature <= 2):
        raise UsageError(f"temperature must be a number from 0 to 2, got {temperature!r}")
    if max_tokens is not None and not (_whole(max_tokens) and max_tokens >= 1):
        raise UsageError(f"max_tokens must be a whole number >= 1, got {max_tokens!r}")
    if timeout is not None and not (_number(timeout) and 0 < timeout <= _MAX_TIMEOUT):
        raise UsageError(f"timeout must be seconds > 0 and at most {_MAX_TIMEOUT}, got {timeout!r}")
    if max_retries is not None and not (_whole(max_retries) and 0 <= max_retries <= _MAX_RETRIES):
        raise UsageError(f"max_retries must be a whole number from 0 to {_MAX_RETRIES}, got {max_retries!r}")
    if base_url is not None:
        check_base_url(base_url)
    return Settings(temperature, max_tokens, base_url, timeout, max_retries)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_choice(name: str, value: Any, choices: Any) -> None:
    if value not in get_args(choices):
        raise UsageError(f"{name} must be one of {', '.join(map(repr, get_args(choices)))}, got {value!r}")


def _check_prices(price_input: float | None, price_output: float | None) -> None:
    for name, value in (("price_input_per_mtok", price_input), ("price_output_per_mtok", price_output)):
        if value is not None and not (_number(value) and value >= 0):
            raise UsageError(f"{name} must be a price in USD >= 0, got {value!r}")
    if (price_input is None) != (price_output is None):
        raise UsageError("set both price_input_per_mtok and price_output_per_mtok, or neither")


#: Defaults of the settings a provider's class takes, where strokegraph's differ from LangChain's.
_DEFAULTS = {"timeout": 60.0, "max_retries": 2}


def _chat(model: str, node: str, settings: dict[str, Any]) -> LangChainChat:
    settings = {k: v for k, v in settings.items() if v is not None}
    check_model(model, settings)
    provider, model_name = _provider(model)
    settings = {**{k: v for k, v in _DEFAULTS.items() if k in provider.settings}, **settings}
    chosen = _settings(settings)
    kwargs = provider.chat_kwargs(chosen)
    if not provider.has_key():
        if not (provider.placeholder_key and provider.has_endpoint(chosen)):
            raise UsageError(
                f"langchain:{provider.name} needs a key: set {' or '.join(provider.key_env)} "
                "(keys are read from the environment only, never from a setting)"
            )
        kwargs["api_key"] = PLACEHOLDER_KEY
    from langchain.chat_models import init_chat_model

    name = f"langchain:{model}"
    try:
        chat_model = init_chat_model(model_name, model_provider=provider.name, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a class refuses its arguments in its own way; one line names it
        why = redact_url(" ".join(str(exc).split()))[:300]
        raise UsageError(f"{name}: cannot build the chat model: {why}") from None
    structured = settings.get("structured_output", "auto")
    retry_on = provider.retry_on(chosen)
    return LangChainChat(
        chat_model,
        structured_output=provider.method if structured == "auto" else structured,
        price_input_per_mtok=settings.get("price_input_per_mtok"),
        price_output_per_mtok=settings.get("price_output_per_mtok"),
        retry_on=retry_on,
        max_retries=2 if chosen.max_retries is None else chosen.max_retries,
        name=name,
        node=node,
        secrets=tuple(os.environ.get(env, "") for env in provider.key_env),
    )


def planner(
    model: str,
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    structured_output: StructuredOutput = "auto",
    preparse: bool = False,
    price_input_per_mtok: float | None = None,
    price_output_per_mtok: float | None = None,
) -> ChatPlanner:
    """A planner on ``langchain:<provider>:<model>``.

    ``timeout`` is the seconds each request may take (60), ``max_retries`` the tries after the first
    for rate limits, server errors and timeouts (2; by the provider's client, or by strokegraph for
    one without retries), ``structured_output`` how the reply schema is asked for (``auto``: the
    provider's way); prices are USD per million tokens. A provider's class leaves out what it does
    not take (see :data:`PROVIDERS`).
    """
    from strokegraph.agents.planner import ChatPlanner

    settings = {
        "temperature": temperature,
        "max_tokens": max_tokens,
        "base_url": base_url,
        "timeout": timeout,
        "max_retries": max_retries,
        "structured_output": structured_output,
        "price_input_per_mtok": price_input_per_mtok,
        "price_output_per_mtok": price_output_per_mtok,
    }
    return ChatPlanner(_chat(model, "planner", settings), preparse=preparse)


def critic(
    model: str,
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    structured_output: StructuredOutput = "auto",
    price_input_per_mtok: float | None = None,
    price_output_per_mtok: float | None = None,
) -> ChatCritic:
    """A critic on a vision chat model ``langchain:<provider>:<model>``; settings as for :func:`planner`."""
    from strokegraph.agents.critic import ChatCritic

    settings = {
        "temperature": temperature,
        "max_tokens": max_tokens,
        "base_url": base_url,
        "timeout": timeout,
        "max_retries": max_retries,
        "structured_output": structured_output,
        "price_input_per_mtok": price_input_per_mtok,
        "price_output_per_mtok": price_output_per_mtok,
    }
    return ChatCritic(_chat(model, "critic", settings))
