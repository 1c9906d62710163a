"""What a run leaves for a person: its result, and ``trajectory.json``, ``final.png`` and ``report.html``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strokegraph import usage
from strokegraph._redact import redact_url
from strokegraph.errors import RunError
from strokegraph.graph import RunState
from strokegraph.graph.state import ImageCache
from strokegraph.schema import Critique, Event, Plan, SceneGraph, write_new

__all__ = ["Result", "result_of", "write_outputs"]


@dataclass(frozen=True)
class Result:
    """What a finished run produced. Every path lies inside ``run_dir``."""

    run_dir: Path
    final_image: Path | None
    passed: bool
    critique: Critique | None
    scene: SceneGraph | None
    plan: Plan | None
    trajectory: list[Event]
    rounds: int
    sampling_steps: int
    interrupt: dict[str, Any] | None = None
    """With ``review=True``: what the run waits for a person to answer (then ``passed`` is False);
    continue with :func:`resume` and ``answer=``."""
    unjudged: tuple[str, ...] = ()
    """Parts of the prompt the final critique could not judge. ``passed`` speaks only for the rest."""
    stopped: bool = False
    """A person reviewing the run stopped it."""
    thread_id: str | None = None
    """The run's thread when its checkpoints or images go to a shared place (a database, a store),
    which :func:`resume` takes as ``thread=`` on any machine; None for a run kept in its directory."""


def result_of(run_dir: Path, state: RunState) -> Result:
    final = run_dir / "final.png" if state.image else None
    return Result(
        run_dir=run_dir,
        final_image=final,
        passed=bool(
            state.critique and state.critique.passed and state.plan and state.step == len(state.plan.steps) - 1
        ),
        critique=state.critique,
        scene=state.scene,
        plan=state.plan,
        trajectory=list(state.trajectory),
        rounds=state.rounds_total,
        sampling_steps=state.sampling_steps,
        unjudged=state.critique.unjudged if state.critique else (),
        stopped=state.stopped,
    )


def write_outputs(
    run_dir: Path, state: RunState, error: BaseException | None = None, images: ImageCache | None = None
) -> None:
    """Write trajectory.json, final.png and report.html for whatever state the run reached.

    With ``images`` (the run's :class:`ImageCache`), images the run made elsewhere (a run resumed on
    another machine) are fetched from its store first; one that cannot be fetched is shown as
    missing in the report, and fails the call when it is the final image.
    """
    from strokegraph.app.report import write_report

    result = result_of(run_dir, state)
    if images is not None:
        refs = {e.image.path: e.image for e in state.trajectory if e.image is not None}
        for ref in refs.values():
            if ref != state.image:
                try:
                    images.fetch(ref, run_dir)
                except RunError:
                    pass  # the report says the image cannot be shown, and why reading it fails
        if state.image is not None:
            images.fetch(state.image, run_dir)
    if state.image is not None:
        # read_bytes checks the image is the run's own (contained, no symlink, same sha256).
        write_new(run_dir / "final.png", state.image.read_bytes(run_dir))
    doc = {
        "prompt": state.prompt,
        "single_pass": state.single_pass,
        "passed": result.passed,
        "finished": state.critique is not None and state.step == (len(state.plan.steps) - 1 if state.plan else -2),
        "rounds": state.rounds_total,
        "sampling_steps": state.sampling_steps,
        "usage": (used.model_dump() if (used := usage.total(e.usage for e in state.trajectory)) else None),
        "budget": state.budget.model_dump(),
        "scene": state.scene.model_dump() if state.scene else None,
        "plan": state.plan.model_dump() if state.plan else None,
        "final_image": "final.png" if state.image else None,
        "final_critique": state.critique.model_dump() if state.critique else None,
        "error": None if error is None else redact_url(f"{type(error).__name__}: {error}"),
        "events": [e.model_dump() for e in state.trajectory],
        "reviews": state.reviews,
        "stopped": state.stopped,
    }
    write_new(run_dir / "trajectory.json", json.dumps(doc, indent=2).encode())
    report = run_dir / "report.html"
    if report.is_symlink():  # a planted link is replaced, never written through
        report.unlink()
    write_report(run_dir, state, passed=result.passed)
