"""Ollama through ``langchain-ollama``'s ``ChatOllama``: what sets it apart from the other providers.

``ChatOllama`` has no retries of its own and no ``timeout`` or ``max_tokens`` field: the timeout
goes to its HTTP client (``client_kwargs``), the token cap is Ollama's ``num_predict`` option, and
strokegraph retries rate limits, server errors and timeouts itself. Its endpoint is ``base_url``,
else ``OLLAMA_HOST``; a key (Ollama's cloud) comes from ``OLLAMA_API_KEY``, which the ``ollama``
client reads itself. Structured output is Ollama's ``format`` with the reply's JSON schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strokegraph.errors import transient_status
from strokegraph.tools.langchain._providers import Provider, Settings

__all__ = ["OLLAMA"]


class _Ollama(Provider):
    def chat_kwargs(self, settings: Settings) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"temperature": settings.temperature, "base_url": settings.base_url}
        kwargs["num_predict"] = settings.max_tokens
        if settings.timeout is not None:
            kwargs["client_kwargs"] = {"timeout": settings.timeout}
        return {name: value for name, value in kwargs.items() if value is not None}

    def retry_on(self, settings: Settings) -> Callable[[BaseException], bool] | None:
        return _transient


def _transient(exc: BaseException) -> bool:
    import httpx
    from ollama import ResponseError

    if isinstance(exc, ResponseError):
        return transient_status(exc.status_code)
    return isinstance(exc, httpx.TimeoutException)


OLLAMA: Provider = _Ollama(
    "ollama",
    "langchain-ollama",
    "langchain_ollama",
    "json_schema",
    key_env=("OLLAMA_API_KEY",),
    key_required=False,
    base_url_env=("OLLAMA_HOST",),
)
