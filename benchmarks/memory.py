"""Peak memory of one ``generate`` run on the offline default (the sketch world, 512 px).

Two measures, which answer different questions:

- ``ru_maxrss`` (``resource.getrusage``): the process's peak resident set size, everything the OS
  gave it (the interpreter, imported libraries, C buffers such as PIL's pixels, SQLite's cache).
  It never goes down, so it is read after the imports and after a first (cold) run, without
  tracemalloc, whose bookkeeping would inflate it.
- ``tracemalloc`` peak: the most memory Python's allocators held at once during a second (warm)
  run, counted from its start. It sees Python objects and numpy arrays, not PIL's image buffers
  or SQLite's own memory.

    python benchmarks/memory.py [--prompt "..."]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from strokegraph.app.runner import generate
from strokegraph.errors import UsageError
from strokegraph.grammar import parse
from strokegraph.registry import build_backends

MiB = 1024 * 1024


def maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default="a photo of a brown dining table and a white suitcase")
    args = parser.parse_args()
    try:
        parse(args.prompt)
    except UsageError as exc:  # the prompt the run would refuse: say so before measuring anything
        parser.error(str(exc))

    build_backends()  # import every default backend, so the baseline holds the libraries
    baseline = maxrss_bytes()
    with tempfile.TemporaryDirectory(prefix="strokegraph-memory-") as scratch:
        t0 = time.perf_counter()
        cold = generate(args.prompt, out=Path(scratch) / "cold")
        cold_s = time.perf_counter() - t0
        after_cold = maxrss_bytes()

        tracemalloc.start()
        t0 = time.perf_counter()
        warm = generate(args.prompt, out=Path(scratch) / "warm")
        warm_s = time.perf_counter() - t0
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        on_disk = sum(p.stat().st_size for p in warm.run_dir.rglob("*") if p.is_file())
        images = {(e.image.path, e.image.width, e.image.height) for e in warm.trajectory if e.image}
        assert cold.final_image.read_bytes() == warm.final_image.read_bytes()

    print(f"memory: one generate run, offline default backends (builtin:*), prompt {args.prompt!r}")
    print(
        f"run: {len(warm.trajectory)} node transitions, {len(images)} images "
        f"({', '.join(sorted({f'{w}x{h}' for _, w, h in images}))}), "
        f"{on_disk / MiB:.2f} MiB written; cold {cold_s:.2f} s, warm {warm_s:.2f} s (under tracemalloc)"
    )
    print()
    print("ru_maxrss (peak resident set size of the whole process, as the OS counts it):")
    print(f"  after imports          {baseline / MiB:8.1f} MiB")
    print(f"  after the first run    {after_cold / MiB:8.1f} MiB  (+{(after_cold - baseline) / MiB:.1f} MiB)")
    print("tracemalloc (Python-allocated memory during the second run, from its start):")
    print(f"  peak                   {peak / MiB:8.1f} MiB")
    print(f"  still held at the end  {current / MiB:8.1f} MiB  (the returned Result and caches)")


if __name__ == "__main__":
    main()
