"""How well runs overlap: 1, 4 and 16 prompts at once through ``agenerate`` on API backends.

The planner and critic are ``openai:gpt-4.1-mini`` and the drafter and refiner ``openai:gpt-image-1.5``,
all pointed at the loopback OpenAI-compatible server of :mod:`strokegraph.testing.openai_server`, which
serves requests concurrently and waits ``--latency`` seconds before every reply. Its replies fit any
prompt: the planner gets the rules planner's reading, the critic finds nothing wrong, images are
blank 64 px PNGs (the backends resize them to the 256 px canvas). Every prompt is a GenEval
two-object prompt, so every run makes the same 5 requests: plan, then draft and critique twice.
One run therefore waits at least 5 x latency; if runs overlapped perfectly, any number of them
would take that long too.

Under ``agenerate`` the nodes are coroutines: the OpenAI backends await the async client and the
LangChain ones ``ainvoke``, so a request in flight holds no thread. What is left for the event
loop's default executor (image decoding, backends without async methods) is small; ``--threads N``
sets an executor of that size on the loop first (``agenerate`` otherwise gives one of
``strokegraph.app.runner.IO_THREADS``), to show that the requests do not need threads.
The OpenAI clients are shared across roles and runs (one per endpoint, key and limits); it prints
how many the runs made, and what building one run's backends costs with and without them made.

The LangChain variant (``--chat langchain``, or ``both``, the default, which runs it second) puts
the planner and critic on ``langchain:openai:gpt-4.1-mini`` instead: langchain-openai's ChatOpenAI
against the same server, with the same drafter and refiner. It needs the ``langchain-openai`` extra.

    python benchmarks/concurrency.py [--latency 0.2] [--counts 1 4 16] [--threads N] [--chat both]
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

import httpx2

from strokegraph import agenerate, registry
from strokegraph.bench import geneval_prompts
from strokegraph.errors import UsageError
from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies

CHAT, IMAGE = "openai:gpt-4.1-mini", "openai:gpt-image-1.5"
CHATS = {"openai": CHAT, "langchain": "langchain:openai:gpt-4.1-mini"}
REQUESTS_PER_RUN = 5
# langchain: ids take no key setting (keys come from the provider's variable); the server ignores it.
BENCHMARK_KEY = "sk-benchmark"


def two_object_prompts() -> list[str]:
    return [p.prompt for p in geneval_prompts() if p.tag == "two_object"]


def ids(chat: str) -> dict[str, str]:
    return {"planner": CHATS[chat], "critic": CHATS[chat], "drafter": IMAGE, "refiner": IMAGE}


def api_settings(server: FakeOpenAI, chat: str) -> dict[str, dict]:
    connection = {"base_url": server.url, "max_retries": 0, "timeout": 60.0}
    settings = {role: {**connection, "api_key": BENCHMARK_KEY} for role in registry.ROLES}
    if chat == "langchain":
        settings["planner"] = dict(connection)
        settings["critic"] = dict(connection)
    settings["drafter"]["size"] = settings["refiner"]["size"] = "256x256"
    return settings


async def run_all(
    prompts: list[str], server: FakeOpenAI, root: Path, threads: int | None, chat: str
) -> tuple[float, int]:
    """Seconds for the runs at once, and the threads of the executor they ran in."""
    loop = asyncio.get_running_loop()
    if threads is not None:
        loop.set_default_executor(ThreadPoolExecutor(max_workers=threads))
    settings = api_settings(server, chat)
    t0 = time.perf_counter()
    results = await asyncio.gather(
        *(agenerate(p, out=root / str(i), **ids(chat), settings=settings) for i, p in enumerate(prompts))
    )
    elapsed = time.perf_counter() - t0
    failed = [r.run_dir for r in results if not r.passed]
    if failed:
        raise SystemExit(f"runs did not pass: {failed}")
    # asyncio has no getter for the default executor; CPython keeps it here.
    return elapsed, loop._default_executor._max_workers


_REAL_INIT = httpx2.Client.__init__


def count_http_clients() -> list[int]:
    """A list that gets an entry for every HTTP client made from now on (each OpenAI client makes one)."""
    made: list[int] = []

    def counting(self, *args, **kwargs):
        made.append(1)
        _REAL_INIT(self, *args, **kwargs)

    httpx2.Client.__init__ = counting
    return made


def uncount_http_clients() -> None:
    httpx2.Client.__init__ = _REAL_INIT


def build_ms(server: FakeOpenAI, chat: str, *, shared: bool, repeats: int = 5) -> float:
    """Milliseconds to build one run's four backends, with the OpenAI clients shared or made anew."""
    registry.build_backends(ids(chat), api_settings(server, chat))
    t0 = time.perf_counter()
    for _ in range(repeats):
        if not shared:
            registry.clear_cache()
        registry.build_backends(ids(chat), api_settings(server, chat))
    return (time.perf_counter() - t0) / repeats * 1e3


def measure(args: argparse.Namespace, prompts: list[str], chat: str) -> None:
    """Run every count of prompts at once on the ``chat`` planner and critic, and print the table."""
    floor = REQUESTS_PER_RUN * args.latency
    scratch = Path(tempfile.mkdtemp(prefix="strokegraph-concurrency-"))
    rows = []
    try:
        with FakeOpenAI(latency=args.latency, fallback=any_prompt_replies()) as server:
            asyncio.run(run_all(prompts[:1], server, scratch / "warmup", args.threads, chat))  # imports
            cold_ms, warm_ms = build_ms(server, chat, shared=False), build_ms(server, chat, shared=True)
            registry.clear_cache()
            clients = count_http_clients()
            for n in args.counts:
                before = len(server.requests)
                elapsed, threads = asyncio.run(run_all(prompts[:n], server, scratch / f"n{n}", args.threads, chat))
                rows.append((n, len(server.requests) - before, elapsed))
            uncount_http_clients()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"concurrency: agenerate with planner and critic {CHATS[chat]}, drafter and refiner {IMAGE},")
    print(f"loopback server with {args.latency * 1e3:.0f} ms per request")
    print(f"{REQUESTS_PER_RUN} requests per run, so one run waits >= {floor:.2f} s; executor threads: {threads}")
    print(
        f"CPUs: {os.cpu_count()}; building one run's 4 backends: {cold_ms:.0f} ms making their OpenAI clients, "
        f"{warm_ms:.1f} ms sharing them"
    )
    print(f"HTTP clients made by the {sum(args.counts)} runs below: {len(clients)}")
    print()
    one = rows[0][2] if rows[0][0] == 1 else None
    print(f"{'prompts':>7}{'requests':>10}{'total s':>9}{'x 1 prompt':>12}{'s per prompt':>14}{'x floor':>9}")
    for n, requests, elapsed in rows:
        ratio = f"{elapsed / one:.2f}" if one else "-"
        print(f"{n:>7}{requests:>10}{elapsed:>9.2f}{ratio:>12}{elapsed / n:>14.3f}{elapsed / floor:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to every reply (default 0.2)")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4, 16], help="prompts at once (default 1 4 16)")
    parser.add_argument("--threads", type=int, default=None, help="default-executor threads (default: Python's)")
    parser.add_argument(
        "--chat",
        choices=("openai", "langchain", "both"),
        default="both",
        help="planner and critic: openai:, langchain:openai: or one after the other (default both)",
    )
    args = parser.parse_args()
    prompts = two_object_prompts()
    if args.latency < 0:
        parser.error(f"--latency must be 0 or more seconds, got {args.latency}")
    if not all(1 <= n <= len(prompts) for n in args.counts):
        parser.error(f"--counts must each be 1 to {len(prompts)} (GenEval's two-object prompts), got {args.counts}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    chats = ["openai", "langchain"] if args.chat == "both" else [args.chat]
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        os.environ.pop(name, None)
    if "langchain" in chats:
        try:
            registry.check("planner", CHATS["langchain"])
        except UsageError as exc:
            parser.error(str(exc))
        os.environ["OPENAI_API_KEY"] = BENCHMARK_KEY
    for i, chat in enumerate(chats):
        if i:
            print()
        measure(args, prompts, chat)


if __name__ == "__main__":
    main()
