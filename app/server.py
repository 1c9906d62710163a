"""The graphs that ``langgraph.json`` hands to LangGraph's own server (``langgraph dev``, LangGraph Platform).

A server sends state, and at most a context dict and ``configurable``; it cannot build backends. So
these graphs take backend *ids* as their context (:class:`ServerContext`, all optional: the offline
sketch world by default), and run the loop of :func:`strokegraph.graph.build_graph` as a subgraph:

``__start__ -> prepare -> loop (planner -> drafter -> critic -> (refiner -> critic)* ...) -> __end__``

``prepare`` checks the ids against the operator's allow-list and claims the run directory,
``<root>/<thread id>/<timestamp>-<slug>/``; ``loop`` builds the backends and runs the loop in it,
under the server's own checkpointer, so a client sees the loop's nodes (``get_graph(xray=True)``,
LangGraph Studio), its node updates (``stream_subgraphs``) and its progress events (``custom``
stream mode), then writes the usual files (``final.png``, ``trajectory.json``, ``report.html``).
:data:`review_graph` runs the loop with review: it stops at the plan and at every critique with a
LangGraph interrupt whose payload is :func:`strokegraph.graph.nodes.review_payload`'s, and a client
answers it with ``Command(resume=answer)`` (see :func:`strokegraph.graph.nodes.review_answer`).

``<root>`` is ``$STROKEGRAPH_SERVER_ROOT`` (default ``runs/server``, relative to the server's working
directory). It is the operator's choice, not part of the context, so that a request cannot choose
where the server writes.

Images are named twice: as paths on the server (``final_image``, and each image's path in the run
directory, as the review payload gives it) and as URLs a remote client can fetch, paths under
:data:`IMAGE_ROUTE` that ``app/webapp.py`` serves when ``langgraph.json``'s ``http.app`` mounts it:
``run_url`` (the run directory, set before the loop starts, so ``run_url + "/" + path`` is any image's
URL, the one under review included), one ``{"kind": "image", "path", "url"}`` event on the ``custom``
stream for each image as the loop saves it, and ``final_image_url`` and ``image_urls`` once it ends.
A client prefixes them with the server's base URL (``base.rstrip("/") + url``).
``graph.invoke({"prompt": "..."})`` works with no context at all. For chat clients the state is also
a chat (``messages``): a new human message is the prompt, and a finished run answers with an AI message.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import field, make_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.config import get_config
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from pydantic import BaseModel

from strokegraph import __version__, registry
from strokegraph._text import check_prompt
from strokegraph.app.allowed import allowed_ids, is_allowed
from strokegraph.app.outputs import result_of, write_outputs
from strokegraph.app.record import RunRecord, check_limits, new_thread_id
from strokegraph.app.rundir import RUN_FILE, new_run_dir
from strokegraph.errors import UsageError
from strokegraph.graph import Budget, RunContext, RunState, build_graph, recursion_limit
from strokegraph.graph.state import ImageCache
from strokegraph.registry import DEFAULT_IDS, ROLES
from strokegraph.schema import write_new

if TYPE_CHECKING:
    from PIL import Image

    from strokegraph.schema import ImageRef

__all__ = ["IMAGE_ROUTE", "ServerContext", "ServerState", "graph", "review_graph", "server_root"]

#: Where ``app/webapp.py`` serves a run's PNGs: ``<route>/<run dir under the root>/final.png`` and
#: ``<route>/<run dir under the root>/images/<name>.png``.
IMAGE_ROUTE = "/strokegraph/images"


# A field per role of the registry, so that a request may choose any role's backend. Made at runtime,
# it is a plain type to mypy (hence Runtime[Any] below).
ServerContext: type = make_dataclass(
    "ServerContext",
    [*((role, str, field(default=DEFAULT_IDS[role])) for role in ROLES), ("seed", int, 0)],
)
ServerContext.__module__ = __name__
ServerContext.__doc__ = "What a server request may choose: each role's backend id (a field per role) and the seed."


class ServerState(BaseModel):
    prompt: str | None = None
    """What to draw; a chat client sends it as a human message instead (see ``messages``)."""
    messages: Annotated[list[AnyMessage], add_messages] = []
    """The thread as a chat, for chat clients (Agent Chat UI): a human message whose text is a run's
    prompt, then an AI message with its verdict and final image's URL. A newest human message that no
    run has drawn yet is the prompt; otherwise ``prompt`` is, added here as a human message."""
    prompt_message: str | None = None
    """The id of the human message the last run drew."""
    single_pass: bool = False
    budget: Budget = Budget()
    # Written by the run; a new run on the same thread replaces them.
    run_dir: str | None = None
    run_url: str | None = None
    """The run directory as a path under :data:`IMAGE_ROUTE`: ``run_url + "/" + image path`` is an image's URL."""
    final_image: str | None = None
    passed: bool | None = None
    rounds: int | None = None
    critique: dict | None = None
    """The final critique as JSON: server checkpoints then hold only plain data."""
    final_image_url: str | None = None
    """``final.png`` as a path under :data:`IMAGE_ROUTE`, for a client to prefix with the server's URL."""
    image_urls: list[str] = []
    """Each image of the trajectory (plan, drafts, refinements), in order, as such a path."""


def server_root() -> Path:
    """Where the server writes its runs: ``$STROKEGRAPH_SERVER_ROOT``, else ``runs/server``."""
    return Path(os.environ.get("STROKEGRAPH_SERVER_ROOT") or "runs/server")


def _url(root: Path, run_dir: Path, file: str | None = None) -> str:
    """``file`` of ``run_dir`` (a folder under ``root``), or the folder itself, as a path under :data:`IMAGE_ROUTE`."""
    path = f"{IMAGE_ROUTE}/{run_dir.relative_to(root).as_posix()}"
    return quote(f"{path}/{file}" if file else path)


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _thread_dir(root: Path, thread: object) -> Path:
    """The folder of a thread under ``root``: its id when that is a plain name, else a hash of it.

    The thread id comes from the request, so it may never name a path (``../..``, ``/etc``).
    """
    name = str(thread)
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        name = "thread-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return root / name


def _allowed(ctx: Any) -> None:
    """Refuse backend ids the operator did not allow: a request may not load a model or spend a key.

    The offline ``builtin:`` backends are always allowed; ``$STROKEGRAPH_SERVER_BACKENDS`` lists more,
    comma-separated, as whole ids (``openai:gpt-4.1-mini``) or providers (``openai:``).
    """
    allowed = allowed_ids("STROKEGRAPH_SERVER_BACKENDS")
    for role in ROLES:
        backend_id = getattr(ctx, role)
        if not is_allowed(role, backend_id, allowed):
            raise UsageError(
                f"{role} {backend_id!r} is not allowed on this server; its operator lists allowed ids in "
                "$STROKEGRAPH_SERVER_BACKENDS"
            )


def _context(runtime: Runtime[Any]) -> Any:
    """The request's context, checked against the allow-list (again on every resume: a resuming
    request brings its own context)."""
    ctx = runtime.context or ServerContext()
    _allowed(ctx)
    return ctx


def _prompt(state: ServerState) -> tuple[str, dict]:
    """This run's prompt, and the state update that records which message it came from."""
    last = state.messages[-1] if state.messages else None
    if isinstance(last, HumanMessage) and last.id != state.prompt_message:
        return last.text, {"prompt": last.text, "prompt_message": last.id}
    if state.prompt is None:
        raise UsageError('nothing to draw: send {"prompt": "..."} or a human message in "messages"')
    asked = HumanMessage(state.prompt, id=str(uuid.uuid4()))
    return state.prompt, {"messages": [asked], "prompt_message": asked.id}


def _drawn(state: ServerState) -> str:
    """The prompt ``prepare`` chose (a client may edit the state between the two nodes)."""
    if not state.prompt:
        raise UsageError("the thread's state has no prompt; start a run with one")
    return state.prompt


def prepare(state: ServerState, runtime: Runtime[Any]) -> dict:
    """Check the request and claim the run directory, before any backend is built."""
    ctx = _context(runtime)
    prompt, asked = _prompt(state)
    check_prompt(prompt)
    check_limits(ctx.seed, state.budget)
    root = server_root()
    thread = get_config().get("configurable", {}).get("thread_id")
    run_dir = new_run_dir(prompt, root=_thread_dir(root, thread) if thread else root)
    return asked | {
        "run_dir": str(run_dir),
        "run_url": _url(root, run_dir),
        "final_image": None,
        "passed": None,
        "rounds": None,
        "critique": None,
        "final_image_url": None,
        "image_urls": [],
    }


class _ServedImages(ImageCache):
    """The run's :class:`ImageCache`, which also announces each image it saves, with its URL, on
    the ``custom`` stream: a client can show a draft while the loop goes on, or the image under review."""

    def __init__(self, root: Path, announce: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self.root = root
        self.announce = announce

    def save(self, image: Image.Image, run_dir: Path, name: str) -> ImageRef:
        ref = super().save(image, run_dir, name)
        self.announce({"kind": "image", "path": ref.path, "url": _url(self.root, Path(run_dir), ref.path)})
        return ref


def _run_dir(state: ServerState, root: Path) -> Path:
    """The run directory ``prepare`` claimed, resolved, under ``root`` (resolved too).

    A client can edit a thread's state through the server's API, so the path is checked to be a
    folder one or two levels under the root (``[<thread>/]<run>``), as ``prepare`` makes them.
    """
    run_dir = Path(state.run_dir or "")
    resolved = run_dir.resolve()
    if (
        state.run_dir is None
        or run_dir.is_symlink()
        or not resolved.is_dir()
        or not resolved.is_relative_to(root)
        or not 1 <= len(resolved.relative_to(root).parts) <= 2
    ):
        raise UsageError(f"run_dir {str(state.run_dir)[:200]!r} is not a run directory under the server's root")
    return resolved


def _record(run_dir: Path, state: ServerState, ctx: Any, ids: dict, review: bool) -> None:
    """Write the run's ``run.json`` once (a resumed node finds it there), so that the run directory
    reads like any other (``strokegraph export`` takes its prompt, seed and backends from it).

    The loop's checkpoints are the server's, not the run directory's: ``strokegraph resume`` refuses
    such a directory (it has no ``checkpoints.sqlite``); the server's thread is what continues the run.
    """
    if (run_dir / RUN_FILE).exists():
        return
    record = RunRecord(
        format=1,
        strokegraph=__version__,
        thread_id=new_thread_id(run_dir, shared=False),
        prompt=_drawn(state),
        backends=ids,
        settings={},
        seed=ctx.seed,
        budget=state.budget,
        single_pass=state.single_pass,
        review=review,
    )
    write_new(run_dir / RUN_FILE, record.model_dump_json(indent=2).encode())


def _run_loop(loop, state: ServerState, runtime: Runtime[Any], *, review: bool) -> dict:
    """Run ``loop`` (a compiled :func:`build_graph`) in the run directory, and write its files.

    Called as a node, the loop is a subgraph: its checkpoints go to the server's checkpointer under
    this node's namespace, and a review's interrupt reaches the client; on resume this node runs
    again from its start and the loop continues from its checkpoint (the input is then ignored).
    """
    ctx = _context(runtime)
    root = server_root().resolve()
    run_dir = _run_dir(state, root)
    try:
        backends, ids = registry.build_backends({role: getattr(ctx, role) for role in ROLES})
    except BaseException:
        # A backend that cannot be built fails before the loop writes anything: leave no empty run directory.
        if not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    _record(run_dir, state, ctx, ids, review)
    context = RunContext(backends, run_dir=run_dir, seed=ctx.seed, ids=ids)
    context.images = _ServedImages(root, runtime.stream_writer)
    last: dict | None = None
    error: BaseException | None = None
    try:
        todo = RunState(prompt=_drawn(state), single_pass=state.single_pass, budget=state.budget)
        # The budget in state ends the loop; the recursion limit is the backstop a run of the CLI has too.
        limit = {"recursion_limit": recursion_limit(state.budget.max_rounds, review=review)}
        for values in loop.stream(todo, limit, context=context, stream_mode="values"):
            # A review's interrupt comes as a state of its own; the stream then raises it to the server.
            values = {k: v for k, v in values.items() if k != "__interrupt__"}
            last = values or last
    except GraphBubbleUp:
        raise  # a review's interrupt: not an error; the files below show the run so far
    except BaseException as exc:
        error = exc
        raise
    finally:
        if last is not None:
            try:
                final = RunState.model_validate(last)
                write_outputs(run_dir, final, error, context.images)
            except Exception as exc:  # noqa: BLE001 - the loop's own error is the one to report
                if error is None:
                    raise
                error.add_note(f"the run's files could not be written: {exc}")
    assert last is not None  # a loop's stream yields its state before it ends
    result = result_of(run_dir, final)
    final_url = _url(root, run_dir, "final.png") if result.final_image else None
    return {
        "messages": [AIMessage(_answer(result, final_url))],
        "final_image": str(result.final_image) if result.final_image else None,
        "passed": result.passed,
        "rounds": result.rounds,
        "critique": result.critique.model_dump(mode="json") if result.critique else None,
        "final_image_url": final_url,
        "image_urls": list(dict.fromkeys(_url(root, run_dir, e.image.path) for e in result.trajectory if e.image)),
    }


def _answer(result: Any, final_url: str | None) -> str:
    """The run's outcome as a chat message: the CLI's verdict, and the final image's URL.

    The URL is a path under :data:`IMAGE_ROUTE`; with ``$STROKEGRAPH_SERVER_URL`` (the server's
    address as clients reach it) the message also shows the image, in Markdown.
    """
    from strokegraph.app.cli import verdict

    words, _ = verdict(result)
    if final_url is None:
        return f"{words}: nothing drawn"
    base = os.environ.get("STROKEGRAPH_SERVER_URL", "").rstrip("/")
    shown = f"\n\n![the final image]({base}{final_url})" if base.startswith(("http://", "https://")) else ""
    return f"{words}: {final_url}{shown}"


# Compiled once, at import: LangGraph's server loads this module once per process. Each node
# function names its loop directly, so that ``get_graph(xray=True)`` finds and draws it.
_LOOP = build_graph()
_REVIEWED_LOOP = build_graph(review=True)


def loop(state: ServerState, runtime: Runtime[Any]) -> dict:
    """The loop without review."""
    return _run_loop(_LOOP, state, runtime, review=False)


def reviewed_loop(state: ServerState, runtime: Runtime[Any]) -> dict:
    """The loop with a person's review after the plan and after every critique (LangGraph interrupts)."""
    return _run_loop(_REVIEWED_LOOP, state, runtime, review=True)


def _build(review: bool, name: str):
    builder = StateGraph(ServerState, context_schema=ServerContext)
    builder.add_node("prepare", prepare)
    builder.add_node("loop", reviewed_loop if review else loop)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "loop")
    builder.add_edge("loop", END)
    return builder.compile(name=name)


graph = _build(False, "strokegraph")
"""The loop as a server graph; ``langgraph.json`` registers it as ``strokegraph``."""
review_graph = _build(True, "strokegraph_review")
"""The loop with review as a server graph; ``langgraph.json`` registers it as ``strokegraph_review``."""
