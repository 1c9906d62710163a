"""Running the loop: backends by id, a run directory, checkpoints, and the files a person looks at."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from langgraph.types import Command
from pydantic import BaseModel, ConfigDict, ValidationError

from strokegraph import __version__, registry, usage
from strokegraph.agents.critic import Critic
from strokegraph.agents.drafter import Drafter
from strokegraph.agents.planner import Planner
from strokegraph.agents.refiner import Refiner
from strokegraph.errors import UsageError
from strokegraph.graph import Budget, RunContext, RunState, build_graph, checkpoint_serializer, recursion_limit
from strokegraph.graph.nodes import review_answer
from strokegraph.schema import Critique, Event, Plan, SceneGraph

__all__ = ["Result", "agenerate", "build_backends", "generate", "new_run_dir", "resume"]


@dataclass(frozen=True)
class Result:
    """What a finished run produced. Every path lies inside ``run_dir``."""

    run_dir: Path
    final_image: Path | None
    passed: bool
    critique: Critique | None
    scene: SceneGraph | None
    plan: Plan | None
    trajectory: list[Event]
    rounds: int
    sampling_steps: int
    interrupt: dict[str, Any] | None = None
    """With ``review=True``: what the run waits for a person to answer (then ``passed`` is False);
    continue with :func:`resume` and ``answer=``."""


def _slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "run"


def new_run_dir(prompt: str, out: str | os.PathLike | None = None, root: str | os.PathLike = "runs") -> Path:
    """Create the run directory. An existing non-empty directory is never reused or overwritten."""
    if out is None:
        base = Path(root) / f"{datetime.now():%Y%m%d-%H%M%S}-{_slug(prompt)}"
        path = _claim(base)
    else:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UsageError(f"output directory {str(path)!r} already exists and is not empty; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write to output directory {str(path)!r}: {exc.strerror or exc}") from exc
    return path


def _claim(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``...: the first name this call could create.

    ``mkdir`` without ``exist_ok`` claims a name atomically, so runs started at the same second (in
    threads, as :func:`agenerate` prepares them, or in processes) never share a directory.
    """
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        except OSError as exc:
            raise UsageError(f"cannot write to output directory {str(path)!r}: {exc.strerror or exc}") from exc


def build_backends(
    backends: dict[str, Any] | None = None, settings: dict[str, dict[str, Any]] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Each role's backend and the id it is recorded under.

    A role maps to an id (``"builtin:sketch"``), to a backend object of your own (anything with the
    role's one method), or to None for the default. Every id is parsed before any is built, so a
    typo fails before anything loads.
    """
    chosen = {**registry.DEFAULT_IDS, **{k: v for k, v in (backends or {}).items() if v is not None}}
    unknown = set(chosen) - set(registry.ROLES)
    if unknown:
        raise UsageError(f"unknown role(s) {sorted(unknown)!r}; expected {', '.join(registry.ROLES)}")
    settings = settings or {}
    unknown = set(settings) - set(registry.ROLES)
    if unknown:
        raise UsageError(f"settings for unknown role(s) {sorted(unknown)!r}; expected {', '.join(registry.ROLES)}")
    for role, value in chosen.items():
        if isinstance(value, str):
            registry.check(role, value, settings.get(role))
        elif settings.get(role):
            raise UsageError(f"settings for {role} apply to backends named by id, not to a backend object")
    built = {
        role: registry.build(role, value, **settings.get(role, {})) if isinstance(value, str) else value
        for role, value in chosen.items()
    }
    ids = {
        role: value if isinstance(value, str) else f"custom:{type(value).__name__}" for role, value in chosen.items()
    }
    return built, ids


_STREAM_MODE = ["custom", "values"]

# Every node's checkpoint is on disk before the next node starts, so a killed run loses at most
# the node in flight and :func:`resume` never runs a finished node again.
_DURABILITY = "sync"

_RUN_FILE = "run.json"

# Settings that hold credentials. They never reach run.json: a resumed run takes its key from the
# environment (OPENAI_API_KEY...), as any run does that is given none. ``token(?!s)`` keeps counts
# such as ``max_new_tokens``, which do change what a backend makes.
_SECRET = re.compile(r"key|secret|password|token(?!s)", re.IGNORECASE)


class _RunRecord(BaseModel):
    """``run.json``: what :func:`resume` needs to rebuild a run. ``format`` changes with its shape."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1]
    strokegraph: str
    thread_id: str
    prompt: str
    backends: dict[str, str]
    settings: dict[str, dict[str, Any]]
    seed: int
    budget: Budget
    single_pass: bool
    review: bool = False


def _public(settings: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {role: {k: v for k, v in s.items() if not _SECRET.search(k)} for role, s in (settings or {}).items()}


def _read_record(run_dir: Path) -> _RunRecord:
    """The run's record; anything that is not a run directory of this version is a :class:`UsageError`."""
    if not run_dir.is_dir():
        raise UsageError(f"run directory {str(run_dir)!r} does not exist")
    path = run_dir / _RUN_FILE
    if not path.is_file() or not (run_dir / "checkpoints.sqlite").is_file():
        raise UsageError(f"{str(run_dir)!r} is not a strokegraph run directory (no {_RUN_FILE} or checkpoints.sqlite)")
    try:
        return _RunRecord.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise UsageError(
            f"{str(path)!r} is not a run record this strokegraph ({__version__}) can resume "
            f"({exc.error_count()} problem(s), first at {'.'.join(map(str, exc.errors()[0]['loc'])) or 'top level'})"
        ) from None


@dataclass
class _Run:
    """A run between :func:`_prepare` and :func:`_finish`: what generate and agenerate share."""

    run_dir: Path
    existed: bool
    context: RunContext
    state_in: RunState
    config: dict[str, Any]
    on_progress: Callable[[dict], None] | None
    last: dict | None = None
    """The latest state the graph streamed."""
    interrupt: dict[str, Any] | None = None
    """The payload of the review the graph stopped at, if any."""

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints.sqlite"

    def observe(self, mode: str, data: Any) -> None:
        """Take one ``(mode, data)`` item of the graph's stream."""
        if mode == "values":
            if "__interrupt__" in data:  # a review (``review=True``) the graph stops at
                data = {k: v for k, v in data.items() if k != "__interrupt__"}
                if not data:
                    return
            self.last = data
        elif self.on_progress is not None:
            self.on_progress(data)

    def result(self) -> Result:
        result = _result(self.run_dir, RunState.model_validate(self.last))
        return replace(result, interrupt=self.interrupt, passed=False) if self.interrupt is not None else result

    def check_interrupt(self, graph) -> None:
        """After the stream ends: note the review the graph waits on, if it waits on one."""
        pending = graph.get_state(self.config).interrupts
        self.interrupt = pending[0].value if pending else None


def _prepare(
    prompt: str,
    roles: dict[str, Any],
    settings: dict[str, dict[str, Any]] | None,
    *,
    out: str | os.PathLike | None,
    seed: int,
    budget: Budget | None,
    single_pass: bool,
    on_progress: Callable[[dict], None] | None,
    review: bool = False,
) -> _Run:
    """Check the input, build the backends and claim the run directory."""
    if not prompt or not prompt.strip():
        raise UsageError("prompt is empty; say what to draw, e.g. 'two red apples to the left of a blue cup'")
    budget = budget or Budget()
    backends, ids = build_backends(roles, settings)
    existed = out is not None and Path(out).exists()
    run_dir = new_run_dir(prompt, out)
    record = _RunRecord(
        format=1,
        strokegraph=__version__,
        thread_id=run_dir.name,
        prompt=prompt,
        backends=ids,
        settings=_public(settings),
        seed=seed,
        budget=budget,
        single_pass=single_pass,
        review=review,
    )
    (run_dir / _RUN_FILE).write_text(record.model_dump_json(indent=2), encoding="utf-8")
    return _Run(
        run_dir=run_dir,
        existed=existed,
        context=RunContext(**backends, run_dir=run_dir, seed=seed, ids=ids),
        state_in=RunState(prompt=prompt, single_pass=single_pass, budget=budget),
        config=_config(record.thread_id, budget, review),
        on_progress=on_progress,
    )


def _config(thread_id: str, budget: Budget, review: bool = False) -> dict[str, Any]:
    return {
        "configurable": {"thread_id": thread_id},
        "recursion_limit": recursion_limit(budget.max_rounds, review=review),
    }


def _finish(run: _Run, error: BaseException | None) -> None:
    """Write the files for whatever state the run reached. Call it after the checkpointer is closed."""
    if isinstance(error, UsageError) and (run.last is None or run.last.get("plan") is None):
        # The prompt could not be planned, so nothing was made: leave no empty run behind.
        run.checkpoints.unlink(missing_ok=True)
        (run.run_dir / _RUN_FILE).unlink(missing_ok=True)
        if not run.existed and not any(run.run_dir.iterdir()):
            run.run_dir.rmdir()
    if run.run_dir.exists():
        state = RunState.model_validate(run.last) if run.last is not None else run.state_in
        _write_outputs(run.run_dir, state, error)


def generate(
    prompt: str,
    *,
    out: str | os.PathLike | None = None,
    planner: str | Planner | None = None,
    drafter: str | Drafter | None = None,
    critic: str | Critic | None = None,
    refiner: str | Refiner | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    budget: Budget | None = None,
    single_pass: bool = False,
    on_progress: Callable[[dict], None] | None = None,
    review: bool = False,
) -> Result:
    """Run the plan -> draft -> critique -> refine loop on ``prompt`` and write its files.

    Each role takes a backend id (default: the offline sketch world) or a backend object;
    ``settings`` passes keyword arguments to the factories of id-named backends, per role.
    Writes ``final.png``, ``trajectory.json``, ``report.html``, every intermediate image under
    ``images/`` and the checkpoints (``checkpoints.sqlite``) into the run directory (``out``, or a new
    ``runs/<timestamp>-<slug>/``), plus ``run.json``, which lets :func:`resume` continue the run.
    Raises :class:`UsageError` for bad input before any backend runs, :class:`RunError` when a backend
    fails; in both cases what the run already made stays on disk. An exception raised once the run
    directory exists (a RunError, a KeyboardInterrupt) carries it as ``run_dir``.

    With ``review=True`` a person reviews the plan and every critique: the run stops at each review
    and returns a :class:`Result` whose ``interrupt`` holds what to review (its files written so far);
    answer it with :func:`resume` and ``answer=``.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver

    roles = {"planner": planner, "drafter": drafter, "critic": critic, "refiner": refiner}
    run = _prepare(
        prompt,
        roles,
        settings,
        out=out,
        seed=seed,
        budget=budget,
        single_pass=single_pass,
        on_progress=on_progress,
        review=review,
    )
    error: BaseException | None = None
    try:
        with closing(sqlite3.connect(run.checkpoints, check_same_thread=False)) as conn:
            graph = build_graph(checkpointer=SqliteSaver(conn, serde=checkpoint_serializer()), review=review)
            for mode, data in graph.stream(
                run.state_in, run.config, context=run.context, stream_mode=_STREAM_MODE, durability=_DURABILITY
            ):
                run.observe(mode, data)
            if review:
                run.check_interrupt(graph)
    except BaseException as exc:
        error = exc
        exc.run_dir = run.run_dir
        raise
    finally:
        _finish(run, error)
    return run.result()


async def agenerate(
    prompt: str,
    *,
    out: str | os.PathLike | None = None,
    planner: str | Planner | None = None,
    drafter: str | Drafter | None = None,
    critic: str | Critic | None = None,
    refiner: str | Refiner | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    budget: Budget | None = None,
    single_pass: bool = False,
    on_progress: Callable[[dict], None] | None = None,
) -> Result:
    """:func:`generate` as a coroutine, so that several prompts can run at once in one event loop.

    Takes the same arguments, writes the same files (the same images for the same seed) and raises
    the same errors. The backends are synchronous: LangGraph calls them in the event loop's default
    executor, so that executor's thread count bounds how many backend calls run at once.
    ``on_progress`` is called on the event loop's thread. Cancelling the task writes the files for
    the state reached so far and re-raises; a backend call already running cannot be stopped and
    finishes in its thread (its image may still land in ``images/``).
    """
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    roles = {"planner": planner, "drafter": drafter, "critic": critic, "refiner": refiner}
    # Building a backend may load a model for a long while, and writing the report reads every
    # image; neither may stall the other runs sharing the event loop.
    run = await asyncio.to_thread(
        _prepare,
        prompt,
        roles,
        settings,
        out=out,
        seed=seed,
        budget=budget,
        single_pass=single_pass,
        on_progress=on_progress,
    )
    error: BaseException | None = None
    try:
        async with aiosqlite.connect(run.checkpoints) as conn:
            graph = build_graph(checkpointer=AsyncSqliteSaver(conn, serde=checkpoint_serializer()))
            async for mode, data in graph.astream(
                run.state_in, run.config, context=run.context, stream_mode=_STREAM_MODE, durability=_DURABILITY
            ):
                run.observe(mode, data)
    except BaseException as exc:
        error = exc
        exc.run_dir = run.run_dir
        raise
    finally:
        await asyncio.to_thread(_finish, run, error)
    return run.result()


def resume(
    run_dir: str | os.PathLike,
    *,
    max_rounds: int | None = None,
    planner: str | Planner | None = None,
    drafter: str | Drafter | None = None,
    critic: str | Critic | None = None,
    refiner: str | Refiner | None = None,
    on_progress: Callable[[dict], None] | None = None,
    answer: dict[str, Any] | None = None,
) -> Result:
    """Continue the run in ``run_dir`` from its last checkpoint, and write its files again.

    The backends are rebuilt from the ids in ``run.json`` with the settings recorded there (never a
    key: give it through the environment); a role given here uses that id or backend object instead,
    which a run made with a backend object needs. Nodes that finished before the run stopped do not
    run again. ``max_rounds`` sets the run's total refine budget anew, so that a run that spent its
    budget with violations left refines further. A finished run with nothing left to do returns its
    result as it is. Raises :class:`UsageError` for a directory that is not a run, and what
    :func:`generate` raises while running.

    A run made with ``review=True`` that waits on a review takes the person's ``answer`` (see
    :func:`strokegraph.graph.nodes.review_answer`) and runs on to the next review or the end; without
    an answer it returns the pending review again. An invalid answer is a :class:`UsageError` raised
    before anything runs.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver

    run_dir = Path(run_dir)
    record = _read_record(run_dir)
    if max_rounds is not None and max_rounds < 0:
        raise UsageError(f"max_rounds must be >= 0, got {max_rounds}")
    given = {"planner": planner, "drafter": drafter, "critic": critic, "refiner": refiner}
    for role, backend_id in record.backends.items():
        if backend_id.startswith("custom:") and given.get(role) is None:
            raise UsageError(
                f"the {role} of this run was a backend object ({backend_id!r}); "
                f"resume it from Python with resume(..., {role}=<that backend>)"
            )
    roles = {role: given.get(role) or backend_id for role, backend_id in record.backends.items()}
    settings = {r: s for r, s in record.settings.items() if s and given.get(r) is None}
    backends, ids = build_backends(roles, settings)
    context = RunContext(**backends, run_dir=run_dir, seed=record.seed, ids=ids)
    state_in = RunState(prompt=record.prompt, single_pass=record.single_pass, budget=record.budget)
    run = _Run(run_dir, True, context, state_in, _config(record.thread_id, record.budget, record.review), on_progress)
    if answer is not None and not record.review:
        raise UsageError("this run was not made with review=True; it takes no answer")
    error: BaseException | None = None
    rejected = False  # a rejected answer leaves the review open and the files as they were
    try:
        with closing(sqlite3.connect(run.checkpoints, check_same_thread=False)) as conn:
            graph = build_graph(checkpointer=SqliteSaver(conn, serde=checkpoint_serializer()), review=record.review)
            snapshot = graph.get_state(run.config)
            if record.review and snapshot.interrupts:
                run.last = snapshot.values
                if max_rounds is not None:
                    raise UsageError("this run waits on a review; answer it before giving max_rounds")
                if answer is None:
                    run.interrupt = snapshot.interrupts[0].value
                    return run.result()
                # Check the answer here, so a bad one fails before anything runs and the review stays open.
                rejected = True
                review_answer(RunState.model_validate(snapshot.values), snapshot.interrupts[0].value["kind"], answer)
                rejected = False
                for mode, data in graph.stream(
                    Command(resume=answer),
                    run.config,
                    context=run.context,
                    stream_mode=_STREAM_MODE,
                    durability=_DURABILITY,
                ):
                    run.observe(mode, data)
                run.check_interrupt(graph)
                return run.result()
            if answer is not None:
                raise UsageError("this run is not waiting for a review; it takes no answer")
            if not snapshot.values:  # stopped before its first checkpoint: start it over
                todo: RunState | None = state_in
            else:
                todo = None
                run.last = snapshot.values
                state = RunState.model_validate(snapshot.values)
                budget = state.budget
                if max_rounds is not None:
                    budget = Budget(**{**budget.model_dump(), "max_rounds": max_rounds})
                    run.config = _config(record.thread_id, budget, record.review)
                if budget != state.budget:
                    _set_budget(graph, run.config, snapshot, budget)
                    snapshot = graph.get_state(run.config)
                    run.last = snapshot.values
                if not snapshot.tasks:  # it ended, and no new budget made the router go on
                    return run.result()
            for mode, data in graph.stream(
                todo, run.config, context=run.context, stream_mode=_STREAM_MODE, durability=_DURABILITY
            ):
                run.observe(mode, data)
            if record.review:
                run.check_interrupt(graph)
    except BaseException as exc:
        error = exc
        exc.run_dir = run.run_dir
        raise
    finally:
        if not rejected:
            _finish(run, error)
    return run.result()


def _set_budget(graph, config: dict[str, Any], snapshot, budget: Budget) -> None:
    """Give the stopped run ``budget`` through a checkpoint update that runs no node again.

    The loop runs one node at a time, so the last checkpoint has at most one task, and a snapshot
    shows the state with that task's writes applied once it finished.
    """
    (task,) = snapshot.tasks or (None,)
    if task is not None and task.result is not None:
        # It finished but the run stopped before committing its step. A plain update would drop
        # its saved writes and run it again, so commit them in the same update, as that node.
        graph.update_state(config, {**task.result, "budget": budget}, as_node=task.name)
    elif task is not None:
        # Writing as the node that wrote last keeps the node in flight pending.
        graph.update_state(config, {"budget": budget})
    elif (critique := snapshot.values.get("critique")) is not None and not critique.passed:
        # It ended at the critic's router for want of budget: writing as the critic makes the router
        # decide again, with the new budget.
        graph.update_state(config, {"budget": budget}, as_node="critic")


def _result(run_dir: Path, state: RunState) -> Result:
    final = run_dir / "final.png" if state.image else None
    return Result(
        run_dir=run_dir,
        final_image=final,
        passed=bool(state.critique and state.critique.passed and state.step == len(state.plan.steps) - 1),
        critique=state.critique,
        scene=state.scene,
        plan=state.plan,
        trajectory=list(state.trajectory),
        rounds=state.rounds_total,
        sampling_steps=state.sampling_steps,
    )


def _write_outputs(run_dir: Path, state: RunState, error: BaseException | None = None) -> None:
    """Write trajectory.json, final.png and report.html for whatever state the run reached."""
    from strokegraph.report import write_report

    result = _result(run_dir, state)
    if state.image is not None:
        shutil.copyfile(run_dir / state.image.path, run_dir / "final.png")
    doc = {
        "prompt": state.prompt,
        "single_pass": state.single_pass,
        "passed": result.passed,
        "finished": state.critique is not None and state.step == (len(state.plan.steps) - 1 if state.plan else -2),
        "rounds": state.rounds_total,
        "sampling_steps": state.sampling_steps,
        "usage": (used.model_dump() if (used := usage.total(e.usage for e in state.trajectory)) else None),
        "budget": state.budget.model_dump(),
        "scene": state.scene.model_dump() if state.scene else None,
        "plan": state.plan.model_dump() if state.plan else None,
        "final_image": "final.png" if state.image else None,
        "final_critique": state.critique.model_dump() if state.critique else None,
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "events": [e.model_dump() for e in state.trajectory],
        "reviews": state.reviews,
        "stopped": state.stopped,
    }
    (run_dir / "trajectory.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    write_report(run_dir, state, passed=result.passed)
