"""Conformance checks for a backend of one role: what strokegraph's nodes rely on, for backend authors.

In the spirit of LangGraph's checkpoint-conformance package: run them against your backend in your
own test suite, one pytest test per check::

    import pytest
    from strokegraph.testing import conformance

    @pytest.mark.parametrize("check", conformance.checks("drafter"))
    def test_my_drafter_conforms(check):
        conformance.run_check("drafter", check, MyDrafter())

or all at once with ``conformance.check("drafter", MyDrafter())``. Each check calls the role's one
method on a small fixed scene ("two red apples to the left of a blue cup", read by the rules
planner, drawn by the sketch world where an image is needed) and raises :class:`ConformanceError`
naming what is wrong. A backend may always fail a call with :class:`~strokegraph.errors.RunError`
(its model answered badly) or :class:`~strokegraph.errors.UsageError` (bad settings); any other
exception fails the check. ``require_success=False`` accepts such a failure in place of a result,
for a backend whose answers cannot be valid (a test model with random weights): the checks then
still hold it to the error contract.

A backend that also offers the role's async method (``aplan``, ``adraft``, ``acritique``,
``arefine``: what :func:`~strokegraph.agenerate` awaits) is held to the same checks through it:
each check runs on the sync method, then again on the async one awaited in an event loop of its
own. Every role has one more check, ``cancel``: cancelling the task that awaits the async method
must end the call as ``asyncio.CancelledError`` (a backend without one passes it, as the loop then
runs its sync method in a worker thread and has nothing to ask of it).

Every built-in backend passes these checks in strokegraph's own tests. Each role registers its
checks (:func:`register_checks`) next to its definition, so a new role brings its own.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from strokegraph import progress, registry
from strokegraph.errors import RunError, UsageError
from strokegraph.registry import ROLES, Role
from strokegraph.schema import Critique, Plan, Refinement, SceneGraph, Violation

__all__ = ["PROMPT", "Check", "ConformanceError", "check", "checks", "register_checks", "run_check"]

#: The prompt every check works on.
PROMPT = "two red apples to the left of a blue cup"


class ConformanceError(AssertionError):
    """A backend does not do what its role's protocol promises; the message says which check and why."""


@dataclass(frozen=True)
class _Fixture:
    scene: SceneGraph
    plan: Plan
    first: Any  # the sketch world's draft of step 1 (a PIL image)
    second: Any  # and of step 2, drawn on it


@cache
def _fixture() -> _Fixture:
    from strokegraph.agents.drafter import DraftRequest

    scene, plan = registry.build("planner", "builtin:rules").plan(PROMPT)
    # A small canvas, so that checks of a model-backed backend on a CPU stay quick.
    sketch = registry.build("drafter", "builtin:sketch", fault_scale=0.0, size=128)
    first = sketch.draft(DraftRequest(scene=scene, plan=plan, step=0, image=None, seed=0)).image
    second = sketch.draft(DraftRequest(scene=scene, plan=plan, step=1, image=first, seed=0)).image
    return _Fixture(scene, plan, first, second)


def _fail(name: str, why: str) -> ConformanceError:
    return ConformanceError(f"conformance check {name!r} failed: {why}")


def _call(name: str, fn: Callable[[], Any], require_success: bool) -> tuple[Any, list[dict]]:
    """``fn()`` with its progress events; None for an allowed failure. Other exceptions fail ``name``."""
    events: list[dict] = []
    try:
        with progress.listening(events.append):
            return fn(), events
    except (RunError, UsageError) as exc:
        if require_success:
            raise _fail(name, f"the call failed: {type(exc).__name__}: {exc}") from exc
        return None, events
    except ConformanceError:
        raise
    except Exception as exc:  # noqa: BLE001 - what the check is about: only our two error families may leave
        raise _fail(name, f"raised {type(exc).__name__} ({exc}); a backend raises RunError or UsageError") from exc


def _check_events(name: str, stage: str, events: list[dict]) -> None:
    for event in events:
        if not isinstance(event, dict) or event.get("kind") != "progress" or event.get("stage") != stage:
            raise _fail(name, f"progress event {event!r} is not {{'kind': 'progress', 'stage': {stage!r}, ...}}")
        step, total = event.get("step"), event.get("total")
        if not (isinstance(step, int) and isinstance(total, int) and 0 <= step <= total and total > 0):
            raise _fail(name, f"progress event {event!r} needs whole numbers 0 <= step <= total, total > 0")


def _check_image(name: str, image: Any, size: tuple[int, int] | None = None) -> None:
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise _fail(name, f"returned {type(image).__name__} where a PIL image is needed")
    if image.width < 1 or image.height < 1:
        raise _fail(name, f"returned an empty {image.size} image")
    if size is not None and image.size != size:
        raise _fail(name, f"returned a {image.size} image for a {size} canvas; a later step keeps the canvas size")


def _interrupted(name: str, stage: str, fn: Callable[[], Any]) -> None:
    """Ctrl-C during a call: a KeyboardInterrupt raised at its first progress event must leave the call."""

    stopped: list[dict] = []

    def stop(event: dict) -> None:
        stopped.append(event)
        raise KeyboardInterrupt

    with progress.listening(stop):
        try:
            fn()
        except KeyboardInterrupt:
            return
        except (RunError, UsageError) as exc:
            if stopped:  # the interrupt came, and left as something else
                why = f"a Ctrl-C during the call became {type(exc).__name__}; let KeyboardInterrupt through"
                raise _fail(name, why) from exc
            return  # it failed before it reported any progress: nothing to interrupt
        except Exception as exc:  # noqa: BLE001 - a Ctrl-C turned into another exception is the failure
            why = f"a Ctrl-C during the call became {type(exc).__name__}; let KeyboardInterrupt through"
            raise _fail(name, why) from exc


# ---------------------------------------------------------------------------------------------
# The checks, per role
# ---------------------------------------------------------------------------------------------


def _planner_plans(backend: Any, require_success: bool) -> None:
    name = "plan returns a scene graph and a plan covering every entity once"
    result, _ = _call(name, lambda: backend.plan(PROMPT), require_success)
    if result is None:
        return
    if not (isinstance(result, tuple) and len(result) == 2):
        raise _fail(name, f"returned {type(result).__name__}; plan returns (SceneGraph, Plan)")
    scene, plan = result
    if not isinstance(scene, SceneGraph) or not isinstance(plan, Plan):
        raise _fail(name, f"returned ({type(scene).__name__}, {type(plan).__name__}); expected (SceneGraph, Plan)")
    introduced = [e for s in plan.steps for e in s.entity_ids]
    if sorted(introduced) != sorted(e.id for e in scene.entities):
        raise _fail(name, f"the plan introduces {introduced}, the scene has {[e.id for e in scene.entities]}")


def _planner_refuses_cleanly(backend: Any, require_success: bool) -> None:
    name = "an unreadable prompt is a UsageError or RunError, never another exception"
    _call(name, lambda: backend.plan("asdf qwer zxcv"), require_success=False)


def _draft_request(step: int, image: Any) -> Any:
    from strokegraph.agents.drafter import DraftRequest

    f = _fixture()
    return DraftRequest(scene=f.scene, plan=f.plan, step=step, image=image, seed=0)


def _drafter_first(backend: Any, require_success: bool) -> None:
    name = "the first step returns an image and its sampling steps"
    result, events = _call(name, lambda: backend.draft(_draft_request(0, None)), require_success)
    _check_events(name, "draft", events)
    if result is None:
        return
    _check_image(name, getattr(result, "image", None))
    steps = getattr(result, "sampling_steps", None)
    if not isinstance(steps, int) or steps < 0:
        raise _fail(name, f"sampling_steps is {steps!r}; the steps that really ran, a whole number >= 0")


def _drafter_later(backend: Any, require_success: bool) -> None:
    name = "a later step draws on the current canvas and keeps its size"
    canvas = _fixture().first
    result, events = _call(name, lambda: backend.draft(_draft_request(1, canvas.copy())), require_success)
    _check_events(name, "draft", events)
    if result is not None:
        _check_image(name, getattr(result, "image", None), canvas.size)


def _drafter_interrupt(backend: Any, require_success: bool) -> None:
    _interrupted("Ctrl-C ends a draft in progress", "draft", lambda: backend.draft(_draft_request(0, None)))


def _critique_request(image: Any) -> Any:
    from strokegraph.agents.critic import CritiqueRequest

    f = _fixture()
    last = f.plan.steps[-1]
    scope = frozenset(e.id for e in f.scene.entities)
    return CritiqueRequest(
        scene=f.scene, scope=scope, image=image, instruction=last.instruction, description=last.description
    )


def _critic_judges(backend: Any, require_success: bool) -> None:
    name = "critique returns a Critique about the scene's entities"
    request = _critique_request(_fixture().second.copy())
    result, _ = _call(name, lambda: backend.critique(request), require_success)
    if result is None:
        return
    if not isinstance(result, Critique):
        raise _fail(name, f"returned {type(result).__name__}; critique returns a Critique")
    known = {e.id for e in request.scene.entities}
    for v in result.violations:
        if not set(v.entity_ids) <= known:
            outside = f"names entities {v.entity_ids} outside the scene {sorted(known)}"
            raise _fail(name, f"violation {v.message!r} {outside}")


def _critic_scope(backend: Any, require_success: bool) -> None:
    name = "not drawn yet is not drawn wrong: no violation about an entity outside the scope"
    from strokegraph.agents.critic import CritiqueRequest

    f = _fixture()
    first_only = f.plan.introduced_until(0)
    step = f.plan.steps[0]
    request = CritiqueRequest(
        scene=f.scene,
        scope=first_only,
        image=f.first.copy(),
        instruction=step.instruction,
        description=step.description,
    )
    result, _ = _call(name, lambda: backend.critique(request), require_success)
    if result is None:
        return
    for v in result.violations:
        if v.kind != "extra" and v.entity_ids and not set(v.entity_ids) & first_only:
            raise _fail(name, f"violation {v.message!r} is about {v.entity_ids}, which step 1 does not draw")


def _refine_request() -> Any:
    from strokegraph.agents.refiner import RefineRequest

    f = _fixture()
    cup = next(e for e in f.scene.entities if e.noun == "cup")
    missing = Violation(
        kind="missing",
        entity_ids=(cup.id,),
        expected=cup.phrase(),
        observed="nothing",
        box=(0.55, 0.3, 0.9, 0.7),
        message=f"expected {cup.phrase()}, found none",
    )
    return RefineRequest(
        scene=f.scene,
        plan=f.plan,
        step=len(f.plan.steps) - 1,
        round=1,
        image=f.second.copy(),
        critique=Critique(violations=(missing,), judged_entity_ids=tuple(e.id for e in f.scene.entities)),
        seed=0,
    )


def _refiner_refines(backend: Any, require_success: bool) -> None:
    name = "refine returns a same-size image and its <refine> correction"
    request = _refine_request()
    result, events = _call(name, lambda: backend.refine(request), require_success)
    _check_events(name, "refine", events)
    if result is None:
        return
    _check_image(name, getattr(result, "image", None), request.image.size)
    refinement = getattr(result, "refinement", None)
    if not isinstance(refinement, Refinement) or not refinement.text.strip():
        raise _fail(name, f"refinement is {refinement!r}; a Refinement with its <refine> text")
    steps = getattr(result, "sampling_steps", None)
    if not isinstance(steps, int) or steps < 0:
        raise _fail(name, f"sampling_steps is {steps!r}; the steps that really ran, a whole number >= 0")


def _refiner_interrupt(backend: Any, require_success: bool) -> None:
    _interrupted("Ctrl-C ends a refinement in progress", "refine", lambda: backend.refine(_refine_request()))


class _Awaited:
    """``backend`` seen through its async method: ``<method>(request)`` awaits ``a<method>(request)``
    in an event loop of its own, so that every check also holds for what ``agenerate`` calls."""

    def __init__(self, backend: Any, method: str) -> None:
        self._call = getattr(backend, "a" + method)
        setattr(self, method, self._awaited)

    def _awaited(self, *args: Any) -> Any:
        return asyncio.run(self._call(*args))


def _async_method(role: Role, backend: Any, method: str) -> Callable[..., Any] | None:
    """``backend.a<method>``, or None when it has none; one that is not ``async def`` fails conformance."""
    native = getattr(backend, "a" + method, None)
    if native is None:
        return None
    if not inspect.iscoroutinefunction(native):
        why = f"its a{method} is not a coroutine function; the loop awaits it (make it async def, or drop it)"
        raise ConformanceError(f"a {role}'s a{method} must be async def: {type(backend).__name__}: {why}")
    return native


def _cancelled(role: Role, backend: Any, method: str, request: Callable[[], Any]) -> None:
    """Cancelling the task that awaits ``a<method>(request())`` ends the call as CancelledError."""
    native = _async_method(role, backend, method)
    if native is None:
        return
    name = f"cancelling the task awaiting a{method} ends the call"

    async def go() -> None:
        task = asyncio.ensure_future(native(request()))
        await asyncio.sleep(0)  # the call starts, and suspends where it waits (on its model, say)
        if task.done():  # it ended without waiting on anything: there was nothing to cancel
            return
        task.cancel()
        try:
            await asyncio.wait_for(task, timeout=30)
        except asyncio.CancelledError:
            return
        except TimeoutError:
            raise _fail(name, "the call went on for 30 s after its task was cancelled") from None
        except Exception as exc:  # noqa: BLE001 - a cancel turned into another exception is the failure
            raise _fail(name, f"a cancel became {type(exc).__name__} ({exc}); let CancelledError through") from exc
        raise _fail(name, "the call returned a result after its task was cancelled; let CancelledError through")

    with progress.listening(None):
        asyncio.run(go())


Check = Callable[[Any, bool], None]
"""A conformance check: ``check(backend, require_success)``, raising :class:`ConformanceError` when it fails."""


@dataclass(frozen=True)
class _RoleChecks:
    method: str
    checks: dict[str, Check]
    request: Callable[[], Any]


# role -> its one method and its checks, by name; each role registers its own (see register_checks).
_CHECKS: dict[str, _RoleChecks] = {}


def register_checks(role: Role, method: str, checks: Mapping[str, Check], request: Callable[[], Any]) -> None:
    """Make ``checks`` (name -> check) the conformance checks of ``role``, whose one method is ``method``.

    ``request()`` makes an argument for ``method`` that gets a call as far as its model: the
    ``cancel`` check, added to every role, cancels the task awaiting ``a<method>`` on it.

    A role registers its checks where it is defined, as the loop's four do below: a new role's
    module does so next to its protocol, and :func:`checks` then lists them.
    """
    if role not in ROLES:
        raise UsageError(f"cannot register checks for unknown role {role!r}; roles: {', '.join(ROLES)}")
    _CHECKS[role] = _RoleChecks(method, dict(checks), request)


register_checks(
    "planner", "plan", {"plans": _planner_plans, "refuses-cleanly": _planner_refuses_cleanly}, lambda: PROMPT
)
register_checks(
    "drafter",
    "draft",
    {"first-step": _drafter_first, "later-step": _drafter_later, "interrupt": _drafter_interrupt},
    lambda: _draft_request(0, None),
)
register_checks(
    "critic",
    "critique",
    {"judges": _critic_judges, "scope": _critic_scope},
    lambda: _critique_request(_fixture().second.copy()),
)
register_checks("refiner", "refine", {"refines": _refiner_refines, "interrupt": _refiner_interrupt}, _refine_request)


def _role_checks(role: Role) -> _RoleChecks:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    # A role defined outside this module registers its checks when its module is imported, which the
    # registry does for every role's backends.
    registry.registered()
    if role not in _CHECKS:
        raise UsageError(f"role {role!r} registers no conformance checks (see register_checks)")
    return _CHECKS[role]


def checks(role: Role) -> list[str]:
    """The names of ``role``'s checks, for ``pytest.mark.parametrize``."""
    return [*_role_checks(role).checks, "cancel"]


def run_check(role: Role, name: str, backend: Any, *, require_success: bool = True) -> None:
    """Run ``role``'s check ``name`` on ``backend`` (and on its async method, where it has one);
    raises :class:`ConformanceError` if it fails."""
    table = _role_checks(role)
    if name not in checks(role):
        raise UsageError(f"unknown {role} check {name!r}; checks: {', '.join(checks(role))}")
    if not callable(getattr(backend, table.method, None)):
        raise ConformanceError(f"a {role} has a method {table.method!r}; {type(backend).__name__} has none")
    if name == "cancel":
        _cancelled(role, backend, table.method, table.request)
        return
    table.checks[name](backend, require_success)
    if _async_method(role, backend, table.method) is not None:
        try:
            table.checks[name](_Awaited(backend, table.method), require_success)
        except ConformanceError as exc:
            raise ConformanceError(f"{exc} (awaiting a{table.method}, as agenerate does)") from exc


def check(role: Role, backend: Any, *, require_success: bool = True) -> None:
    """Run every check of ``role`` on ``backend``; one :class:`ConformanceError` lists each that failed."""
    failed = []
    for name in checks(role):
        try:
            run_check(role, name, backend, require_success=require_success)
        except ConformanceError as exc:
            failed.append(str(exc))
    if failed:
        raise ConformanceError("\n".join(failed))
