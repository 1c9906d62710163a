"""Backend ids: ``provider:model`` strings, parsed in one place and built lazily.

Each role (planner, drafter, critic, refiner) picks its backend by an id such as ``builtin:rules``.
Nothing heavy is imported until :func:`build` is called for that id.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from strokegraph.errors import UsageError

__all__ = ["DEFAULT_IDS", "Role", "build", "known_ids", "parse_id"]

Role = Literal["planner", "drafter", "critic", "refiner"]
ROLES: tuple[Role, ...] = ("planner", "drafter", "critic", "refiner")


@dataclass(frozen=True)
class _Entry:
    target: str
    """``module:attribute`` of a factory ``f(model: str, **settings) -> backend``."""
    models: tuple[str, ...] | None
    """The models this provider knows, or None when it takes any model name (a path, a hub id)."""


# (role, provider) -> how to build it. Providers that take any model name list ``None``.
_BACKENDS: dict[tuple[Role, str], _Entry] = {
    ("planner", "builtin"): _Entry("strokegraph.tools.builtin:planner", ("rules",)),
    ("drafter", "builtin"): _Entry("strokegraph.tools.builtin:drafter", ("sketch",)),
    ("critic", "builtin"): _Entry("strokegraph.tools.builtin:critic", ("pixels",)),
    ("refiner", "builtin"): _Entry("strokegraph.tools.builtin:refiner", ("sketch",)),
}

#: The offline defaults: no GPU, no key, no download.
DEFAULT_IDS: dict[Role, str] = {
    "planner": "builtin:rules",
    "drafter": "builtin:sketch",
    "critic": "builtin:pixels",
    "refiner": "builtin:sketch",
}


def known_ids(role: Role) -> list[str]:
    """Every id ``role`` accepts, with ``provider:<model>`` for open-ended providers."""
    out = []
    for (r, provider), entry in _BACKENDS.items():
        if r == role:
            out += [f"{provider}:{m}" for m in entry.models] if entry.models else [f"{provider}:<model>"]
    return out


def parse_id(role: Role, backend_id: str) -> tuple[str, str]:
    """Split and check ``provider:model``; a bad id raises :class:`UsageError` with suggestions."""
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    provider, sep, model = backend_id.strip().partition(":")
    entry = _BACKENDS.get((role, provider))
    if not sep or not model or entry is None or (entry.models is not None and model not in entry.models):
        valid = known_ids(role)
        close = difflib.get_close_matches(backend_id, valid, n=3, cutoff=0.4)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UsageError(f"unknown {role} id {backend_id!r}; {hint}valid ids: {', '.join(valid)}")
    return provider, model


def build(role: Role, backend_id: str, **settings: Any) -> Any:
    """Build the backend for ``role`` named by ``backend_id``, importing its module only now."""
    provider, model = parse_id(role, backend_id)
    module_name, _, attr = _BACKENDS[(role, provider)].target.partition(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
    return factory(model, **settings)
