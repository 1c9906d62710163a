"""What LangGraph costs per node transition: the loop by hand against the compiled graph.

Runs the same 20 GenEval prompts on the offline sketch world (``builtin:*``, default fault rates,
seed = prompt index) seven ways:

  (a) a plain Python loop: the same node functions, called by hand, routed by the same
      ``after_critic`` function, updates merged by hand;
  (b) the graph as ``generate`` ran it before the compiled graph was shared: compiled per prompt,
      ``SqliteSaver`` on a plain connection (WAL, ``synchronous=FULL``), streaming ``custom`` and
      ``values``;
  (c) the shared compiled graph without a checkpointer, streaming ``values``: the engine alone;
  (d) the graph as ``generate`` runs it: the shared compiled graph with the run's checkpointer
      from ``strokegraph.graph.engine`` (the run directory's journal, ``strokegraph.graph.journal``),
      progress through the run context, streaming only ``values``, saves handed to one worker
      thread (``max_concurrency=1``);
  (e) (d) streaming ``custom`` too, as the LangGraph server and graphs that embed the loop do
      (that needs LangGraph's default pool of workers);
  (f) (d) with LangGraph's in-memory checkpointer: no database at all, the floor of what any
      checkpointer costs when LangGraph saves in a worker thread and waits for it.
  (g) (d) on SQLite (WAL, ``synchronous=NORMAL``), the run directory's checkpointer until the
      journal replaced it (runs made before it still use it).

The checkpointed variants run with ``durability="sync"``, as ``generate`` does, each on a fresh
file per prompt. Every variant does the same backend work and writes the same images
(checked), so what (b)-(g) take beyond (a) is the engine: task scheduling, channels, state
validation, streaming, checkpoints. Backends are built and outputs written outside the timed part.

What a variant costs is measured inside each pass, not as the difference of two passes: the four
node functions are timed as they run, and a pass's engine time is its total minus the time spent
inside the nodes. The nodes are most of a pass, and on a shared machine their time moves by a
tenth or more from one pass to the next, as much as the whole engine costs; the engine's own time
moves far less. (Over runs of the script minutes apart, all of it moves with the machine's speed:
the shares, each a ratio within one run, move less than the milliseconds.) A variant's overhead
is its engine time minus the plain loop's (which merges the updates by hand), per pass, the median
of those over the passes.

A warm offline run is more than driving the graph: ``generate`` also claims the run directory,
writes ``run.json``, ``trajectory.json``, ``final.png`` and ``report.html``. The script times warm
``generate`` calls on the same prompts and the part of them spent outside ``graph.stream``; each
variant's share is its overhead over (its time + that outside part): the share of a warm offline
run that the variant's way of driving the loop would cost.

Last, the head to head the issue asks for (issue 17): strokegraph's loop as ``generate`` runs it,
(d), against a minimal LangGraph loop: four nodes wired as ours (planner -> drafter -> critic ->
refiner or drafter or END, refiner -> critic), taking the route each prompt's run took, with
LangGraph's ``InMemorySaver`` and ``durability="sync"``; each of its nodes writes strings as long as
the serialized state fields and trajectory event the strokegraph node wrote, so its state has the
same serialized size. Both are timed in the same process, in interleaved rounds of a pass each over
the prompts (the mean of five for the short passes without node work), wall (``perf_counter``)
and CPU (``process_time``: every thread of the process, LangGraph's save worker included), each
minus the time inside the node functions (CPU: the ``thread_time`` of the thread that ran them).
Two pairings:

  no work:       strokegraph's nodes hand back the updates the plain loop's run of the prompt made
                 (the same objects), doing nothing else; the minimal loop's nodes are trivial;
  the real work: strokegraph's nodes run; each minimal node runs the strokegraph node it stands for
                 on the side (a plain-loop run of the same prompt and seed) before it returns its
                 strings. Engine code that runs between nodes doing numpy and PIL work finds the
                 caches cold and costs about twice as much as between trivial nodes, on both sides;
                 without this pairing the comparison would charge that to strokegraph alone.

The ratio is each round's strokegraph seconds over that round's minimal-loop seconds, the median
over the rounds. Wall includes waiting for the CPUs, which on a shared machine other processes
hold: CPU is the steadier figure there.

    python benchmarks/overhead.py [--repeats 5] [--rounds 10]
"""

from __future__ import annotations

import argparse
import functools
import operator
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal, TypedDict, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel
from langgraph.runtime import Runtime

from strokegraph.app.runner import generate
from strokegraph.bench import geneval_prompts
from strokegraph.graph import (
    RunContext,
    RunState,
    after_critic,
    build_graph,
    checkpoint_serializer,
    engine,
    nodes,
    recursion_limit,
)
from strokegraph.registry import build_backends

N_PROMPTS = 20
NODES = ("planner", "drafter", "critic", "refiner")


def spread_prompts(n: int = N_PROMPTS) -> list[str]:
    """``n`` prompts spread evenly over GenEval's 553 (every tag is represented)."""
    rows = geneval_prompts()
    return [rows[i * len(rows) // n].prompt for i in range(n)]


def _merge(state: RunState, update: dict) -> RunState:
    update = {**update, "trajectory": [*state.trajectory, *update.get("trajectory", [])]}
    return state.model_copy(update=update)


def plain_loop(state: RunState, context: RunContext, seen: list[tuple[dict, RunState]] | None = None) -> RunState:
    """The loop by hand; ``seen`` gets each node's update and the state after it."""
    runtime = Runtime(context=context)
    step = {"planner": nodes.planner, "drafter": nodes.drafter, "critic": nodes.critic, "refiner": nodes.refiner}
    node = "planner"
    while node != END:
        update = step[node](state, runtime)
        state = _merge(state, update)
        if seen is not None:
            seen.append((update, state))
        node = after_critic(state) if node == "critic" else "drafter" if node == "planner" else "critic"
    return state


def _config(state: RunState, context: RunContext) -> dict:
    return {
        "configurable": {"thread_id": context.run_dir.name},
        "recursion_limit": recursion_limit(state.budget.max_rounds),
    }


def _stream(graph, state: RunState, context: RunContext, modes: list[str], durability=None, **config) -> RunState:
    last = None
    config = {**_config(state, context), **config}
    for mode, data in graph.stream(state, config, context=context, stream_mode=modes, durability=durability):
        if mode == "values":
            last = data
    return RunState.model_validate(last)


def before(state: RunState, context: RunContext) -> RunState:
    with closing(sqlite3.connect(context.run_dir / "checkpoints.sqlite", check_same_thread=False)) as conn:
        graph = build_graph(SqliteSaver(conn, serde=checkpoint_serializer()))
        return _stream(graph, state, context, ["custom", "values"], durability="sync")


def engine_only(state: RunState, context: RunContext) -> RunState:
    return _stream(engine.compiled(), state, context, ["values"])


def as_generate(
    modes: list[str], saver=engine.checkpointer, file: str = engine.JOURNAL
) -> Callable[[RunState, RunContext], RunState]:
    # generate hands the saves to one worker thread; a stream with ``custom`` needs LangGraph's pool.
    workers = {"max_concurrency": 1} if modes == ["values"] else {}

    def run(state: RunState, context: RunContext) -> RunState:
        with saver(context.run_dir / file) as checkpointer:
            return _stream(engine.graph(checkpointer), state, context, modes, durability="sync", **workers)

    return run


@contextmanager
def in_memory(path: Path) -> Iterator[InMemorySaver]:
    yield InMemorySaver(serde=checkpoint_serializer())


AS_GENERATE = "(d) as generate runs it now"
VARIANTS: dict[str, Callable[[RunState, RunContext], RunState]] = {
    "(a) plain loop": plain_loop,
    "(b) before: compile, FULL, custom": before,
    "(c) engine alone, no checkpoints": engine_only,
    AS_GENERATE: as_generate(["values"]),
    "(e) (d) + custom stream": as_generate(["custom", "values"]),
    "(f) (d), in-memory checkpoints": as_generate(["values"], in_memory),
    "(g) (d) on SQLite (until now)": as_generate(["values"], file=engine.SQLITE),
}


class NodeClock:
    """Seconds (wall, and CPU of the thread that ran them) spent inside the node functions it wraps."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu = 0.0

    def wrap(self, fn):
        @functools.wraps(fn)  # LangGraph reads the signature through __wrapped__ (it passes runtime)
        def timed(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu += time.thread_time() - c0
                self.seconds += time.perf_counter() - t0

        return timed


@contextmanager
def timed_nodes(replay: dict[int, list[dict]] | None = None) -> Iterator[NodeClock]:
    """Every node function timed, the graphs included: the compiled graph is built again with them.

    With ``replay`` (each seed's node updates, in order), a node does no work: it hands back the
    next update its run made (see :func:`replaying`).
    """
    clock = NodeClock()
    originals = {name: getattr(nodes, name) for name in NODES}
    for name, fn in originals.items():
        setattr(nodes, name, clock.wrap(fn if replay is None else _replayer(fn, replay)))
    engine.compiled.cache_clear()
    engine.compiled()  # compiled here, so that no timed pass pays for it
    try:
        yield clock
    finally:
        for name, fn in originals.items():
            setattr(nodes, name, fn)
        engine.compiled.cache_clear()


def _replayer(fn, replay: dict[int, list[dict]]):
    @functools.wraps(fn)
    def replayed(state: RunState, runtime: Runtime[RunContext]) -> dict:
        done = _REPLAYED[runtime.context.seed]
        _REPLAYED[runtime.context.seed] += 1
        return dict(replay[runtime.context.seed][done])

    return replayed


_REPLAYED: Counter[int] = Counter()
"""How many updates each seed's run has replayed (reset before each run)."""


def one_pass(run, prompts: list[str], root: Path, clock: NodeClock) -> tuple[float, float, list[RunState]]:
    """Seconds spent driving all prompts (backends built and files set up outside the clock), the
    part of them outside the node functions, and the final states."""
    elapsed, engine_s, _, states = timed_pass(run, prompts, root, clock)
    return elapsed, engine_s, states


def timed_pass(run, prompts: list[str], root: Path, clock: NodeClock) -> tuple[float, float, float, list[RunState]]:
    """:func:`one_pass`, with the CPU seconds of the whole process outside the node functions too
    (LangGraph's worker threads included)."""
    backends, ids = build_backends()
    elapsed = cpu = 0.0
    states = []
    in_nodes, cpu_in_nodes = clock.seconds, clock.cpu
    for i, prompt in enumerate(prompts):
        run_dir = root / f"p{i:02d}"
        run_dir.mkdir(parents=True)
        context = RunContext(backends, run_dir=run_dir, seed=i, ids=ids)
        _REPLAYED[i] = 0
        t0, c0 = time.perf_counter(), time.process_time()
        states.append(run(RunState(prompt=prompt), context))
        cpu += time.process_time() - c0
        elapsed += time.perf_counter() - t0
    return elapsed, elapsed - (clock.seconds - in_nodes), cpu - (clock.cpu - cpu_in_nodes), states


def generate_pass(prompts: list[str], root: Path) -> tuple[float, float]:
    """Seconds of warm ``generate`` calls on all prompts, and the part of them spent in ``graph.stream``."""
    backends, _ = build_backends()
    in_stream = 0.0
    stream = Pregel.stream

    def timed(self, *args, **kwargs):
        nonlocal in_stream
        t0 = time.perf_counter()
        try:
            yield from stream(self, *args, **kwargs)
        finally:
            in_stream += time.perf_counter() - t0

    Pregel.stream = timed
    try:
        t0 = time.perf_counter()
        for i, prompt in enumerate(prompts):
            generate(prompt, out=root / f"p{i:02d}", seed=i, **backends.by_role())
        return time.perf_counter() - t0, in_stream
    finally:
        Pregel.stream = stream


# --- Head to head: strokegraph's loop as generate drives it against a minimal LangGraph loop ---


class Minimal(TypedDict):
    """A minimal loop's state: where the strokegraph run went after each node, and blobs as large
    as that run's state (the fields besides the trajectory, and one event per node)."""

    stages: list[str]
    done: int
    fields: str
    trajectory: Annotated[list[str], operator.add]


class Shadow:
    """A strokegraph run on the plain loop, one node at a time: the work the minimal loop's nodes do
    on the side when they stand for real nodes."""

    def __init__(self, prompt: str, context: RunContext) -> None:
        self.state, self.runtime = RunState(prompt=prompt), Runtime(context=context)

    def run(self, node: str) -> None:
        self.state = _merge(self.state, getattr(nodes, node)(self.state, self.runtime))


@dataclass(frozen=True)
class Sizes:
    """Serialized bytes of a strokegraph run's state after each node: (fields, the node's event)."""

    after: tuple[tuple[int, int], ...]
    final: int
    """Bytes of that run's final state, all of it."""
    shadow: Shadow | None = None
    """With it, each node also runs the strokegraph node it stands for."""


def _blob(node: str):
    def blob(state: Minimal, runtime: Runtime[Sizes]) -> dict:
        if runtime.context.shadow is not None:
            runtime.context.shadow.run(node)
        fields, event = runtime.context.after[state["done"]]
        return {"done": state["done"] + 1, "fields": "x" * fields, "trajectory": ["x" * event]}

    return blob


_NODE_OF = {"plan": "planner", "draft": "drafter", "critique": "critic", "refine": "refiner"}


def _after_critic(state: Minimal) -> Literal["refiner", "drafter", "__end__"]:
    done, stages = state["done"], state["stages"]
    return "__end__" if done == len(stages) else cast(Literal["refiner", "drafter"], _NODE_OF[stages[done]])


def minimal_graph(clock: NodeClock):
    """4 trivial nodes wired as strokegraph's loop, with LangGraph's in-memory checkpointer."""
    builder = StateGraph(Minimal, context_schema=Sizes)
    for name in NODES:
        builder.add_node(name, clock.wrap(_blob(name)))
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "drafter")
    builder.add_edge("drafter", "critic")
    builder.add_conditional_edges("critic", _after_critic, ["refiner", "drafter", END])
    builder.add_edge("refiner", "critic")
    return builder.compile(checkpointer=InMemorySaver())


@dataclass(frozen=True)
class Recorded:
    """One prompt's strokegraph run (the plain loop's): the node updates and what the minimal loop
    needs to run the same route with a state of the same sizes."""

    stages: list[str]
    updates: list[dict]
    sizes: Sizes


def record_runs(prompts: list[str], root: Path) -> list[Recorded]:
    """Each prompt's run on the plain loop (seed = prompt index), recorded."""
    serde = checkpoint_serializer()
    backends, ids = build_backends()
    runs = []
    for i, prompt in enumerate(prompts):
        (root / f"p{i:02d}").mkdir(parents=True)
        seen: list[tuple[dict, RunState]] = []
        plain_loop(RunState(prompt=prompt), RunContext(backends, run_dir=root / f"p{i:02d}", seed=i, ids=ids), seen)
        after = tuple(
            (
                len(serde.dumps_typed({k: getattr(s, k) for k in RunState.model_fields if k != "trajectory"})[1]),
                len(serde.dumps_typed(s.trajectory[-1])[1]),
            )
            for _, s in seen
        )
        final = seen[-1][1]
        size = len(serde.dumps_typed({k: getattr(final, k) for k in RunState.model_fields})[1])
        runs.append(Recorded([e.stage for e in final.trajectory], [u for u, _ in seen], Sizes(after, size)))
    return runs


def final_bytes(runs: list[Recorded]) -> tuple[float, float]:
    """Mean serialized size of the final state over the prompts: strokegraph's, the minimal loop's."""
    serde = JsonPlusSerializer()
    return (
        statistics.mean(run.sizes.final for run in runs),
        statistics.mean(len(serde.dumps_typed(_final(run))[1]) for run in runs),
    )


def _final(run: Recorded) -> Minimal:
    return {
        "stages": run.stages,
        "done": len(run.stages),
        "fields": "x" * run.sizes.after[-1][0],
        "trajectory": ["x" * event for _, event in run.sizes.after],
    }


def minimal_pass(runs: list[Recorded], clock: NodeClock, shadows: list[Shadow] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of the minimal loop outside its nodes, over all prompts (one saver per
    pass); with ``shadows``, each prompt's nodes do the work of its strokegraph run's nodes too."""
    graph = minimal_graph(clock)
    wall = cpu = 0.0
    in_nodes, cpu_in_nodes = clock.seconds, clock.cpu
    for i, run in enumerate(runs):
        state: Minimal = {"stages": run.stages, "done": 0, "fields": "", "trajectory": []}
        config: RunnableConfig = {"configurable": {"thread_id": f"p{i:02d}"}}
        context = replace(run.sizes, shadow=shadows[i]) if shadows else run.sizes
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in graph.stream(state, config, context=context, stream_mode="values", durability="sync"):
            pass
        cpu += time.process_time() - c0
        wall += time.perf_counter() - t0
    return wall - (clock.seconds - in_nodes), cpu - (clock.cpu - cpu_in_nodes)


SIDES = ("replayed", "real nodes", "minimal", "minimal, real work")
# Passes without node work take a tenth of a second, which one stall of a shared machine can double:
# each round takes the mean of several.
LIGHT_PASSES = 5


def head_to_head(prompts: list[str], rounds: int, root: Path) -> tuple[dict[str, list[float]], list[Recorded]]:
    """Per round, the engine's wall and CPU seconds over all prompts for each of :data:`SIDES`:
    strokegraph's loop as generate drives it, its nodes replaying their recorded updates or
    running; the minimal loop, its nodes trivial or doing the strokegraph nodes' work on the side.
    The order of the four turns from round to round."""
    runs = record_runs(prompts, root / "recorded")
    ours = VARIANTS[AS_GENERATE]
    out: dict[str, list[float]] = {f"{side} {clock}": [] for side in SIDES for clock in ("wall", "cpu")}
    replay = {i: run.updates for i, run in enumerate(runs)}
    for r in range(-1, rounds):  # round -1 warms up
        for k in range(len(SIDES)):
            side = SIDES[(r + k) % len(SIDES)]
            todo = prompts if r >= 0 else prompts[:2]
            if side == "minimal":
                passes = [minimal_pass(runs[: len(todo)], NodeClock()) for _ in range(LIGHT_PASSES)]
                wall, cpu = (statistics.fmean(p) for p in zip(*passes, strict=True))
            elif side == "minimal, real work":
                shadows = _shadows(todo, root / f"r{r}{k}")
                wall, cpu = minimal_pass(runs[: len(todo)], NodeClock(), shadows)
                assert [e.stage for e in shadows[0].state.trajectory] == runs[0].stages  # the same route
                shutil.rmtree(root / f"r{r}{k}")
            else:
                light = side == "replayed"
                with timed_nodes(replay if light else None) as clock:
                    passes = [
                        timed_pass(ours, todo, root / f"r{r}{k}" / str(j), clock)[1:3]
                        for j in range(LIGHT_PASSES if light else 1)
                    ]
                wall, cpu = (statistics.fmean(p) for p in zip(*passes, strict=True))
                shutil.rmtree(root / f"r{r}{k}")
            if r >= 0:
                out[f"{side} wall"].append(wall)
                out[f"{side} cpu"].append(cpu)
    return out, runs


def _shadows(prompts: list[str], root: Path) -> list[Shadow]:
    backends, ids = build_backends()
    shadows = []
    for i, prompt in enumerate(prompts):
        (root / f"p{i:02d}").mkdir(parents=True)
        shadows.append(Shadow(prompt, RunContext(backends, run_dir=root / f"p{i:02d}", seed=i, ids=ids)))
    return shadows


def print_head_to_head(duel: dict[str, list[float]], runs: list[Recorded]) -> None:
    transitions = sum(len(run.stages) for run in runs)
    ours_kb, minimal_kb = (b / 1e3 for b in final_bytes(runs))
    rounds = len(duel["minimal wall"])
    print(f"head to head: the engine per node transition, {AS_GENERATE[:3]} against a minimal 4-node LangGraph loop")
    print(
        f"(nodes routed as the strokegraph runs went, InMemorySaver, durability='sync', final state "
        f"{minimal_kb:.1f} kB against strokegraph's {ours_kb:.1f} kB); {rounds} interleaved rounds"
    )
    print(f"{'nodes':<36}{'clock':<6}{'strokegraph ms':>16}{'LangGraph ms':>14}{'ratio':>8}{'rounds':>13}")
    pairs = {"no work (replayed / trivial)": SIDES[::2], "the real work (run / on the side)": SIDES[1::2]}
    for label, (side, theirs) in pairs.items():
        for clock in ("wall", "cpu"):
            ours, minimal = duel[f"{side} {clock}"], duel[f"{theirs} {clock}"]
            ratios = [o / m for o, m in zip(ours, minimal, strict=True)]
            print(
                f"{label:<36}{clock:<6}{statistics.median(ours) / transitions * 1e3:>16.2f}"
                f"{statistics.median(minimal) / transitions * 1e3:>14.2f}{statistics.median(ratios):>7.2f}x"
                f"{min(ratios):>6.2f}-{max(ratios):<6.2f}"
            )
    print("ms: a pass's time outside the node functions per transition (median); cpu: the whole process's")
    print("ratio: the median of the per-round ratios (rounds: the lowest and highest)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="passes over the prompts per variant (default 5)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="rounds of the head-to-head against a minimal LangGraph loop (default 10)",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    prompts = spread_prompts()

    scratch = Path(tempfile.mkdtemp(prefix="strokegraph-overhead-"))
    try:
        with timed_nodes() as clock:
            for name, run in VARIANTS.items():  # warm-up: imports, caches, the compiled graph
                one_pass(run, prompts[:2], scratch / "warmup" / name[1], clock)
            times: dict[str, list[float]] = {name: [] for name in VARIANTS}
            engine_s: dict[str, list[float]] = {name: [] for name in VARIANTS}
            images: dict[str, list[list[str]]] = {}
            stages: Counter[str] = Counter()
            for r in range(args.repeats):
                for name, run in VARIANTS.items():  # interleaved, so drift hits every variant alike
                    elapsed, outside_nodes, states = one_pass(run, prompts, scratch / f"r{r}" / name[1], clock)
                    times[name].append(elapsed)
                    engine_s[name].append(outside_nodes)
                    images[name] = [[e.image.sha256 for e in s.trajectory if e.image] for s in states]
                    if r == 0 and name == "(a) plain loop":
                        stages = Counter(e.stage for s in states for e in s.trajectory)
                shutil.rmtree(scratch / f"r{r}")
        # generate with the nodes as they ship: its part outside graph.stream is what the shares add.
        generate_pass(prompts[:2], scratch / "warmup" / "generate")
        generate_s: list[float] = []
        outside_s: list[float] = []
        for r in range(args.repeats):
            total, in_stream = generate_pass(prompts, scratch / f"g{r}")
            generate_s.append(total)
            outside_s.append(total - in_stream)
            shutil.rmtree(scratch / f"g{r}")
        t0 = time.perf_counter()
        for _ in range(20):
            build_graph()
        compile_ms = (time.perf_counter() - t0) / 20 * 1e3
        duel, recorded = head_to_head(prompts, args.rounds, scratch / "h2h")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    transitions = sum(stages.values())
    plain = "(a) plain loop"
    outside = statistics.median(outside_s)
    print(f"overhead: {len(prompts)} GenEval prompts, offline sketch world (builtin:*, default faults), seeds 0..19")
    print(f"medians of {args.repeats} passes per variant, interleaved; checkpoints with durability='sync'")
    print(f"node transitions per pass: {transitions} ({', '.join(f'{k} {v}' for k, v in stages.items())})")
    print(f"build_graph(): {compile_ms:.2f} ms; (b) pays it once per prompt, (c)-(g) once per process")
    print(
        f"warm generate(): {statistics.median(generate_s) / len(prompts) * 1e3:.1f} ms/prompt, "
        f"{outside / len(prompts) * 1e3:.1f} ms of it outside graph.stream (run directory, files, report)"
    )
    print()
    print(f"{'variant':<36}{'total s':>9}{'ms/prompt':>11}{'ms/transition':>15}{'passes':>13}{'share':>7}")
    for name, values in times.items():
        total = statistics.median(values)
        # Per pass: this variant's engine time over the plain loop's in the same round.
        per_pass = [(e - p) / transitions * 1e3 for e, p in zip(engine_s[name], engine_s[plain], strict=True)]
        overhead = statistics.median(per_pass)
        share = overhead * transitions / 1e3 / (total + outside)
        print(
            f"{name:<36}{total:>9.3f}{total / len(prompts) * 1e3:>11.1f}{overhead:>15.2f}"
            f"{min(per_pass):>6.2f}-{max(per_pass):<6.2f}{share:>7.0%}"
        )
    same = all(v == images[plain] for v in images.values())
    print()
    print("ms/transition: the variant's time outside the node functions over the plain loop's, per node transition")
    print("passes: the lowest and highest of that over the passes (the median is the figure)")
    print("share: that overhead as a part of a warm offline run: the variant's time + generate()'s outside part")
    print(f"same images in every variant: {'yes' if same else 'NO'}")
    spread = ", ".join(f"{n[:3]} {max(v) / min(v):.2f}" for n, v in times.items())
    print(f"spread of the totals (max/min of the passes): {spread}")
    print()
    print_head_to_head(duel, recorded)


if __name__ == "__main__":
    main()
