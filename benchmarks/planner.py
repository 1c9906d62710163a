"""How long the rules planner takes per prompt length: it should grow linearly.

Prompts are DPG-Bench-like sentences repeated to 1, 2, 4, 8 and 16 KB. The planner refuses prompts
over ``MAX_PROMPT_CHARS`` (2000 characters), so sizes past it time the parser (``parse``) and the
plan (``plan_scene``) directly: the figures show that neither is quadratic.

    python benchmarks/planner.py [--repeat N]
"""

from __future__ import annotations

import argparse
import time

from strokegraph._text import MAX_PROMPT_CHARS
from strokegraph.grammar import RulesPlanner, parse, plan_scene

SENTENCES = (
    "A red apple sits to the left of a blue cup on a wooden table, and two cats sleep under a green chair. ",
    "An astronaut riding a horse next to a small dog, with no cars on the street behind them. ",
    "A boy holding an umbrella stands beside a yellow bus; three birds fly above a bench in the park. ",
    "A bowl of fruit, a laptop and a vase of flowers are in front of a large window at sunset. ",
)


def prompt_of(size: int) -> str:
    text = "".join(SENTENCES)
    return (text * (size // len(text) + 1))[:size]


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per size; the best is shown (default 5)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    print(f"{'size':>8} {'entities':>8} {'parse ms':>9} {'plan ms':>8} {'total ms':>9} {'us/char':>8}  via")
    for size in (500, 1000, 2000, 4096, 8192, 16384, 32768):
        prompt = prompt_of(size)
        scene = parse(prompt)
        if size <= MAX_PROMPT_CHARS:
            total = best_of(args.repeat, lambda p=prompt: RulesPlanner().plan(p))
            via = "RulesPlanner.plan"
        else:
            total = best_of(args.repeat, lambda p=prompt: plan_scene(parse(p)))
            via = "parse + plan_scene (over the cap)"
        t_parse = best_of(args.repeat, lambda p=prompt: parse(p))
        t_plan = best_of(args.repeat, lambda s=scene: plan_scene(s))
        print(
            f"{size:>8} {len(scene.entities):>8} {t_parse * 1e3:>9.2f} {t_plan * 1e3:>8.2f} {total * 1e3:>9.2f} "
            f"{total * 1e6 / size:>8.2f}  {via}"
        )


if __name__ == "__main__":
    main()
