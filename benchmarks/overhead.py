"""What LangGraph costs per node transition: the loop by hand against the compiled graph.

Runs the same 20 GenEval prompts on the offline sketch world (``builtin:*``, default fault rates,
seed = prompt index) five ways:

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
(checked), so what (b)-(e) take beyond (a) is the engine: task scheduling, channels, state
validation, streaming, checkpoints. Backends are built and outputs written outside the timed part.

A warm offline run is more than driving the graph: ``generate`` also claims the run directory,
writes ``run.json``, ``trajectory.json``, ``final.png`` and ``report.html``. The script times warm
``generate`` calls on the same prompts and the part of them spent outside ``graph.stream``; each
variant's share is its overhead over (its time + that outside part): the share of a warm offline
run that the variant's way of driving the loop would cost.

    python benchmarks/overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
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
from strokegraph.graph.run import generate
from strokegraph.registry import build_backends

N_PROMPTS = 20


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


def one_pass(run, prompts: list[str], root: Path) -> tuple[float, list[RunState]]:
    """Seconds spent driving all prompts (backends built and files set up outside the clock)."""
    backends, ids = build_backends()
    elapsed, states = 0.0, []
    for i, prompt in enumerate(prompts):
        run_dir = root / f"p{i:02d}"
        run_dir.mkdir(parents=True)
        context = RunContext(backends, run_dir=run_dir, seed=i, ids=ids)
        t0 = time.perf_counter()
        states.append(run(RunState(prompt=prompt), context))
        elapsed += time.perf_counter() - t0
    return elapsed, states


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
    prompts = spread_prompts()

    scratch = Path(tempfile.mkdtemp(prefix="strokegraph-overhead-"))
    try:
        for name, run in VARIANTS.items():  # warm-up: imports, caches, the compiled graph
            one_pass(run, prompts[:2], scratch / "warmup" / name[1])
        generate_pass(prompts[:2], scratch / "warmup" / "generate")
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        generate_s: list[float] = []
        outside_s: list[float] = []
        images: dict[str, list[list[str]]] = {}
        stages: Counter[str] = Counter()
        for r in range(args.repeats):
            for name, run in VARIANTS.items():  # interleaved, so drift hits every variant alike
                elapsed, states = one_pass(run, prompts, scratch / f"r{r}" / name[1])
                times[name].append(elapsed)
                images[name] = [[e.image.sha256 for e in s.trajectory if e.image] for s in states]
                if r == 0 and name == "(a) plain loop":
                    stages = Counter(e.stage for s in states for e in s.trajectory)
            total, in_stream = generate_pass(prompts, scratch / f"r{r}" / "generate")
            generate_s.append(total)
            outside_s.append(total - in_stream)
            shutil.rmtree(scratch / f"r{r}")
        t0 = time.perf_counter()
        for _ in range(20):
            build_graph()
        compile_ms = (time.perf_counter() - t0) / 20 * 1e3
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    transitions = sum(stages.values())
    plain = statistics.median(times["(a) plain loop"])
    outside = statistics.median(outside_s)
    print(f"overhead: {len(prompts)} GenEval prompts, offline sketch world (builtin:*, default faults), seeds 0..19")
    print(f"medians of {args.repeats} passes per variant, interleaved; checkpoints with durability='sync'")
    print(f"node transitions per pass: {transitions} ({', '.join(f'{k} {v}' for k, v in stages.items())})")
    print(f"build_graph(): {compile_ms:.2f} ms; (b) pays it once per prompt, (c)-(e) once per process")
    print(
        f"warm generate(): {statistics.median(generate_s) / len(prompts) * 1e3:.1f} ms/prompt, "
        f"{outside / len(prompts) * 1e3:.1f} ms of it outside graph.stream (run directory, files, report)"
    )
    print()
    print(f"{'variant':<36}{'total s':>9}{'ms/prompt':>11}{'ms/transition':>15}{'share':>7}{'x plain':>9}")
    for name, values in times.items():
        total = statistics.median(values)
        overhead = (total - plain) / transitions * 1e3
        share = (total - plain) / (total + outside)
        print(
            f"{name:<36}{total:>9.3f}{total / len(prompts) * 1e3:>11.1f}{overhead:>15.2f}"
            f"{share:>7.0%}{total / plain:>9.2f}"
        )
    same = all(v == images["(a) plain loop"] for v in images.values())
    print()
    print("ms/transition: the variant's time over the plain loop's, per node transition")
    print("share: that overhead as a part of a warm offline run: the variant's time + generate()'s outside part")
    print(f"same images in every variant: {'yes' if same else 'NO'}")
    print(f"spread (max/min of the passes): {', '.join(f'{n[:3]} {max(v) / min(v):.2f}' for n, v in times.items())}")


if __name__ == "__main__":
    main()
