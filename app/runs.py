"""Finished run directories, read as untrusted input.

A run directory is what :func:`strokegraph.app.runner.generate` writes (``run.json``,
``trajectory.json``, ``images/``). Every file is read with :func:`~strokegraph.schema.read_plain`
(no symlinks, a size cap), every record validated by its pydantic model, and every image through
:meth:`ImageRef.read_bytes <strokegraph.schema.ImageRef.read_bytes>` (contained in ``images/``,
sha256 as recorded). A run that fails any check is :class:`Skipped`, with the reason in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from strokegraph.errors import RunError, UsageError
from strokegraph.schema import Event, ImageRef, Plan, SceneGraph, read_plain

__all__ = ["RunData", "Skipped", "find_runs", "load_run"]

_MAX_JSON = 64 << 20
#: A run's sidecar written by ``strokegraph data``: where its prompt came from.
SOURCE = "source.json"


class Skipped(Exception):
    """A run directory that cannot be exported; the message says why, in one line."""


@dataclass(frozen=True)
class RunData:
    """What the export needs of one finished run. Images stay on disk until a row asks for them."""

    run_dir: Path
    run_id: str
    prompt: str
    prompt_source: str
    tag: str
    seed: int
    version: str
    backends: dict[str, str]
    scene: SceneGraph
    plan: Plan
    events: tuple[Event, ...]
    passed: bool

    def image(self, ref: ImageRef) -> bytes:
        """The PNG bytes of ``ref``, checked (contained, no symlink, recorded sha256)."""
        return ref.read_bytes(self.run_dir)


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(read_plain(path, _MAX_JSON))
    except FileNotFoundError:
        raise Skipped(f"no {path.name}") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise Skipped(f"{path.name} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(doc, dict):
        raise Skipped(f"{path.name} is not a JSON object")
    return doc


def find_runs(paths: list[str | os.PathLike]) -> Iterator[Path]:
    """The run directories under ``paths``, in sorted order: a path holding ``trajectory.json`` is a
    run; any other folder is searched (a benchmark's output kept with ``--keep-runs``, a data folder).

    Raises :class:`UsageError` for a path that does not exist, or a run directory named directly
    that has no images.
    """
    for given in paths:
        root = Path(given)
        if not root.is_dir() or root.is_symlink():
            raise UsageError(f"{str(root)!r} is not a run directory or a folder of runs")
        if (root / "trajectory.json").exists():
            if not (root / "images").is_dir():
                raise UsageError(f"{str(root)!r} is a run directory without images/; nothing to export")
            yield root
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            if "trajectory.json" in filenames:
                dirnames.clear()  # a run's own folders (images/) hold no runs
                yield Path(dirpath)


def _bench_context(run_dir: Path) -> tuple[str, str, dict[str, str]] | None:
    """(benchmark, tag, backend ids) for a run kept by ``strokegraph bench`` (``<out>/<mode>/<tag>/<i>-<k>``)."""
    record_path, manifest_path = run_dir / "record.json", run_dir.parent.parent.parent / "bench.json"
    if not record_path.exists() or not manifest_path.exists():
        return None
    record, manifest = _json(record_path), _json(manifest_path)
    benchmark, tag, backends = manifest.get("benchmark"), record.get("tag"), manifest.get("backends")
    if not isinstance(benchmark, str) or not isinstance(tag, str) or not isinstance(backends, dict):
        raise Skipped("record.json or bench.json is damaged")
    return benchmark, tag, {str(k): str(v) for k, v in backends.items()}


def load_run(run_dir: Path) -> RunData:
    """Read and check a finished run; raises :class:`Skipped` (one line) for anything else."""
    record, doc = _json(run_dir / "run.json"), _json(run_dir / "trajectory.json")
    try:
        scene = SceneGraph.model_validate(doc.get("scene"))
        plan = Plan.model_validate(doc.get("plan"))
        events = tuple(Event.model_validate(e) for e in doc.get("events") or [])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "top level"
        raise Skipped(f"trajectory.json is not a strokegraph trajectory ({where}: {first['msg']})") from None
    if doc.get("finished") is not True:
        raise Skipped("the run did not finish")
    prompt, seed, version = record.get("prompt"), record.get("seed"), record.get("strokegraph")
    backends = record.get("backends")
    if not isinstance(prompt, str) or prompt != doc.get("prompt") or prompt != scene.prompt:
        raise Skipped("run.json and trajectory.json name different prompts")
    if not isinstance(seed, int) or isinstance(seed, bool) or not isinstance(version, str):
        raise Skipped("run.json is damaged (seed, strokegraph version)")
    if not isinstance(backends, dict) or not all(isinstance(v, str) for v in backends.values()):
        raise Skipped("run.json is damaged (backends)")
    drawn = [e for e in events if e.image is not None]
    if not drawn:
        raise Skipped("the run has no images")
    try:
        for ref in {e.image.path: e.image for e in events if e.image is not None}.values():
            ref.read_bytes(run_dir)
    except RunError as exc:
        raise Skipped(str(exc)) from None

    source, tag = "user", ""
    bench = _bench_context(run_dir)
    if bench is not None:
        source, tag, bench_ids = bench
        # A benchmark builds its backends once and hands the objects to each run, which records them as custom:.
        backends = {**backends, **bench_ids}
    elif (run_dir / SOURCE).exists():
        meta = _json(run_dir / SOURCE)
        source, tag = meta.get("source", "user"), meta.get("tag", "")
        if not isinstance(source, str) or not isinstance(tag, str):
            raise Skipped(f"{SOURCE} is damaged")
    # What the run made, not how long it took: two draws of one run (here, on Ray workers, another day)
    # give the same rows, the same ids and the same perturbations.
    made = [e.model_dump(mode="json", exclude={"duration_s"}) for e in events]
    content = json.dumps({"prompt": prompt, "seed": seed, "events": made}, sort_keys=True).encode()
    digest = hashlib.sha256(content).hexdigest()[:12]
    thread = record["thread_id"] if isinstance(record.get("thread_id"), str) else run_dir.name
    last_critique = next((e.critique for e in reversed(events) if e.stage == "critique"), None)
    last_image = drawn[-1].image
    passed = bool(
        doc.get("passed") is True
        and last_critique is not None
        and last_critique.passed
        and events[-1].stage == "critique"
        and events[-1].image == last_image
    )
    return RunData(
        run_dir=run_dir,
        run_id=f"{thread[:64]}-{digest}",
        prompt=prompt,
        prompt_source=source,
        tag=tag,
        seed=seed,
        version=version,
        backends={str(k): str(v) for k, v in backends.items()},
        scene=scene,
        plan=plan,
        events=events,
        passed=passed,
    )
