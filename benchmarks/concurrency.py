"""How well runs overlap: 1, 4 and 16 prompts at once through ``agenerate`` on API backends.

The planner and critic are ``openai:gpt-4.1-mini`` and the drafter and refiner ``openai:gpt-image-1.5``,
all pointed at the loopback OpenAI-compatible server of :mod:`strokegraph.testing.openai_server`, which
serves requests concurrently and waits ``--latency`` seconds before every reply. Its replies fit any
prompt: the planner gets the rules planner's reading, the critic finds nothing wrong, images are
blank 64 px PNGs (the backends resize them to the 256 px canvas). Every prompt is a GenEval
two-object prompt, so every run makes the same 5 requests: plan, then draft and critique twice.
One run therefore waits at least 5 x latency; if runs overlapped perfectly, any number of them
would take that long too.

The backends are synchronous, so LangGraph runs them in the event loop's default executor, whose
thread count (Python's default: min(32, CPUs + 4)) caps how many requests are in flight at once;
``--threads`` sets a larger executor on the loop.

    python benchmarks/concurrency.py [--latency 0.2] [--counts 1 4 16] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from strokegraph import agenerate, registry
from strokegraph.bench import geneval_prompts
from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies

CHAT, IMAGE = "openai:gpt-4.1-mini", "openai:gpt-image-1.5"
REQUESTS_PER_RUN = 5


def two_object_prompts() -> list[str]:
    return [p.prompt for p in geneval_prompts() if p.tag == "two_object"]


IDS = {"planner": CHAT, "critic": CHAT, "drafter": IMAGE, "refiner": IMAGE}


def api_settings(server: FakeOpenAI) -> dict[str, dict]:
    connection = {"base_url": server.url, "api_key": "sk-benchmark", "max_retries": 0, "timeout": 60.0}
    settings = {role: dict(connection) for role in registry.ROLES}
    settings["drafter"]["size"] = settings["refiner"]["size"] = "256x256"
    return settings


async def run_all(prompts: list[str], server: FakeOpenAI, root: Path, threads: int | None) -> float:
    if threads is not None:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=threads))
    settings = api_settings(server)
    t0 = time.perf_counter()
    results = await asyncio.gather(
        *(agenerate(p, out=root / str(i), **IDS, settings=settings) for i, p in enumerate(prompts))
    )
    elapsed = time.perf_counter() - t0
    failed = [r.run_dir for r in results if not r.passed]
    if failed:
        raise SystemExit(f"runs did not pass: {failed}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to every reply (default 0.2)")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4, 16], help="prompts at once (default 1 4 16)")
    parser.add_argument("--threads", type=int, default=None, help="default-executor threads (default: Python's)")
    args = parser.parse_args()
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        os.environ.pop(name, None)

    prompts = two_object_prompts()
    threads = args.threads or min(32, (os.cpu_count() or 1) + 4)
    floor = REQUESTS_PER_RUN * args.latency
    scratch = Path(tempfile.mkdtemp(prefix="strokegraph-concurrency-"))
    rows = []
    try:
        with FakeOpenAI(latency=args.latency, fallback=any_prompt_replies()) as server:
            asyncio.run(run_all(prompts[:1], server, scratch / "warmup", args.threads))  # imports, first clients
            t0 = time.perf_counter()
            for _ in range(5):
                registry.build_backends(IDS, api_settings(server))
            build_ms = (time.perf_counter() - t0) / 5 * 1e3
            for n in args.counts:
                before = len(server.requests)
                elapsed = asyncio.run(run_all(prompts[:n], server, scratch / f"n{n}", args.threads))
                rows.append((n, len(server.requests) - before, elapsed))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"concurrency: agenerate on openai:* backends, loopback server with {args.latency * 1e3:.0f} ms per request")
    print(f"{REQUESTS_PER_RUN} requests per run, so one run waits >= {floor:.2f} s; executor threads: {threads}")
    print(f"CPUs: {os.cpu_count()}; building one run's 4 backends (4 OpenAI clients, CPU-bound): {build_ms:.0f} ms")
    print()
    one = rows[0][2] if rows[0][0] == 1 else None
    print(f"{'prompts':>7}{'requests':>10}{'total s':>9}{'x 1 prompt':>12}{'s per prompt':>14}{'x floor':>9}")
    for n, requests, elapsed in rows:
        ratio = f"{elapsed / one:.2f}" if one else "-"
        print(f"{n:>7}{requests:>10}{elapsed:>9.2f}{ratio:>12}{elapsed / n:>14.3f}{elapsed / floor:>9.2f}")


if __name__ == "__main__":
    main()
