"""What LangGraph costs per node transition: the loop by hand against the compiled graph.

Runs the same 20 GenEval prompts on the offline sketch world (``builtin:*``, default fault rates,
seed = prompt index) four ways:

  (a) a plain Python loop: the same node functions, called by hand, routed by the same
      ``after_critic`` function, updates merged by hand;
  (b) the compiled graph without a checkpointer;
  (c) the compiled graph with ``InMemorySaver``;
  (d) the compiled graph with ``SqliteSaver`` on a fresh temporary file, as ``generate`` runs it.

Every variant does the same backend work and writes the same images (checked), so what (b)-(d) take
beyond (a) is the engine: task scheduling, channels, state validation, streaming, checkpoints.
The graph variants compile the graph and stream ``custom`` and ``values`` per prompt, as
``generate`` does. Backends are built and outputs written outside the timed part in every variant.

    python benchmarks/overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from importlib import resources
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END
from langgraph.runtime import Runtime

from strokegraph.graph import (
    RunContext,
    RunState,
    after_critic,
    build_graph,
    checkpoint_serializer,
    nodes,
    recursion_limit,
)
from strokegraph.run import build_backends

N_PROMPTS = 20


def geneval_prompts(n: int = N_PROMPTS) -> list[str]:
    """``n`` prompts spread evenly over GenEval's 553 (every tag is represented)."""
    text = resources.files("strokegraph.data.geneval").joinpath("evaluation_metadata.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    return [rows[i * len(rows) // n]["prompt"] for i in range(n)]


def _merge(state: RunState, update: dict) -> RunState:
    update = {**update, "trajectory": [*state.trajectory, *update.get("trajectory", [])]}
    return state.model_copy(update=update)


def plain_loop(state: RunState, context: RunContext) -> RunState:
    runtime = Runtime(context=context, stream_writer=lambda event: None)
    state = _merge(state, nodes.planner(state, runtime))
    step = {"drafter": nodes.drafter, "critic": nodes.critic, "refiner": nodes.refiner}
    node = "drafter"
    while node != END:
        state = _merge(state, step[node](state, runtime))
        node = after_critic(state) if node == "critic" else "critic"
    return state


def graph_runner(checkpointer: str) -> Callable[[RunState, RunContext], RunState]:
    def run(state: RunState, context: RunContext) -> RunState:
        config = {
            "configurable": {"thread_id": context.run_dir.name},
            "recursion_limit": recursion_limit(state.budget.max_rounds),
        }
        if checkpointer == "sqlite":
            with closing(sqlite3.connect(context.run_dir / "checkpoints.sqlite", check_same_thread=False)) as conn:
                return _stream(build_graph(SqliteSaver(conn, serde=checkpoint_serializer())), state, config, context)
        saver = InMemorySaver(serde=checkpoint_serializer()) if checkpointer == "memory" else None
        return _stream(build_graph(saver), state, config, context)

    return run


def _stream(graph, state: RunState, config: dict, context: RunContext) -> RunState:
    last = None
    for mode, data in graph.stream(state, config, context=context, stream_mode=["custom", "values"]):
        if mode == "values":
            last = data
    return RunState.model_validate(last)


VARIANTS: dict[str, Callable[[RunState, RunContext], RunState]] = {
    "(a) plain loop": plain_loop,
    "(b) graph, no checkpointer": graph_runner("none"),
    "(c) graph + InMemorySaver": graph_runner("memory"),
    "(d) graph + SqliteSaver (file)": graph_runner("sqlite"),
}


def one_pass(run, prompts: list[str], root: Path) -> tuple[float, list[RunState]]:
    """Seconds spent driving all prompts (backends built and files set up outside the clock)."""
    backends, ids = build_backends()
    elapsed, states = 0.0, []
    for i, prompt in enumerate(prompts):
        run_dir = root / f"p{i:02d}"
        run_dir.mkdir(parents=True)
        context = RunContext(**backends, run_dir=run_dir, seed=i, ids=ids)
        t0 = time.perf_counter()
        states.append(run(RunState(prompt=prompt), context))
        elapsed += time.perf_counter() - t0
    return elapsed, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="passes over the prompts per variant (default 5)")
    args = parser.parse_args()
    prompts = geneval_prompts()

    scratch = Path(tempfile.mkdtemp(prefix="strokegraph-overhead-"))
    try:
        for name, run in VARIANTS.items():  # warm-up: imports, caches, the codebook
            one_pass(run, prompts[:2], scratch / "warmup" / name[1])
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        images: dict[str, list[list[str]]] = {}
        stages: Counter[str] = Counter()
        for r in range(args.repeats):
            for name, run in VARIANTS.items():  # interleaved, so drift hits every variant alike
                elapsed, states = one_pass(run, prompts, scratch / f"r{r}" / name[1])
                times[name].append(elapsed)
                images[name] = [[e.image.sha256 for e in s.trajectory if e.image] for s in states]
                if r == 0 and name == "(a) plain loop":
                    stages = Counter(e.stage for s in states for e in s.trajectory)
            shutil.rmtree(scratch / f"r{r}")
        t0 = time.perf_counter()
        for _ in range(20):
            build_graph()
        compile_ms = (time.perf_counter() - t0) / 20 * 1e3
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    transitions = sum(stages.values())
    plain = statistics.median(times["(a) plain loop"])
    print(f"overhead: {len(prompts)} GenEval prompts, offline sketch world (builtin:*, default faults), seeds 0..19")
    print(f"medians of {args.repeats} passes per variant, interleaved")
    print(f"node transitions per pass: {transitions} ({', '.join(f'{k} {v}' for k, v in stages.items())})")
    print(f"build_graph(): {compile_ms:.2f} ms, once per prompt in (b)-(d) as in generate; included below")
    print()
    print(f"{'':<32}{'':>9}{'':>11}{'overhead ms/transition':>24}")
    print(f"{'variant':<32}{'total s':>9}{'ms/prompt':>11}{'all':>8}{'w/o build_graph':>16}{'x plain':>9}")
    for name, values in times.items():
        total = statistics.median(values)
        overhead = (total - plain) / transitions * 1e3
        compiled = 0.0 if name.startswith("(a)") else compile_ms * len(prompts) / transitions
        print(
            f"{name:<32}{total:>9.3f}{total / len(prompts) * 1e3:>11.1f}{overhead:>8.2f}"
            f"{overhead - compiled:>16.2f}{total / plain:>9.2f}"
        )
    same = all(v == images["(a) plain loop"] for v in images.values())
    print()
    print(f"same images in every variant: {'yes' if same else 'NO'}")
    print(f"spread (max/min of the passes): {', '.join(f'{n[:3]} {max(v) / min(v):.2f}' for n, v in times.items())}")


if __name__ == "__main__":
    main()
