"""The operator's allow-list of backend ids, one rule for every place a request picks backends
(the LangGraph server's graphs, the browser UI): a request may not load a model or spend a key
that the operator did not name."""

from __future__ import annotations

import os
from collections.abc import Iterable

from strokegraph.registry import Role, capabilities

__all__ = ["allowed_ids", "is_allowed"]


def allowed_ids(env: str) -> tuple[str, ...]:
    """The ids ``$env`` lists, comma-separated: whole ids (``openai:gpt-4.1-mini``) or providers (``openai:``)."""
    return tuple(a.strip() for a in os.environ.get(env, "").split(",") if a.strip())


def is_allowed(role: Role, backend_id: str, allowed: Iterable[str]) -> bool:
    """Whether ``role`` may build ``backend_id``: an offline backend always; another when ``allowed``
    names it whole or names its provider (an entry ending in ``:``)."""
    return capabilities(role, backend_id).offline or any(
        backend_id == a or (a.endswith(":") and backend_id.startswith(a)) for a in allowed
    )
