"""Mistral through ``langchain-mistralai``'s ``ChatMistralAI``: what sets it apart from the other providers.

``ChatMistralAI`` posts to ``<base_url>/chat/completions`` (Mistral's chat API, in OpenAI's shape)
with an ``httpx`` client of its own. Its retries are not the others': its ``max_retries`` counts
attempts (tenacity's ``stop_after_attempt``), at least 4 s apart, and only for connection errors and
timeouts, so a 429 or a 500 fails at once. strokegraph makes it one attempt and retries rate limits,
server errors and timeouts itself. Its endpoint is ``base_url``, else ``MISTRAL_BASE_URL``; its key
``MISTRAL_API_KEY`` (without one it would send ``Bearer None``, so strokegraph refuses first). Its
``timeout`` is whole seconds and its ``temperature`` from 0 to 1: building it refuses other values.
Structured output is Mistral's custom structured output, the reply's JSON schema as a strict
``response_format``, which the API offers for every model (a forced tool call cannot name the tool:
``ChatMistralAI`` sends ``tool_choice="any"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strokegraph.errors import transient_status
from strokegraph.tools.langchain._providers import Provider, Settings

__all__ = ["MISTRALAI"]


class _MistralAI(Provider):
    def chat_kwargs(self, settings: Settings) -> dict[str, Any]:
        kwargs = super().chat_kwargs(settings)
        # One attempt: its max_retries is a count of attempts, and strokegraph retries (retry_on).
        kwargs["max_retries"] = 1
        return kwargs

    def retry_on(self, settings: Settings) -> Callable[[BaseException], bool] | None:
        return _transient


def _transient(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return transient_status(exc.response.status_code)
    return isinstance(exc, httpx.TimeoutException)


MISTRALAI: Provider = _MistralAI(
    "mistralai",
    "langchain-mistralai",
    "langchain_mistralai",
    "json_schema",
    key_env=("MISTRAL_API_KEY",),
    base_url_env=("MISTRAL_BASE_URL",),
)
