"""Export throughput and memory: runs exported per second, and peak RSS for 100 and 1,000 runs.

Draws GenEval prompts on the offline sketch world (two seeds each, with truth sidecars) into a
cache folder once, then exports the first 100 and the first N (default 1,000) of them, each in a
fresh process, and reports the runs per second and the process's peak resident set size
(``ru_maxrss``) after the imports and after the export. The export streams, so the peak must not
grow with the number of runs.

    python benchmarks/export.py [--runs 1000] [--format obelics] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
from strokegraph.app.export import export_runs
from strokegraph.app.formats import features
features(sys.argv[3])  # every library the export uses, imported before the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
runs = json.loads(open(sys.argv[1]).read())
t0 = time.perf_counter()
result = export_runs(runs, sys.argv[2], sys.argv[3])
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"runs": result.runs, "rows": sum(result.rows.values()), "wall_s": wall,
                  "baseline_mib": base, "peak_mib": peak}))
"""


def draw(cache: Path, n: int) -> list[str]:
    """The first ``n`` runs of GenEval x seeds 0, 1 under ``cache``, drawn where missing."""
    from strokegraph.app.runner import generate
    from strokegraph.bench.harness import geneval_prompts
    from strokegraph.tools.sketch.truth import record_truth

    jobs = [(p.prompt, seed, f"{p.index:03d}-{seed}") for seed in (0, 1) for p in geneval_prompts()][:n]
    started, drawn = time.perf_counter(), 0
    for prompt, seed, name in jobs:
        run_dir = cache / name
        if not (run_dir / "images").is_dir() or not list(run_dir.glob("images/*.truth.json")):
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            generate(prompt, out=run_dir, seed=seed)
            record_truth(run_dir)
            drawn += 1
    if drawn:
        print(f"drew {drawn} run(s) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return [str(cache / name) for _, _, name in jobs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--format", default="obelics", choices=("bagel", "obelics", "trl"))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "strokegraph-export-bench")
    args = parser.parse_args()
    runs = draw(args.cache, args.runs)
    with tempfile.TemporaryDirectory(prefix="strokegraph-export-") as scratch:
        for n in sorted({min(100, len(runs)), len(runs)}):
            listing = Path(scratch) / f"runs-{n}.json"
            listing.write_text(json.dumps(runs[:n]))
            out = Path(scratch) / f"out-{n}"
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, str(listing), str(out), args.format],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(done.stdout.strip().splitlines()[-1])
            size = sum(p.stat().st_size for p in out.rglob("*.parquet")) / 2**20
            print(
                f"{args.format}: {r['runs']} runs -> {r['rows']} rows ({size:.1f} MiB of parquet) "
                f"in {r['wall_s']:.1f} s, "
                f"{r['runs'] / r['wall_s']:.1f} runs/s; peak RSS {r['peak_mib']:.0f} MiB "
                f"({r['baseline_mib']:.0f} MiB after imports, +{r['peak_mib'] - r['baseline_mib']:.0f} MiB)"
            )


if __name__ == "__main__":
    main()
