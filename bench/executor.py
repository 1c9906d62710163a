"""Drawing and judging a benchmark's images: in this process, or on the actors of a Ray cluster.

The harness (:mod:`strokegraph.bench.harness`) plans the jobs and is the only writer of the output
directory. A :class:`Worker` builds the backends and the judge once (a GPU worker holds one loaded
model) and draws jobs: in this process it draws each run in place, in its run directory; as a Ray
actor (or in this process under a time limit) it draws in a scratch directory of its own and hands
back the record and the bytes of the files the run keeps, so that nothing but the driver ever writes
the output directory.

Every job comes back as a record: an image that failed, timed out or whose Ray worker died
:data:`DEATHS` times is an error record (:func:`failed`), and the benchmark goes on.

:func:`execute_serial` and :func:`execute_ray` take any worker of the same shape (built from a setup,
with ``ready``, ``draw`` and a static ``lost``): ``strokegraph data`` draws its runs through them with
a worker of its own (:class:`strokegraph.app.data.DataWorker`), writing the files it gets back with
:func:`write_files`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from strokegraph import registry, usage
from strokegraph.agents.critic import DetectorCritic
from strokegraph.app.runner import generate
from strokegraph.bench.scoring import Judge, evaluate, load_judge
from strokegraph.errors import RunError, StrokegraphError, UsageError
from strokegraph.graph import Budget
from strokegraph.schema import Detection, Violation
from strokegraph.tools.sketch.truth import Truth, TruthDetector, record_truth

if TYPE_CHECKING:
    from strokegraph.bench.harness import BenchPrompt, Mode

__all__ = [
    "DEATHS",
    "Drawn",
    "Job",
    "Setup",
    "Worker",
    "check_fan_out",
    "drawn_in_scratch",
    "execute_ray",
    "execute_serial",
    "failed",
    "ray_session",
    "write_files",
]

Keep = Literal["all", "image"]
#: How many Ray workers may die drawing one image before it is recorded as failed instead of tried again.
DEATHS = 2


@dataclass(frozen=True)
class Job:
    """One image to draw: everything a worker needs, nothing that points into the output directory."""

    item: BenchPrompt
    mode: Mode
    k: int
    """Image index: the run's seed is the benchmark's seed plus ``k``."""
    keep: Keep | None
    """What the run directory keeps besides the record: every file, the final image, or nothing."""

    @property
    def rel(self) -> Path:
        """The run directory, relative to the output directory."""
        return Path(self.mode, self.item.tag, f"{self.item.index}-{self.k}")


@dataclass(frozen=True)
class Drawn:
    """A drawn job: its record, and the files its run keeps unless they were drawn in place."""

    job: Any
    """The job: a :class:`Job` of the benchmark's, or another worker's own kind (it has a ``rel``)."""
    record: dict[str, Any]
    files: dict[str, bytes] | None
    """Path relative to the run directory (``/``-separated) to bytes; None when drawn in place."""
    node: str | None
    """The Ray node that drew it; None in this process."""


@dataclass(frozen=True)
class Setup:
    """What a worker builds its backends and judge from (ids and settings only, for a Ray actor)."""

    roles: dict[str, Any]
    settings: dict[str, dict[str, Any]]
    judge: str
    judge_settings: dict[str, Any] | None
    seed: int
    budget: Budget


class Worker:
    """Builds the backends and the judge once, then draws and judges jobs one at a time."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        roles, settings = setup.roles, setup.settings
        ids = registry.backend_ids(roles, settings)
        # The judge may take the critic's final detections instead of detecting again only when it is
        # the critic itself, with the same settings; then the critic's own detector judges, loaded once.
        self.reuse = False
        if setup.judge == ids["critic"] and (setup.judge_settings or {}) == settings.get("critic", {}):
            self.backends, _ = registry.build_backends(roles, settings)
            critic = self.backends.critic
            if isinstance(critic, DetectorCritic):
                self.reuse, self.judge = True, Judge(critic.detector)
            else:
                self.judge = load_judge(setup.judge, setup.judge_settings)
        else:
            self.judge = load_judge(setup.judge, setup.judge_settings)
            self.backends, _ = registry.build_backends(roles, settings)
        self.seed, self.budget = setup.seed, setup.budget

    def ready(self) -> None:
        """Nothing: on Ray, its answer says that the actor has built its backends and can take jobs."""

    def draw(self, job: Job, out: Path | None = None) -> Drawn:
        """Draw and judge ``job``: in place under ``out``, or (``out`` None) in a scratch directory whose kept
        files come back as bytes and which is removed afterwards."""

        def draw(run_dir: Path) -> dict[str, Any]:
            return _draw_and_judge(job, run_dir, self.backends, self.judge, self.seed, self.budget, self.reuse)

        if out is not None:
            return Drawn(job, draw(out / job.rel), None, None)
        return drawn_in_scratch(job, draw)

    @staticmethod
    def lost(setup: Setup, job: Job, error: str, wall_s: float) -> Drawn:
        """The error record of a job that made none (it timed out, its worker died)."""
        return failed(job, setup.seed, error, wall_s)


def drawn_in_scratch(job: Any, draw: Callable[[Path], dict[str, Any]]) -> Drawn:
    """``draw(run_dir)``'s record for ``job``, drawn in a scratch directory whose files come back as bytes and
    which is removed afterwards: what a worker that does not write the output directory hands back."""
    with tempfile.TemporaryDirectory(prefix="sg-draw-") as scratch:
        # The run directory's name is its checkpoints' thread id: the same as it would be in place.
        run_dir = Path(scratch) / job.rel.name
        record = draw(run_dir)
        files = {}
        if run_dir.is_dir():
            files = {
                p.relative_to(run_dir).as_posix(): p.read_bytes()
                for p in sorted(run_dir.rglob("*"))
                if p.is_file() and not p.is_symlink()
            }
    return Drawn(job, record, files, _ray_node())


# A file's path in a run directory, as a worker names it: a file, or a file in one folder (images/).
_FILE_NAME = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}/)?\.?[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def write_files(run_dir: Path, files: dict[str, bytes], reserved: tuple[str, ...] = ()) -> None:
    """Write a worker's files into ``run_dir`` (replacing whatever an interrupted run left there).

    A worker's reply is untrusted like any other: each name must be a plain relative path of at most two
    parts and not start with one of ``reserved`` (the files only the driver writes), and nothing is
    written outside ``run_dir``, through a link or over another file. Raises :class:`RunError` naming
    the first bad name, before anything is written.
    """
    bad = [name for name in files if not _FILE_NAME.fullmatch(name) or name.startswith(reserved)]
    if bad:
        raise RunError(f"a worker sent a file named {bad[0][:80]!r} for {run_dir.name}")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    for name, data in files.items():
        path = run_dir / name
        path.parent.mkdir(exist_ok=True)
        with open(path, "xb") as f:
            f.write(data)


def check_fan_out(
    *,
    ray: str | None,
    workers: int,
    gpus_per_worker: float,
    shard: tuple[int, int] | None,
    timeout: float | None,
    timeout_name: str,
) -> None:
    """The checks of how a batch (bench, data) fans out, before anything is drawn; a :class:`UsageError`."""
    if workers < 1:
        raise UsageError(f"workers must be 1 or more, got {workers}")
    if not gpus_per_worker >= 0:  # also refuses NaN
        raise UsageError(f"gpus_per_worker must be 0 or more, got {gpus_per_worker}")
    if ray is None and (workers != 1 or gpus_per_worker):
        raise UsageError("workers and gpus_per_worker need ray (--ray local or --ray ADDRESS)")
    if shard is not None and not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise UsageError(f"shard must be I/N with 0 <= I < N, got {'/'.join(map(str, shard))}")
    if timeout is not None and not 0 < timeout < float("inf"):  # also refuses NaN
        raise UsageError(f"{timeout_name} must be a number of seconds over 0, got {timeout}")


def _ray_node() -> str | None:
    """The id of the Ray node this process runs on, None outside Ray."""
    if "ray" not in sys.modules:
        return None
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def failed(job: Job, seed: int, error: str, wall_s: float) -> Drawn:
    """The error record of a job that made no record of its own (it timed out, its worker died)."""
    record = {
        "mode": job.mode,
        "tag": job.item.tag,
        "index": job.item.index,
        "image_index": job.k,
        "seed": seed + job.k,
        "prompt": job.item.prompt,
        "metadata": job.item.metadata,
        "correct": False,
        "reasons": [f"no image: {error}"],
        "detected": {},
        "critic_passed": False,
        "rounds": 0,
        "sampling_steps": 0,
        "wall_s": round(wall_s, 4),
        "judge_s": 0.0,
        "usage": None,
        "error": error,
        "image": None,
        "peak_rss_mib": None,
    }
    return Drawn(job, record, {}, None)


def execute_serial(worker: Any, jobs: list[Any], out: Path, timeout: float | None = None) -> Iterator[Drawn]:
    """Draw ``jobs`` one after the other in this process, in their order: in place under ``out``, or with a
    ``timeout`` (seconds per image) each in a thread of its own, given up on when it runs over.

    Python cannot stop a thread: one given up on runs on in the background until its backend returns
    (its result is dropped, its scratch directory removed), sharing the backends with the next images;
    one whose backend never returns lives until the process exits (a daemon thread, which does not
    hold the exit up).
    """
    for job in jobs:
        if timeout is None:
            yield worker.draw(job, out)
            continue
        box: dict[str, Any] = {}

        def draw(job: Any = job, box: dict[str, Any] = box) -> None:
            try:
                box["drawn"] = worker.draw(job)
            except BaseException as exc:  # noqa: BLE001 - raised again in the bench's thread
                box["error"] = exc

        thread = threading.Thread(target=draw, name=f"sg-bench-{job.rel.as_posix()}", daemon=True)
        started = time.perf_counter()
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            yield worker.lost(worker.setup, job, f"timed out after {timeout:g} s", time.perf_counter() - started)
        elif "error" in box:
            raise box["error"]
        else:
            yield box["drawn"]


@contextmanager
def ray_session(address: str, workers: int, gpus_per_worker: float) -> Iterator[None]:
    """Connected to Ray for the duration: ``"local"`` starts a Ray on this machine (stopped afterwards),
    anything else is the address of a running cluster. Raises :class:`UsageError` when Ray is not
    installed, cannot be reached, or has no room for ``workers`` actors of 1 CPU and ``gpus_per_worker``
    GPUs each: Ray would otherwise wait for room without a word."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError("--ray needs Ray: pip install 'strokegraph[ray]'") from exc

    # Ray's own INFO lines ("Started a local Ray instance") would interleave with the progress lines.
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == "local":
        # A benchmark on this machine reports nothing home unless the user has said otherwise.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # address="local" always starts a new Ray, even where one already runs on this machine.
        ray.init(address="local", num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False, **quiet)
    else:
        _check_reachable(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError) as exc:
            raise UsageError(f"cannot connect to Ray at {address!r}: {_first_line(exc)}") from exc
    try:
        room = _room(ray.nodes(), gpus_per_worker)
        if room < workers:
            total = ray.cluster_resources()
            each = "1 CPU" + (f" and {gpus_per_worker:g} GPU" if gpus_per_worker else "")
            raise UsageError(
                f"the Ray cluster has room for {room} worker(s) of {each}, not {workers} "
                f"(it has {total.get('CPU', 0):g} CPU and {total.get('GPU', 0):g} GPU in all)"
            )
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Raise :class:`UsageError` when ``address`` is ``HOST:PORT`` and nothing answers there: Ray itself
    would retry for many minutes. Other forms (``auto``, ``ray://...``) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in host or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"cannot reach Ray at {address!r}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # has no strerror
        raise UsageError(f"cannot reach Ray at {address!r}: {exc}") from exc


def _room(nodes: list[dict[str, Any]], gpus_per_worker: float) -> int:
    """How many actors of 1 CPU and ``gpus_per_worker`` GPUs the live nodes hold (an actor fits on one node)."""
    room = 0
    for node in nodes:
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        fit = int(have.get("CPU", 0))
        if gpus_per_worker:
            fit = min(fit, int(have.get("GPU", 0) / gpus_per_worker + 1e-9))
        room += fit
    return room


def execute_ray(
    jobs: list[Any],
    setup: Any,
    workers: int,
    gpus_per_worker: float,
    timeout: float | None = None,
    worker: type[Any] = Worker,
) -> Iterator[Drawn]:
    """Draw ``jobs`` on ``workers`` Ray actors of class ``worker`` (each built from ``setup``), one job at a
    time each, yielding each as it lands (in any order).

    Needs a :func:`ray_session`. A job whose actor dies goes to a fresh actor; once :data:`DEATHS` actors
    have died on it, it is an error record. A job that runs over ``timeout`` seconds (counted from when a
    started actor takes it) is an error record, and its actor is killed (``ray.kill``) and replaced. A
    worker's :class:`~strokegraph.errors.StrokegraphError` is raised as it is, and an actor that cannot
    start (its backends or judge fail to build) is a :class:`~strokegraph.errors.RunError`: neither is
    about one image.
    """
    if not jobs:
        return
    import ray

    actor: Any = ray.remote(num_cpus=1, num_gpus=gpus_per_worker)(worker)
    queue = deque(jobs)
    deaths: dict[Path, int] = {}
    starting: dict[Any, Any] = {}  # object ref of its ready() -> an actor still building its backends

    def start() -> None:
        # An actor takes a job only once it has started, so that loading its models is not timed as an image.
        fresh: Any = actor.remote(setup)
        starting[fresh.ready.remote()] = fresh

    for _ in range(min(workers, len(jobs))):
        start()
    running: dict[Any, tuple[Any, Any, float]] = {}  # object ref -> actor, job, when it took the job
    idle: list[Any] = []
    while queue or running:
        while idle and queue:
            a, job = idle.pop(), queue.popleft()
            running[a.draw.remote(job)] = (a, job, time.monotonic())
        wait = None
        if timeout is not None and running:
            wait = max(0.0, min(took for _, _, took in running.values()) + timeout - time.monotonic())
        ready, _ = ray.wait([*starting, *running], num_returns=1, timeout=wait)
        if not ready:
            now = time.monotonic()
            for ref, (a, job, took) in list(running.items()):
                if timeout is not None and now - took >= timeout:
                    del running[ref]
                    ray.kill(a)
                    if queue:
                        start()
                    yield worker.lost(setup, job, f"timed out after {timeout:g} s", now - took)
            continue
        ref = ready[0]
        if ref in starting:
            a = starting.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                # The message of a failed constructor ends with its traceback, whose last line is the error.
                lines = str(exc).strip().splitlines() if exc.actor_init_failed else []
                why = lines[-1][:300] if lines else _first_line(exc)
                raise RunError(f"a Ray worker could not start: {why}") from None
            idle.append(a)
            continue
        a, job, took = running.pop(ref)
        try:
            drawn = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, StrokegraphError):
                raise exc.cause from None
            raise RunError(f"a Ray worker failed: {_first_line(exc.cause)}") from None
        except ray.exceptions.RayActorError as exc:
            ray.kill(a)  # dead already, or unavailable: either way it takes no more jobs
            n = deaths[job.rel] = deaths.get(job.rel, 0) + 1
            if n < DEATHS:
                queue.appendleft(job)
            if queue:
                start()
            if n >= DEATHS:
                error = f"{n} Ray workers died drawing it, the last: {_first_line(exc)}"
                yield worker.lost(setup, job, error, time.monotonic() - took)
            continue
        idle.append(a)
        yield drawn


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _peak_rss_mib() -> float | None:
    """This process's peak resident set size so far (``getrusage`` ``ru_maxrss``), None where there is none."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _draw_and_judge(
    job: Job,
    run_dir: Path,
    backends: registry.Backends,
    judge: Judge,
    seed: int,
    budget: Budget,
    reuse: bool = False,
) -> dict[str, Any]:
    """Draw one image of ``job`` into ``run_dir``, judge it and return its record.

    With ``reuse`` (the judge's detector is the critic's own), the judge takes the detections of the
    critique of the final image when the critic asked for the same nouns, instead of detecting again.
    """
    from PIL import Image

    item, mode, k = job.item, job.mode, job.k
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a run interrupted before its record was written: draw it again
    started = time.perf_counter()
    try:
        result = generate(
            item.prompt,
            out=run_dir,
            **backends.by_role(),
            seed=seed + k,
            budget=budget,
            single_pass=mode == "single_pass",
        )
        error = None
    except RunError as exc:
        result, error = None, str(exc)
    wall_s = time.perf_counter() - started

    started = time.perf_counter()
    truth, truth_error = None, None
    by_truth = isinstance(judge.detector, TruthDetector)
    if result is not None and result.final_image is not None and (by_truth or job.keep == "all"):
        truth, truth_error = _final_truth(run_dir, result, backends)
    if result is not None and result.final_image is not None and by_truth and truth is None:
        correct, reasons, detected = False, [f"no truth: {truth_error}"], {}
    elif result is not None and result.final_image is not None:
        detections = _final_detections(result, item.metadata) if reuse else None
        with Image.open(result.final_image) as im:
            if truth is not None and isinstance(judge.detector, TruthDetector):
                judge.detector.learn(im, truth)
            if detections is not None:
                score = evaluate(item.metadata, detections, size=im.size)
            else:
                score = judge.score(im.convert("RGB"), item.metadata)
        correct, reasons = score.correct, list(score.reasons)
        classes = {c["class"] for c in item.metadata.get("include", []) + item.metadata.get("exclude", [])}
        detected = {c: [d.model_dump() for d in ds] for c, ds in score.detected.items() if c in classes}
    else:
        correct, reasons, detected = False, [f"no image: {error or 'the run made none'}"], {}
    judge_s = time.perf_counter() - started

    used = usage.total(e.usage for e in result.trajectory) if result is not None else None
    if job.keep != "all":
        for child in run_dir.iterdir():
            if job.keep == "image" and child.name == "final.png":
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    return {
        "mode": mode,
        "tag": item.tag,
        "index": item.index,
        "image_index": k,
        "seed": seed + k,
        "prompt": item.prompt,
        "metadata": item.metadata,
        "correct": correct,
        "reasons": reasons,
        "detected": detected,
        "critic_passed": result.passed if result is not None else False,
        "rounds": result.rounds if result is not None else 0,
        "sampling_steps": result.sampling_steps if result is not None else 0,
        "wall_s": round(wall_s, 4),
        "judge_s": round(judge_s, 4),
        "usage": used.model_dump() if used is not None else None,
        "error": error,
        "image": "final.png" if (run_dir / "final.png").is_file() else None,
        "peak_rss_mib": _peak_rss_mib(),
        "truth": _critic_vs_truth(result, truth) if result is not None and truth is not None else None,
    }


def _final_truth(run_dir: Path, result, backends: registry.Backends) -> tuple[Truth | None, str | None]:
    """The truth of the run's final image, recorded now for all its images (sketch runs only); else why not."""
    drawn = [e for e in result.trajectory if e.stage in ("draft", "refine") and e.image is not None]
    if not drawn:
        return None, "the run drew nothing"
    try:
        truths = record_truth(run_dir, backends.drafter, backends.refiner)
    except (UsageError, RunError) as exc:
        return None, str(exc)
    truth = truths.get(drawn[-1].image.path)
    return truth, None if truth is not None else "the final image was not replayed"


def _violation_key(v: Violation) -> tuple:
    return (v.kind, v.entity_ids, v.relation)


def _critic_vs_truth(result, truth: Truth) -> dict[str, Any]:
    """The critic's final critique beside the one its rules give on the true instances.

    A violation of the critic is real when the truth's critique has one of the same kind, entities
    and relation. ``clean``: the truth's critique passes.
    """
    from strokegraph.agents.critic import judge as judge_detections

    scope = frozenset(e.id for e in result.scene.entities)
    true = judge_detections(result.scene, scope, truth.detections())
    critic = result.critique.violations if result.critique is not None else ()
    real = {_violation_key(v) for v in true.violations}
    return {
        "clean": true.passed,
        "exact": truth.exact,
        "critic_violations": len(critic),
        "real_violations": sum(_violation_key(v) in real for v in critic),
        "true_violations": len(true.violations),
        "found_violations": len(real & {_violation_key(v) for v in critic}),
    }


def _final_detections(result, metadata: dict[str, Any]) -> tuple[Detection, ...] | None:
    """The detections the critic made on the final image, if it asked for exactly the judge's nouns.

    A detector's answer may depend on every noun it is asked for (the sketch world's codes for
    unknown nouns, Grounding DINO's joined query), so they are reused only for the same set of nouns;
    the order of the query is the critic's, which GenEval leaves open. None: detect again.
    """
    if not result.trajectory or result.scene is None:
        return None
    last = result.trajectory[-1]
    drawn = [e for e in result.trajectory if e.stage in ("draft", "refine")]
    if last.stage != "critique" or last.critique is None or not drawn or last.image != drawn[-1].image:
        return None
    clauses = [*metadata.get("include", []), *metadata.get("exclude", [])]
    if {c["class"] for c in clauses} != {e.noun for e in result.scene.entities}:
        return None
    return last.critique.detections
