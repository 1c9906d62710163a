"""What strokegraph knows of each LangChain provider: its package, its key, its structured output.

A :class:`Provider` is data: the name ``init_chat_model`` takes (``model_provider``), the pip
distribution and module that bring its chat model class, the environment variables its key and
endpoint come from, and the structured-output method that provider does natively. A provider that
needs code of its own (Ollama: no retries of its own, its timeout in the HTTP client's arguments)
has its own module and subclass.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Method", "PROVIDERS", "Provider", "Settings"]

Method = Literal["json_schema", "function_calling", "prompt"]


@dataclass(frozen=True)
class Settings:
    """The settings a ``langchain:`` id takes that reach the chat model; None leaves its default."""

    temperature: float | None = None
    max_tokens: int | None = None
    base_url: str | None = None
    timeout: float | None = None
    max_retries: int | None = None


@dataclass(frozen=True)
class Provider:
    name: str
    """``init_chat_model``'s ``model_provider``, and the part after ``langchain:`` in an id."""
    package: str
    """The pip distribution that brings the chat model class (its strokegraph extra has the same name)."""
    module: str
    """The module imported to build it; checked before anything is built."""
    method: Method
    """Structured output the provider's way: a JSON schema in the request, or a forced tool call."""
    key_env: tuple[str, ...] = ()
    """Variables the chat model class reads its key from. Their values are scrubbed from error messages."""
    key_required: bool = True
    """Whether a call needs one of them set (a local Ollama server needs no key; AWS's credential
    chain finds one elsewhere too)."""
    base_url_env: tuple[str, ...] = ()
    """Variables the chat model class reads its endpoint from."""
    settings: frozenset[str] = frozenset({"temperature", "max_tokens", "base_url", "timeout", "max_retries"})
    """Which :class:`Settings` fields its class takes."""
    placeholder_key: bool = False
    """Its class refuses to start without a key: send a placeholder to a ``base_url`` given without one."""

    def has_key(self) -> bool:
        return not (self.key_env and self.key_required) or any(os.environ.get(name) for name in self.key_env)

    def has_endpoint(self, settings: Settings) -> bool:
        return settings.base_url is not None or any(os.environ.get(name) for name in self.base_url_env)

    def chat_kwargs(self, settings: Settings) -> dict[str, Any]:
        """``init_chat_model``'s keyword arguments for ``settings`` (LangChain's standard names)."""
        kwargs = {name: getattr(settings, name) for name in sorted(self.settings)}
        return {name: value for name, value in kwargs.items() if value is not None}

    def retry_on(self, settings: Settings) -> Callable[[BaseException], bool] | None:
        """Which failures strokegraph retries itself, for a class without retries of its own; None: it has them."""
        return None


_OPENAI = Provider(
    "openai",
    "langchain-openai",
    "langchain_openai",
    "json_schema",
    key_env=("OPENAI_API_KEY",),
    base_url_env=("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    placeholder_key=True,
)
_ANTHROPIC = Provider(
    "anthropic",
    "langchain-anthropic",
    "langchain_anthropic",
    # Anthropic's JSON-schema output is for its newest models only; a forced tool call works for all.
    "function_calling",
    key_env=("ANTHROPIC_API_KEY",),
    base_url_env=("ANTHROPIC_API_URL", "ANTHROPIC_BASE_URL"),
    placeholder_key=True,
)


_BEDROCK_CONVERSE = Provider(
    "bedrock_converse",
    "langchain-aws",
    "langchain_aws",
    # Converse's JSON-schema output (outputConfig) is for a few newest models; a tool call (toolConfig,
    # forced by its toolChoice where the model takes one, as Claude, Nova and Mistral Large do) for most.
    "function_calling",
    # Scrubbed from messages; AWS's credential chain (AWS_PROFILE, SSO, instance roles) may hold the
    # key instead, so none is required here: a call without one fails as botocore's NoCredentialsError.
    key_env=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK"),
    key_required=False,
    # base_url is the class's endpoint_url; timeout (whole seconds) and max_retries go to botocore's
    # Config (langchain-aws >= 1.4.2), whose standard retry mode retries throttling and 5xx replies.
    base_url_env=("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL"),
)


# The providers with code of their own subclass Provider in a module of their own, which imports this
# one: they are imported here, once Provider is defined.
from strokegraph.tools.langchain._google_genai import GOOGLE_GENAI  # noqa: E402
from strokegraph.tools.langchain._mistralai import MISTRALAI  # noqa: E402
from strokegraph.tools.langchain._ollama import OLLAMA  # noqa: E402

PROVIDERS: dict[str, Provider] = {
    p.name: p for p in (_OPENAI, _ANTHROPIC, OLLAMA, GOOGLE_GENAI, MISTRALAI, _BEDROCK_CONVERSE)
}
"""The providers a ``langchain:<provider>:<model>`` id may name."""
