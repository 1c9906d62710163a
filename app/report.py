"""``report.html``: one self-contained page showing a run step by step.

The run state it shows may come from a hostile model reply or a tampered checkpoint, so the page is
built as if every value in it were an attack. This module gathers the values (numbers stay numbers,
formatted by the template's ``num`` filter; images are ``data:`` URLs built here from checked PNG
bytes) and ``templates/report.html.j2`` lays them out through :func:`strokegraph.app.pages.render`,
which escapes every one of them after removing escape sequences, control characters and bidi
controls. A Content-Security-Policy that allows no script at all backs this up.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from strokegraph import usage
from strokegraph.app.pages import num, render
from strokegraph.errors import RunError
from strokegraph.graph.state import RunState
from strokegraph.schema import Critique, Event, ImageRef, write_new

__all__ = ["write_report"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _checked_png(run_dir: Path, ref: object) -> tuple[ImageRef, bytes] | str:
    """The image ``ref`` points at, with its bytes, or the reason it cannot be shown.

    ``ref`` is validated again here (a checkpoint can carry an unvalidated one), then read through
    :meth:`ImageRef.read_bytes`, which refuses symlinks and files whose sha256 differs.
    """
    try:
        fields = {k: getattr(ref, k, None) for k in ("path", "sha256", "width", "height")}
        checked = ImageRef.model_validate(fields)
    except ValidationError as exc:
        return f"invalid image reference: {exc.errors()[0]['msg']}"
    try:
        data = checked.read_bytes(run_dir)
    except RunError as exc:
        return str(exc)
    if not data.startswith(_PNG_SIGNATURE):
        return f"image {checked.path!r} is not a PNG"
    return checked, data


def _box(box: object) -> tuple[float, float, float, float] | None:
    """``box`` clamped to the image (0..1), or None when it is not four finite numbers."""
    if not isinstance(box, tuple | list) or len(box) != 4:
        return None
    if not all(type(v) in (int, float) and math.isfinite(v) for v in box):
        return None
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in box)
    return x0, y0, max(x0, x1), max(y0, y1)


def _figure(run_dir: Path, ref: object, critique: Critique | None = None) -> dict[str, Any]:
    """The image with the critique's violation boxes to draw over it; or why it cannot be shown."""
    found = _checked_png(run_dir, ref)
    if isinstance(found, str):
        return {"missing": found}
    checked, data = found
    w, h = checked.width, checked.height
    boxes = []
    for i, v in enumerate(critique.violations if critique else ()):
        if (box := _box(getattr(v, "box", None))) is None:
            continue
        x0, y0, x1, y1 = box
        boxes.append(
            {
                "x": x0 * w,
                "y": y0 * h,
                "width": (x1 - x0) * w,
                "height": (y1 - y0) * h,
                "stroke": max(2, w // 170),
                "label_x": x0 * w + 4,
                "label_y": y0 * h + 18,
                "font": max(14, w // 28),
                "label": i + 1,
            }
        )
    # Base64 of bytes checked to be this PNG: the only characters are [A-Za-z0-9+/=].
    url = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return {"missing": None, "width": w, "height": h, "url": url, "boxes": boxes}


def _critique(c: Critique) -> dict[str, Any]:
    seen = ", ".join(f"{d.colour or ''} {d.noun}".strip() for d in c.detections) or "nothing"
    return {"passed": c.passed, "violations": c.violations, "unjudged": c.unjudged, "seen": seen}


def _section(run_dir: Path, state: RunState, step: int, events: list[Event]) -> dict[str, Any]:
    """The step's plan, then one card per image (draft, refinements) with its critique on it."""
    assert state.plan is not None  # a step section is drawn only for a planned run
    plan_step = state.plan.steps[step]
    cards: list[dict[str, Any]] = []
    for e in events:
        if e.stage in ("draft", "refine") and e.image:
            if e.stage == "draft":
                title, how = f"Draft ({e.backend}, {num(e.duration_s, '.2f')} s)", None
            else:
                r = e.refinement
                region = ""
                if r and r.region:
                    region = ", region ({})".format(", ".join(str(num(x, ".2f")) for x in r.region))
                title = f"Refinement {num(e.round, 'd')} ({r.operation if r else ''}{region})"
                how = {"text": e.text}
            cards.append({"image": e.image, "title": title, "how": how, "critique": None})
        elif e.stage == "critique" and e.critique is not None and cards:
            cards[-1]["critique"] = e.critique
    for card in cards:
        c = card.pop("critique")
        card["figure"] = _figure(run_dir, card.pop("image"), c)
        card["critique"] = _critique(c) if c is not None else None
    return {
        "number": step + 1,
        "instruction": plan_step.instruction,
        "description": plan_step.description,
        "cards": cards,
    }


def _usage(state: RunState) -> dict[str, Any] | str | None:
    try:
        used = usage.total(e.usage for e in state.trajectory)
    except (TypeError, ValueError):  # counts that are not numbers (an unvalidated checkpoint)
        return "unreadable"
    if used is None:
        return None
    tokens = used.prompt_tokens + used.completion_tokens
    return {"calls": used.calls, "tokens": tokens, "images": used.images, "cost": used.cost_usd}


def _verdict(state: RunState, passed: bool) -> dict[str, Any]:
    """The run's result in words, from ``state``: never a bare "passed" while the critic left
    constraints unjudged, and "passed" only when the caller says the run passed."""
    c = state.critique
    unjudged = tuple(c.unjudged) if c is not None else ()
    judged_last = c is not None and state.plan is not None and state.step == len(state.plan.steps) - 1
    if state.stopped:
        cls, word = "bad", "stopped in review"
    elif not judged_last:
        # Interrupted, failed or waiting: the last step was never judged, whatever the last critique said.
        cls, word = "bad", "not finished"
    elif c is not None and not c.passed:  # judged_last says c is not None
        cls, word = "bad", "violations left"
    elif unjudged:
        cls, word = "warn", "passed what was judged"
    elif passed:
        cls, word = "ok", "passed"
    else:
        cls, word = "bad", "not finished"
    return {"cls": cls, "word": word, "unjudged": unjudged}


def write_report(run_dir: Path, state: RunState, *, passed: bool) -> Path:
    """Write ``run_dir/report.html`` for ``state`` (a finished or an interrupted run).

    Every value from ``state`` is shown as text; an image that fails its checks is replaced by a
    placeholder naming the problem. The file replaces whatever ``report.html`` was (never written
    through a symlink).
    """
    run_dir = Path(run_dir)
    scene = None
    if state.scene is not None:
        scene = {
            "entities": [{"id": e.id, "phrase": e.phrase()} for e in state.scene.entities],
            "relations": state.scene.relations,
            "constraints": state.scene.constraints,
        }
    sections = []
    if state.plan is not None:
        for step in range(len(state.plan.steps)):
            events = [e for e in state.trajectory if e.step == step]
            if events:
                sections.append(_section(run_dir, state, step, events))
    page = render(
        "report",
        prompt=state.prompt,
        verdict=_verdict(state, passed),
        mode="single pass" if state.single_pass else "plan → draft → critique → refine loop",
        steps=len(state.plan.steps) if state.plan else 0,
        rounds=state.rounds_total,
        sampling_steps=state.sampling_steps,
        usage=_usage(state),
        scene=scene,
        sections=sections,
        final=_figure(run_dir, state.image, state.critique) if state.image is not None else None,
    )
    path = run_dir / "report.html"
    # A model reply can carry a lone surrogate, which UTF-8 cannot encode; it shows as '?'.
    write_new(path, page.encode("utf-8", "replace"))
    return path
