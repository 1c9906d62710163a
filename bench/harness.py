"""Benchmarks: GenEval and T2I-CompBench prompts, drawn in single-pass mode and through the loop, then judged.

:func:`run_bench` draws every prompt ``images_per_prompt`` times in each mode (image ``k`` with seed
``seed + k``), each run in ``DIR/<mode>/<tag>/<prompt index>-<image index>/``, judges each final image
by GenEval's rules (:mod:`strokegraph.bench.scoring`) with the judge's detector, and writes a record per
image (``record.json`` in its run directory) and, for the whole set, ``results.json``,
``results.md`` and ``results.html`` in ``DIR``. An image whose record exists is not drawn again, so
an interrupted benchmark resumes where it stopped; an error record (the run failed, timed out, or
its Ray workers kept dying) is drawn again unless ``retry_errors`` is False. Error records are
counted and listed in the results, and scored as incorrect images. Unless ``keep_runs``, each run
directory keeps only its record, and the final image of image 0 of the first :data:`SAMPLES` prompts
of each tag, which the HTML page shows when the modes differ on the prompt.

A run is planned (every image, less those with a record), executed (in this process, or on Ray
actors: :mod:`strokegraph.bench.executor`) and written by this process alone, record last.

T2I-CompBench's prompts have no GenEval metadata: each is parsed by the rules planner and judged
only when its parse is expressible in GenEval's clauses (counts, colours, the four 2D relations; no
free text, no other adjectives, no noun twice); the others are counted as skipped, with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Unpack

from strokegraph import registry
from strokegraph.app.pages import render
from strokegraph.bench.executor import (
    Drawn,
    Job,
    Keep,
    Setup,
    Worker,
    check_fan_out,
    execute_ray,
    execute_serial,
    ray_session,
)
from strokegraph.bench.scoring import check_judge, clauses_for, inexpressible, summarize
from strokegraph.errors import RunError, UsageError
from strokegraph.graph import Budget
from strokegraph.registry import RoleChoices

__all__ = [
    "BENCHMARKS",
    "COMPBENCH_CATEGORIES",
    "MODES",
    "SAMPLES",
    "BenchPrompt",
    "BenchResult",
    "SkippedPrompt",
    "format_table",
    "geneval_prompts",
    "results_page",
    "run_bench",
    "t2i_compbench_prompts",
]

Benchmark = Literal["geneval", "t2i-compbench"]
BENCHMARKS: tuple[Benchmark, ...] = ("geneval", "t2i-compbench")
Mode = Literal["single_pass", "loop"]
MODES: tuple[Mode, ...] = ("single_pass", "loop")
#: T2I-CompBench's categories that GenEval's clauses can express, in report order.
COMPBENCH_CATEGORIES = ("spatial", "color", "shape", "numeracy")
#: Prompts per tag whose image 0 keeps its final image (the HTML page shows it where the modes differ), per mode.
SAMPLES = 3

_MODE_NAMES = {"single_pass": "single pass", "loop": "loop"}
_PNG = b"\x89PNG\r\n\x1a\n"
_RECORD = "record.json"
_MANIFEST = "bench.json"


@dataclass(frozen=True)
class BenchPrompt:
    """One prompt to draw and the GenEval clauses its images are judged by."""

    tag: str
    """GenEval's tag, or T2I-CompBench's category."""
    index: int
    """Line number (from 0) in the benchmark's prompt file; for T2I-CompBench, in its category's file."""
    prompt: str
    metadata: dict[str, Any]


#: Why GenEval's rules cannot judge a T2I-CompBench prompt.
SkipReason = Literal["unparsed", "free text", "other attribute", "repeated noun"]


@dataclass(frozen=True)
class SkippedPrompt:
    """A T2I-CompBench prompt that GenEval's rules cannot judge, and why."""

    tag: str
    index: int
    prompt: str
    reason: SkipReason
    detail: str


@dataclass(frozen=True)
class BenchResult:
    """What :func:`run_bench` did: the summary it wrote to ``results.json`` and how many images it drew."""

    out: Path
    summary: dict[str, Any]
    generated: int
    resumed: int
    nodes: dict[str, int] = field(default_factory=dict)
    """Images drawn per Ray node id; empty when none was drawn on Ray."""


def _first(items: list, limit: int | None) -> list:
    """The first ``limit`` items of each tag, in file order."""
    if limit is None:
        return items
    seen: dict[str, int] = {}
    out = []
    for item in items:
        seen[item.tag] = seen.get(item.tag, 0) + 1
        if seen[item.tag] <= limit:
            out.append(item)
    return out


def geneval_prompts(limit: int | None = None) -> list[BenchPrompt]:
    """GenEval's 553 prompts with their metadata, or the first ``limit`` of each tag."""
    text = resources.files("strokegraph.bench.data.geneval").joinpath("evaluation_metadata.jsonl").read_text("utf-8")
    items = []
    for i, line in enumerate(text.splitlines()):
        meta = json.loads(line)
        items.append(BenchPrompt(tag=meta["tag"], index=i, prompt=meta["prompt"], metadata=meta))
    return _first(items, limit)


def t2i_compbench_prompts(limit: int | None = None) -> tuple[list[BenchPrompt], list[SkippedPrompt]]:
    """The judged and the skipped prompts of T2I-CompBench's spatial, color, shape and numeracy ``_val`` sets.

    ``limit`` takes the first prompts of each category, judged and skipped together. Numeracy prompts
    are judged as GenEval's counting prompts (tag ``counting``: threshold 0.9, exact counts).
    """
    from strokegraph.grammar import parse

    data = resources.files("strokegraph.bench.data.t2i_compbench")
    lines = []
    for category in COMPBENCH_CATEGORIES:
        text = data.joinpath(f"{category}_val.txt").read_text("utf-8")
        prompts = [(category, i, line.strip()) for i, line in enumerate(text.splitlines()) if line.strip()]
        lines += prompts[:limit]

    judged: list[BenchPrompt] = []
    skipped: list[SkippedPrompt] = []
    for category, i, prompt in lines:
        skip: tuple[SkipReason, str] | None = None
        try:
            scene = parse(prompt)
        except UsageError as exc:
            skip = ("unparsed", str(exc))
        else:
            nouns = [e.noun for e in scene.entities]
            others = [f"{a} {e.noun}" for e in scene.entities for a in e.attributes]
            if free := inexpressible(scene):  # free text, and relations GenEval has no rule for
                skip = ("free text", "; ".join(free))
            elif others:
                skip = ("other attribute", ", ".join(others))
            elif len(set(nouns)) < len(nouns):
                skip = ("repeated noun", ", ".join(sorted({n for n in nouns if nouns.count(n) > 1})))
        if skip is None:
            meta = clauses_for(scene, "counting" if category == "numeracy" else category)
            judged.append(BenchPrompt(tag=category, index=i, prompt=prompt, metadata=meta))
        else:
            skipped.append(SkippedPrompt(tag=category, index=i, prompt=prompt, reason=skip[0], detail=skip[1]))
    return judged, skipped


def _check_out(out: Path, manifest: dict[str, Any]) -> None:
    """Check that ``out`` is new, empty, or holds a benchmark run with the same settings (to resume)."""
    path = out / _MANIFEST
    if path.is_file():
        old = json.loads(path.read_text("utf-8"))
        changed = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
        if changed:
            raise UsageError(
                f"{str(out)!r} holds a benchmark run with other {', '.join(changed)}; "
                "choose another --out to keep both, or delete it"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{str(out)!r} exists and is not a benchmark directory; choose another --out")


def run_bench(
    benchmark: Benchmark,
    *,
    out: str | os.PathLike | None = None,
    limit: int | None = None,
    images_per_prompt: int = 1,
    settings: dict[str, dict[str, Any]] | None = None,
    judge: str = "builtin:pixels",
    judge_settings: dict[str, Any] | None = None,
    seed: int = 0,
    budget: Budget | None = None,
    keep_runs: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    ray: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0,
    shard: tuple[int, int] | None = None,
    retry_errors: bool = True,
    timeout_per_image: float | None = None,
    **roles: Unpack[RoleChoices],
) -> BenchResult:
    """Draw ``benchmark``'s prompts in both modes, judge every image and write the results to ``out``.

    Each role takes a backend id or object, as in :func:`~strokegraph.app.runner.generate`; backends named
    by id are built once for the whole benchmark. ``judge`` is a critic id whose backend is a
    :class:`~strokegraph.agents.critic.DetectorCritic`; only its detector is used. ``out`` (default
    ``runs/bench-<benchmark>``) must be new, empty, or hold an earlier run of this benchmark with the
    same backends, settings, judge, seed and budget, which is resumed: images with a record are skipped,
    but for error records when ``retry_errors``. ``on_progress`` gets a dict (``mode``, ``done``,
    ``total``, ``resumed``, ``errors``: error records so far, kept ones included) after each image.

    ``timeout_per_image`` (seconds) makes an image whose drawing and judging takes longer an error
    record, and the benchmark moves on: a Ray actor is killed and replaced; in this process each image
    is drawn in a thread that is given up on, which Python cannot stop (see
    :func:`~strokegraph.bench.executor.execute_serial`). A Ray actor that dies has its image drawn by a
    fresh one; the image is an error record once :data:`~strokegraph.bench.executor.DEATHS` have died.
    When every image has a record (and no error record is to be retried), nothing is built and Ray is
    not started: the results are only written again.

    ``ray`` draws on ``workers`` Ray actors of 1 CPU and ``gpus_per_worker`` GPUs each, every actor
    building the backends (named by id) and the judge once: ``"local"`` starts Ray on this machine, any
    other value is a running cluster's address. The records are those of a run in this process but for
    their timings and memory; only this process writes ``out``. ``shard=(i, n)`` draws only the images
    whose place in the full run's order is ``i`` modulo ``n``, and its results cover that shard; a later
    run without ``shard`` over the same ``out`` draws the rest and summarises them all.
    """
    if benchmark not in BENCHMARKS:
        raise UsageError(f"unknown benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
    if limit is not None and limit < 1:
        raise UsageError(f"limit must be 1 or more, got {limit}")
    if images_per_prompt < 1:
        raise UsageError(f"images_per_prompt must be 1 or more, got {images_per_prompt}")
    check_fan_out(
        ray=ray,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        shard=shard,
        timeout=timeout_per_image,
        timeout_name="timeout_per_image",
    )
    budget = budget or Budget()
    settings = settings or {}
    ids = registry.backend_ids(roles, settings)  # every id and setting, before any model loads
    check_judge(judge, judge_settings, drafter_id=ids["drafter"])
    if ray is not None and (objects := [r for r, v in roles.items() if v is not None and not isinstance(v, str)]):
        raise UsageError(f"with ray, name every backend by id; {', '.join(objects)} is an object")
    out = Path(out) if out is not None else Path("runs") / f"bench-{benchmark}"
    manifest = {
        "benchmark": benchmark,
        "backends": ids,
        "settings": settings,
        "judge": judge,
        "judge_settings": judge_settings or {},
        "seed": seed,
        "budget": budget.model_dump(),
    }
    _check_out(out, manifest)
    setup = Setup(dict(roles), settings, judge, judge_settings, seed, budget)

    skipped: list[SkippedPrompt]
    if benchmark == "geneval":
        prompts, skipped = geneval_prompts(limit), []
    else:
        prompts, skipped = t2i_compbench_prompts(limit)
    samples = {(p.tag, p.index) for p in _first(prompts, SAMPLES)}
    planned = _plan(out, prompts, images_per_prompt, keep_runs, samples, shard, retry_errors)
    todo = [job for job, record in planned if record is None]

    with contextlib.ExitStack() as stack:
        # Backends are built (in this process) or Ray started only when there is something to draw, and
        # before anything is written.
        worker = None
        if todo and ray is not None:
            stack.enter_context(ray_session(ray, workers, gpus_per_worker))
        elif todo:
            worker = Worker(setup)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / _MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write to {str(out)!r}: {exc.strerror or exc}") from exc

        started = time.perf_counter()
        if worker is not None:
            results = execute_serial(worker, todo, out, timeout_per_image)
        else:
            results = execute_ray(todo, setup, workers, gpus_per_worker, timeout_per_image)
        done = generated = resumed = errors = 0
        nodes: dict[str, int] = {}
        records: dict[Path, dict[str, Any]] = {}
        # Walking the plan keeps the progress of a run in this process in its order; Ray's images land
        # in any order, and each is counted as it lands.
        for job, record in planned:
            if record is not None:
                resumed += 1
            else:
                drawn = next(results)
                job, record = drawn.job, _write(out, drawn, benchmark)
                generated += 1
                if drawn.node is not None:
                    nodes[drawn.node] = nodes.get(drawn.node, 0) + 1
            records[job.rel] = record
            done += 1
            errors += record["error"] is not None
            if on_progress is not None:
                progress = {"mode": job.mode, "done": done, "total": len(planned), "resumed": resumed}
                on_progress({**progress, "errors": errors})

    by_mode = {mode: [records[job.rel] for job, _ in planned if job.mode == mode] for mode in MODES}
    self_judged = judge == ids["critic"]
    summary = _summary(benchmark, manifest, prompts, skipped, by_mode, self_judged, limit, images_per_prompt)
    summary["executor"] = {
        "ray": ray is not None,
        "workers": workers,
        "gpus_per_worker": gpus_per_worker,
        "nodes": len(nodes),
    }
    if ray is not None:
        summary["memory"] = "resource.getrusage ru_maxrss of the Ray worker that drew the image, the mode's largest"
    summary["shard"] = None
    if shard is not None:
        summary["shard"] = {"index": shard[0], "count": shard[1], "images": len(planned)}
    summary["wall_s"] = round(time.perf_counter() - started, 3)
    summary["generated"], summary["resumed"] = generated, resumed
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "results.md").write_text(_markdown(summary), encoding="utf-8")
    (out / "results.html").write_text(_html(summary, out, by_mode), encoding="utf-8")
    return BenchResult(out=out, summary=summary, generated=generated, resumed=resumed, nodes=nodes)


def _plan(
    out: Path,
    prompts: list[BenchPrompt],
    images_per_prompt: int,
    keep_runs: bool,
    samples: set[tuple[str, int]],
    shard: tuple[int, int] | None,
    retry_errors: bool,
) -> list[tuple[Job, dict[str, Any] | None]]:
    """Every image of the run (or of its shard) in order, each with its record when it is already done
    (an error record is not, with ``retry_errors``)."""
    planned = []
    n = 0
    for mode in MODES:
        for item in prompts:
            for k in range(images_per_prompt):
                keep: Keep | None = (
                    "all" if keep_runs else "image" if (item.tag, item.index) in samples and k == 0 else None
                )
                job = Job(item, mode, k, keep)
                n += 1
                if shard is None or (n - 1) % shard[1] == shard[0]:
                    record = _done_record(out / job.rel / _RECORD, mode, item, k)
                    if record is not None and retry_errors and record["error"] is not None:
                        record = None
                    planned.append((job, record))
    return planned


# A kept file's path in a run directory, as a worker names it: a file, or a file in one folder (images/).
_KEPT_NAME = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}/)?\.?[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def _write(out: Path, drawn: Drawn, benchmark: str) -> dict[str, Any]:
    """Write a drawn job's kept files (unless drawn in place), then its record last, and return the record.

    A worker's reply is untrusted like any other: a kept file's name must be a plain relative path of at
    most two parts, and nothing is written outside the job's run directory.
    """
    run_dir = out / drawn.job.rel
    if drawn.files is not None:
        bad = [name for name in drawn.files if not _KEPT_NAME.fullmatch(name) or name.startswith(_RECORD)]
        if bad:
            raise RunError(f"a worker sent a file named {bad[0][:80]!r} for {drawn.job.rel.as_posix()}")
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a run interrupted before its record was written
        run_dir.mkdir(parents=True)
        for name, data in drawn.files.items():
            path = run_dir / name
            path.parent.mkdir(exist_ok=True)
            with open(path, "xb") as f:  # never through a link, never over another file
                f.write(data)
    record = {**drawn.record, "benchmark": benchmark}
    tmp = run_dir / (_RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    tmp.replace(run_dir / _RECORD)  # a record on disk means the image is done
    return record


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _mode_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    scores, overall = summarize((r["tag"], r["correct"]) for r in records)
    tags = {}
    for tag, score in scores.items():
        mine = [r for r in records if r["tag"] == tag]
        tags[tag] = {"score": score, "correct": sum(r["correct"] for r in mine), "images": len(mine)}
    used = [r["usage"] for r in records if r["usage"] is not None]
    costs = [u["cost_usd"] for u in used if u["cost_usd"] is not None]
    tokens = sum(u["prompt_tokens"] + u["completion_tokens"] for u in used)
    return {
        "tags": tags,
        "overall": overall,
        "images": len(records),
        "errors": sum(r["error"] is not None for r in records),
        "critic_passed": _mean([float(r["critic_passed"]) for r in records]),
        "sampling_steps_per_image": _mean([r["sampling_steps"] for r in records]),
        "rounds_per_image": _mean([r["rounds"] for r in records]),
        "wall_s_per_image": _mean([r["wall_s"] for r in records]),
        "judge_s_per_image": _mean([r["judge_s"] for r in records]),
        "api_calls": sum(u["calls"] for u in used) if used else None,
        "tokens_per_image": tokens / len(records) if used else None,
        "cost_usd": sum(costs) if costs else None,
        "cost_usd_per_image": sum(costs) / len(records) if costs else None,
        "peak_rss_mib": max((p for r in records if (p := r["peak_rss_mib"]) is not None), default=None),
        "critic_vs_truth": _critic_vs_truth([t for r in records if isinstance(t := r.get("truth"), dict)]),
    }


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _critic_vs_truth(truths: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How far the critic's verdicts on the final images hold against the sketch world's truth.

    ``pass_precision``: of the images the critic passed, the share really clean; ``fail_precision``:
    of those it failed, the share really flawed; ``flaw_recall``: of the flawed, the share it failed.
    Per violation: ``violation_precision`` (the critic's that are real), ``violation_recall`` (the
    real ones it named). None without truth (a drafter other than the sketch world's).
    """
    if not truths:
        return None
    passed = [t for t in truths if t["critic_violations"] == 0]
    failed = [t for t in truths if t["critic_violations"] > 0]
    flawed = [t for t in truths if not t["clean"]]
    return {
        "images": len(truths),
        "exact": sum(t["exact"] for t in truths),
        "critic_passed": len(passed),
        "truly_clean": len(truths) - len(flawed),
        "pass_precision": _ratio(sum(t["clean"] for t in passed), len(passed)),
        "fail_precision": _ratio(sum(not t["clean"] for t in failed), len(failed)),
        "flaw_recall": _ratio(sum(t["critic_violations"] > 0 for t in flawed), len(flawed)),
        "violation_precision": _ratio(
            sum(t["real_violations"] for t in truths), sum(t["critic_violations"] for t in truths)
        ),
        "violation_recall": _ratio(
            sum(t["found_violations"] for t in truths), sum(t["true_violations"] for t in truths)
        ),
    }


def _summary(
    benchmark: str,
    manifest: dict[str, Any],
    prompts: list[BenchPrompt],
    skipped: list[SkippedPrompt],
    records: dict[Mode, list[dict[str, Any]]],
    self_judged: bool,
    limit: int | None,
    images_per_prompt: int,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "benchmark": benchmark,
        "created": datetime.now().isoformat(timespec="seconds"),
        "backends": manifest["backends"],
        "judge": manifest["judge"],
        "self_judged": self_judged,
        "seed": manifest["seed"],
        "budget": manifest["budget"],
        "limit": limit,
        "images_per_prompt": images_per_prompt,
        "tags": list(dict.fromkeys(p.tag for p in prompts)),
        "memory": "resource.getrusage ru_maxrss of the bench process, the largest after any image of the mode",
        "modes": {mode: _mode_summary(records[mode]) for mode in MODES},
    }
    failed = [r for mode in MODES for r in records[mode] if r["error"] is not None]
    summary["errors"] = {
        "count": len(failed),
        "scored_as": "incorrect",
        "images": [
            {
                "mode": r["mode"],
                "tag": r["tag"],
                "index": r["index"],
                "image_index": r["image_index"],
                "prompt": r["prompt"],
                "seed": r["seed"],
                "error": _one_line(r["error"]),
            }
            for r in failed
        ],
    }
    if benchmark == "t2i-compbench":
        counts: dict[str, Any] = {}
        for category in COMPBENCH_CATEGORIES:
            judged = sum(p.tag == category for p in prompts)
            skips = [s for s in skipped if s.tag == category]
            reasons: dict[str, int] = {}
            for s in skips:
                reasons[s.reason] = reasons.get(s.reason, 0) + 1
            counts[category] = {"judged": judged, "skipped": len(skips), "skip_reasons": reasons}
        summary["tags"] = list(COMPBENCH_CATEGORIES)
        summary["prompts"] = counts
        summary["skipped"] = [dataclasses.asdict(s) for s in skipped]
    return summary


def _one_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(no message)"
    return line if len(line) <= 300 else line[:299] + "…"


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def format_table(summary: dict[str, Any]) -> str:
    """The results as a Markdown table: per mode, each tag's score, the overall score and the costs."""
    tags = summary["tags"]
    head = ["mode", *tags, "overall", "sampling steps / image", "refine rounds / image", "s / image"]
    head += ["tokens / image", "cost USD / image", "peak RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mode in MODES:
        m = summary["modes"][mode]
        overall = _fmt(m["overall"])
        if summary["self_judged"] and mode == "loop":
            overall += " (self-judged)"
        cells = [_MODE_NAMES[mode], *(_fmt(m["tags"].get(t, {}).get("score")) for t in tags), overall]
        cells += [_fmt(m["sampling_steps_per_image"]), _fmt(m["rounds_per_image"]), _fmt(m["wall_s_per_image"], ".3f")]
        cells += [
            _fmt(m["tokens_per_image"], ".0f"),
            _fmt(m["cost_usd_per_image"], ".4f"),
            _fmt(m["peak_rss_mib"], ".0f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(summary["modes"][mode].get("critic_vs_truth") for mode in MODES):
        lines += [
            "",
            "| critic vs truth | images | critic passed | truly clean | pass precision | "
            "fail precision | flaw recall | violation precision | violation recall |",
            "|" + "---|" * 9,
        ]
        for mode in MODES:
            c = summary["modes"][mode].get("critic_vs_truth")
            if c:
                cells = [_MODE_NAMES[mode], str(c["images"]), str(c["critic_passed"]), str(c["truly_clean"])]
                cells += [_fmt(c[k]) for k in ("pass_precision", "fail_precision", "flaw_recall")]
                cells += [_fmt(c[k]) for k in ("violation_precision", "violation_recall")]
                lines.append("| " + " | ".join(cells) + " |")
    if "prompts" in summary:
        lines += ["", "| category | judged | skipped | why skipped |", "|---|---|---|---|"]
        for category, c in summary["prompts"].items():
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(c["skip_reasons"].items(), key=lambda x: -x[1]))
            lines.append(f"| {category} | {c['judged']} | {c['skipped']} | {why or '—'} |")
    return "\n".join(lines) + "\n"


def _notes(summary: dict[str, Any]) -> list[str]:
    backends = ", ".join(f"{role} {summary['backends'][role]}" for role in registry.ROLES)
    images = summary["modes"]["loop"]["images"]
    notes = [
        f"{backends}; judge {summary['judge']}; {summary['images_per_prompt']} image(s) per prompt, seeds from "
        f"{summary['seed']}; {images} image(s) per mode.",
        "Scores: the share of correct images per tag by GenEval's rules; overall is the mean of the tag scores. "
        "A failed image (an error record: its run failed or timed out, or its Ray workers died) is scored as "
        "incorrect, not left out.",
        _failed_note(summary),
        f"Peak RSS: {summary['memory']} (a process's peak never goes down: when one process drew both modes, "
        "the loop's figure covers both).",
    ]
    if summary.get("shard"):
        shard = summary["shard"]
        notes.append(
            f"Shard {shard['index']}/{shard['count']}: these results cover {shard['images']} image(s), those whose "
            f"place in the run's order is {shard['index']} modulo {shard['count']}; a run without a shard over the "
            "same directory draws the rest and summarises them all."
        )
    if any(summary["modes"][mode].get("critic_vs_truth") for mode in MODES):
        notes.append(
            "Critic vs truth: the critic's final critique beside the one its own rules give on the instances the "
            "sketch world really drew (images/<name>.truth.json, recorded by replaying the run); clean = no true "
            "violation. Pass precision: passed images really clean; fail precision: failed images really flawed; "
            "flaw recall: flawed images the critic failed; per violation, precision and recall by kind and entities."
        )
    if summary["judge"] == "builtin:truth":
        notes.append("truth-judged: the final images are scored on what the sketch world drew, not on a detector.")
    if summary["self_judged"]:
        notes.append(
            "self-judged: the judge is the loop's critic, so the loop is scored by the detector that steered it."
        )
    return notes


def _failed_note(summary: dict[str, Any]) -> str:
    failed = summary["errors"]["count"]
    images = sum(m["images"] for m in summary["modes"].values())
    if not failed:
        return f"Failed images: none of {images}."
    return (
        f"Failed images: {failed} of {images}, listed under 'Failed images'; their scores count them as incorrect. "
        "A rerun into the same directory draws them again (unless --no-retry-errors)."
    )


_FAILED_HEAD = ("mode", "tag", "prompt", "image", "seed", "error")


def _failed_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    return [
        (_MODE_NAMES[e["mode"]], e["tag"], e["prompt"], f"{e['index']}-{e['image_index']}", str(e["seed"]), e["error"])
        for e in summary["errors"]["images"]
    ]


def _markdown(summary: dict[str, Any]) -> str:
    title = "GenEval" if summary["benchmark"] == "geneval" else "T2I-CompBench (judged by GenEval's rules)"
    notes = "\n".join(f"- {n}" for n in _notes(summary))
    text = f"# {title}\n\n{format_table(summary)}\n{notes}\n"
    if summary["errors"]["count"]:
        # A backslash or a pipe in a prompt or an error would end the cell early.
        rows = "".join(
            "| " + " | ".join(c.replace("\\", "\\\\").replace("|", "\\|") for c in row) + " |\n"
            for row in _failed_rows(summary)
        )
        head = "| " + " | ".join(_FAILED_HEAD) + " |\n|" + "---|" * len(_FAILED_HEAD) + "\n"
        text += f"\n## Failed images\n\n{head}{rows}"
    return text


# What a record on disk must hold for its image to count as done. A record from an older run, a
# damaged or an edited one is drawn again rather than trusted.
_RECORD_TYPES: dict[str, type | tuple[type, ...]] = {
    "mode": str,
    "tag": str,
    "index": int,
    "image_index": int,
    "seed": int,
    "prompt": str,
    "correct": bool,
    "reasons": list,
    "critic_passed": bool,
    "rounds": int,
    "sampling_steps": int,
    "wall_s": (int, float),
    "judge_s": (int, float),
    "image": (str, type(None)),
    "error": (str, type(None)),
}


def _done_record(path: Path, mode: str, item: Any, k: int) -> dict[str, Any] | None:
    """The record of an image already done, or None when there is none or it cannot be trusted."""
    if not path.is_file() or path.is_symlink() or path.stat().st_size > 1 << 20:
        return None
    try:
        record = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or any(
        not isinstance(record.get(key), kind) or (kind is int and isinstance(record.get(key), bool))
        for key, kind in _RECORD_TYPES.items()
    ):
        return None
    if (record["mode"], record["tag"], record["index"], record["image_index"]) != (mode, item.tag, item.index, k):
        return None
    if record["image"] not in (None, "final.png") or not all(isinstance(r, str) for r in record["reasons"]):
        return None
    return record


def _tables(markdown: str) -> list[dict[str, Any]]:
    """The Markdown tables of :func:`format_table` as heads and rows of cells."""
    tables = []
    for block in markdown.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith("|---")]
        rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
        tables.append({"head": rows[0], "rows": rows[1:]})
    return tables


def _image_url(out: Path, record: dict[str, Any]) -> str | None:
    """The run's final image as a data: URL, or None when it was not kept (or is not a plain PNG file)."""
    # The record was checked by _done_record; the image is read only as the run's own final.png.
    run_dir = out / record["mode"] / record["tag"] / f"{record['index']}-{record['image_index']}"
    image = run_dir / "final.png" if record["image"] == "final.png" else None
    data = b""
    if image is not None and image.is_file() and not image.is_symlink():
        data = image.read_bytes()
    # Base64 of bytes that start as a PNG: the only characters are [A-Za-z0-9+/=].
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii") if data.startswith(_PNG) else None


def _number(value: object) -> float | None:
    """``value`` when it is a finite number that is not negative (a figure from results.json), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


# The charts' geometry, in px: the label column, the longest bar, each bar and the gap between rows.
_LABEL_W, _BAR_W, _BAR_H, _ROW_GAP = 170, 380, 14, 12


def _chart(title: str, rows: list[tuple[str, dict[Mode, Any], str]], shared_scale: float | None) -> dict[str, Any]:
    """An SVG bar chart's geometry: per row (label, each mode's value, number format), a bar per mode.

    Bars are scaled to ``shared_scale`` (scores: 1.0), or with None each row to its own largest value,
    so rows of different units (steps, seconds, dollars) share one chart. A missing value has no bar.
    """
    out_rows = []
    for i, (label, values, spec) in enumerate(rows):
        top = _ROW_GAP + i * (len(MODES) * _BAR_H + _ROW_GAP)
        numbers = {mode: _number(values.get(mode)) for mode in MODES}
        scale = shared_scale or max((v for v in numbers.values() if v is not None), default=0.0)
        bars = []
        for j, mode in enumerate(MODES):
            value = numbers[mode]
            width = round(_BAR_W * min(value / scale, 1.0), 2) if value is not None and scale else 0.0
            y = top + j * _BAR_H
            bars.append(
                {
                    "mode": mode,
                    "name": _MODE_NAMES[mode],
                    "value": value,
                    "text": _fmt(value, spec),
                    "y": y,
                    "width": width,
                    "text_x": _LABEL_W + width + 6,
                    "text_y": y + _BAR_H - 3,
                }
            )
        out_rows.append({"label": label, "y": top + _BAR_H + 4, "bars": bars})
    height = _ROW_GAP + len(rows) * (len(MODES) * _BAR_H + _ROW_GAP)
    return {
        "title": title,
        "rows": out_rows,
        "x0": _LABEL_W,
        "bar": _BAR_H - 2,
        "width": _LABEL_W + _BAR_W + 90,
        "height": height,
    }


def _charts(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per tag, single pass against the loop: the scores, then sampling steps and costs per image."""
    modes = summary["modes"]
    scores = [(tag, {m: modes[m]["tags"].get(tag, {}).get("score") for m in MODES}, ".2f") for tag in summary["tags"]]
    scores.append(("overall", {m: modes[m]["overall"] for m in MODES}, ".2f"))
    costs = [
        ("sampling steps / image", "sampling_steps_per_image", ".1f"),
        ("refine rounds / image", "rounds_per_image", ".2f"),
        ("seconds / image", "wall_s_per_image", ".3f"),
        ("tokens / image", "tokens_per_image", ".0f"),
        ("cost USD / image", "cost_usd_per_image", ".4f"),
    ]
    return [
        _chart("Score per tag (share of correct images)", scores, 1.0),
        _chart(
            "Sampling steps and cost per image (each row to its own scale)",
            [(label, {m: modes[m][key] for m in MODES}, spec) for label, key, spec in costs],
            None,
        ),
    ]


#: Rows each table of prompts where the modes differ shows at most (the largest differences first).
MAX_DIFFERENCES = 50


def _cell(out: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """One mode's images of a prompt: how many were correct, one kept image, and why the first wrong one failed."""
    ordered = sorted(records, key=lambda r: r["image_index"])
    wrong = next((r for r in ordered if not r["correct"]), None)
    reasons = "; ".join(wrong["reasons"]) if wrong is not None else ""
    if wrong is not None and wrong["error"] is not None:
        reasons = f"failed: {_one_line(wrong['error'])}"
    return {
        "correct": sum(r["correct"] for r in ordered),
        "images": len(ordered),
        "url": next((url for r in ordered if (url := _image_url(out, r)) is not None), None),
        "reasons": reasons,
        "rounds": sum(r["rounds"] for r in ordered),
    }


def _differences(out: Path, records: dict[Mode, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The prompts whose share of correct images differs between the modes: the loop's wins, then its losses."""
    prompts: dict[tuple[str, int], dict[Mode, list[dict[str, Any]]]] = {}
    for mode in MODES:
        for r in records[mode]:
            prompts.setdefault((r["tag"], r["index"]), {m: [] for m in MODES})[mode].append(r)
    wins: list[tuple[float, dict[str, Any]]] = []
    losses: list[tuple[float, dict[str, Any]]] = []
    for (tag, _), by_mode in prompts.items():
        if not all(by_mode.values()):
            continue  # a shard may hold one mode's images of a prompt only
        share = {m: sum(r["correct"] for r in rs) / len(rs) for m, rs in by_mode.items()}
        gain = share["loop"] - share["single_pass"]
        if gain:
            row = {"tag": tag, "prompt": by_mode["loop"][0]["prompt"], "modes": [_cell(out, by_mode[m]) for m in MODES]}
            (wins if gain > 0 else losses).append((abs(gain), row))
    tables = []
    for title, rows in (("The loop's wins", wins), ("The loop's losses", losses)):
        rows.sort(key=lambda x: -x[0])  # stable: the benchmark's order among equal differences
        tables.append(
            {
                "title": f"{title} ({len(rows)})",
                "rows": [r for _, r in rows[:MAX_DIFFERENCES]],
                "more": max(len(rows) - MAX_DIFFERENCES, 0),
            }
        )
    return tables


def _html(summary: dict[str, Any], out: Path, records: dict[Mode, list[dict[str, Any]]]) -> str:
    failed = {"head": _FAILED_HEAD, "rows": _failed_rows(summary)} if summary["errors"]["count"] else None
    return render(
        "results",
        title="GenEval" if summary["benchmark"] == "geneval" else "T2I-CompBench (judged by GenEval's rules)",
        tables=_tables(format_table(summary)),
        notes=_notes(summary),
        failed=failed,
        charts=_charts(summary),
        modes=[{"mode": m, "name": _MODE_NAMES[m]} for m in MODES],
        differences=_differences(out, records),
    )


_PLAIN_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_RUN_NAME = re.compile(r"(\d{1,9})-(\d{1,9})")
_MAX_SUMMARY_BYTES = 16 << 20


def _records_on_disk(out: Path, tags: list[str]) -> dict[Mode, list[dict[str, Any]]]:
    """Every trusted record under ``out``, per mode, in the benchmark's order (tag, prompt, image)."""
    records: dict[Mode, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for mode in MODES:
        for tag in tags:
            folder = out / mode / tag
            if not _PLAIN_TAG.fullmatch(tag) or not folder.is_dir() or folder.is_symlink():
                continue
            found = []
            for run in folder.iterdir():
                match = _RUN_NAME.fullmatch(run.name)
                if match and run.is_dir() and not run.is_symlink():
                    index, k = int(match[1]), int(match[2])
                    item = BenchPrompt(tag=tag, index=index, prompt="", metadata={})
                    record = _done_record(run / _RECORD, mode, item, k)
                    if record is not None:
                        found.append(record)
            records[mode] += sorted(found, key=lambda r: (r["index"], r["image_index"]))
    return records


def results_page(out: str | os.PathLike) -> str:
    """``results.html`` for the benchmark in ``out``, made again from its ``results.json`` and records.

    What the page shows is what :func:`run_bench` writes there. The folder is untrusted input: a
    missing or malformed ``results.json`` is a one-line :class:`UsageError`; a record that fails its
    checks is left out, as a rerun would draw it again.
    """
    out = Path(out)
    path = out / "results.json"
    if not path.is_file() or path.is_symlink():
        raise UsageError(f"{str(out)!r} holds no results.json; is it a strokegraph bench --out folder?")
    if path.stat().st_size > _MAX_SUMMARY_BYTES:
        raise UsageError(f"{str(path)!r} is over {_MAX_SUMMARY_BYTES >> 20} MiB; not a strokegraph bench summary")
    try:
        summary = json.loads(path.read_text("utf-8"))
        tags = summary["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise TypeError("its tags are not a list of names")
        return _html(summary, out, _records_on_disk(out, tags))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        problem = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise UsageError(f"{str(path)!r} is not a strokegraph bench summary ({problem})") from None
