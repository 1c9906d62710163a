"""How long a ``strokegraph`` process takes to start, against LangGraph's own import.

Each round runs, in fresh interpreters and in turn (so that a busy moment of this shared machine
touches every variant alike): ``import langgraph.graph`` (the floor: the loop is a LangGraph graph),
``import strokegraph.app.runner`` (what ``generate`` imports before it works), ``strokegraph
--version`` (the CLI's own start) and a whole offline ``strokegraph generate`` run. It prints the
median wall time of each over the rounds and what strokegraph adds to LangGraph's import.

    python benchmarks/startup.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "two red apples to the left of a blue cup"


def _variants() -> dict[str, list[str]]:
    python = [sys.executable]
    return {
        "import langgraph.graph": [*python, "-c", "import langgraph.graph"],
        "import strokegraph.app.runner": [*python, "-c", "import strokegraph.app.runner"],
        "strokegraph --version": [*python, "-m", "strokegraph", "--version"],
        "strokegraph generate (offline)": [*python, "-m", "strokegraph", "generate", PROMPT, "-q", "--out"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds of every variant (10)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        variants = _variants()
        for r in range(args.rounds):
            for name, command in variants.items():
                if command[-1] == "--out":
                    command = [*command, str(Path(scratch) / f"run{r}")]
                started = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                times.setdefault(name, []).append(time.perf_counter() - started)
    median = {name: statistics.median(t) for name, t in times.items()}
    floor = median["import langgraph.graph"]
    print(f"median of {args.rounds} rounds, each a fresh interpreter ({sys.version.split()[0]}):")
    for name, seconds in median.items():
        extra = "" if name == "import langgraph.graph" else f"  ({(seconds - floor) * 1000:+.0f} ms against LangGraph)"
        print(f"  {name:<32} {seconds * 1000:7.0f} ms{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
