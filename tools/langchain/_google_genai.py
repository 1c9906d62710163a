"""Google's Gemini API through ``langchain-google-genai``'s ``ChatGoogleGenerativeAI``: what sets it apart.

Its ``max_retries`` is the ``google-genai`` SDK's ``attempts``, the first request included
(``max_retries=1`` sends one request, retrying nothing), so strokegraph's count of retries is sent
plus one. The rest is as for the other providers: ``base_url`` (else ``GOOGLE_GEMINI_BASE_URL``,
which the SDK reads), ``timeout`` in seconds, ``max_tokens``, and the key from ``GOOGLE_API_KEY``
or ``GEMINI_API_KEY``; the class refuses to start without a key, even for a ``base_url``.
Structured output is the API's own: ``responseJsonSchema`` with the reply's JSON schema.
"""

from __future__ import annotations

from typing import Any

from strokegraph.tools.langchain._providers import Provider, Settings

__all__ = ["GOOGLE_GENAI"]


class _GoogleGenAI(Provider):
    def chat_kwargs(self, settings: Settings) -> dict[str, Any]:
        kwargs = super().chat_kwargs(settings)
        if settings.max_retries is not None:
            kwargs["max_retries"] = settings.max_retries + 1
        return kwargs


GOOGLE_GENAI: Provider = _GoogleGenAI(
    "google_genai",
    "langchain-google-genai",
    "langchain_google_genai",
    # responseJsonSchema takes the whole JSON schema; a forced function call gets the API's
    # narrower OpenAPI subset of it.
    "json_schema",
    key_env=("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    base_url_env=("GOOGLE_GEMINI_BASE_URL",),
    placeholder_key=True,
)
