"""``strokegraph data``: draw a prompt set through the loop, K seeds a prompt, keep the runs, export them.

Prompts come from a file (one prompt a line, or JSON lines with ``prompt`` and optional ``seed``,
``tag``, ``source``) or a built-in set (``geneval``, ``t2i-compbench``). Each run lives in
``DIR/runs/<key>/`` (``key``: a hash of prompt and seed) with a ``source.json`` saying where its
prompt came from; a sketch-world run also gets its truth sidecars. A run already finished there is
not drawn again, so an interrupted ``data`` resumes. The dataset is written to ``DIR/dataset``
(replaced as a whole when it is written again).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strokegraph.app.export import ExportResult, check_export, export_runs, print_skip
from strokegraph.app.runs import SOURCE
from strokegraph.errors import RunError, UsageError
from strokegraph.schema import read_plain, write_new

__all__ = ["BUILTIN_SETS", "DataResult", "PromptItem", "draw_data", "read_prompts"]

BUILTIN_SETS = ("geneval", "t2i-compbench")
_MAX_PROMPTS_FILE = 64 << 20


@dataclass(frozen=True)
class PromptItem:
    prompt: str
    seed: int | None = None
    tag: str = ""
    source: str = "user"


@dataclass(frozen=True)
class DataResult:
    out: Path
    drawn: int
    resumed: int
    failed: int
    export: ExportResult


def read_prompts(spec: str, limit: int | None = None) -> list[PromptItem]:
    """The prompts ``spec`` names: a built-in set (the first ``limit`` of each tag) or a file (its first ``limit``)."""
    if spec == "geneval":
        from strokegraph.bench.harness import geneval_prompts

        return [PromptItem(p.prompt, None, p.tag, "geneval") for p in geneval_prompts(limit)]
    if spec == "t2i-compbench":
        from importlib import resources

        from strokegraph.bench.harness import COMPBENCH_CATEGORIES

        data = resources.files("strokegraph.bench.data.t2i_compbench")
        items = []
        for category in COMPBENCH_CATEGORIES:
            lines = [x.strip() for x in data.joinpath(f"{category}_val.txt").read_text("utf-8").splitlines()]
            items += [PromptItem(x, None, category, "t2i-compbench") for x in lines if x][:limit]
        return items
    path = Path(spec)
    try:
        text = read_plain(path, _MAX_PROMPTS_FILE).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read prompts from {spec!r}: {getattr(exc, 'strerror', None) or exc}") from None
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            items.append(_json_item(line, spec, n))
        else:
            items.append(PromptItem(line))
    if not items:
        raise UsageError(f"{spec!r} holds no prompt")
    return items[:limit] if limit else items


def _json_item(line: str, spec: str, n: int) -> PromptItem:
    try:
        doc = json.loads(line)
    except ValueError:
        raise UsageError(f"{spec}:{n}: not a JSON object") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("prompt"), str) or not doc["prompt"].strip():
        raise UsageError(f"{spec}:{n}: needs a non-empty string 'prompt'")
    extra = sorted(set(doc) - {"prompt", "seed", "tag", "source"})
    if extra:
        raise UsageError(
            f"{spec}:{n}: unknown key(s) {', '.join(map(repr, extra))}; expected prompt, seed, tag, source"
        )
    seed = doc.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise UsageError(f"{spec}:{n}: 'seed' must be an integer >= 0")
    for key in ("tag", "source"):
        if not isinstance(doc.get(key, ""), str):
            raise UsageError(f"{spec}:{n}: {key!r} must be a string")
    return PromptItem(doc["prompt"].strip(), seed, doc.get("tag", ""), doc.get("source", "user") or "user")


def _finished(run_dir: Path) -> bool:
    try:
        doc = json.loads(read_plain(run_dir / "trajectory.json", 64 << 20))
        return isinstance(doc, dict) and doc.get("finished") is True and (run_dir / SOURCE).is_file()
    except (OSError, ValueError):
        return False


def draw_data(
    prompts: str,
    out: str | os.PathLike,
    *,
    seeds: int = 1,
    seed: int = 0,
    limit: int | None = None,
    fmt: str = "obelics",
    kinds: list[str] | None = None,
    backends: dict[str, str | None] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> DataResult:
    """Draw every prompt of ``prompts`` with ``seeds`` seeds (``seed``.. unless a prompt names its own,
    then that one and the next), keep the runs under ``out/runs`` and export them to ``out/dataset``."""
    from strokegraph import registry
    from strokegraph.app.runner import generate
    from strokegraph.tools.sketch.truth import SKETCH, record_truth

    if seeds < 1:
        raise UsageError(f"seeds must be 1 or more, got {seeds}")
    check_export(fmt, kinds)
    items = read_prompts(prompts, limit)
    ids = registry.backend_ids(backends or {})  # every id checked before anything is drawn
    out = Path(out)
    if out.exists() and not (out / "runs").is_dir() and any(out.iterdir()):
        raise UsageError(f"{str(out)!r} exists and is not a data folder; choose another --out")
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    drawn = resumed = failed = 0
    total = len(items) * seeds
    for item in items:
        for k in range(seeds):
            s = (item.seed if item.seed is not None else seed) + k
            key = hashlib.sha256(f"{item.prompt}\x1f{s}".encode()).hexdigest()[:16]
            run_dir = runs / key
            if _finished(run_dir):
                resumed += 1
            else:
                if run_dir.exists():
                    shutil.rmtree(run_dir)  # interrupted before it finished: drawn again
                try:
                    generate(
                        item.prompt,
                        out=run_dir,
                        seed=s,
                        planner=ids["planner"],
                        drafter=ids["drafter"],
                        critic=ids["critic"],
                        refiner=ids["refiner"],
                    )
                    if ids["drafter"] == SKETCH and ids["refiner"] == SKETCH:
                        record_truth(run_dir)
                except (RunError, UsageError) as exc:
                    failed += 1
                    print(f"strokegraph: {item.prompt!r} seed {s}: {exc}", file=sys.stderr)
                    continue
                meta = {"prompt": item.prompt, "seed": s, "tag": item.tag, "source": item.source}
                write_new(run_dir / SOURCE, json.dumps(meta).encode())  # last: the run is done
                drawn += 1
            if on_progress is not None:
                on_progress({"done": drawn + resumed + failed, "total": total, "resumed": resumed, "failed": failed})
    dataset = out / "dataset"
    # Rebuilt from the runs each time (BAGEL's index names the shards' final paths, so it is written in place).
    if dataset.exists():
        shutil.rmtree(dataset)
    result = export_runs([runs], dataset, fmt, kinds, on_skip=print_skip)
    return DataResult(out=out, drawn=drawn, resumed=resumed, failed=failed, export=result)
