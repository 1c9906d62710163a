"""The ``strokegraph`` command line."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import shlex
import signal
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

from strokegraph import __version__
from strokegraph._redact import redact_url
from strokegraph._text import check_utf8, printable
from strokegraph.errors import InvalidAnswer, RunError, StrokegraphError, UsageError
from strokegraph.registry import DEFAULT_IDS, ROLES, capabilities

__all__ = [
    "EXIT_BUDGET",
    "EXIT_RUN_ERROR",
    "EXIT_STOPPED",
    "EXIT_TERMINATED",
    "EXIT_UNJUDGED",
    "EXIT_USAGE",
    "main",
    "verdict",
]

EXIT_RUN_ERROR = 1
EXIT_USAGE = 2
#: The budget ran out with violations left; the image, trajectory and report are still written.
EXIT_BUDGET = 3
#: Everything the critic judged passed, but parts of the prompt were not judged (listed on stderr).
EXIT_UNJUDGED = 4
#: A person reviewing the run (``--review``) stopped it.
EXIT_STOPPED = 5


def safe(text: object) -> str:
    """``text`` as it may be printed on a terminal: escape sequences, control and bidi characters removed."""
    return printable(text)


def _line(exc: BaseException) -> str:
    """An error's message as one safe line, without the credentials of any URL in it."""
    return " ".join(safe(redact_url(exc)).split())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, as for every other usage error
        self.exit(EXIT_USAGE, f"strokegraph: error: {message} (see '{self.prog} --help')\n")


def _whole(text: str) -> int:
    """``text`` as an int, or the one-line reason argparse shows (it would name this function)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _number(text: str) -> float:
    """``text`` as a float, or the one-line reason argparse shows."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _from_0(text: str, high: int) -> int:
    """``text`` as a whole number from 0 to ``high``, or the one-line reason argparse shows."""
    value = _whole(text)
    if not 0 <= value <= high:
        raise argparse.ArgumentTypeError(f"must be from 0 to {high}, got {value}")
    return value


def _non_negative(text: str) -> int:
    from strokegraph.app.runner import MAX_COUNT

    return _from_0(text, MAX_COUNT)


def _seed(text: str) -> int:
    from strokegraph.app.runner import MAX_SEED

    return _from_0(text, MAX_SEED)


def _positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _gpus(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 64.0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be from 0 to 64, got {text}")
    return value


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"must be I/N with 0 <= I < N, e.g. 0/2, got {text!r}")
    return int(index), int(count)


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0 / 0.3:  # the largest default rate is 0.3, so this keeps every rate <= 1
        raise argparse.ArgumentTypeError(f"must be between 0 and 3.33, got {value}")
    return value


def _add_scale_out(parser: argparse.ArgumentParser) -> None:
    """The flags that say where checkpoints and images go (see README, "Scaling out")."""
    parser.add_argument(
        "--checkpoint",
        metavar="WHERE",
        help="'sqlite' (a file in the run directory, the default: checkpoints.journal) or a postgres:// URL",
    )
    parser.add_argument(
        "--store",
        metavar="WHERE",
        help="artifact store every image also goes to: s3://BUCKET[/PREFIX] or a directory (default: none)",
    )
    parser.add_argument(
        "--store-endpoint",
        metavar="URL",
        help="endpoint of an S3-compatible service (MinIO, R2...; default: $AWS_ENDPOINT_URL, else AWS)",
    )


def _add_fan_out(parser: argparse.ArgumentParser, shard_help: str, timeout_help: str) -> None:
    """The flags that spread a batch (bench, data) over Ray workers or machines, and its time limit."""
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="draw on Ray workers: 'local' starts Ray here, else a running cluster's address (extra: ray)",
    )
    parser.add_argument(
        "--workers", type=_positive, default=1, metavar="N", help="Ray workers, 1 CPU each (1; needs --ray)"
    )
    parser.add_argument(
        "--gpus-per-worker", type=_gpus, default=0, metavar="G", help="GPUs each Ray worker holds (0; needs --ray)"
    )
    parser.add_argument("--shard", type=_shard, metavar="I/N", help=shard_help)
    parser.add_argument("--timeout-per-image", type=_number, metavar="S", help=timeout_help)


def _add_backends(parser: argparse.ArgumentParser) -> None:
    """Where the backends come from: a flag per role, then a preset and a config file under them."""
    for role in ROLES:
        parser.add_argument(f"--{role}", metavar="ID", help=f"{role} backend id (default: {DEFAULT_IDS[role]})")
    _add_preset(parser)
    parser.add_argument("--config", metavar="FILE", help="TOML file with per-role ids and settings; flags override it")


def _add_preset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        metavar="NAME",
        help="a shipped set of the four roles ('strokegraph presets' lists them); --config and flags override it",
    )


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also show what model libraries print of their own (warnings, loading bars)",
    )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="strokegraph", description="Process-driven image generation: plan, draft, critique, refine.")
    p.add_argument("--version", action="version", version=f"strokegraph {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p.set_defaults(commands=sub.choices)  # main() has the command's parser report arguments it does not take

    g = sub.add_parser("generate", help="generate an image for PROMPT through the loop")
    g.add_argument("prompt", help="what to draw, e.g. 'two red apples to the left of a blue cup'")
    g.add_argument("--out", help="run directory (default: runs/<timestamp>-<slug>/); must not exist or be empty")
    _add_backends(g)
    g.add_argument("--max-rounds", type=_non_negative, metavar="N", help="refine rounds in all (12)")
    g.add_argument("--rounds-per-step", type=_non_negative, metavar="N", help="refine rounds per plan step (3)")
    g.add_argument("--seed", type=_seed, help="seed for every backend (0)")
    g.add_argument(
        "--single-pass", action="store_true", default=None, help="one step with the whole prompt, no refinement"
    )
    g.add_argument(
        "--faults",
        type=_fraction,
        metavar="SCALE",
        help="sketch world only: multiply its default fault rates (0 draws exactly; default 1)",
    )
    g.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    _add_verbose(g)
    g.add_argument(
        "--review", action="store_true", help="review the plan and every critique on stdin (accept, edit, add, stop)"
    )
    g.add_argument(
        "--strict",
        action="store_true",
        help="refuse a prompt with parts no critic here judges, right after planning (exit 2)",
    )
    _add_scale_out(g)

    r = sub.add_parser("resume", help="continue a run that stopped (failed, interrupted, or out of budget)")
    r.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="the run directory of a 'strokegraph generate' run")
    r.add_argument(
        "--thread",
        metavar="ID",
        help="resume this thread (its run.json's thread_id) on this machine, from --checkpoint and --store only",
    )
    r.add_argument("--out", metavar="DIR", help="with --thread: the new run directory (default: runs/<thread id>)")
    r.add_argument(
        "--max-rounds", type=_non_negative, metavar="N", help="refine rounds in all, raised to refine further"
    )
    for role in ROLES:
        r.add_argument(f"--{role}", metavar="ID", help=f"{role} backend id, to confirm or replace the recorded one")
    _add_preset(r)
    r.add_argument(
        "--config", metavar="FILE", help="TOML file naming the model-backed backends (its role tables are read)"
    )
    r.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    _add_verbose(r)
    _add_scale_out(r)

    sub.add_parser("backends", help="list every backend id, strokegraph's own and installed plugins', by role")

    ru = sub.add_parser("runs", help="list the threads of a shared checkpoint database and where each stopped")
    ru.add_argument("--checkpoint", metavar="URL", required=True, help="the postgres:// URL the runs were given")
    ru.add_argument("--limit", type=_positive, default=100, metavar="N", help="the N latest threads (100)")
    ru.add_argument("--json", action="store_true", help="print JSON (default: one line per thread)")

    pl = sub.add_parser("plan", help="print the scene graph and plan for PROMPT")
    pl.add_argument("prompt")
    pl.add_argument("--planner", metavar="ID", default="builtin:rules", help="planner backend id (builtin:rules)")
    pl.add_argument("--json", action="store_true", help="print JSON (default: readable text)")
    pl.add_argument("--single-pass", action="store_true", help="the one-step plan of single-pass mode")
    _add_verbose(pl)
    b = sub.add_parser("bench", help="run GenEval or T2I-CompBench in single-pass mode and through the loop")
    b.add_argument("benchmark", choices=("geneval", "t2i-compbench"))
    b.add_argument("--limit", type=_positive, metavar="N", help="only the first N prompts of each tag or category")
    b.add_argument(
        "--images-per-prompt",
        type=_positive,
        default=1,
        metavar="K",
        help="images per prompt, seeds SEED..SEED+K-1 (1)",
    )
    _add_backends(b)
    b.add_argument(
        "--judge",
        metavar="ID",
        help="critic id whose detector judges (builtin:pixels; for a drafter of natural images, the critic if it "
        "is a detector)",
    )
    b.add_argument("--out", metavar="DIR", help="results and runs (default: runs/bench-BENCHMARK/); reruns resume")
    b.add_argument("--seed", type=_seed, metavar="N", help="seed of each prompt's first image (0)")
    b.add_argument("--keep-runs", action="store_true", help="keep every run's files, not only records and samples")
    _add_fan_out(
        b,
        shard_help="draw only the images whose place in the run is I modulo N; a rerun without it draws the rest",
        timeout_help="record an image whose drawing and judging takes over S seconds as failed, and move on (none)",
    )
    b.add_argument(
        "--retry-errors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a rerun draws again the images that failed (the default); --no-retry-errors keeps their records",
    )
    b.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    _add_verbose(b)

    ex = sub.add_parser("export", help="turn finished runs into an interleaved training dataset (extra: data)")
    ex.add_argument("runs", nargs="+", metavar="RUN_OR_DIR", help="run directories, or folders of runs")
    _add_export_options(ex)

    da = sub.add_parser("data", help="draw a prompt set through the loop, keep the runs and export them")
    da.add_argument(
        "prompts", metavar="PROMPTS", help="a file (a prompt a line, or JSON lines), or geneval, t2i-compbench"
    )
    da.add_argument("--seeds", type=_positive, default=1, metavar="K", help="seeds per prompt (1)")
    da.add_argument("--seed", type=_seed, metavar="N", help="first seed of a prompt that names none (0)")
    da.add_argument(
        "--limit", type=_positive, metavar="N", help="only the first N prompts (of each tag, for a built-in set)"
    )
    _add_backends(da)
    _add_fan_out(
        da,
        shard_help="draw only the runs whose place in the set is I modulo N, export nothing; a rerun "
        "without it draws the rest and exports all",
        timeout_help="count a run that takes over S seconds as failed, and move on (none)",
    )
    da.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    _add_export_options(da, out_help="runs (DIR/runs, resumed on a rerun) and the dataset (DIR/dataset)")

    sub.add_parser("presets", help="list the presets: coherent sets of the four roles (--preset NAME)")

    ui = sub.add_parser("ui", help="a browser UI: run prompts, review them, browse and compare runs (extra: ui)")
    ui.add_argument("--runs", metavar="DIR", default="runs", help="where runs go, and the runs it shows (runs)")
    ui.add_argument("--config", metavar="FILE", help="TOML file: default backends and settings, allowed ids")
    ui.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1; any other needs --auth)")
    ui.add_argument("--port", type=_positive, default=7860, help="port to serve on (7860)")
    ui.add_argument("--auth", metavar="USER:PASS", help="require this login (default: $STROKEGRAPH_UI_AUTH)")
    ui.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")

    cb = sub.add_parser("codebook", help="draw the sketch world's icon codebook, labelled, to an image")
    cb.add_argument("nouns", nargs="*", help="nouns to draw (default: every noun with a fixed code)")
    cb.add_argument("--out", default="codebook.png", help="image file to write (codebook.png)")
    return p


class _Display:
    """The run's progress on stderr: one line per finished stage (printed once it is saved).

    On a terminal, a live area below the lines shows each stage from its start: a spinner while it
    works (an API call in flight), and a bar with the time left while a backend samples. Elsewhere
    (a pipe, a log file) only the lines are written. Call :meth:`close` before reading from the
    terminal or when the run returns; the live area starts again with the next stage.
    """

    def __init__(self, stream) -> None:
        self.stream = stream
        self.started = time.perf_counter()
        self.live = stream.isatty()
        self._bars = None  # rich's Progress, made when the first stage starts on a terminal
        self._tasks: dict[tuple, Any] = {}

    def __call__(self, event: dict) -> None:
        kind = event.get("kind")
        if kind == "thread":  # a run other machines can resume: say how, before it works
            self._line(
                f"thread {safe(event['thread_id'])}: resume it on any machine with: strokegraph resume --thread "
                f"{safe(event['thread_id'])} --out DIR {safe(event['where'])}"
            )
            return
        if kind == "progress":  # a sampling step ("step" counts denoising steps) of the stage at work
            if self._bars is not None:
                for (stage, *_), task in reversed(self._tasks.items()):
                    if stage == event["stage"]:
                        self._bars.update(task, total=event["total"], completed=event["step"], refresh=True)
                        break
            return
        if kind not in ("start", "end"):
            return
        where = "plan" if event["step"] < 0 else f"step {event['step'] + 1}"
        if event.get("round"):
            where += f" round {event['round']}"
        key = (event["stage"], event["step"], event.get("round", 0))
        if kind == "end":
            self._finish(key)
            elapsed = time.perf_counter() - self.started
            self._line(f"[{elapsed:6.1f}s] {event['stage']:<8} {where:<16} {safe(event['message'])}")
        elif self.live and key not in self._tasks:
            self._tasks[key] = self._open().add_task(f"{event['stage']} {where}", total=None)

    def _open(self):
        if self._bars is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            console = Console(file=self.stream, force_terminal=True)
            self._bars = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._bars.start()
        return self._bars

    def _finish(self, key: tuple) -> None:
        # Ends arrive once saved, after the next stage may have started: drop any task of that stage.
        task = self._tasks.pop(key, None)
        if task is not None and self._bars is not None:
            self._bars.remove_task(task)

    def _line(self, text: str) -> None:
        if self._bars is not None:
            self._bars.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
            self._tasks.clear()


def _display(quiet: bool) -> _Display | None:
    return None if quiet else _Display(sys.stderr)


def _role_choices(args, config) -> tuple[dict, dict]:
    """Each role's id and settings from the flags, the config file and the preset (flags win, then the file).

    A preset's settings for a role go with its id: naming another id for that role drops them.
    """
    from strokegraph.config import RunConfig
    from strokegraph.presets import load_preset

    preset = load_preset(args.preset) if args.preset else RunConfig()
    ids, settings = {}, {}
    for role in ROLES:
        shipped, given = preset.role(role), config.role(role)
        ids[role] = getattr(args, role) or given.id or shipped.id
        settings[role] = {**(shipped.settings if ids[role] == shipped.id else {}), **given.settings}
    return ids, settings


def _config(args):
    """The ``--config`` file's settings, or none."""
    from strokegraph.config import RunConfig, load_config

    return load_config(args.config) if args.config else RunConfig()


def _chosen(ids: dict, settings: dict) -> dict:
    """The roles named and their settings, as keywords of generate and resume."""
    return {"settings": {role: s for role, s in settings.items() if s}, **{r: i for r, i in ids.items() if i}}


def _batch(args, config) -> tuple[dict, dict, Any]:
    """A batch's (bench, data) roles, their settings and the budget of each run, its flags checked."""
    from strokegraph.graph import Budget

    ids, settings = _role_choices(args, config)
    if args.timeout_per_image is not None and not args.timeout_per_image > 0:  # also refuses NaN
        raise UsageError(f"--timeout-per-image must be a number of seconds over 0, got {args.timeout_per_image}")
    limits = ("max_rounds", "rounds_per_step", "max_sampling_steps")
    return ids, settings, Budget(**{k: v for k in limits if (v := getattr(config, k)) is not None})


def _generate(args) -> int:
    from strokegraph.app.runner import generate
    from strokegraph.graph import Budget

    config = _config(args)
    ids, settings = _role_choices(args, config)
    if args.faults is not None:
        for role in ("drafter", "refiner"):
            if ids[role] and capabilities(role, ids[role]).draws != "sketch":
                raise UsageError(f"--faults applies to the sketch world only, not to {role} {ids[role]!r}")
            settings[role]["fault_scale"] = args.faults

    def pick(flag, key, default):
        return flag if flag is not None else getattr(config, key) if getattr(config, key) is not None else default

    budget = Budget(
        max_rounds=pick(args.max_rounds, "max_rounds", 12),
        rounds_per_step=pick(args.rounds_per_step, "rounds_per_step", 3),
        max_sampling_steps=config.max_sampling_steps,
    )
    chosen = {**_chosen(ids, settings), **_where(args)}
    display = _display(args.quiet)
    try:
        result = generate(
            args.prompt,
            out=args.out,
            **chosen,
            seed=pick(args.seed, "seed", 0),
            budget=budget,
            single_pass=pick(args.single_pass, "single_pass", False),
            on_progress=display,
            review=args.review,
            strict=args.strict,
        )
        result = _review_loop(result, display, chosen)
    finally:
        if display is not None:
            display.close()
    return _outcome(result)


def _resume(args) -> int:
    from strokegraph.app.runner import resume

    if args.thread is None and args.run_dir is None:
        raise UsageError("resume needs RUN_DIR, or --thread ID (with --checkpoint and --store) to resume elsewhere")
    if args.thread is not None and args.run_dir is not None:
        raise UsageError("give RUN_DIR or --thread with --out, not both")
    if args.thread is None and args.out is not None:
        raise UsageError("--out applies to --thread only; a run resumes in its own RUN_DIR")
    chosen = {**_chosen(*_role_choices(args, _config(args))), **_where(args)}
    run_dir = args.run_dir
    if args.thread is not None:
        from strokegraph.artifacts import check_thread

        run_dir = args.out or f"runs/{check_thread(args.thread)}"
    display = _display(args.quiet)
    try:
        result = resume(
            run_dir,
            max_rounds=args.max_rounds,
            thread=args.thread,
            **chosen,
            confirm=_confirm if sys.stdin.isatty() and sys.stderr.isatty() else None,
            on_progress=display,
        )
        result = _review_loop(result, display, {**chosen, "trust_record": True})
    finally:
        if display is not None:
            display.close()
    return _outcome(result)


def _where(args) -> dict:
    """The checkpointer and the (opened) store the flags name: generate's and resume's ``checkpoint``/``store``."""
    from strokegraph.artifacts import open_store

    return {"checkpoint": args.checkpoint, "store": open_store(args.store, endpoint_url=args.store_endpoint)}


def _confirm(named: str) -> bool:
    """Ask on the terminal whether to use the backends a run's record names."""
    sys.stderr.write(f"this run's record names {safe(named)}.\nload and call them (your key goes to them)? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


_REVIEW_PROMPT = "[a]ccept, [e]dit (JSON), a[d]d violation (JSON), [s]top? "


def _show_review(payload: dict, stream) -> None:
    """The plan's steps, or the critique's violations, numbered (model text made safe to print)."""
    if payload["kind"] == "plan":
        stream.write("review: plan\n")
        for i, step in enumerate(payload["plan"]["steps"], 1):
            ids = safe(", ".join(step["entity_ids"]))
            stream.write(f"  step {i}: {safe(step['instruction'])} [{ids}]\n          {safe(step['description'])}\n")
        stream.write('  edit with {"steps": [{"instruction": ..., "description": ..., "entity_ids": [...]}, ...]}\n')
        return
    critique = payload["critique"]
    where = f"step {payload['step'] + 1} round {payload['round']} ({safe(payload['image'])})"
    stream.write(f"review: critique of {where}\n")
    for i, v in enumerate(critique["violations"], 1):
        stream.write(f"  {i}. {safe(v['kind'])}: {safe(v['message'])}\n")
    if not critique["violations"]:
        stream.write("  no violations\n")
    for part in critique.get("unjudged") or ():
        stream.write(f"  not judged: {safe(part)}\n")
    stream.write(
        '  edit with a list of violations ([] = passing); add with one {"kind": ..., "expected": ..., '
        '"observed": ..., "message": ...}\n'
    )


def _read_answer(payload: dict) -> dict:
    """One answer from stdin; end of input stops the run."""
    while True:
        sys.stderr.write(_REVIEW_PROMPT)
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            sys.stderr.write("\n")
            return {"action": "stop"}
        if not sys.stdin.isatty():  # no terminal echoed the answer: show it, so the transcript reads as one
            sys.stderr.write(safe(line.rstrip("\n")) + "\n")
        choice, _, rest = line.strip().partition(" ")
        choice = choice.lower()
        if choice in ("a", "accept"):
            return {"action": "accept"}
        if choice in ("s", "stop"):
            return {"action": "stop"}
        if choice in ("e", "edit", "d", "add"):
            text = rest.strip() or sys.stdin.readline().strip()
            try:
                value = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                sys.stderr.write(f"not JSON: {safe(exc)}\n")
                continue
            if choice in ("d", "add"):
                return {"action": "add", "violation": value}
            return {"action": "edit", "plan" if payload["kind"] == "plan" else "violations": value}
        sys.stderr.write(f"unknown choice {safe(line.strip())!r}\n")


def _review_loop(result, display: _Display | None, chosen: dict):
    """While the run waits on a review: show it, ask on stdin, and go on with the answer.

    ``chosen`` holds the backends this command was given; the run goes on with them.
    """
    from strokegraph.app.runner import resume

    # A role given settings but no id ran on its default backend: name it, as resume needs an id
    # for settings (--faults alone sets the sketch world's settings).
    chosen = {**{role: DEFAULT_IDS[role] for role in chosen.get("settings") or {}}, **chosen}
    while result.interrupt is not None:
        if display is not None:
            display.close()  # the terminal is the person's while they answer
        _show_review(result.interrupt, sys.stderr)
        while True:
            answer = _read_answer(result.interrupt)
            try:
                result = resume(
                    result.run_dir,
                    answer=answer,
                    **chosen,
                    on_progress=display,
                )
                break
            except InvalidAnswer as exc:  # only the answer was wrong: say why once, and ask again
                sys.stderr.write(f"{_line(exc)}\n")
            # Any other error cannot be mended by another answer: it ends the command (one line, exit 2).
    return result


def verdict(result) -> tuple[str, int]:
    """A finished run's verdict in words, and the exit code that says it (the UI shows the same words)."""
    left = len(result.critique.violations) if result.critique else 0
    if result.stopped:
        return "stopped in review", EXIT_STOPPED
    if not result.passed:
        return f"{left} violation(s) left after {result.rounds} refine round(s)", EXIT_BUDGET
    if result.unjudged:
        return f"passed what was judged ({len(result.unjudged)} part(s) of the prompt not judged)", EXIT_UNJUDGED
    return "passed", 0


def _outcome(result) -> int:
    """Print the verdict and where the image and report are; the exit code says the verdict."""
    words, code = verdict(result)
    if code == EXIT_UNJUDGED:
        for part in result.unjudged:
            sys.stderr.write(f"not judged: {safe(part)}\n")
    print(f"{words}: {safe(result.final_image or f'nothing drawn yet, in {result.run_dir}')}")
    print(f"report: {safe(result.run_dir / 'report.html')}")
    if result.thread_id is not None:
        print(f"thread: {safe(result.thread_id)}")
    return code


def _ui(args) -> int:
    from importlib.util import find_spec

    if find_spec("gradio") is None:
        raise UsageError("the browser UI needs gradio (not installed); run: pip install 'strokegraph[ui]'")
    from strokegraph.app import ui

    given = args.auth or os.environ.get(ui.AUTH_ENV)
    auth = ui.parse_auth(given) if given else None
    ui.check_launch(args.host, auth)
    config = _config(args)
    # Gradio's own start-up lines speak of launch() arguments; say where to go in this command's words.
    try:
        app = ui.launch(
            args.runs,
            config=config,
            host=args.host,
            port=args.port,
            auth=auth,
            share=args.share,
            block=False,
            quiet=True,
        )
    except OSError:  # Gradio's "Cannot find empty port in range", or an address this machine does not have
        raise UsageError(
            f"cannot serve on {args.host}:{args.port} (in use, or not an address here); give another --port"
        ) from None
    print(f"strokegraph ui: {safe(str(app.local_url))} (runs in {safe(str(args.runs))}); Ctrl-C stops it", flush=True)
    if getattr(app, "share_url", None):
        print(f"public link (anyone with it can run prompts): {safe(str(app.share_url))}", flush=True)
    app.block_thread()
    return 0


def _backends(args) -> int:
    from strokegraph import registry

    rows = [("role", "id", "package", "extra", "what it does")]
    for r in registry.registered():
        caps = r.capabilities
        does = [
            "offline" if caps.offline else "loads a model or calls an API",
            *([f"draws {caps.draws}"] if caps.draws else []),
            *([f"reads {' and '.join(sorted(caps.reads))}"] if caps.reads else []),
            *(["detector"] if caps.detector else []),
        ]
        extra = f"strokegraph[{r.extra}]" if r.extra else ""
        rows += [(r.role, i, r.package, extra, ", ".join(does)) for i in r.ids]
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    for row in rows:
        print("  ".join(safe(v).ljust(w) for v, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return 0


def _runs(args) -> int:
    from strokegraph.app.threads import list_threads

    threads = list_threads(args.checkpoint, limit=args.limit)
    if args.json:
        print(json.dumps([t.__dict__ for t in threads], indent=2))
        return 0
    for t in threads:
        print(f"{safe(t.thread_id)}  {safe(t.updated[:19])}  {safe(t.status)}  {safe(t.prompt[:60])}")
    if not threads:
        print("no threads in this database", file=sys.stderr)
    return 0


def _plan(args) -> int:
    from strokegraph import registry
    from strokegraph._text import check_prompt
    from strokegraph.agents.planner import single_pass_plan

    planner = registry.build("planner", args.planner)
    scene, plan = planner.plan(check_prompt(args.prompt))
    if args.single_pass:
        plan = single_pass_plan(scene)
    unjudged = scene.unjudged()
    if args.json:
        print(json.dumps({"scene": scene.model_dump(), "plan": plan.model_dump(), "unjudged": unjudged}, indent=2))
        return 0
    print(f"prompt: {safe(scene.prompt)}")
    for e in scene.entities:
        print(f"  {safe(e.id)}: {safe(e.phrase())}")
    for r in scene.relations:
        print(f"  {safe(r.subject)} {r.predicate} {safe(r.object)}")
    for c in scene.constraints:
        print(f"  (free text) {safe(c)}")
    for i, s in enumerate(plan.steps):
        print(f"step {i + 1}: <ins>{safe(s.instruction)}</ins>\n        <des>{safe(s.description)}</des>")
    for part in unjudged:  # as generate lists them after a run (exit 4; refused up front by --strict)
        print(f"not judged: {safe(part)}")
    return 0


def _add_export_options(parser: argparse.ArgumentParser, out_help: str = "the dataset folder (new or empty)") -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help=out_help)
    parser.add_argument("--format", default="obelics", metavar="FORMAT", help="bagel, obelics or trl (obelics)")
    parser.add_argument(
        "--kinds",
        type=lambda text: [k.strip() for k in text.split(",") if k.strip()],
        metavar="K1,K2",
        help="multiturn, conflict, alignment (all; trl: conflict,alignment)",
    )


def _export_summary(result) -> str:
    rows = sum(result.rows.values())
    configs = ", ".join(sorted(result.files))
    return (
        f"{rows} row(s) from {result.runs} run(s) ({len(result.skipped)} skipped, {result.duplicates} duplicate(s)) "
        f"in {configs}: {result.out}"
    )


def _export(args) -> int:
    from strokegraph.app.export import export_runs, print_skip

    result = export_runs(args.runs, args.out, args.format, args.kinds, on_skip=print_skip)
    print(_export_summary(result))
    return 0


def _data(args) -> int:
    from strokegraph.app.data import draw_data

    config = _config(args)
    ids, settings, budget = _batch(args, config)

    def progress(p: dict) -> None:
        print(f"{p['done']}/{p['total']} runs, {p['resumed']} resumed, {p['failed']} failed", file=sys.stderr)

    started = time.perf_counter()
    result = draw_data(
        args.prompts,
        args.out,
        seeds=args.seeds,
        seed=args.seed if args.seed is not None else config.seed or 0,
        limit=args.limit,
        fmt=args.format,
        kinds=args.kinds,
        backends=ids,
        settings={role: s for role, s in settings.items() if s},
        budget=budget,
        single_pass=bool(config.single_pass),
        on_progress=None if args.quiet else progress,
        ray=args.ray,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        shard=args.shard,
        timeout_per_run=args.timeout_per_image,
    )
    where = f" on {len(result.nodes)} Ray node(s)" if result.nodes else ""
    shard = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    print(
        f"{result.drawn} run(s) drawn{where}, {result.resumed} resumed, {result.failed} failed{shard}, "
        f"in {time.perf_counter() - started:.1f} s"
    )
    if result.export is not None:
        print(_export_summary(result.export))
    elif args.shard:
        print(f"no dataset written for a shard: rerun without --shard over {safe(result.out)} to export every run")
    else:
        print("no dataset written: no run has finished")
    if result.failures:
        for f in result.failures:
            print(f"strokegraph: failed: {safe(f.prompt)!r} seed {f.seed}: {safe(f.error)}", file=sys.stderr)
        print(
            f"strokegraph: {result.failed} run(s) failed (not exported); rerun with the same --out to draw them again",
            file=sys.stderr,
        )
        return EXIT_RUN_ERROR
    return 0


def _bench_progress(stream):
    """An in-place counter on a terminal; elsewhere a line every 5% of the images. Each shows the images
    done (of every worker), the error records so far and the time left at the pace of the images drawn."""
    started = time.perf_counter()
    live = stream.isatty()

    def show(event: dict) -> None:
        done, total = event["done"], event["total"]
        if not live and done % max(1, total // 20) and done != total:
            return
        elapsed = time.perf_counter() - started
        resumed = f", {event['resumed']} resumed" if event["resumed"] else ""
        errors = event["errors"]
        line = f"[{elapsed:6.1f}s] {done}/{total} images ({event['mode']}{resumed})"
        line += f", {errors} error{'s' if errors != 1 else ''}"
        if (drawn := done - event["resumed"]) and done < total:
            left = round(elapsed / drawn * (total - done))
            line += f", ~{f'{left // 60}m{left % 60:02d}s' if left >= 60 else f'{left}s'} left"
        stream.write(f"\r{line}\x1b[K" + ("\n" if done == total else "") if live else line + "\n")
        stream.flush()

    return show


def _bench(args) -> int:
    from strokegraph.bench import format_table, run_bench

    config = _config(args)
    if config.single_pass is not None:
        raise UsageError("bench runs both modes; remove single_pass from the config")
    ids, settings, budget = _batch(args, config)
    critic_id = ids["critic"] or DEFAULT_IDS["critic"]
    judge = args.judge
    if judge is None:
        # The pixel detector reads only the sketch world; a natural-image drafter is judged by the
        # critic when it is a detector (marked self-judged), and anything else must be named.
        drafter_id = ids["drafter"] or DEFAULT_IDS["drafter"]
        natural = capabilities("drafter", drafter_id).draws == "natural"
        judge = critic_id if natural and capabilities("critic", critic_id).detector else DEFAULT_IDS["critic"]
    started = time.perf_counter()
    result = run_bench(
        args.benchmark,
        out=args.out,
        limit=args.limit,
        images_per_prompt=args.images_per_prompt,
        **ids,
        settings={role: s for role, s in settings.items() if s},
        judge=judge,
        judge_settings=settings["critic"] if judge == critic_id else None,
        seed=args.seed if args.seed is not None else config.seed or 0,
        budget=budget,
        keep_runs=args.keep_runs,
        on_progress=None if args.quiet else _bench_progress(sys.stderr),
        ray=args.ray,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        shard=args.shard,
        retry_errors=args.retry_errors,
        timeout_per_image=args.timeout_per_image,
    )
    print(format_table(result.summary), end="")
    where = f" on {len(result.nodes)} Ray node(s)" if result.nodes else ""
    shard = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    print(
        f"{result.generated} image(s) drawn{where}, {result.resumed} resumed{shard}, in "
        f"{time.perf_counter() - started:.1f} s; "
        f"results: {result.out / 'results.md'}, {result.out / 'results.json'}, {result.out / 'results.html'}"
    )
    errors = result.summary["errors"]["count"]
    if errors:
        images = sum(m["images"] for m in result.summary["modes"].values())
        again = "" if args.retry_errors else " and without --no-retry-errors"
        print(
            f"strokegraph: {errors} of {images} image(s) failed (scored as incorrect); listed in "
            f"{safe(result.out / 'results.md')}; rerun with the same --out{again} to draw them again",
            file=sys.stderr,
        )
        return EXIT_RUN_ERROR
    return 0


def _presets(args) -> int:
    from strokegraph.presets import describe_preset, preset_names

    names = preset_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {describe_preset(name)}")
    print("use one with --preset NAME (generate, resume, bench); --config and flags override its roles")
    return 0


def _codebook(args) -> int:
    from strokegraph.tools.sketch.codebook import render_codebook

    try:
        render_codebook(args.nouns or None).save(args.out)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot write codebook to {args.out!r}: {exc}") from exc
    print(args.out)
    return 0


#: Stopped by SIGTERM (what docker stop, systemd and Kubernetes send): 128 + 15, as the shell reports it.
EXIT_TERMINATED = 128 + signal.SIGTERM


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, as Ctrl-C raises KeyboardInterrupt: the run writes its files."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    # Only the main thread may set a handler; main() called elsewhere (a test's thread) keeps the default.
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    args, unknown = _parser().parse_known_args(argv)
    if unknown:  # reported by the command's parser, so that the error points at its --help
        args.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    # PIL warns (two lines of stderr) about any image over 89 MP it opens. A reply image is checked
    # against strokegraph's own, lower cap right after PIL reads its header, and refused in one line
    # that says so; the warning would only come first. (By message, so that PIL is not imported here.)
    warnings.filterwarnings("ignore", r"Image size \(\d+ pixels\) exceeds limit", RuntimeWarning, r"PIL\.Image")
    # A checkpoint holding a type LangGraph does not revive makes it log a warning (two lines of
    # stderr) before strokegraph's own one-line error about that checkpoint. By message, as above.
    logging.getLogger("langgraph.checkpoint.serde.jsonplus").addFilter(_quiet_blocked)
    commands = {
        "generate": _quiet_libraries(_generate),
        "resume": _quiet_libraries(_resume),
        "runs": _runs,
        "backends": _backends,
        "plan": _quiet_libraries(_plan),
        "bench": _quiet_libraries(_bench),
        "presets": _presets,
        "codebook": _codebook,
        "export": _export,
        "data": _quiet_libraries(_data),
        "ui": _quiet_libraries(_ui),
    }
    try:
        # Every path is checked before any is used: a store's folder is made before the run's.
        for name in ("out", "run_dir", "config", "store", "checkpoint", "store_endpoint", "runs"):
            if isinstance(value := getattr(args, name, None), str):
                check_utf8(f"--{name.replace('_', '-')}" if name != "run_dir" else "RUN_DIR", value)
        return commands[args.command](args)
    except UsageError as exc:
        print(f"strokegraph: error: {_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (RunError, StrokegraphError) as exc:
        print(f"strokegraph: run failed: {_line(exc)}{_resume_hint(exc, args)}", file=sys.stderr)
        return EXIT_RUN_ERROR
    except _database_errors() as exc:  # the checkpoint database could not be written (a full disk, a lost server)
        print(f"strokegraph: run failed: checkpoints: {_line(exc)}{_resume_hint(exc, args)}", file=sys.stderr)
        return EXIT_RUN_ERROR
    except BrokenPipeError:  # `strokegraph presets | head -1`: the reader left; say nothing, as other tools do
        # Python would complain again flushing stdout at exit: point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:  # a full disk, a file that vanished: the system's reason, in one line
        what = f"{exc.strerror or exc}" + (f": {exc.filename!r}" if exc.filename else "")
        print(f"strokegraph: run failed: {safe(redact_url(what))}{_resume_hint(exc, args)}", file=sys.stderr)
        return EXIT_RUN_ERROR
    except KeyboardInterrupt as exc:
        where = safe(getattr(exc, "run_dir", None) or "its run directory")
        if isinstance(exc, _Terminated):
            print(
                f"strokegraph: terminated; what the run made so far is in {where}{_resume_hint(exc, args)}",
                file=sys.stderr,
            )
            return EXIT_TERMINATED
        print(
            f"strokegraph: interrupted; what the run made so far is in {where}{_resume_hint(exc, args)}",
            file=sys.stderr,
        )
        return 130


# The model libraries a backend imports print of their own on stderr: CLIP's "Token indices sequence
# length ... (82 > 77)" and "truncated because CLIP can only handle sequences up to 77 tokens" for
# every long step description, "requires torchvision" notes, loading bars. Nothing there is for the
# person running the command (strokegraph says what it did in its progress lines), so commands hide
# it unless -v. Through the libraries' own controls, without importing them here: the variables they
# read when a backend imports them, and, for one already imported in this process, its logging
# module. The libraries' Python warnings are ignored by module, strokegraph's own still show.
_QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",  # diffusers' "Loading pipeline components" bar has no switch of its own
}
_LOGGING_MODULES = ("transformers.utils.logging", "diffusers.utils.logging")
_WARNING_MODULES = r"(transformers|diffusers|huggingface_hub|accelerate)(\.|$)"


def _quiet_libraries(command):
    """``command``, run with the model libraries' own warnings and bars hidden unless ``args.verbose``."""

    def run(args) -> int:
        if getattr(args, "verbose", False):
            return command(args)
        with contextlib.ExitStack() as undo, warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_WARNING_MODULES)
            for name, value in _QUIET_ENVIRONMENT.items():
                if name not in os.environ:  # a setting of the person's own stays
                    os.environ[name] = value
                    undo.callback(os.environ.pop, name, None)
            for name in _LOGGING_MODULES:
                if name in sys.modules:
                    logs = importlib.import_module(name)
                    undo.callback(logs.set_verbosity, logs.get_verbosity())
                    logs.set_verbosity_error()
                    if logs.is_progress_bar_enabled():
                        undo.callback(logs.enable_progress_bar)
                        logs.disable_progress_bar()
            return command(args)

    return run


def _quiet_blocked(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Blocked deserialization")


def _database_errors() -> tuple[type[BaseException], ...]:
    """SQLite's errors, and psycopg's once a postgres:// checkpoint has loaded it."""
    psycopg = sys.modules.get("psycopg")
    return (sqlite3.Error, psycopg.Error) if psycopg is not None else (sqlite3.Error,)


def _resume_hint(exc: BaseException, args: argparse.Namespace) -> str:
    """How to continue the run ``exc`` stopped, when it stopped one that can be resumed.

    The command given (``args``) names again what only it held: its config file (a ``base_url``
    may live there alone) and the store's endpoint.
    """
    run_dir = getattr(exc, "run_dir", None)  # set by generate and resume once the run directory exists
    if run_dir is None or not (run_dir / "run.json").is_file():
        return ""
    try:
        from strokegraph.schema import read_plain

        # run.json as resume reads it: a plain file (no link, FIFO or device), at most 1 MiB.
        record = json.loads(read_plain(run_dir / "run.json", 1 << 20))
        backends = record["backends"]
        # resume takes no model-backed backend on run.json's word: the hint names them again.
        named = {role: i for role, i in backends.items() if capabilities(role, i).offline is False}
        again = "".join(f" --{role} {shlex.quote(safe(i))}" for role, i in named.items())
        # Nor a database or a store: the hint names them for the person to give again (never a password).
        if record.get("checkpoint") == "postgres":
            again += " --checkpoint POSTGRES_URL"
        if isinstance(record.get("store"), str):
            again += f" --store {shlex.quote(safe(redact_url(record['store'])))}"
            if getattr(args, "store_endpoint", None):
                again += f" --store-endpoint {shlex.quote(safe(redact_url(args.store_endpoint)))}"
        if getattr(args, "config", None):
            again = f" --config {shlex.quote(safe(args.config))}{again}"
        if getattr(args, "preset", None):
            again = f" --preset {shlex.quote(safe(args.preset))}{again}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UsageError):
        again = ""
    return f"; resume with: strokegraph resume {shlex.quote(safe(run_dir))}{again}"


if __name__ == "__main__":
    sys.exit(main())
