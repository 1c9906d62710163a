"""What LangGraph costs per node transition: the loop by hand against the compiled graph.

Runs the same 20 GenEval prompts on the offline sketch world (``builtin:*``, default fault rates,
seed = prompt index) six ways:

  (a) a plain Python loop: the same node functions, called by hand, routed by the same
      ``after_critic`` function, updates merged by hand;
  (b) the graph as ``generate`` ran it before the compiled graph was shared: compiled per prompt,
      ``SqliteSaver`` on a plain connection (WAL, ``synchronous=FULL``), streaming ``custom`` and
      ``values``;
  (c) the shared compiled graph without a checkpointer, streaming ``values``: the engine alone;
  (d) the graph as ``generate`` runs it: the shared compiled graph with the run's checkpointer
      from ``strokegraph.graph.engine`` (WAL, ``synchronous=NORMAL``), progress through the run
      context, streaming only ``values``, saves handed to one worker thread (``max_concurrency=1``);
  (e) (d) streaming ``custom`` too, as the LangGraph server and graphs that embed the loop do
      (that needs LangGraph's default pool of workers);
  (f) (d) with LangGraph's in-memory checkpointer: no database at all, the floor of what any
      checkpointer costs when LangGraph saves in a worker thread and waits for it.

The checkpointed variants run with ``durability="sync"``, as ``generate`` does, each on a fresh
database file per prompt. Every variant does the same backend work and writes the same images
(checked), so what (b)-(f) take beyond (a) is the engine: task scheduling, channels, state
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

    python benchmarks/overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END
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


def plain_loop(state: RunState, context: RunContext) -> RunState:
    runtime = Runtime(context=context)
    state = _merge(state, nodes.planner(state, runtime))
    step = {"drafter": nodes.drafter, "critic": nodes.critic, "refiner": nodes.refiner}
    node = "drafter"
    while node != END:
        state = _merge(state, step[node](state, runtime))
        node = after_critic(state) if node == "critic" else "critic"
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


def as_generate(modes: list[str], saver=engine.checkpointer) -> Callable[[RunState, RunContext], RunState]:
    # generate hands the saves to one worker thread; a stream with ``custom`` needs LangGraph's pool.
    workers = {"max_concurrency": 1} if modes == ["values"] else {}

    def run(state: RunState, context: RunContext) -> RunState:
        with saver(context.run_dir / "checkpoints.sqlite") as checkpointer:
            return _stream(engine.graph(checkpointer), state, context, modes, durability="sync", **workers)

    return run


@contextmanager
def in_memory(path: Path) -> Iterator[InMemorySaver]:
    yield InMemorySaver(serde=checkpoint_serializer())


VARIANTS: dict[str, Callable[[RunState, RunContext], RunState]] = {
    "(a) plain loop": plain_loop,
    "(b) before: compile, FULL, custom": before,
    "(c) engine alone, no checkpoints": engine_only,
    "(d) as generate runs it now": as_generate(["values"]),
    "(e) (d) + custom stream": as_generate(["custom", "values"]),
    "(f) (d), in-memory checkpoints": as_generate(["values"], in_memory),
}


class NodeClock:
    """Seconds spent inside the node functions, which it wraps while the script runs."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn):
        @functools.wraps(fn)  # LangGraph reads the signature through __wrapped__ (it passes runtime)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


@contextmanager
def timed_nodes() -> Iterator[NodeClock]:
    """Every node function timed, the graphs included: the compiled graph is built again with them."""
    clock = NodeClock()
    originals = {name: getattr(nodes, name) for name in NODES}
    for name, fn in originals.items():
        setattr(nodes, name, clock.wrap(fn))
    engine.compiled.cache_clear()
    try:
        yield clock
    finally:
        for name, fn in originals.items():
            setattr(nodes, name, fn)
        engine.compiled.cache_clear()


def one_pass(run, prompts: list[str], root: Path, clock: NodeClock) -> tuple[float, float, list[RunState]]:
    """Seconds spent driving all prompts (backends built and files set up outside the clock), the
    part of them outside the node functions, and the final states."""
    backends, ids = build_backends()
    elapsed, states = 0.0, []
    in_nodes = clock.seconds
    for i, prompt in enumerate(prompts):
        run_dir = root / f"p{i:02d}"
        run_dir.mkdir(parents=True)
        context = RunContext(backends, run_dir=run_dir, seed=i, ids=ids)
        t0 = time.perf_counter()
        states.append(run(RunState(prompt=prompt), context))
        elapsed += time.perf_counter() - t0
    return elapsed, elapsed - (clock.seconds - in_nodes), states


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="passes over the prompts per variant (default 5)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
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
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    transitions = sum(stages.values())
    plain = "(a) plain loop"
    outside = statistics.median(outside_s)
    print(f"overhead: {len(prompts)} GenEval prompts, offline sketch world (builtin:*, default faults), seeds 0..19")
    print(f"medians of {args.repeats} passes per variant, interleaved; checkpoints with durability='sync'")
    print(f"node transitions per pass: {transitions} ({', '.join(f'{k} {v}' for k, v in stages.items())})")
    print(f"build_graph(): {compile_ms:.2f} ms; (b) pays it once per prompt, (c)-(f) once per process")
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


if __name__ == "__main__":
    main()
