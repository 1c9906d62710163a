"""Running the loop: generate, agenerate and resume, from backend ids to a finished run directory.

The run directory and its lock are :mod:`strokegraph.app.rundir`, the record :mod:`strokegraph.app.record`,
the files a person looks at :mod:`strokegraph.app.outputs`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Unpack

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, Durability, StreamMode
from pydantic import BaseModel, ValidationError

from strokegraph import __version__, registry
from strokegraph._redact import redact_url
from strokegraph._text import check_prompt
from strokegraph.app.outputs import Result, result_of, write_outputs
from strokegraph.app.record import (
    MAX_COUNT,
    MAX_RECORD_BYTES,
    MAX_SEED,
    RECORD_SHA,
    SHA256,
    RunRecord,
    check_limits,
    fetch_record,
    new_thread_id,
    public_settings,
    read_record,
    read_small,
)
from strokegraph.app.rundir import LOCK_FILE, RUN_FILE, RunLock, new_run_dir
from strokegraph.artifacts import ArtifactStore, check_thread, open_store, record_key
from strokegraph.errors import RunError, UsageError
from strokegraph.graph import Budget, RunContext, RunState, engine, recursion_limit
from strokegraph.graph.nodes import review_answer
from strokegraph.registry import RoleChoices
from strokegraph.schema import SceneGraph, write_new

__all__ = ["IO_THREADS", "MAX_COUNT", "MAX_SEED", "Result", "agenerate", "generate", "new_run_dir", "resume"]


# Progress reaches ``on_progress`` through ``RunContext.on_progress``, which the nodes call; streaming
# ``custom`` as well would make LangGraph run every node in a worker thread to interleave its events.
_STREAM_MODE: list[StreamMode] = ["values"]

# Every node's checkpoint is on disk before the next node starts, so a killed run loses at most
# the node in flight and :func:`resume` never runs a finished node again.
_DURABILITY: Durability = "sync"


# Settings that say where requests go. :func:`resume` never takes them from run.json on its own:
# a run directory from someone else could otherwise send your key and images to their server.
_ENDPOINT = re.compile(r"url|endpoint|host", re.IGNORECASE)


def _load_state(values: dict[str, Any]) -> RunState:
    """A checkpoint's state, validated from plain data.

    The checkpoint serializer rebuilds our models from a file anyone could have edited; dumping
    them and validating again means no object skips validation (paths, hashes, sizes, types).
    """

    def plain(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        raise TypeError(f"unexpected {type(value).__name__} in checkpointed state")

    return RunState.model_validate_json(json.dumps(values, default=plain))


class _AfterSave:
    """A run's progress callback that holds each stage's ``end`` until its checkpoint is saved.

    A node reports its end before it returns, and LangGraph saves its writes after that; a kill
    in between runs the node again on resume. Held back until the stream hands over the state
    that follows the node (under ``durability="sync"`` LangGraph yields it only once the
    checkpoint is on disk), a stage shown as finished is never run again.
    """

    def __init__(self, report: Callable[[dict], None]) -> None:
        self.report = report
        self.held: list[dict] = []

    def __call__(self, event: dict) -> None:
        if event.get("kind") == "end":
            self.held.append(event)
        else:
            self.report(event)

    def flush(self, values: dict[str, Any]) -> None:
        """Report the held ``end`` events; ``values`` is the state the stream handed over after them.

        The loop runs one node at a time, so a held ``end`` belongs to the node whose trajectory
        event is the state's last: it goes along as ``"event"`` (JSON), so that a listener can show
        the stage's image, violations and ``<refine>`` as it finishes.
        """
        held, self.held = self.held, []
        trajectory = values.get("trajectory") or []
        last = trajectory[-1] if held and trajectory else None
        for event in held:
            if isinstance(last, BaseModel):
                event = {**event, "event": last.model_dump(mode="json")}
            self.report(event)


def _after_save(on_progress: Callable[[dict], None] | None) -> _AfterSave | None:
    return _AfterSave(on_progress) if on_progress is not None else None


@dataclass
class _Run:
    """A run between :func:`_prepare` and :func:`_finish`: what generate, agenerate and resume share."""

    run_dir: Path
    existed: bool
    context: RunContext
    state_in: RunState
    config: RunnableConfig
    lock: RunLock
    strict: bool = False
    """Refuse, right after planning, a scene with parts the critics cannot judge."""
    last: dict | None = None
    """The latest state the graph streamed."""
    interrupt: dict[str, Any] | None = None
    """The payload of the review the graph stopped at, if any."""
    checkpoint_url: str | None = None
    """The PostgreSQL database of the checkpoints; None: a file in the run directory (:func:`engine.run_checkpoints
    <strokegraph.graph.engine.run_checkpoints>`)."""

    @property
    def checkpoints(self) -> str | Path:
        """What :func:`engine.checkpointer <strokegraph.graph.engine.checkpointer>` opens."""
        return self.checkpoint_url or engine.run_checkpoints(self.run_dir)

    def observe(self, mode: str, data: Any) -> None:
        """Take one ``(mode, data)`` item of the graph's stream (only ``values`` is streamed)."""
        if mode == "values":
            if isinstance(self.context.on_progress, _AfterSave):
                self.context.on_progress.flush(data)  # the nodes before this state are saved
            if "__interrupt__" in data:  # a review (``review=True``) the graph stops at
                data = {k: v for k, v in data.items() if k != "__interrupt__"}
                if not data:
                    return
            if self.strict and data.get("scene") is not None and (self.last is None or self.last.get("scene") is None):
                unjudged = SceneGraph.model_validate(data["scene"]).unjudged()
                if unjudged:
                    self.last = data
                    raise UsageError(
                        f"--strict: {len(unjudged)} part(s) of the prompt would not be judged: {'; '.join(unjudged)}"
                    )
            self.last = data

    def state(self) -> RunState:
        return _load_state(self.last) if self.last is not None else self.state_in

    def result(self) -> Result:
        result = result_of(self.run_dir, self.state())
        if self.checkpoint_url is not None or self.context.store is not None:
            result = replace(result, thread_id=self.context.thread_id)
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
    strict: bool = False,
    checkpoint: str | None = None,
    store: str | os.PathLike | ArtifactStore | None = None,
) -> _Run:
    """Check the input, build the backends, open the store, claim and lock the run directory."""
    check_prompt(prompt)
    budget = budget or Budget()
    check_limits(seed, budget)
    url = engine.checkpoint_url(checkpoint)
    store = open_store(store)
    backends, ids = registry.build_backends(roles, settings)
    existed = out is not None and Path(out).exists()
    run_dir = new_run_dir(prompt, out)
    lock = RunLock(run_dir)
    try:
        record = RunRecord(
            format=1,
            strokegraph=__version__,
            thread_id=new_thread_id(run_dir, shared=url is not None or store is not None),
            prompt=prompt,
            backends=ids,
            settings=public_settings(settings),
            seed=seed,
            budget=budget,
            single_pass=single_pass,
            review=review,
            checkpoint="postgres" if url else "sqlite",
            store=store.url if store is not None else None,
        )
        data = record.model_dump_json(indent=2).encode()
        write_new(run_dir / RUN_FILE, data)
        # The record goes to the store before any checkpoint: a run resumed elsewhere gets it there,
        # checked against the sha256 every checkpoint of the thread carries in its metadata.
        record_sha = store.put(record_key(record.thread_id), data) if store is not None else None
    except BaseException:
        lock.release()
        raise
    if on_progress is not None and (url is not None or store is not None):
        # Before any node runs: if this machine dies, the thread id is what resumes the run elsewhere.
        where = (" --checkpoint POSTGRES_URL" if url else "") + (
            f" --store {shlex.quote(store.url)}" if store is not None else ""
        )
        on_progress({"kind": "thread", "thread_id": record.thread_id, "run_dir": str(run_dir), "where": where.strip()})
    context = RunContext(
        backends,
        run_dir=run_dir,
        seed=seed,
        ids=ids,
        on_progress=_after_save(on_progress),
        store=store,
        thread_id=record.thread_id,
    )
    return _Run(
        run_dir=run_dir,
        existed=existed,
        context=context,
        state_in=RunState(prompt=prompt, single_pass=single_pass, budget=budget),
        config=_config(record.thread_id, budget, review, record_sha),
        lock=lock,
        strict=strict,
        checkpoint_url=url,
    )


def _config(thread_id: str, budget: Budget, review: bool = False, record_sha: str | None = None) -> RunnableConfig:
    config: RunnableConfig = {
        "configurable": {"thread_id": thread_id},
        "recursion_limit": recursion_limit(budget.max_rounds, review=review),
    }
    if record_sha is not None:
        # LangGraph copies string metadata into every checkpoint it writes with this config.
        config["metadata"] = {RECORD_SHA: record_sha}
    return config


def _keep_run_dir(exc: BaseException, run_dir: Path) -> BaseException:
    """``exc``, marked with the run directory it leaves behind: the CLI names it in the error line."""
    setattr(exc, "run_dir", run_dir)  # noqa: B010 - any exception may carry it, so no class declares it
    return exc


def _finish(run: _Run, error: BaseException | None) -> None:
    """Write the files for whatever state the run reached, then release the run directory.

    Call it after the checkpointer is closed. When the files cannot be written (a full disk) while
    another error is on its way, that error goes on with a note; the files already on disk are
    replaced only by complete new ones.
    """
    try:
        if isinstance(error, UsageError) and (run.last is None or run.last.get("plan") is None):
            # The prompt could not be planned, so nothing was made: leave no empty run behind.
            if run.checkpoint_url is None:
                engine.run_checkpoints(run.run_dir).unlink(missing_ok=True)
            (run.run_dir / RUN_FILE).unlink(missing_ok=True)
            (run.run_dir / LOCK_FILE).unlink(missing_ok=True)
            if not run.existed and not any(run.run_dir.iterdir()):
                run.run_dir.rmdir()
        if run.run_dir.exists():
            write_outputs(run.run_dir, run.state(), error, run.context.images)
    except (OSError, RunError, ValidationError) as exc:
        if error is None:
            raise
        error.add_note(f"the run's files could not be written: {exc}")
    finally:
        run.lock.release()


def _stream(graph: engine.Loop, run: _Run, todo: Any) -> None:
    # Only ``values`` is streamed, so LangGraph runs each node in this thread: Ctrl-C interrupts the
    # node's request at once (an API call in flight included), with nothing to wait for. The saves
    # are all that go to LangGraph's worker threads; one worker (max_concurrency) takes them in the
    # order they were handed over, so a node's writes are on disk before the checkpoint after it
    # (with a pool, the two race), and each save costs one hand-over instead of starting threads.
    # Only with ``values`` alone: streaming ``custom``, LangGraph parks a waiter for stream events in
    # a worker, and with one worker the node queued behind it never runs (tried: it hangs).
    config: RunnableConfig = {**run.config, "max_concurrency": 1}
    for mode, data in graph.stream(todo, config, context=run.context, stream_mode=_STREAM_MODE, durability=_DURABILITY):
        run.observe(mode, data)


def generate(
    prompt: str,
    *,
    out: str | os.PathLike | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    budget: Budget | None = None,
    single_pass: bool = False,
    on_progress: Callable[[dict], None] | None = None,
    review: bool = False,
    strict: bool = False,
    checkpoint: str | None = None,
    store: str | os.PathLike | ArtifactStore | None = None,
    **roles: Unpack[RoleChoices],
) -> Result:
    """Run the plan -> draft -> critique -> refine loop on ``prompt`` and write its files.

    Each role takes a backend id (default: the offline sketch world) or a backend object;
    ``settings`` passes keyword arguments to the factories of id-named backends, per role.
    Writes ``final.png``, ``trajectory.json``, ``report.html``, every intermediate image under
    ``images/`` and the checkpoints (``checkpoints.journal``) into the run directory (``out``, or a new
    ``runs/<timestamp>-<slug>/``), plus ``run.json``, which lets :func:`resume` continue the run.
    Raises :class:`UsageError` for bad input before any backend runs, :class:`RunError` when a backend
    fails; in both cases what the run already made stays on disk. An exception raised once the run
    directory exists (a RunError, a KeyboardInterrupt) carries it as ``run_dir``. While the run
    works, its directory is locked: a second run given the same ``out`` gets a UsageError.

    With ``review=True`` a person reviews the plan and every critique: the run stops at each review
    and returns a :class:`Result` whose ``interrupt`` holds what to review (its files written so far);
    answer it with :func:`resume` and ``answer=``.

    ``Result.passed`` says the final critique found no violation in what it judged;
    ``Result.unjudged`` lists the parts of the prompt it could not judge. With ``strict=True`` a
    prompt with such parts is refused right after planning, with a :class:`UsageError`.

    ``checkpoint`` is ``"sqlite"`` (the default: a file in the run directory, ``checkpoints.journal``;
    a run directory made before the journal keeps its ``checkpoints.sqlite``) or a ``postgres://``
    URL (the ``postgres`` extra). ``store`` is an artifact store each image also goes to before its
    node's checkpoint is written (:func:`strokegraph.artifacts.open_store`: ``s3://bucket/prefix``
    or a directory; default none). With both, the run can be resumed on another machine from the
    database and the store alone (:func:`resume` with ``thread=``), and its thread id (in ``run.json``)
    gets a random suffix so that no two machines share one.
    """
    run = _prepare(
        prompt,
        dict(roles),
        settings,
        out=out,
        seed=seed,
        budget=budget,
        single_pass=single_pass,
        on_progress=on_progress,
        review=review,
        strict=strict,
        checkpoint=checkpoint,
        store=store,
    )
    error: BaseException | None = None
    try:
        with engine.checkpointer(run.checkpoints) as saver:
            graph = engine.graph(saver, review=review)
            _stream(graph, run, run.state_in)
            if review:
                run.check_interrupt(graph)
    except BaseException as exc:
        error = _keep_run_dir(exc, run.run_dir)
        raise
    finally:
        _finish(run, error)
    return run.result()


#: The threads :func:`agenerate` gives an event loop for the calls of backends without async methods
#: (and image files): they wait on a server or an accelerator, not on the CPUs, so this bounds how
#: many runs can wait on such backends at once, not the work.
IO_THREADS = 64


def _size_executor(loop: asyncio.AbstractEventLoop) -> None:
    """Give ``loop`` a default executor of :data:`IO_THREADS` threads, unless it has one already."""
    # Sync backend calls run in the loop's default executor, with no per-run choice. Python makes
    # that one on first use with min(32, CPUs + 4) threads (6 on 2 CPUs), so 16 runs at once would wait
    # for each other's requests. An executor the application set, or one already in use, is kept.
    # asyncio has no getter for it: CPython's loop keeps it in _default_executor (a loop without
    # that attribute is left alone).
    if getattr(loop, "_default_executor", False) is None:
        loop.set_default_executor(ThreadPoolExecutor(IO_THREADS, thread_name_prefix="strokegraph"))


async def agenerate(
    prompt: str,
    *,
    out: str | os.PathLike | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    budget: Budget | None = None,
    single_pass: bool = False,
    on_progress: Callable[[dict], None] | None = None,
    checkpoint: str | None = None,
    store: str | os.PathLike | ArtifactStore | None = None,
    **roles: Unpack[RoleChoices],
) -> Result:
    """:func:`generate` as a coroutine, so that several prompts can run at once in one event loop.

    Takes the same arguments, writes the same files (the same images for the same seed) and raises
    the same errors. The nodes are coroutines: a backend with an async method (``aplan``,
    ``adraft``, ``acritique``, ``arefine``: the ``openai:`` backends, and chat planners and critics
    whose model has ``acomplete``, such as LangChain's) is awaited on the event loop, so runs waiting
    on a server hold no thread. The other backends (local models, the sketch world) are called in
    the event loop's default executor, as are image reads and writes, so that executor's thread
    count bounds how many of those calls run at once; a loop that has none yet gets one of
    :data:`IO_THREADS` threads (set your own before the first call to choose another size).
    ``on_progress`` is called on the event loop's thread. Cancelling the task (Ctrl-C under
    ``asyncio.run``) cancels an awaited backend call at once (its HTTP request is abandoned), writes
    the files for the state reached so far and re-raises; the run can then be resumed. A sync
    backend call already running in a thread cannot be stopped and finishes there (its image may
    still land in ``images/``).
    """
    # A sync backend emits its progress in an executor thread; each event is handed to the event loop's thread.
    loop = asyncio.get_running_loop()
    _size_executor(loop)
    relay: Callable[[dict], None] | None = None
    if on_progress is not None:
        report = on_progress

        def relay_event(event: dict) -> None:
            loop.call_soon_threadsafe(report, event)

        relay = relay_event

    # Building a backend may load a model for a long while, and writing the report reads every
    # image; neither may stall the other runs sharing the event loop.
    run = await asyncio.to_thread(
        _prepare,
        prompt,
        dict(roles),
        settings,
        out=out,
        seed=seed,
        budget=budget,
        single_pass=single_pass,
        on_progress=relay,
        checkpoint=checkpoint,
        store=store,
    )
    error: BaseException | None = None
    try:
        async with engine.acheckpointer(run.checkpoints) as saver:
            graph = engine.graph(saver, asynchronous=True)
            async for mode, data in graph.astream(
                run.state_in, run.config, context=run.context, stream_mode=_STREAM_MODE, durability=_DURABILITY
            ):
                run.observe(mode, data)
    except BaseException as exc:
        error = _keep_run_dir(exc, run.run_dir)
        raise
    finally:
        await asyncio.to_thread(_finish, run, error)
    return run.result()


def _choose_backends(
    record: RunRecord,
    given: dict[str, Any],
    settings_now: dict[str, dict[str, Any]],
    *,
    trust_record: bool,
    confirm: Callable[[str], bool] | None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Each role's backend for a resumed run, and its settings.

    run.json may come from someone else, so it decides nothing that loads a model or sends a
    request on its own: the offline ``builtin:`` backends are rebuilt from it; a model-backed one
    is used only when the caller names it again (its recorded settings then fill in what is not
    given now, endpoints excepted), when ``trust_record`` is set, or when ``confirm`` (the CLI asks
    on a terminal) says yes to what the record names.
    """
    roles: dict[str, Any] = {}
    settings: dict[str, dict[str, Any]] = {}
    recorded_only: list[str] = []
    for role, recorded in record.backends.items():
        mine = given.get(role)
        kept = record.settings.get(role, {})
        if mine is not None:
            roles[role] = mine
            if isinstance(mine, str):
                same = {k: v for k, v in kept.items() if not _ENDPOINT.search(k)} if mine == recorded else {}
                settings[role] = {**same, **settings_now.get(role, {})}
            elif settings_now.get(role):
                raise UsageError(f"settings for {role} apply to backends named by id, not to a backend object")
            continue
        if settings_now.get(role):
            raise UsageError(f"settings for the {role} need its id too (--{role} ID, or 'id' in the config)")
        if not registry.capabilities(role, recorded).declared:
            raise UsageError(
                f"the {role} of this run was a backend object ({recorded!r}); "
                f"resume it from Python with resume(..., {role}=<that backend>)"
            )
        roles[role] = recorded
        settings[role] = dict(kept)
        if not registry.capabilities(role, recorded).offline:
            recorded_only.append(role)
    if recorded_only and not trust_record:
        named = "; ".join(f"{role} {roles[role]!r}{_endpoint_text(settings[role])}" for role in recorded_only)
        if confirm is None or not confirm(named):
            flags = " ".join(f"--{role} ID" for role in recorded_only)
            raise UsageError(
                f"this run's record names model-backed backends ({named}); strokegraph loads no model and sends "
                f"no key on a run directory's word: name them again to resume (--config FILE or {flags})"
            )
    return roles, settings


def _endpoint_text(settings: dict[str, Any]) -> str:
    endpoints = [f"{k}={redact_url(str(v))}" for k, v in settings.items() if _ENDPOINT.search(k)]
    return f" with {', '.join(endpoints)}" if endpoints else ""


def resume(
    run_dir: str | os.PathLike,
    *,
    max_rounds: int | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
    trust_record: bool = False,
    confirm: Callable[[str], bool] | None = None,
    on_progress: Callable[[dict], None] | None = None,
    answer: dict[str, Any] | None = None,
    checkpoint: str | None = None,
    store: str | os.PathLike | ArtifactStore | None = None,
    thread: str | None = None,
    **roles: Unpack[RoleChoices],
) -> Result:
    """Continue the run in ``run_dir`` from its last checkpoint, and write its files again.

    A run directory is untrusted input. The offline ``builtin:`` backends are rebuilt from the ids
    and settings in ``run.json``; a model-backed backend (one that loads weights or calls an API) is
    used only when named again here (``planner="openai:..."`` with ``settings``; the record's own
    settings fill in the rest, never its ``base_url``), when ``trust_record=True``, or when
    ``confirm(description)`` returns True. Keys always come from the environment or ``settings``.
    A role given here may also name another backend, or a backend object, which a run made with a
    backend object needs. Nodes that finished before the run stopped do not run again.
    ``max_rounds`` sets the run's total refine budget anew, so that a run that spent its budget with
    violations left refines further. A finished run with nothing left to do returns its result as
    it is. Raises :class:`UsageError` for a directory that is not a run, a record or checkpoint that
    fails to load, checkpoints that do not hold the progress the run's files show (missing, empty,
    foreign: the run is never silently started over), a damaged latest image (the run's files are
    then left as they were), a run another process is working on, and what :func:`generate` raises
    while running. A key in the record's settings is never read.

    A run made with ``review=True`` that waits on a review takes the person's ``answer`` (see
    :func:`strokegraph.graph.nodes.review_answer`) and runs on to the next review or the end; without
    an answer it returns the pending review again. An invalid answer is a :class:`UsageError` raised
    before anything runs.

    ``checkpoint`` and ``store`` are given again as they were to :func:`generate` (a run's files
    never choose a database or a store): a run made with a ``postgres://`` checkpoint needs its URL,
    a run made with a store needs that store. ``thread`` resumes a run made with both on another
    machine: ``run_dir`` is then a new (absent or empty) directory, or one an earlier resume of the
    same thread wrote; ``run.json`` comes from the store, checked against the sha256 the thread's
    checkpoints carry, and each image the run needs is fetched from the store and checked likewise.
    """

    run_dir = Path(run_dir)
    url = engine.checkpoint_url(checkpoint)
    store = open_store(store)
    if thread is not None:
        check_thread(thread)
        if url is None or store is None:
            raise UsageError(
                "resuming a thread elsewhere needs the database of its checkpoints (--checkpoint postgres://...) "
                "and its store (--store)"
            )
        fetch_record(run_dir, thread, url, store)
    record = read_record(run_dir, postgres=url is not None)
    if thread is not None and record.thread_id != thread:
        raise UsageError(f"the record of thread {thread!r} names thread {record.thread_id[:80]!r}")
    if record.store is not None and store is None:
        raise UsageError(f"this run's images also go to the store {record.store!r}: give --store again")
    if record.store is None and store is not None:
        raise UsageError("this run keeps its images in its run directory only: resume it without --store")
    if store is not None:
        check_thread(record.thread_id)
    if max_rounds is not None and not (isinstance(max_rounds, int) and 0 <= max_rounds <= MAX_COUNT):
        raise UsageError(f"max_rounds must be from 0 to {MAX_COUNT}, got {max_rounds!r}")
    if answer is not None and not record.review:
        raise UsageError("this run was not made with review=True; it takes no answer")
    unknown = sorted(set(roles) - set(registry.ROLES))
    if unknown:
        raise UsageError(f"unknown role(s) {', '.join(map(repr, unknown))}; expected {', '.join(registry.ROLES)}")
    chosen, role_settings = _choose_backends(
        record, dict(roles), settings or {}, trust_record=trust_record, confirm=confirm
    )
    registry.backend_ids(chosen, role_settings)  # every id and setting is checked before anything runs
    lock = RunLock(run_dir)
    try:
        where = url or engine.run_checkpoints(run_dir)
        return _resume_locked(
            run_dir, record, chosen, role_settings, lock, max_rounds, on_progress, answer, where, store
        )
    finally:
        lock.release()


def _resume_locked(
    run_dir, record, roles, role_settings, lock, max_rounds, on_progress, answer, where, store
) -> Result:
    state_in = RunState(prompt=record.prompt, single_pass=record.single_pass, budget=record.budget)
    config = _config(record.thread_id, record.budget, record.review)
    described = engine.describe(where)
    made = _made(run_dir)
    if made and not engine.is_postgres(where):
        # Checked before the checkpointer opens the file: it would write its tables into it.
        why = engine.holds_thread(where, record.thread_id)
        if why is not None:
            raise _lost_checkpoints(described, why, made)
    with engine.checkpointer(where) as saver:
        if engine.is_postgres(where):
            engine.lock_thread(saver, record.thread_id)
        graph = engine.graph(saver, review=record.review)
        try:
            snapshot = graph.get_state(config)
            # A checkpoint without the prompt was taken before the input was committed: nothing ran.
            loaded = _load_state(snapshot.values) if "prompt" in snapshot.values else None
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes the loader raise
            raise UsageError(
                f"{described!r} cannot be loaded ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]}); the run's files are left as they were"
            ) from None
        if loaded is None and made:
            raise _lost_checkpoints(described, "it holds no checkpoint past the run's start", made)
        if loaded is not None and loaded.image is not None and store is None:
            # The next node and the final image start from it; a resume could only fail on it again.
            try:
                loaded.image.read_bytes(run_dir)
            except RunError as exc:
                raise _DamagedImage(
                    f"the run's latest image is damaged: {exc}; the run's files are left as they were"
                ) from None
        # Checkpoints written from here on carry the record's sha256 on, so the thread stays resumable elsewhere.
        record_sha = (snapshot.metadata or {}).get(RECORD_SHA)
        if not (isinstance(record_sha, str) and SHA256.fullmatch(record_sha)):
            record_sha = None
        config = _config(record.thread_id, record.budget, record.review, record_sha)
        if record.review and snapshot.interrupts and loaded is not None:
            if max_rounds is not None:
                raise UsageError("this run waits on a review; answer it before giving max_rounds")
            if answer is None:
                return replace(result_of(run_dir, loaded), interrupt=snapshot.interrupts[0].value, passed=False)
            # Check the answer here, so a bad one fails before anything runs and the review stays open.
            review_answer(loaded, snapshot.interrupts[0].value["kind"], answer)
        elif answer is not None:
            raise UsageError("this run is not waiting for a review; it takes no answer")
        backends, ids = registry.build_backends(roles, {r: s for r, s in role_settings.items() if s})
        context = RunContext(
            backends,
            run_dir=run_dir,
            seed=record.seed,
            ids=ids,
            on_progress=_after_save(on_progress),
            store=store,
            thread_id=record.thread_id,
        )
        run = _Run(
            run_dir, True, context, state_in, config, lock, checkpoint_url=where if engine.is_postgres(where) else None
        )
        run.last = snapshot.values if loaded is not None else None
        error: BaseException | None = None
        try:
            if answer is not None:
                _stream(graph, run, Command(resume=answer))
                run.check_interrupt(graph)
                return run.result()
            if loaded is None:  # stopped before its first checkpoint: start it over
                todo: RunState | None = state_in
            else:
                todo = None
                budget = loaded.budget
                if max_rounds is not None:
                    budget = Budget(**{**budget.model_dump(), "max_rounds": max_rounds})
                    run.config = _config(record.thread_id, budget, record.review, record_sha)
                if budget != loaded.budget:
                    _set_budget(graph, run.config, snapshot, budget)
                    snapshot = graph.get_state(run.config)
                    run.last = snapshot.values
                if not snapshot.tasks:  # it ended, and no new budget made the router go on
                    return run.result()
            _stream(graph, run, todo)
            if record.review:
                run.check_interrupt(graph)
        except BaseException as exc:
            error = _keep_run_dir(exc, run.run_dir)
            raise
        finally:
            _finish(run, error)
    return run.result()


class _DamagedImage(UsageError, RunError):
    """A resumed run's latest image is damaged: resuming cannot mend it, so the CLI says so as of any
    run directory that cannot be resumed (exit 2, no resume hint). Still a :class:`RunError`, as reading
    the image raised before it was checked up front."""


def _made(run_dir: Path) -> list[str]:
    """What in ``run_dir`` shows that its run got somewhere: events in trajectory.json, final.png, images.

    A run killed before its first checkpoint has none of them, nor has one stopped before its first
    node ended (a full disk), whose trajectory.json lists no event.
    """
    made = []
    trajectory = run_dir / "trajectory.json"
    if os.path.lexists(trajectory):
        try:
            events = json.loads(read_small(trajectory, MAX_RECORD_BYTES)).get("events")
        except (UsageError, ValueError, AttributeError, RecursionError):
            events = True  # a trajectory that cannot be read is no proof that nothing ran
        if events:
            made.append("trajectory.json")
    if os.path.lexists(run_dir / "final.png"):
        made.append("final.png")
    images = run_dir / "images"
    if images.is_dir() and any(images.iterdir()):
        made.append("images/")
    return made


def _lost_checkpoints(described: str, why: str, made: list[str]) -> UsageError:
    """The refusal to start over a run whose records show progress that its checkpoints do not hold."""
    return UsageError(
        f"{described!r} holds no checkpoint of this run ({why}), yet the run got somewhere "
        f"({', '.join(made)}); resuming would run it all again, so the run's files are left as they were"
    )


def _set_budget(graph, config: RunnableConfig, snapshot, budget: Budget) -> None:
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
