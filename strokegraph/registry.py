"""The roles and their backends: ``provider:model`` ids, parsed in one place and built lazily.

The roles are the fields of :class:`Backends`, one record for a run's four backends; :data:`ROLES`
lists them, and everything else that goes per role (command-line flags, ``run.json``, the server's
allow-list, benchmarks) iterates it. Each role picks its backend by an id such as ``builtin:rules``.
Nothing heavy is imported until :func:`build` is called for that id.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from strokegraph.errors import UsageError

if TYPE_CHECKING:
    from strokegraph.agents.critic import Critic
    from strokegraph.agents.drafter import Drafter
    from strokegraph.agents.planner import Planner
    from strokegraph.agents.refiner import Refiner

__all__ = [
    "DEFAULT_IDS",
    "ROLES",
    "Backends",
    "Role",
    "backend_ids",
    "build",
    "build_backends",
    "check",
    "clear_cache",
    "known_ids",
    "parse_id",
]


@dataclass(frozen=True)
class Backends:
    """A run's backends, one per role: anything with the role's one method (see :mod:`strokegraph.agents`).

    Its fields are the roles, in the loop's order; a new role is a new field here (and in :data:`Role`).
    """

    planner: Planner
    drafter: Drafter
    critic: Critic
    refiner: Refiner

    def by_role(self) -> dict[Role, Any]:
        """The backends keyed by role, e.g. to pass on as ``generate(prompt, **backends.by_role())``."""
        return {role: getattr(self, role) for role in ROLES}


Role = Literal["planner", "drafter", "critic", "refiner"]
#: The roles, in the loop's order: the fields of :class:`Backends`.
ROLES: tuple[Role, ...] = tuple(cast(Role, f.name) for f in dataclasses.fields(Backends))


@dataclass(frozen=True)
class _Entry:
    target: str
    """``module:attribute`` of a factory ``f(model: str, **settings) -> backend``."""
    models: tuple[str, ...] | None = None
    """The models this provider knows, or None when it takes any model name (a path, a hub id)."""
    extra: str | None = None
    """The pip extra that brings what the backend imports."""
    requires: tuple[str, ...] = ()
    """Modules that must be importable, checked before anything is built."""


_DIFFUSERS: dict[str, Any] = {"extra": "diffusers", "requires": ("torch", "diffusers", "transformers")}
_TRANSFORMERS: dict[str, Any] = {"extra": "transformers", "requires": ("torch", "transformers")}
_OPENAI: dict[str, Any] = {"extra": "openai", "requires": ("openai",)}

# (role, provider) -> how to build it. Providers that take any model name list no models.
_BACKENDS: dict[tuple[Role, str], _Entry] = {
    ("planner", "builtin"): _Entry("strokegraph.tools.builtin:planner", ("rules",)),
    ("drafter", "builtin"): _Entry("strokegraph.tools.builtin:drafter", ("sketch",)),
    ("critic", "builtin"): _Entry("strokegraph.tools.builtin:critic", ("pixels",)),
    ("refiner", "builtin"): _Entry("strokegraph.tools.builtin:refiner", ("sketch",)),
    ("drafter", "diffusers"): _Entry("strokegraph.tools.hf_diffusers:drafter", **_DIFFUSERS),
    ("refiner", "diffusers"): _Entry("strokegraph.tools.hf_diffusers:refiner", **_DIFFUSERS),
    ("planner", "transformers"): _Entry("strokegraph.tools.hf_transformers:planner", **_TRANSFORMERS),
    ("critic", "transformers-vlm"): _Entry("strokegraph.tools.hf_transformers:vlm_critic", **_TRANSFORMERS),
    ("critic", "transformers-detect"): _Entry("strokegraph.tools.hf_transformers:detect_critic", **_TRANSFORMERS),
    ("planner", "openai"): _Entry("strokegraph.tools.openai_api:planner", **_OPENAI),
    ("critic", "openai"): _Entry("strokegraph.tools.openai_api:critic", **_OPENAI),
    ("drafter", "openai"): _Entry("strokegraph.tools.openai_api:drafter", **_OPENAI),
    ("refiner", "openai"): _Entry("strokegraph.tools.openai_api:refiner", **_OPENAI),
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
        import difflib

        valid = known_ids(role)
        close = difflib.get_close_matches(backend_id, valid, n=3, cutoff=0.4)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UsageError(f"unknown {role} id {backend_id!r}; {hint}valid ids: {', '.join(valid)}")
    return provider, model


def check(role: Role, backend_id: str, settings: dict[str, Any] | None = None) -> None:
    """Everything that can be checked before building: the id, the installed extra, the settings.

    Raises :class:`UsageError` naming what to change (or the ``pip install`` line that fixes it).
    """
    provider, _ = parse_id(role, backend_id)
    entry = _BACKENDS[(role, provider)]
    missing = [m for m in entry.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(
            f"{role} {backend_id!r} needs {', '.join(missing)} (not installed); "
            f"run: pip install 'strokegraph[{entry.extra}]'"
        )
    if settings:
        params = inspect.signature(_factory(entry)).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            valid = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
            unknown = sorted(set(settings) - set(valid))
            if unknown:
                raise UsageError(
                    f"unknown setting(s) {', '.join(map(repr, unknown))} for {role} {backend_id!r}; "
                    f"valid: {', '.join(valid) or 'none'}"
                )


def _factory(entry: _Entry) -> Callable[..., Any]:
    module_name, _, attr = entry.target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def build(role: Role, backend_id: str, **settings: Any) -> Any:
    """Build the backend for ``role`` named by ``backend_id``, importing its module only now."""
    check(role, backend_id, settings)
    provider, model = parse_id(role, backend_id)
    return _factory(_BACKENDS[(role, provider)])(model, **settings)


def clear_cache() -> None:
    """Forget the loaded models and API clients that backends share across builds in this process.

    :func:`build` reuses them for the same id and the settings that shape them (model, device,
    dtype; endpoint, key, limits); after this the next build loads or makes them anew (a model
    directory saved again, memory to free). Backends already built keep what they hold.
    """
    # Imported with the first backend that shares anything; before that there is nothing to forget.
    cache = sys.modules.get("strokegraph.tools._cache")
    if cache is not None:
        cache.clear()


def backend_ids(
    chosen: Mapping[str, Any] | None = None, settings: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[Role, str]:
    """Each role's id as a run records it, with every id and setting checked and nothing built.

    ``chosen`` maps a role to an id (``"builtin:sketch"``), to a backend object of your own (recorded
    as ``custom:<its type>``), or to None for :data:`DEFAULT_IDS`; ``settings`` maps a role to its
    backend's settings, which only a backend named by id takes. Raises :class:`UsageError` naming the
    first problem: an unknown role, a bad id or setting, settings for a backend object.
    """
    chosen, settings = chosen or {}, settings or {}
    for what, given in (("role(s)", chosen), ("settings for role(s)", settings)):
        unknown = sorted(set(given) - set(ROLES))
        if unknown:
            raise UsageError(f"unknown {what} {', '.join(map(repr, unknown))}; expected {', '.join(ROLES)}")
    ids: dict[Role, str] = {}
    for role in ROLES:
        value = chosen.get(role)
        if value is None or isinstance(value, str):
            ids[role] = value or DEFAULT_IDS[role]
            check(role, ids[role], dict(settings.get(role) or {}))
        elif settings.get(role):
            raise UsageError(f"settings for {role} apply to backends named by id, not to a backend object")
        else:
            ids[role] = f"custom:{type(value).__name__}"
    return ids


def build_backends(
    chosen: Mapping[str, Any] | None = None, settings: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[Backends, dict[Role, str]]:
    """Each role's backend, and the id it is recorded under (see :func:`backend_ids`).

    Every id is checked before any is built, so a typo fails before anything loads; a backend
    object is used as it is.
    """
    ids = backend_ids(chosen, settings)
    chosen, settings = chosen or {}, settings or {}
    built = {
        role: value
        if (value := chosen.get(role)) is not None and not isinstance(value, str)
        else build(role, ids[role], **(settings.get(role) or {}))
        for role in ROLES
    }
    return Backends(**built), ids
