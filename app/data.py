"""``strokegraph data``: draw a prompt set through the loop, K seeds a prompt, keep the runs, export them.

Prompts come from a file (one prompt a line, or JSON lines with ``prompt`` and optional ``seed``,
``tag``, ``source``) or a built-in set (``geneval``, ``t2i-compbench``). Each run lives in
``DIR/runs/<key>/`` (``key``: a hash of prompt and seed) with a ``source.json`` saying where its
prompt came from; a sketch-world run also gets its truth sidecars. A run already finished there is
not drawn again, so an interrupted ``data`` resumes. The dataset is written to ``DIR/dataset``
(replaced as a whole when it is written again).

The runs are drawn by the benchmark's executor (:mod:`strokegraph.bench.executor`): in this process,
or on Ray actors, with its retries of dead workers, its time limit per run and its shards. A
:class:`DataWorker` on Ray (or under a time limit) draws in a scratch directory and hands the run's
files back; only this process writes ``DIR``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from strokegraph.app.export import ExportResult, check_export, export_runs, print_skip
from strokegraph.app.runs import SOURCE
from strokegraph.errors import RunError, UsageError
from strokegraph.graph import Budget
from strokegraph.registry import RoleChoices
from strokegraph.schema import read_plain, write_new

if TYPE_CHECKING:
    from strokegraph.bench.executor import Drawn

__all__ = [
    "BUILTIN_SETS",
    "DataJob",
    "DataResult",
    "DataSetup",
    "DataWorker",
    "Failure",
    "PromptItem",
    "draw_data",
    "read_prompts",
]

BUILTIN_SETS = ("geneval", "t2i-compbench")
_MAX_PROMPTS_FILE = 64 << 20


@dataclass(frozen=True)
class PromptItem:
    prompt: str
    seed: int | None = None
    tag: str = ""
    source: str = "user"


@dataclass(frozen=True)
class Failure:
    """A run that made no finished run directory, and why."""

    prompt: str
    seed: int
    error: str


@dataclass(frozen=True)
class DataResult:
    out: Path
    drawn: int
    resumed: int
    failures: list[Failure]
    export: ExportResult | None
    """None for a shard (the dataset is exported by a run without ``shard``, see :func:`draw_data`) and
    where no run has finished."""
    nodes: dict[str, int] = field(default_factory=dict)
    """Runs drawn per Ray node (empty in this process)."""

    @property
    def failed(self) -> int:
        return len(self.failures)


@dataclass(frozen=True)
class DataJob:
    """One run to draw: a prompt and its seed."""

    item: PromptItem
    seed: int

    @property
    def rel(self) -> Path:
        """The run directory, relative to ``DIR/runs``: a hash of prompt and seed (also its thread id)."""
        return Path(hashlib.sha256(f"{self.item.prompt}\x1f{self.seed}".encode()).hexdigest()[:16])


@dataclass(frozen=True)
class DataSetup:
    """What a :class:`DataWorker` draws with (ids and settings only, for a Ray actor)."""

    roles: dict[str, str | None]
    settings: dict[str, dict[str, Any]]
    budget: Budget
    single_pass: bool = False


class DataWorker:
    """Draws runs one at a time, each with the backends named by id, as ``strokegraph generate`` would.

    Each run builds its backends from their ids: a run handed backend objects records them as
    ``custom:`` ids, and the export reads a run's backends from its ``run.json``.
    """

    def __init__(self, setup: DataSetup) -> None:
        from strokegraph import registry

        self.setup = setup
        self.ids = registry.backend_ids(setup.roles, setup.settings)

    def ready(self) -> None:
        """Nothing: on Ray, its answer says that the actor has started and can take jobs."""

    def draw(self, job: DataJob, out: Path | None = None) -> Drawn:
        """Draw ``job``: in place under ``out``, or (``out`` None) in a scratch directory whose files come back."""
        # bench sits above app: its executor is imported where it is used (as the built-in prompt sets are).
        from strokegraph.bench.executor import Drawn, drawn_in_scratch

        if out is not None:
            return Drawn(job, self._draw(job, out / job.rel), None, None)
        return drawn_in_scratch(job, lambda run_dir: self._draw(job, run_dir))

    @staticmethod
    def lost(setup: DataSetup, job: DataJob, error: str, wall_s: float) -> Drawn:
        """The record of a run that made none (it timed out, its worker died): failed, no files."""
        from strokegraph.bench.executor import Drawn

        return Drawn(job, {"prompt": job.item.prompt, "seed": job.seed, "error": error}, {}, None)

    def _draw(self, job: DataJob, run_dir: Path) -> dict[str, Any]:
        from strokegraph.app.runner import generate
        from strokegraph.tools.sketch.truth import SKETCH, record_truth

        if run_dir.exists():
            shutil.rmtree(run_dir)  # interrupted before it finished: drawn again
        error = None
        try:
            generate(
                job.item.prompt,
                out=run_dir,
                **cast(RoleChoices, self.ids),
                settings={role: s for role, s in self.setup.settings.items() if s},
                seed=job.seed,
                budget=self.setup.budget,
                single_pass=self.setup.single_pass,
            )
            if self.ids["drafter"] == SKETCH and self.ids["refiner"] == SKETCH:
                record_truth(run_dir)
        except (RunError, UsageError) as exc:
            error = str(exc)
        return {"prompt": job.item.prompt, "seed": job.seed, "error": error}


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
    settings: dict[str, dict[str, Any]] | None = None,
    budget: Budget | None = None,
    single_pass: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    ray: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0,
    shard: tuple[int, int] | None = None,
    timeout_per_run: float | None = None,
) -> DataResult:
    """Draw every prompt of ``prompts`` with ``seeds`` seeds (``seed``.. unless a prompt names its own,
    then that one and the next), keep the runs under ``out/runs`` and export them to ``out/dataset``.

    ``backends`` maps a role to an id (None: the default) and ``settings`` a role to its backend's
    settings. A run already finished under ``out/runs`` is not drawn again. A run that fails (its
    backend raised, it ran over ``timeout_per_run`` seconds, :data:`~strokegraph.bench.executor.DEATHS`
    Ray workers died drawing it) is listed in ``DataResult.failures`` and drawn again by a rerun;
    the others are exported. ``on_progress`` gets a dict (``done``, ``total``, ``resumed``,
    ``failed``) after each run.

    ``ray``, ``workers``, ``gpus_per_worker`` and ``shard`` are those of
    :func:`~strokegraph.bench.run_bench`: ``shard=(i, n)`` draws only the runs whose place in the
    order (prompts, then seeds) is ``i`` modulo ``n``, and exports nothing (shards may run at the same
    time into one ``out``); a later run without ``shard`` draws the rest and exports them all. Nothing
    is exported either while no run has finished.
    """
    from strokegraph.bench.executor import check_fan_out, execute_ray, execute_serial, ray_session

    if seeds < 1:
        raise UsageError(f"seeds must be 1 or more, got {seeds}")
    check_fan_out(
        ray=ray,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        shard=shard,
        timeout=timeout_per_run,
        timeout_name="timeout_per_run",
    )
    check_export(fmt, kinds)
    items = read_prompts(prompts, limit)
    setup = DataSetup(dict(backends or {}), dict(settings or {}), budget or Budget(), single_pass)
    worker = DataWorker(setup)  # every id and setting checked before anything is drawn
    out = Path(out)
    if out.exists() and not (out / "runs").is_dir() and any(out.iterdir()):
        raise UsageError(f"{str(out)!r} exists and is not a data folder; choose another --out")
    runs = out / "runs"

    planned: list[tuple[DataJob, bool]] = []  # every run of this call, and whether it is finished already
    n = 0
    for item in items:
        for k in range(seeds):
            job = DataJob(item, (item.seed if item.seed is not None else seed) + k)
            n += 1
            if shard is None or (n - 1) % shard[1] == shard[0]:
                planned.append((job, _finished(runs / job.rel)))
    todo = [job for job, done in planned if not done]

    drawn = resumed = 0
    failures: list[Failure] = []
    nodes: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        # Ray is started only when there is something to draw, and before anything is written.
        if todo and ray is not None:
            stack.enter_context(ray_session(ray, workers, gpus_per_worker))
            results = execute_ray(todo, setup, workers, gpus_per_worker, timeout_per_run, worker=DataWorker)
        else:
            results = execute_serial(worker, todo, runs, timeout_per_run)
        runs.mkdir(parents=True, exist_ok=True)
        # Walking the plan keeps the progress of a run in this process in its order; Ray's runs land in
        # any order, and each is counted as it lands.
        for done, (_, finished) in enumerate(planned, 1):
            if finished:
                resumed += 1
            else:
                landed = next(results)
                error = _write(runs, landed)
                if error is not None:
                    failures.append(Failure(landed.job.item.prompt, landed.job.seed, error))
                else:
                    drawn += 1
                if landed.node is not None:
                    nodes[landed.node] = nodes.get(landed.node, 0) + 1
            if on_progress is not None:
                on_progress({"done": done, "total": len(planned), "resumed": resumed, "failed": len(failures)})
    if shard is not None or not any(_finished(run_dir) for run_dir in runs.iterdir()):
        return DataResult(out, drawn, resumed, failures, None, nodes)
    dataset = out / "dataset"
    # Rebuilt from the runs each time (BAGEL's index names the shards' final paths, so it is written in place).
    if dataset.exists():
        shutil.rmtree(dataset)
    result = export_runs([runs], dataset, fmt, kinds, on_skip=print_skip)
    return DataResult(out, drawn, resumed, failures, result, nodes)


def _write(runs: Path, landed: Drawn) -> str | None:
    """Write a drawn run's files (unless drawn in place), then its ``source.json`` last when it finished;
    return its error, None when it finished."""
    from strokegraph.bench.executor import write_files

    job: DataJob = landed.job
    run_dir = runs / job.rel
    if landed.files:
        write_files(run_dir, landed.files, reserved=(SOURCE,))
    elif landed.files is not None and run_dir.exists():
        shutil.rmtree(run_dir)  # it made no files (it timed out, its workers died): none of an older try stay
    error = landed.record.get("error")
    if error is not None:
        return str(error)
    meta = {"prompt": job.item.prompt, "seed": job.seed, "tag": job.item.tag, "source": job.item.source}
    write_new(run_dir / SOURCE, json.dumps(meta).encode())  # last: the run is done
    return None
