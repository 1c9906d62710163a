"""The roles and their backends: ``provider:model`` ids, parsed in one place and built lazily.

The roles are the fields of :class:`Backends`, one record for a run's backends; :data:`ROLES` lists
them, and everything else that goes per role (config files, command-line flags, ``run.json``, the
server's context and allow-list, benchmarks, conformance checks) iterates it. Each role picks its
backend by an id such as ``builtin:rules``. Nothing heavy is imported until :func:`build` is called
for that id. Each entry also declares what its backend can do (:func:`capabilities`), and
:func:`backend_ids` refuses roles that do not fit together (:func:`check_pairing`) before anything
is built.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from strokegraph.errors import UsageError

if TYPE_CHECKING:
    from strokegraph.agents.critic import Critic
    from strokegraph.agents.drafter import Drafter
    from strokegraph.agents.planner import Planner
    from strokegraph.agents.refiner import Refiner

__all__ = [
    "DEFAULT_IDS",
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "ROLES",
    "Backends",
    "Registered",
    "Capabilities",
    "ImageKind",
    "Role",
    "RoleChoices",
    "backend_ids",
    "build",
    "build_backends",
    "capabilities",
    "check",
    "check_pairing",
    "clear_cache",
    "known_ids",
    "parse_id",
    "register",
    "registered",
    "unregister",
]


@dataclass(frozen=True)
class Backends:
    """A run's backends, one per role: anything with the role's one method (see :mod:`strokegraph.agents`).

    Its fields are the roles, in the loop's order; a new role is a new field here (and in :data:`Role`,
    :class:`RoleChoices` and :data:`DEFAULT_IDS`).
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


class RoleChoices(TypedDict, total=False):
    """The backend chosen for each role, as the entry points take it (``generate(prompt, **choices)``):
    an id, a backend object of your own, or None for :data:`DEFAULT_IDS`. A key per role."""

    planner: str | Planner | None
    drafter: str | Drafter | None
    critic: str | Critic | None
    refiner: str | Refiner | None


ImageKind = Literal["sketch", "natural"]
"""What an image shows: the sketch world's flat icons, or a natural image (a photo, a painting)."""

_KIND_TEXT: dict[ImageKind, str] = {"sketch": "sketch-world icons", "natural": "natural images"}


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, as its registry entry declares it; asked wherever a decision turns on it.

    A backend object given in place of an id declares nothing: ``declared`` is False and every other
    field None (unknown), and nothing is refused on its account.
    """

    declared: bool = True
    offline: bool | None = None
    """True for a backend built from code alone: no weights to load, no API to call, no key to send."""
    draws: ImageKind | None = None
    """The kind of image a drafter or refiner makes; None for the other roles."""
    reads: frozenset[ImageKind] | None = None
    """The kinds of image a critic can judge; None for the other roles."""
    detector: bool | None = None
    """Whether a critic finds objects with a detector (boxes and scores), which a benchmark judge needs."""


@dataclass(frozen=True)
class _Entry:
    target: str | Callable[..., Any]
    """A factory ``f(model: str, **settings) -> backend``, or its ``module:attribute`` (imported on first use)."""
    models: tuple[str, ...] | None = None
    """The models this provider knows, or None when it takes any model name (a path, a hub id)."""
    extra: str | None = None
    """The pip extra that brings what the backend imports."""
    requires: tuple[str, ...] = ()
    """Modules that must be importable, checked before anything is built."""
    offline: bool = False
    """Built from code alone (see :attr:`Capabilities.offline`); an entry that does not say so is model-backed."""
    draws: ImageKind | None = None
    reads: tuple[ImageKind, ...] = ()
    detector: bool = False
    package: str = "strokegraph"
    """The distribution that registered it (``strokegraph backends`` names it)."""
    check_model: str | Callable[..., None] | None = None
    """``f(model: str, settings: dict) -> None`` (or its ``module:attribute``), run by :func:`check` for
    what depends on the model part of an id (the provider package a ``langchain:`` id needs)."""


#: The entry-point group through which installed packages register backends: each entry point names
#: a function ``register_backends(register)`` that calls :func:`register` once per backend.
ENTRY_POINT_GROUP = "strokegraph.backends"
#: strokegraph's own modules that register backends, loaded first, through the same hook as any other
#: package's (as simonw/llm loads its default plugins): each has a ``register_backends(register)``.
DEFAULT_PLUGINS: tuple[str, ...] = ("strokegraph.tools.backends",)

# (role, provider) -> how to build it, and what it can do; filled by the plugins on first use.
_BACKENDS: dict[tuple[Role, str], _Entry] = {}
_LOAD_LOCK = threading.RLock()
_loading = False
_ready = False


def register(
    role: Role,
    provider: str,
    factory: str | Callable[..., Any],
    *,
    models: Sequence[str] | None = None,
    extra: str | None = None,
    requires: Sequence[str] = (),
    offline: bool = False,
    draws: ImageKind | None = None,
    reads: Sequence[ImageKind] = (),
    detector: bool = False,
    package: str | None = None,
    check_model: str | Callable[..., None] | None = None,
) -> None:
    """Make ``provider:<model>`` an id of ``role``, built by ``factory(model, **settings)``.

    ``factory`` is a callable or its ``"module:attribute"``, imported only when the backend is
    built. ``models`` lists the model names the provider accepts (None: any name, a path or a hub
    id). ``extra`` and ``requires`` name what must be installed (checked before anything is built,
    with the ``pip install`` line in the error); ``offline``, ``draws``, ``reads`` and ``detector``
    declare what the backend can do (see :class:`Capabilities`): ``draws`` for a drafter or
    refiner, ``reads`` and ``detector`` for a critic. Keyword-only settings of the factory are the
    settings the id takes. ``check_model(model, settings)`` (a callable or its ``"module:attribute"``),
    when given, checks before anything is built what depends on the model part of the id, such as a
    package that only some models need, and raises :class:`UsageError` naming the fix; it runs
    first when ``requires`` is not met too, so that it may name the one extra that brings both (it
    must then not import them). A provider
    already registered for ``role`` by another package is a :class:`UsageError`; :func:`unregister`
    it first to replace it.
    """
    if role not in ROLES:
        raise UsageError(f"cannot register a backend for unknown role {role!r}; roles: {', '.join(ROLES)}")
    if not _PROVIDER.fullmatch(provider) or provider in (_CUSTOM,):
        raise UsageError(f"provider name {provider!r} must be a lowercase word (letters, digits, '-', '_')")
    if draws is not None and draws not in _KIND_TEXT or any(k not in _KIND_TEXT for k in reads):
        raise UsageError(f"image kinds are {', '.join(_KIND_TEXT)}, got draws={draws!r}, reads={tuple(reads)!r}")
    package = package or _calling_package()
    known = _BACKENDS.get((role, provider))
    if known is not None and known.package != package:
        raise UsageError(
            f"{package} registers the {role} provider {provider!r}, which {known.package} registered already"
        )
    _BACKENDS[(role, provider)] = _Entry(
        factory,
        tuple(models) if models is not None else None,
        extra,
        tuple(requires),
        offline,
        draws,
        tuple(reads),
        detector,
        package,
        check_model,
    )


def unregister(role: Role, provider: str) -> None:
    """Forget ``role``'s provider (a test's plugin, or one to register anew); unknown ones are ignored."""
    _entries().pop((role, provider), None)


_PROVIDER = re.compile(r"[a-z][a-z0-9_-]*")


def _calling_package() -> str:
    """The top-level package of the module that called :func:`register`, for messages and listings."""
    frame = inspect.currentframe()
    caller = frame.f_back.f_back if frame and frame.f_back else None
    return str((caller.f_globals.get("__name__") if caller else None) or "?").partition(".")[0]


def _entries() -> dict[tuple[Role, str], _Entry]:
    """Every registered backend: strokegraph's own, then each installed plugin's, loaded once."""
    global _loading, _ready
    if _ready:
        return _BACKENDS
    # Runs started at once in threads (agenerate) all ask here first: one loads, the others wait.
    with _LOAD_LOCK:
        if _ready or _loading:  # _loading: a plugin's hook in this thread looks ids up while registering
            return _BACKENDS
        _loading = True
        try:
            for name in DEFAULT_PLUGINS:
                importlib.import_module(name).register_backends(register)
            for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                _load_plugin(point)
            _ready = True
        finally:
            _loading = False
    return _BACKENDS


def _load_plugin(point: importlib.metadata.EntryPoint) -> None:
    package = point.dist.name if point.dist is not None else point.module.partition(".")[0]
    try:
        hook = point.load()
        hook(partial(register, package=package))
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken plugin may fail in any way; name it
        raise UsageError(
            f"backend plugin {point.name!r} of {package} failed to load ({type(exc).__name__}: {exc}); "
            f"fix or uninstall {package}"
        ) from None


#: The provider a backend object is recorded under (``custom:<its type>``); no entry is registered for it.
_CUSTOM = "custom"

# A critic to name in the fix when the chosen one cannot read the drafter's images.
_READER_FOR: dict[ImageKind, str] = {
    "sketch": "builtin:pixels",
    "natural": "transformers-detect:google/owlv2-base-patch16-ensemble",
}

#: The offline defaults: no GPU, no key, no download.
DEFAULT_IDS: dict[Role, str] = {
    "planner": "builtin:rules",
    "drafter": "builtin:sketch",
    "critic": "builtin:pixels",
    "refiner": "builtin:sketch",
}


@dataclass(frozen=True)
class Registered:
    """One registered provider of a role, as ``strokegraph backends`` lists it."""

    role: Role
    provider: str
    ids: tuple[str, ...]
    """``provider:model`` for each known model, or ``provider:<model>`` for one that takes any."""
    package: str
    extra: str | None
    capabilities: Capabilities


def registered() -> list[Registered]:
    """Every registered provider, strokegraph's own and each installed plugin's, in role order."""
    out = []
    for (role, provider), entry in _entries().items():
        ids = tuple(f"{provider}:{m}" for m in entry.models) if entry.models else (f"{provider}:<model>",)
        caps = capabilities(role, ids[0]) if entry.models else capabilities(role, f"{provider}:any")
        out.append(Registered(role, provider, ids, entry.package, entry.extra, caps))
    return sorted(out, key=lambda r: ROLES.index(r.role))


def known_ids(role: Role) -> list[str]:
    """Every id ``role`` accepts, with ``provider:<model>`` for open-ended providers."""
    out = []
    for (r, provider), entry in _entries().items():
        if r == role:
            out += [f"{provider}:{m}" for m in entry.models] if entry.models else [f"{provider}:<model>"]
    return out


def parse_id(role: Role, backend_id: str) -> tuple[str, str]:
    """Split and check ``provider:model``; a bad id raises :class:`UsageError` with suggestions."""
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    provider, sep, model = backend_id.strip().partition(":")
    entry = _entries().get((role, provider))
    if not sep or not model or entry is None or (entry.models is not None and model not in entry.models):
        import difflib

        valid = known_ids(role)
        close = difflib.get_close_matches(backend_id, valid, n=3, cutoff=0.4)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UsageError(f"unknown {role} id {backend_id!r}; {hint}valid ids: {', '.join(valid)}")
    return provider, model


def capabilities(role: Role, backend_id: str) -> Capabilities:
    """What the backend ``role`` builds from ``backend_id`` can do, as its registry entry declares it.

    An id a run records for a backend object (``custom:<its type>``) declares nothing (see
    :class:`Capabilities`); any other id is parsed, and a bad one raises :class:`UsageError`.
    """
    if backend_id.partition(":")[0] == _CUSTOM:
        return Capabilities(declared=False)
    provider, _ = parse_id(role, backend_id)
    entry = _entries()[(role, provider)]
    return Capabilities(
        offline=entry.offline,
        draws=entry.draws,
        reads=frozenset(entry.reads) if role == "critic" else None,
        detector=entry.detector if role == "critic" else None,
    )


def check_pairing(ids: Mapping[Role, str]) -> None:
    """Refuse roles that cannot work together, before anything is built: a critic that cannot read
    the drafter's images, or a refiner that draws another kind of image than the drafter.

    ``ids`` maps each role to its id (as :func:`backend_ids` returns them); a role left out or
    given as a backend object (``custom:...``) declares nothing and is never refused. Raises one
    :class:`UsageError` that names every mismatch and what to change.
    """
    caps = {role: capabilities(role, ids[role]) for role in ("drafter", "critic", "refiner") if role in ids}
    drafter, critic, refiner = (
        caps.get(role, Capabilities(declared=False)) for role in ("drafter", "critic", "refiner")
    )
    kind = drafter.draws
    if kind is None:
        return
    problems, fixes = [], []
    if critic.reads is not None and kind not in critic.reads:
        only = " and ".join(_KIND_TEXT[k] for k in sorted(critic.reads))
        problems.append(f"the critic {ids['critic']!r} reads only {only}")
        what = "a detector or VLM critic" if kind == "natural" else "a critic that reads them"
        fixes.append(f"{what} (--critic {_READER_FOR[kind]})")
    if refiner.draws is not None and refiner.draws != kind:
        problems.append(f"the refiner {ids['refiner']!r} draws {_KIND_TEXT[refiner.draws]}")
        provider, _ = parse_id("drafter", ids["drafter"])
        same = ids["drafter"] if ("refiner", provider) in _entries() else DEFAULT_IDS["refiner"]
        fixes.append(f"a refiner that draws them too (--refiner {same})")
    if not problems:
        return
    preset = _preset_like(ids["drafter"]) if kind == "natural" else None
    fix = " and ".join(fixes) + (f", or --preset {preset}" if preset else "")
    raise UsageError(
        f"{' and '.join(problems)}, but the drafter {ids['drafter']!r} draws {_KIND_TEXT[kind]}: use {fix}"
    )


def _preset_like(drafter_id: str) -> str | None:
    """A shipped preset to name in a fix: one whose drafter has the provider of ``drafter_id``, and
    whose critic is the one the fix names if there is such a preset."""
    from strokegraph.presets import load_preset, preset_names

    provider = drafter_id.partition(":")[0]
    same = [(name, load_preset(name)) for name in preset_names()]
    same = [(name, p) for name, p in same if (p.role("drafter").id or "").partition(":")[0] == provider]
    same.sort(key=lambda item: item[1].role("critic").id != _READER_FOR["natural"])
    return same[0][0] if same else None


def check(role: Role, backend_id: str, settings: dict[str, Any] | None = None) -> None:
    """Everything that can be checked before building: the id, the installed extra, the settings.

    Raises :class:`UsageError` naming what to change (or the ``pip install`` line that fixes it).
    """
    provider, model = parse_id(role, backend_id)
    entry = _entries()[(role, provider)]
    missing = [m for m in entry.requires if importlib.util.find_spec(m) is None]
    if missing:
        if entry.check_model is not None:
            # The id's own check may name a narrower extra that brings these packages too
            # (langchain:mistralai:... needs strokegraph[langchain-mistralai], not only [langchain]).
            _load(entry.check_model)(model, dict(settings or {}))
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
    if entry.check_model is not None:
        _load(entry.check_model)(model, dict(settings or {}))


def _factory(entry: _Entry) -> Callable[..., Any]:
    return _load(entry.target)


def _load(target: str | Callable[..., Any]) -> Callable[..., Any]:
    """``target`` itself, or the attribute its ``module:attribute`` names (imported now)."""
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def build(role: Role, backend_id: str, **settings: Any) -> Any:
    """Build the backend for ``role`` named by ``backend_id``, importing its module only now."""
    check(role, backend_id, settings)
    provider, model = parse_id(role, backend_id)
    return _factory(_entries()[(role, provider)])(model, **settings)


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
    first problem: an unknown role, a bad id or setting, settings for a backend object, roles that do
    not fit together (see :func:`check_pairing`).
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
            ids[role] = f"{_CUSTOM}:{type(value).__name__}"
    check_pairing(ids)
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
