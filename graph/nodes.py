"""The four nodes of the loop. Each reads state, calls its role's backend from the runtime context,
writes images to the run directory and returns a partial state update plus trajectory events.

Each node comes twice, with one body: ``planner`` blocks in its backend call, ``aplanner`` (and
``adrafter``, ``acritic``, ``arefiner``) is a coroutine for async runs (:func:`~strokegraph.agenerate`)
that awaits the backend's async method (``aplan``, ``adraft``, ``acritique``, ``arefine``) when it has
one, and otherwise runs the sync method in a worker thread; image files are read and written in a
worker thread too. The body is a coroutine that the sync node drives without an event loop
(:func:`strokegraph._drive.drive`).

The nodes are public so custom graphs can reuse them next to nodes of their own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, NotRequired, TypedDict

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import ValidationError

from strokegraph import progress, usage
from strokegraph._drive import blocking, drive, either
from strokegraph.agents.critic import CritiqueRequest
from strokegraph.agents.drafter import DraftRequest
from strokegraph.agents.planner import single_pass_plan
from strokegraph.agents.refiner import RefineRequest
from strokegraph.errors import InvalidAnswer, RunError, StrokegraphError
from strokegraph.graph.state import RunContext, RunState
from strokegraph.schema import Event, Plan, Violation, inside_image

__all__ = [
    "Progress",
    "acritic",
    "adrafter",
    "aplanner",
    "arefiner",
    "critic",
    "drafter",
    "planner",
    "refiner",
    "review_answer",
    "review_critique",
    "review_payload",
    "review_plan",
]


class Progress(TypedDict):
    """A progress event, sent to ``RunContext.on_progress`` and LangGraph's ``custom`` stream mode.

    ``start`` and ``end`` frame every stage; a critique's ``end`` also carries ``violations`` (how
    many were found). Backends that sample (diffusers) add ``{"kind": "progress", "stage", "step",
    "total"}`` events for each denoising step (through :func:`strokegraph.progress.emit`).
    """

    kind: Literal["start", "end"]
    stage: Literal["plan", "draft", "critique", "refine"]
    step: int
    round: int
    message: str
    duration_s: float
    violations: NotRequired[int]


def _writer(runtime: Runtime[RunContext]) -> progress.Writer | None:
    """Where this node's progress goes: the context's ``on_progress``, then LangGraph's ``custom`` stream."""
    return progress.writer_for(runtime.context.on_progress, runtime.stream_writer)


def _emit(writer: progress.Writer | None, **event: Any) -> None:
    """Send the :class:`Progress` event made of ``event``'s keywords to ``writer``, if any."""
    if writer is not None:
        writer(event)


async def _run(node: str, step: int, backend: Any, method: str, request: Any, writer, asynchronous: bool):
    """Call ``backend.<method>(request)`` (see :func:`~strokegraph._drive.either`), collect the usage it
    records and route the progress it emits to ``writer``.

    Anything it raises that is not ours becomes a RunError naming the node and step; a cancel
    (``asyncio.CancelledError``, not an Exception) goes through as it is.
    """
    try:
        with usage.collect() as collected, progress.listening(writer):
            result = await either(backend, method, request, asynchronous=asynchronous)
    except StrokegraphError:
        raise
    except Exception as exc:  # noqa: BLE001 - a backend may fail in any way; name where it did
        raise RunError(f"{type(exc).__name__}: {exc}", node=node, step=step) from exc
    return result, collected.total()


NodeBody = Callable[..., Coroutine[Any, Any, dict]]


def _nodes(body: NodeBody) -> tuple[Callable[[RunState, Runtime[RunContext]], dict], NodeBody]:
    """The sync node and the coroutine node of one role, both running ``body``.

    ``body(state, runtime, asynchronous=...)`` is the node's one implementation; the sync node
    drives it without an event loop, the coroutine node awaits it.
    """

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict:
        return drive(body(state, runtime, asynchronous=False))

    async def anode(state: RunState, runtime: Runtime[RunContext]) -> dict:
        return await body(state, runtime, asynchronous=True)

    name = body.__name__.lstrip("_")
    node.__name__ = node.__qualname__ = name
    anode.__name__ = anode.__qualname__ = f"a{name}"
    return node, anode


async def _planner(state: RunState, runtime: Runtime[RunContext], *, asynchronous: bool) -> dict:
    ctx, writer = runtime.context, _writer(runtime)
    _emit(writer, kind="start", stage="plan", step=-1, round=0, message=state.prompt, duration_s=0.0)
    t0 = time.perf_counter()
    (scene, plan), used = await _run("planner", -1, ctx.backends.planner, "plan", state.prompt, writer, asynchronous)
    if state.single_pass:
        plan = single_pass_plan(scene)
    dt = time.perf_counter() - t0
    text = "\n".join(f"<ins>{s.instruction}</ins> <des>{s.description}</des>" for s in plan.steps)
    _emit(writer, kind="end", stage="plan", step=-1, round=0, message=f"{len(plan.steps)} step(s)", duration_s=dt)
    event = Event(stage="plan", step=-1, text=text, duration_s=dt, backend=ctx.ids.get("planner", ""), usage=used)
    return {"scene": scene, "plan": plan, "trajectory": [event]}


planner, aplanner = _nodes(_planner)


async def _drafter(state: RunState, runtime: Runtime[RunContext], *, asynchronous: bool) -> dict:
    ctx, writer = runtime.context, _writer(runtime)
    assert state.scene is not None and state.plan is not None  # the graph runs the planner first
    step = state.step + 1
    plan_step = state.plan.steps[step]
    _emit(writer, kind="start", stage="draft", step=step, round=0, message=plan_step.instruction, duration_s=0.0)
    t0 = time.perf_counter()
    current = (
        await blocking(ctx.images.open, state.image, ctx.run_dir, asynchronous=asynchronous) if state.image else None
    )
    request = DraftRequest(scene=state.scene, plan=state.plan, step=step, image=current, seed=ctx.seed)
    result, used = await _run("drafter", step, ctx.backends.drafter, "draft", request, writer, asynchronous)
    name = f"step{step + 1:02d}-draft.png"
    image = await blocking(ctx.images.save, result.image, ctx.run_dir, name, asynchronous=asynchronous)
    dt = time.perf_counter() - t0
    _emit(writer, kind="end", stage="draft", step=step, round=0, message=image.path, duration_s=dt)
    event = Event(
        stage="draft",
        step=step,
        text=plan_step.instruction,
        image=image,
        duration_s=dt,
        sampling_steps=result.sampling_steps,
        backend=ctx.ids.get("drafter", ""),
        usage=used,
    )
    return {
        "step": step,
        "round": 0,
        "image": image,
        "critique": None,
        "sampling_steps": state.sampling_steps + result.sampling_steps,
        "trajectory": [event],
    }


drafter, adrafter = _nodes(_drafter)


async def _critic(state: RunState, runtime: Runtime[RunContext], *, asynchronous: bool) -> dict:
    ctx, writer = runtime.context, _writer(runtime)
    # The graph runs the planner and a drafter first.
    assert state.scene is not None and state.plan is not None and state.image is not None
    last = state.step == len(state.plan.steps) - 1
    # Not drawn yet is not drawn wrong: judge only what steps <= k introduced; the last step
    # is judged against the whole prompt.
    scope = frozenset(e.id for e in state.scene.entities) if last else state.plan.introduced_until(state.step)
    _emit(writer, kind="start", stage="critique", step=state.step, round=state.round, message="", duration_s=0.0)
    t0 = time.perf_counter()
    plan_step = state.plan.steps[state.step]
    request = CritiqueRequest(
        scene=state.scene,
        scope=scope,
        image=await blocking(ctx.images.open, state.image, ctx.run_dir, asynchronous=asynchronous),
        instruction=plan_step.instruction,
        description=plan_step.description,
        requests=state.requests,
    )
    critique, used = await _run("critic", state.step, ctx.backends.critic, "critique", request, writer, asynchronous)
    if state.requests and not getattr(ctx.backends.critic, "judges_requests", False):
        # A person's request stays open: this critic cannot say whether it was met, so the critique
        # lists it as not judged (the run then ends in exit 4, never in a plain pass).
        asked = tuple(f"asked in review: {v.message}" for v in state.requests)
        critique = critique.model_copy(update={"unjudged": (*critique.unjudged, *asked)})
    dt = time.perf_counter() - t0
    summary = "no violations" if critique.passed else "; ".join(v.message for v in critique.violations)
    _emit(
        writer,
        kind="end",
        stage="critique",
        step=state.step,
        round=state.round,
        message=summary,
        duration_s=dt,
        violations=len(critique.violations),
    )
    event = Event(
        stage="critique",
        step=state.step,
        round=state.round,
        text=summary,
        image=state.image,
        duration_s=dt,
        backend=ctx.ids.get("critic", ""),
        critique=critique,
        usage=used,
    )
    return {"critique": critique, "trajectory": [event]}


critic, acritic = _nodes(_critic)


async def _refiner(state: RunState, runtime: Runtime[RunContext], *, asynchronous: bool) -> dict:
    ctx, writer = runtime.context, _writer(runtime)
    # The graph runs the planner, a drafter and the critic first.
    assert state.scene is not None and state.plan is not None and state.image is not None
    assert state.critique is not None
    rnd = state.round + 1
    _emit(writer, kind="start", stage="refine", step=state.step, round=rnd, message="", duration_s=0.0)
    t0 = time.perf_counter()
    request = RefineRequest(
        scene=state.scene,
        plan=state.plan,
        step=state.step,
        round=rnd,
        image=await blocking(ctx.images.open, state.image, ctx.run_dir, asynchronous=asynchronous),
        critique=state.critique,
        seed=ctx.seed,
    )
    result, used = await _run("refiner", state.step, ctx.backends.refiner, "refine", request, writer, asynchronous)
    name = f"step{state.step + 1:02d}-refine{rnd}.png"
    image = await blocking(ctx.images.save, result.image, ctx.run_dir, name, asynchronous=asynchronous)
    dt = time.perf_counter() - t0
    _emit(writer, kind="end", stage="refine", step=state.step, round=rnd, message=result.refinement.text, duration_s=dt)
    event = Event(
        stage="refine",
        step=state.step,
        round=rnd,
        text=result.refinement.text,
        image=image,
        duration_s=dt,
        sampling_steps=result.sampling_steps,
        backend=ctx.ids.get("refiner", ""),
        refinement=result.refinement,
        usage=used,
    )
    return {
        "round": rnd,
        "rounds_total": state.rounds_total + 1,
        "image": image,
        "sampling_steps": state.sampling_steps + result.sampling_steps,
        "trajectory": [event],
    }


refiner, arefiner = _nodes(_refiner)


# ---------------------------------------------------------------------------------------------
# Review (``build_graph(review=True)``): a person answers an interrupt after the plan and after
# every critique. These nodes call no backend: on resume LangGraph runs a node again from its
# start, so all they do before ``interrupt`` is build the payload.
# ---------------------------------------------------------------------------------------------


def review_payload(state: RunState, kind: str) -> dict:
    """What the person is shown: the plan, or the latest critique of step ``state.step``.

    Besides strokegraph's own keys, the payload is a request in LangChain's human-in-the-loop
    format (``langchain.agents.middleware.human_in_the_loop.HITLRequest``: ``action_requests`` and
    ``review_configs``), the one Agent Chat UI shows with approve / edit / reject buttons; such a
    client's ``{"decisions": [...]}`` answer is taken as well (see :func:`review_answer`).
    """
    if kind == "plan":
        assert state.scene is not None and state.plan is not None  # a plan review follows the planner
        plan = state.plan.model_dump()
        steps = "\n".join(f"{i}. {step.instruction}" for i, step in enumerate(state.plan.steps, 1))
        description = (
            f"The plan for {state.prompt!r}, {len(state.plan.steps)} step(s):\n{steps}\n\n"
            "Approve to draw it, edit its `plan`, or reject to stop the run."
        )
        payload: dict[str, Any] = {"kind": "plan", "scene": state.scene.model_dump(), "plan": plan}
        return payload | _hitl_request(kind, {"plan": plan}, description)
    assert state.critique is not None  # a critique review follows the critic
    critique = state.critique.model_dump()
    found = "\n".join(f"- {v.kind}: {v.message}" for v in state.critique.violations) or "- none"
    description = (
        f"The critique of step {state.step + 1}, round {state.round}:\n{found}\n\n"
        "Approve to go on, edit its `violations`, respond with a request the critic checks from now on, "
        "or reject to stop the run."
    )
    payload = {
        "kind": "critique",
        "step": state.step,
        "round": state.round,
        "image": state.image.path if state.image else None,
        "critique": critique,
    }
    return payload | _hitl_request(kind, {"violations": critique["violations"]}, description)


# The decisions each review takes in LangChain's human-in-the-loop format (_from_decision turns one into an answer).
_DECISIONS = {"plan": ("approve", "edit", "reject"), "critique": ("approve", "edit", "reject", "respond")}


def _hitl_request(kind: str, args: dict, description: str) -> dict:
    name = f"review_{kind}"
    return {
        "action_requests": [{"name": name, "args": args, "description": description}],
        "review_configs": [{"action_name": name, "allowed_decisions": list(_DECISIONS[kind])}],
    }


def _from_decision(kind: str, answer: Any) -> Any:
    """strokegraph's answer for a human-in-the-loop response (``{"decisions": [decision]}``, or the
    decision alone); any other answer as it is. Raises :class:`InvalidAnswer` for a bad decision."""
    if isinstance(answer, dict) and "decisions" in answer and "action" not in answer:
        decisions = answer["decisions"]
        if set(answer) != {"decisions"} or not isinstance(decisions, list) or len(decisions) != 1:
            raise _invalid('"decisions" must be a list of one decision: this review asks one question')
        answer = decisions[0]
    if not (isinstance(answer, dict) and "type" in answer and "action" not in answer):
        return answer
    decision = answer["type"]
    if decision not in _DECISIONS[kind]:
        raise _invalid(f"decision {decision!r} is not one of {', '.join(_DECISIONS[kind])} for a {kind} review")
    if decision == "approve":
        return {"action": "accept"}
    if decision == "reject":
        return {"action": "stop"}
    if decision == "respond":
        message = answer.get("message")
        if not isinstance(message, str) or not message.strip():
            raise _invalid('a "respond" decision needs a "message": what the critic should check from now on')
        text = " ".join(message.split())
        if len(text) > MAX_REQUEST_CHARS:
            raise _invalid(f"the request is {len(text)} characters; at most {MAX_REQUEST_CHARS}")
        violation = {"kind": "attribute", "expected": text, "observed": "asked in review", "message": text}
        return {"action": "add", "violation": violation}
    field = "plan" if kind == "plan" else "violations"
    edited = answer.get("edited_action")
    args = edited.get("args") if isinstance(edited, dict) else None
    if not isinstance(edited, dict) or edited.get("name") != f"review_{kind}" or not isinstance(args, dict):
        raise _invalid(f'an "edit" decision needs "edited_action": {{"name": "review_{kind}", "args": {{...}}}}')
    if set(args) != {field}:
        raise _invalid(f'the edited args must be {{"{field}": ...}}, not {sorted(args)}')
    value = args[field]
    if isinstance(value, str):  # a form sends an edited object back as its JSON text
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise _invalid(f'the edited "{field}" is not JSON: {exc}') from None
    return {"action": "edit", field: value}


#: The longest request a person may add in words (a "respond" decision).
MAX_REQUEST_CHARS = 1000


def _invalid(message: str) -> InvalidAnswer:
    return InvalidAnswer(f"invalid review answer: {message}")


def review_answer(state: RunState, kind: str, answer) -> dict:
    """The state update for ``answer`` to a review of ``kind`` ("plan" or "critique").

    Raises :class:`~strokegraph.errors.InvalidAnswer` (a UsageError, one line) for an answer that is not one of:
    ``{"action": "accept"}``, ``{"action": "stop"}``, ``{"action": "edit", "plan": {...}}`` (plan),
    ``{"action": "edit", "violations": [...]}`` or ``{"action": "add", "violation": {...}}`` (critique);
    or a human-in-the-loop decision standing for one (``{"decisions": [{"type": "approve"}]}``: approve
    is accept, reject is stop, edit's ``edited_action.args`` holds the ``plan`` or ``violations``, and
    respond's ``message`` is added as a violation the critic checks from now on).
    """
    decision = answer
    answer = _from_decision(kind, answer)
    if not isinstance(answer, dict) or not isinstance(answer.get("action"), str):
        raise _invalid('expected a JSON object with an "action"')
    action = answer["action"]
    record = {"kind": kind, "step": state.step, "round": state.round, "answer": answer}
    if decision is not answer:  # kept as the person's client sent it (a reject's reason, say)
        record["decision"] = decision
    allowed = {"accept", "stop", "edit"} | ({"add"} if kind == "critique" else set())
    if action not in allowed:
        raise _invalid(f"action {action!r} is not one of {', '.join(sorted(allowed))} for a {kind} review")
    expected_keys = {"accept": set(), "stop": set(), "edit": {"plan" if kind == "plan" else "violations"}}
    expected_keys["add"] = {"violation"}
    extra = set(answer) - {"action"} - expected_keys[action]
    missing = expected_keys[action] - set(answer)
    if extra or missing:
        problem = f"unexpected {sorted(extra)}" if extra else f"missing {sorted(missing)}"
        raise _invalid(f"{action!r} answer: {problem}")
    if action == "accept":
        return {"reviews": [record]}
    if action == "stop":
        return {"stopped": True, "reviews": [record]}
    try:
        if kind == "plan":
            plan = Plan.model_validate(answer["plan"])
        elif action == "edit":
            if not isinstance(answer["violations"], list):
                raise _invalid('"violations" must be a list')
            violations = tuple(Violation.model_validate(v) for v in answer["violations"])
        else:
            assert state.critique is not None  # a critique review follows the critic
            violations = (*state.critique.violations, Violation.model_validate(answer["violation"]))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "top level"
        raise _invalid(f"{exc.error_count()} problem(s), first at {where}: {first['msg']}") from None
    if kind == "critique":
        assert state.critique is not None  # a critique review follows the critic
        for v in violations:  # the person's boxes; the critic's own are as it found them
            if v.box is not None and v not in state.critique.violations and not inside_image(v.box):
                where = "0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1"
                raise _invalid(f"the box {list(v.box)} of {v.message!r} is not inside the image ({where})")
    if kind == "plan":
        assert state.scene is not None  # a plan review follows the planner
        known = {e.id for e in state.scene.entities}
        covered = set(plan.introduced_until(len(plan.steps) - 1))
        if covered != known:
            raise _invalid(f"the plan must cover the entities {sorted(known)}, it covers {sorted(covered)}")
        return {"plan": plan, "reviews": [record]}
    assert state.critique is not None  # a critique review follows the critic
    # What the person added (beyond the critic's own findings) stays open for every later critique.
    added = tuple(v for v in violations if v not in state.critique.violations and v not in state.requests)
    return {
        "critique": state.critique.model_copy(update={"violations": violations}),
        "requests": (*state.requests, *added),
        "reviews": [record],
    }


def _reviewed(state: RunState, kind: str) -> dict:
    """Wait for a person's answer to a review of ``kind``; an invalid one asks again.

    LangGraph keeps every answer given to a node's interrupts and hands them back, in order, when it
    runs the node again; so an answer the node refused would be refused again on every resume, and
    the review could never end. Instead each refused answer is followed by a new interrupt, whose
    payload says in ``error`` why the last answer was refused, until one is valid. (``resume`` checks
    an answer before it resumes, so a CLI or Python caller never reaches this; a LangGraph client
    answering ``Command(resume=...)`` may.)
    """
    payload = review_payload(state, kind)
    while True:
        try:
            return review_answer(state, kind, interrupt(payload))
        except InvalidAnswer as exc:
            payload = {**review_payload(state, kind), "error": str(exc)}


def review_plan(state: RunState) -> dict:
    return _reviewed(state, "plan")


def review_critique(state: RunState) -> dict:
    return _reviewed(state, "critique")
