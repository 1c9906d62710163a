"""What the browser UI adds to a run: the same prompts through the CLI and through the UI, timed per run.

Each of ``--prompts`` GenEval prompts (spread over the set) runs on the offline sketch world
(``builtin:*``, seed = prompt index) two ways, interleaved (CLI, UI, CLI, UI, ...):

- **CLI**: ``strokegraph generate PROMPT --out DIR -q``, called in this process (``main([...])``), so
  that Python's start-up is outside the clock as it is for the UI, which is already serving;
- **UI**: a ``gradio_client`` call of the app's ``/run`` (``strokegraph ui`` launched in this process
  on a loopback port), from the request to the last streamed update (the verdict). It includes what
  only the UI does: the run's thread and queue, the page's updates as each stage ends, drawing the
  violation boxes, writing each picture for the page once, and the HTTP and server-sent events of
  Gradio's queue (and gradio_client's download of each picture it is sent).

A warm-up run of each comes first, off the clock. It prints per way the median and the lowest and
highest time per run, then the UI's median overhead per run, in ms and as a share of the CLI's run.

    python benchmarks/ui.py [--prompts 10]   (needs the ui extra and gradio_client)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import socket
import statistics
import tempfile
import time
from pathlib import Path

from gradio_client import Client

from strokegraph.app import ui
from strokegraph.app.cli import main
from strokegraph.bench import geneval_prompts

ROLES = ("builtin:rules", "builtin:sketch", "builtin:pixels", "builtin:sketch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_run(prompt: str, seed: int, out: Path) -> float:
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        main(["generate", prompt, "--out", str(out), "--seed", str(seed), "-q"])
    return time.perf_counter() - t0


def ui_run(client: Client, prompt: str, seed: int) -> float:
    t0 = time.perf_counter()
    job = client.submit(prompt, *ROLES, seed, 12, False, api_name="/run")
    for _ in job:
        pass
    status = job.outputs()[-1][0]
    elapsed = time.perf_counter() - t0
    if not status.startswith("Done:"):
        raise SystemExit(f"the UI's run did not finish: {status}")
    return elapsed


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=10, help="GenEval prompts, spread over the set (10)")
    args = parser.parse_args()
    every = geneval_prompts()
    prompts = [every[i * len(every) // args.prompts].prompt for i in range(args.prompts)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        app = ui.launch(root / "ui-runs", port=free_port(), block=False, quiet=True)
        try:
            # As a browser does, fetch no picture here: the page shows each from its URL, once.
            client = Client(app.local_url, verbose=False, download_files=False)
            cli_run(prompts[0], 0, root / "warm")
            ui_run(client, prompts[0], 0)
            cli_times, ui_times = [], []
            for i, prompt in enumerate(prompts):
                cli_times.append(cli_run(prompt, i, root / f"cli-{i}"))
                ui_times.append(ui_run(client, prompt, i))
        finally:
            app.close()
    print(f"{len(prompts)} GenEval prompts on builtin:*, one run each way, interleaved")
    for name, times in (("CLI", cli_times), ("UI", ui_times)):
        print(
            f"  {name:<4} median {statistics.median(times) * 1000:7.0f} ms per run "
            f"(lowest {min(times) * 1000:.0f}, highest {max(times) * 1000:.0f})"
        )
    extra = statistics.median(u - c for u, c in zip(ui_times, cli_times, strict=True))
    share = extra / statistics.median(cli_times)
    print(f"  the UI adds {extra * 1000:.0f} ms per run (median of the pairs), {share:.0%} of a CLI run")


if __name__ == "__main__":
    main_benchmark()
