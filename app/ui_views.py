"""What the browser UI (:mod:`strokegraph.app.ui`) shows, built from untrusted runs without Gradio.

A session's run as escaped HTML and checked pictures, the pending review as form rows and those rows
back into the CLI's answers, the runs under ``--runs`` as gallery cards, report frames and two runs
aligned step by step, and the benchmark folders there as their pages.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import queue
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from strokegraph._redact import redact_url
from strokegraph._text import printable
from strokegraph.app.runs import RunData, Skipped, load_run
from strokegraph.errors import RunError, StrokegraphError, UsageError
from strokegraph.schema import Critique, ImageRef, inside_image, read_plain

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "PLAN_HEADERS",
    "Session",
    "VERDICTS",
    "VIOLATION_HEADERS",
    "check_box",
    "bench_frame",
    "bench_names",
    "compare_steps",
    "esc",
    "follow_run",
    "one_line",
    "checked_picture",
    "plan_answer",
    "plan_rows",
    "report_frame",
    "route_picture",
    "run_card",
    "run_folder",
    "run_names",
    "thumbnail",
    "violation_rows",
    "violations_answer",
    "whole",
]

_MAX_JSON = 64 << 20
_MAX_RUNS = 500  # the gallery shows the newest runs; a folder of a million must not stall the page
VERDICTS = ("all", "passed", "passed what was judged", "violations left", "stopped in review", "not finished")
_POLL_S = 0.5  # how often a page waiting on a stage redraws its activity line


def one_line(exc: BaseException) -> str:
    """An error as one line for the page, without the credentials of any URL in it."""
    if isinstance(exc, OSError) and not isinstance(exc, StrokegraphError):
        text = f"{exc.strerror or exc}" + (f": {exc.filename!r}" if exc.filename else "")
    else:
        text = str(exc)
    return " ".join(printable(redact_url(text)).split())


def esc(text: object) -> str:
    return html.escape(printable(text))


# ---------------------------------------------------------------------------------------------
# Pictures: checked PNG bytes, decoded, with the critique's boxes drawn
# ---------------------------------------------------------------------------------------------


def _decode(data: bytes) -> Image.Image:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def _boxed(image: Image.Image, critique: Critique | None) -> Image.Image:
    """``image`` with each violation's box drawn and numbered as in the critique's list."""
    from PIL import ImageDraw

    image = image.copy()
    draw = ImageDraw.Draw(image)
    w, h = image.size
    for i, v in enumerate(critique.violations if critique else (), 1):
        if v.box is None:
            continue
        x0, y0, x1, y1 = (min(1.0, max(0.0, c)) for c in v.box)
        corners = (x0 * w, y0 * h, max(x0, x1) * w, max(y0, y1) * h)
        draw.rectangle(corners, outline=(220, 30, 30), width=max(2, w // 170))
        draw.text((x0 * w + 4, y0 * h + 2), str(i), fill=(220, 30, 30))
    return image


def checked_picture(run_dir: Path, ref: object, critique: Critique | None = None) -> Image.Image | None:
    """The run's image ``ref`` (checked: contained, no symlink, its recorded sha256), boxes drawn; None if not."""
    try:
        data = ImageRef.model_validate(ref).read_bytes(run_dir)
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            return None
        return _boxed(_decode(data), critique)
    except (ValidationError, RunError, OSError, ValueError):
        return None


def route_picture(run_dir: Path, path: object, critique: Critique | None = None) -> Image.Image | None:
    """The run's ``images/<name>.png`` as the image route serves it (plain names, no symlink, PNG), boxes drawn."""
    from strokegraph.app.webapp import read_image

    data = read_image(run_dir.parent, f"{run_dir.name}/{path}") if isinstance(path, str) else None
    try:
        return _boxed(_decode(data), critique) if data is not None else None
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# A run on the page: what it has shown so far, per browser session
# ---------------------------------------------------------------------------------------------


def _plan_steps(text: object) -> list[tuple[str, str]]:
    """The plan event's ``<ins>...</ins> <des>...</des>`` pairs: (instruction, description) per step."""
    return re.findall(r"<ins>(.*?)</ins> <des>(.*?)</des>", str(text))


def _plan_html(text: object) -> tuple[int, str]:
    """The plan event's steps as a numbered list, with their count."""
    steps = _plan_steps(text)
    items = "".join(f"<li><b>{esc(i)}</b><br><small>{esc(d)}</small></li>" for i, d in steps)
    return len(steps), f"<ol>{items}</ol>"


def _critique_html(critique: Critique) -> str:
    """The critique's violations (numbered as their boxes are) and the parts it did not judge."""
    items = "".join(f"<li>{esc(v.kind)}: {esc(v.message)}</li>" for v in critique.violations)
    items += "".join(f"<li><i>not judged: {esc(u)}</i></li>" for u in critique.unjudged)
    return f"<ol>{items}</ol>" if critique.violations else f"<p>No violations.</p><ul>{items}</ul>"


@dataclass
class Session:
    """One browser session's run: what its page shows, and what answering or resuming it needs."""

    run_dir: Path | None = None
    chosen: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    """HTML fragments, escaped here, one per finished stage."""
    shelf: Path | None = None
    """Where this app keeps the pictures it shows (a temporary folder): each is written once, as PNG."""
    gallery: list[tuple[str, str]] = field(default_factory=list)
    """Each stage's picture (a file on the shelf) with its caption."""
    final: Any = None
    verdict: str = ""
    status: str = ""
    interrupt: dict[str, Any] | None = None
    last_image: dict[str, Any] | None = None
    """The latest drawn image's reference, which the next critique's boxes go on."""
    error: BaseException | None = None
    """What stopped the last call, if anything did."""

    def stage(self, event: dict) -> None:
        """Show a finished stage (an ``end`` event carrying the trajectory ``event``)."""
        record = event.get("event") or {}
        step, rnd = event.get("step", -1), event.get("round", 0)
        where = "plan" if step < 0 else f"step {step + 1}" + (f" round {rnd}" if rnd else "")
        stage = event.get("stage")
        took = f"{event.get('duration_s', 0.0):.2f} s"
        if stage == "plan":
            steps, items = _plan_html(record.get("text", ""))
            self.log.append(f"<h4>Plan ({steps} step(s), {took})</h4>{items}")
        elif stage in ("draft", "refine") and self.run_dir is not None:
            self.last_image = record.get("image")
            drawn = checked_picture(self.run_dir, self.last_image)
            if stage == "draft":
                self.log.append(f"<h4>Draft, {where} ({took})</h4><p>{esc(record.get('text', ''))}</p>")
            else:
                self.log.append(f"<h4>&lt;refine&gt; {where} ({took})</h4><p>{esc(record.get('text', ''))}</p>")
            if drawn is not None:
                self.gallery.append((self.keep(drawn), f"{stage} {where}"))
        elif stage == "critique" and self.run_dir is not None:
            try:
                critique = Critique.model_validate(record.get("critique") or {})
            except ValidationError:
                critique = Critique()
            self.log.append(f"<h4>Critique, {where} ({took})</h4>{_critique_html(critique)}")
            drawn = checked_picture(self.run_dir, record.get("image") or self.last_image, critique)
            if drawn is not None:
                self.gallery.append((self.keep(drawn), f"critique {where}: {len(critique.violations)} violation(s)"))

    def keep(self, picture: Image.Image) -> str:
        """``picture`` as a PNG file on the shelf: the page is sent each picture once, never re-encoded."""
        assert self.shelf is not None  # the app gives every session its shelf
        with tempfile.NamedTemporaryFile(dir=self.shelf, suffix=".png", delete=False) as f:
            picture.save(f, format="PNG")
        return f.name

    def finish(self, result) -> None:
        from strokegraph.app.cli import verdict

        self.interrupt = result.interrupt
        self.run_dir = result.run_dir
        if result.final_image is not None:
            picture = route_picture(result.run_dir, "final.png")
            self.final = self.keep(picture) if picture is not None else None
        if result.interrupt is not None:
            pending = result.interrupt
            what = "the plan"
            if pending["kind"] == "critique":
                what = f"the critique of step {pending['step'] + 1} round {pending['round']}"
            self.status = f"Waiting for your review of {what}."
            return
        words, _ = verdict(result)
        unjudged = "".join(f"<li>not judged: {esc(u)}</li>" for u in result.unjudged)
        self.verdict = f"<p class='verdict'><b>{esc(words)}</b></p><ul>{unjudged}</ul>"
        self.status = f"Done: {esc(words)}. Files in {esc(result.run_dir)}."


def _activity(event: dict, since: float) -> str:
    """The line shown while a stage works: a bar with the time left while a backend samples."""
    stage = esc(event.get("stage", ""))
    step = event.get("step", -1)
    where = "plan" if step < 0 else f"step {step + 1}"
    if event.get("kind") == "progress" and event.get("total"):
        done, total = int(event["step"]), int(event["total"])
        spent = time.perf_counter() - since
        left = spent / done * (total - done) if done else 0.0
        return (
            f"<span class='busy'></span> {stage}: sampling <progress value='{done}' max='{total}'></progress> "
            f"{done}/{total}, about {left:.0f} s left"
        )
    return f"<span class='busy'></span> {stage} {where}: working ({time.perf_counter() - since:.1f} s)"


def follow_run(session: Session, call: Callable[[Callable[[dict], None]], Any]) -> Iterator[Session]:
    """Run ``call(on_progress)`` in its own thread and yield ``session`` after each thing it shows.

    The thread is not tied to the page: a closed tab leaves the run working to its end (or its
    next review), with every stage saved as usual.
    """
    events: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            events.put(("done", call(events.put)))
        except Exception as exc:  # noqa: BLE001 - every failure becomes the page's one message
            events.put(("error", exc))

    session.error = None
    threading.Thread(target=work, daemon=True, name="strokegraph-ui-run").start()
    working: dict | None = None
    since = time.perf_counter()
    while True:
        try:
            items = [events.get(timeout=_POLL_S)]
        except queue.Empty:
            if working is not None:
                session.status = _activity(working, since)
                yield session
            continue
        # What else has arrived goes into the same update: a page is sent the latest state, once.
        while not events.empty():
            items.append(events.get_nowait())
        for item in items:
            if not isinstance(item, dict):
                break
            kind = item.get("kind")
            if kind == "start":
                working, since = item, time.perf_counter()
                session.status = _activity(item, since)
            elif kind == "progress" and working is not None:
                session.status = _activity(item, since)
            elif kind == "end":
                # An end is reported once saved, which may be after the next stage started.
                if working is not None and all(working.get(k) == item.get(k) for k in ("stage", "step", "round")):
                    working = None
                session.stage(item)
        else:
            yield session
            continue
        what, value = item
        if what == "done":
            session.finish(value)
        else:
            session.error = value
            where = getattr(value, "run_dir", None)
            hint = " What the run made is kept; resume it from Runs." if where is not None else ""
            session.status = f"<b>Error:</b> {esc(one_line(value))}{hint}"
            if where is not None:
                session.run_dir = Path(where)
        yield session
        return


# ---------------------------------------------------------------------------------------------
# Review forms: the pending review as rows, and rows back into the CLI's answers
# ---------------------------------------------------------------------------------------------

PLAN_HEADERS = ["instruction", "description", "entity ids"]
VIOLATION_HEADERS = ["keep", "kind", "message", "expected", "observed", "box"]


def _rows(table: Any) -> list[list[Any]]:
    """A Dataframe's value as rows, whether it arrives as a pandas frame or as ``{"data": ...}``."""
    if table is None:
        return []
    if isinstance(table, dict):
        return [list(r) for r in table.get("data") or []]
    return [list(r) for r in table.values.tolist()]


def plan_rows(interrupt: dict | None) -> list[list[str]]:
    if not interrupt or interrupt["kind"] != "plan":
        return []
    return [[s["instruction"], s["description"], ", ".join(s["entity_ids"])] for s in interrupt["plan"]["steps"]]


def violation_rows(interrupt: dict | None) -> list[list[Any]]:
    if not interrupt or interrupt["kind"] != "critique":
        return []
    rows = []
    for v in interrupt["critique"]["violations"]:
        box = ", ".join(f"{c:.3f}" for c in v["box"]) if v.get("box") else ""
        rows.append([True, v["kind"], v["message"], v["expected"], v["observed"], box])
    return rows


def _box(text: str) -> list[float] | None:
    """``x0, y0, x1, y1`` (fractions of the image) from a cell; None for an empty cell."""
    if not str(text or "").strip():
        return None
    try:
        box = [float(c) for c in str(text).replace(";", ",").split(",")]
    except ValueError:
        raise UsageError(f"box {str(text)[:80]!r} is not four numbers x0, y0, x1, y1") from None
    check_box(box)
    return box


def whole(what: str, value: object, most: int) -> int:
    """A whole number from a number field, from 0 to ``most``; a :class:`UsageError` otherwise."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise UsageError(f"{what} must be a whole number from 0 to {most}, got {value!r}")
    return value


def check_box(box: list[float]) -> None:
    if not inside_image(box):
        raise UsageError(
            f"box {box!r} is not inside the image: x0 < x1 and y0 < y1, each from 0 to 1 (draw it on the image)"
        )


def plan_answer(table: Any) -> dict:
    steps = []
    for row in _rows(table):
        instruction, description, ids = (str(c or "").strip() for c in (row + ["", "", ""])[:3])
        if not instruction:  # a row whose instruction is cleared is a deleted step
            continue
        steps.append(
            {
                "instruction": instruction,
                "description": description,
                "entity_ids": [i.strip() for i in ids.split(",") if i.strip()],
            }
        )
    return {"action": "edit", "plan": {"steps": steps}}


def violations_answer(table: Any, interrupt: dict) -> dict:
    """The edited rows as violations; each keeps what the table does not show (entities, relation)."""
    original = interrupt["critique"]["violations"]
    violations = []
    for i, row in enumerate(_rows(table)):
        keep, kind, message, expected, observed, box = (row + [True, "", "", "", "", ""][len(row) :])[:6]
        if keep is False or str(keep).lower() == "false":
            continue
        base = dict(original[i]) if i < len(original) else {}
        base.update(kind=str(kind), message=str(message), expected=str(expected), observed=str(observed))
        base["box"] = _box(box)
        violations.append(base)
    return {"action": "edit", "violations": violations}


# ---------------------------------------------------------------------------------------------
# The runs under --runs: the gallery, a run's page, two runs side by side
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunCard:
    name: str
    """The run's folder under ``--runs`` (plain names joined by ``/``)."""
    prompt: str
    verdict: str
    category: str
    backends: str
    seconds: float
    cost: float | None


def _json(path: Path) -> dict:
    try:
        doc = json.loads(read_plain(path, _MAX_JSON))
    except RecursionError:  # nested past what json can parse: unreadable, as any other bad JSON
        raise ValueError(f"{path.name} is nested too deeply to read") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return doc


def _field(doc: dict, key: str, kind: type) -> Any:
    """``doc[key]`` when it is a ``kind`` (a dict or a list), else an empty one: a run's files may hold anything."""
    value = doc.get(key)
    return value if isinstance(value, kind) else kind()


def run_card(runs: Path, name: str) -> _RunCard:
    """A run's line in the gallery, from its run.json and trajectory.json (both untrusted)."""
    from strokegraph.app.cli import EXIT_BUDGET, EXIT_STOPPED, EXIT_UNJUDGED, verdict

    run_dir = runs / name
    record = _json(run_dir / "run.json")
    try:
        doc = _json(run_dir / "trajectory.json")
    except FileNotFoundError:
        doc = {}
    backends = _field(record, "backends", dict)
    events = _field(doc, "events", list)
    seconds = sum(e["duration_s"] for e in events if isinstance(e, dict) and type(e.get("duration_s")) in (int, float))
    cost = _field(doc, "usage", dict).get("cost_usd")
    cost = cost if type(cost) in (int, float) else None
    if doc.get("stopped") is True or doc.get("finished") is True:
        try:
            critique = Critique.model_validate(doc.get("final_critique") or {})
        except ValidationError:
            critique = Critique()
        result = SimpleNamespace(
            stopped=doc.get("stopped") is True,
            passed=doc.get("passed") is True,
            critique=critique,
            rounds=doc.get("rounds") if type(doc.get("rounds")) is int else 0,
            unjudged=critique.unjudged,
        )
        words, code = verdict(result)
        category = {EXIT_STOPPED: "stopped in review", EXIT_BUDGET: "violations left", EXIT_UNJUDGED: VERDICTS[2]}
        kind = category.get(code, "passed")
    else:
        words = kind = "not finished"
    return _RunCard(
        name=name,
        prompt=str(record.get("prompt", "")),
        verdict=words,
        category=kind,
        backends=", ".join(f"{r}={v}" for r, v in backends.items() if isinstance(v, str)),
        seconds=float(seconds),
        cost=float(cost) if cost is not None else None,
    )


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _holding(runs: Path, marker: str) -> list[str]:
    """The folders under ``runs`` holding the file ``marker``, at most two plain names deep; symlinks never followed."""
    names = []
    for dirpath, dirnames, filenames in os.walk(runs, followlinks=False):
        rel = Path(dirpath).relative_to(runs)
        if marker in filenames and rel.parts and all(_NAME.fullmatch(p) and ".." not in p for p in rel.parts):
            names.append(rel.as_posix())
            dirnames.clear()  # a run's or a benchmark's own folders hold no other
        if len(rel.parts) >= 2:  # a run, or a thread folder of runs: nothing deeper
            dirnames.clear()
        dirnames.sort()
    return names


def run_names(runs: Path) -> list[str]:
    """The runs under ``runs`` (a folder holding run.json), newest name first."""
    return sorted(_holding(runs, "run.json"), reverse=True)[:_MAX_RUNS]


def thumbnail(runs: Path, name: str) -> Image.Image | None:
    from strokegraph.app.webapp import read_image

    data = read_image(runs, f"{name}/final.png")
    if data is None:
        return None
    try:
        image = _decode(data)
    except (OSError, ValueError):
        return None
    image.thumbnail((256, 256))
    return image


def _folder(runs: Path, name: object, what: str) -> Path:
    """The folder ``name`` names under ``runs``: plain names only, at most two, never a link, never outside."""
    text = str(name or "")
    parts = text.split("/")
    if not text or not all(_NAME.fullmatch(p) and ".." not in p for p in parts) or len(parts) > 2:
        raise UsageError(f"pick a {what} from the list")
    path = runs / text
    if any((runs / "/".join(parts[: i + 1])).is_symlink() for i in range(len(parts))) or not path.is_dir():
        raise UsageError(f"{what} {text!r} is not under --runs any more")
    return path


def run_folder(runs: Path, name: object) -> Path:
    """The run ``name`` names under ``runs``: plain names only, never a link, never outside."""
    return _folder(runs, name, "run")


def _frame(title: str, page: str) -> str:
    """``page`` in a frame that runs no script and reaches nothing of this page, under ``title``."""
    return (
        f"<div class='run-page'><h4>{esc(title)}</h4><iframe sandbox='' referrerpolicy='no-referrer' "
        f"title='{esc(title)}' srcdoc=\"{html.escape(page, quote=True)}\"></iframe></div>"
    )


def report_frame(runs: Path, name: object) -> str:
    """The run's report.html in a sandboxed frame."""
    run_dir = run_folder(runs, name)
    try:
        page = read_plain(run_dir / "report.html", _MAX_JSON).decode("utf-8", "replace")
    except OSError as exc:
        raise UsageError(f"run {str(name)!r} has no readable report.html ({one_line(exc)})") from None
    return _frame(str(name), page)


# ---------------------------------------------------------------------------------------------
# Two runs step by step: one row per (step, round, stage), aligned
# ---------------------------------------------------------------------------------------------

_ORDER = {"plan": 0, "draft": 1, "refine": 1, "critique": 2}
_THUMB = 320  # px: two columns of pictures fit a laptop's page
_Key = tuple[int, int, int, str, int]


def _png_url(picture: Image.Image) -> str:
    picture.thumbnail((_THUMB, _THUMB))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    # Base64 of a PNG made here: the only characters are [A-Za-z0-9+/=].
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _stage_cells(run: RunData) -> dict[_Key, dict[str, Any]]:
    """Each event of ``run`` as a cell of compare.html.j2, keyed by (step, round, order, stage, repeat)."""
    judged: dict[tuple[int, int], Critique] = {}
    for e in run.events:
        if e.stage == "critique" and e.critique is not None:
            judged.setdefault((e.step, e.round), e.critique)
    cells: dict[_Key, dict[str, Any]] = {}
    for e in run.events:
        cell: dict[str, Any] = dict(stage=e.stage, text=e.text, plan=None, critique=None, image=None, missing=None)
        if e.stage == "plan":
            cell["plan"] = _plan_steps(e.text)
        elif e.stage == "critique":
            c = e.critique or Critique()
            cell["critique"] = {"violations": [(v.kind, v.message) for v in c.violations], "unjudged": c.unjudged}
        elif e.image is not None:
            try:
                cell["image"] = _png_url(_boxed(_decode(run.image(e.image)), judged.get((e.step, e.round))))
            except (RunError, OSError, ValueError) as exc:
                cell["missing"] = one_line(exc)
        key = (e.step, e.round, _ORDER.get(e.stage, 3), e.stage, 0)
        while key in cells:  # a stage run again (a resumed run) gets a row of its own
            key = (*key[:4], key[4] + 1)
        cells[key] = cell
    return cells


def _where(key: _Key) -> str:
    """A row's label: ``plan``, ``step 1 draft``, ``step 1 round 2 <refine>``, ``step 1 round 2 critique``."""
    step, rnd, _, stage, again = key
    label = "plan" if step < 0 else f"step {step + 1}" + (f" round {rnd}" if rnd else "")
    if stage != "plan":
        label += " <refine>" if stage == "refine" else f" {stage}"
    return label + (f" (again, {again})" if again else "")


def _run_header(runs: Path, name: str, run: RunData) -> dict[str, Any]:
    """What tells two runs apart at a glance: prompt, backends, seed, verdict, time, cost."""
    try:
        card = run_card(runs, name)
    except (OSError, ValueError, RecursionError) as exc:
        raise UsageError(f"run {name!r} cannot be read: {one_line(exc)}") from None
    fields = [
        ("prompt", run.prompt),
        ("backends", ", ".join(f"{role}={backend}" for role, backend in run.backends.items())),
        ("seed", str(run.seed)),
        ("verdict", card.verdict),
        ("time", f"{card.seconds:.1f} s"),
        ("cost", f"${card.cost:.4f}" if card.cost is not None else "no cost"),
    ]
    return {"name": name, "fields": fields}


def compare_steps(runs: Path, a: object, b: object) -> str:
    """Two finished runs side by side, one row per stage (plan; each draft, critique and ``<refine>``
    of each step and round) aligned across them, a cell left empty where a run has no such stage."""
    from strokegraph.app.pages import render

    headers, columns = [], []
    for name in (a, b):
        run_dir = run_folder(runs, name)
        try:
            run = load_run(run_dir)
        except Skipped as exc:
            raise UsageError(f"run {str(name)!r} cannot be compared step by step: {one_line(exc)}") from None
        headers.append(_run_header(runs, str(name), run))
        columns.append(_stage_cells(run))
    rows = []
    for key in sorted(set(columns[0]) | set(columns[1])):
        cells = [c.get(key) for c in columns]
        rows.append({"label": _where(key), "differs": cells[0] != cells[1], "cells": cells})
    title = f"{a} and {b}, step by step"
    return _frame(title, render("compare", title=title, runs=headers, rows=rows))


# ---------------------------------------------------------------------------------------------
# Benchmarks under --runs: a folder holding results.json, shown as its results.html
# ---------------------------------------------------------------------------------------------


def bench_names(runs: Path) -> list[str]:
    """The benchmark folders under ``runs`` (holding results.json), sorted."""
    return sorted(_holding(runs, "results.json"))[:_MAX_RUNS]


def bench_frame(runs: Path, name: object) -> str:
    """The benchmark folder's results.html, made again from its results.json, in a sandboxed frame."""
    from strokegraph.app.pages import bench_page

    folder = _folder(runs, name, "benchmark")
    try:
        page = bench_page(folder)
    except OSError as exc:  # a record or results.json the app may not read
        raise UsageError(f"benchmark {str(name)!r} cannot be read: {one_line(exc)}") from None
    return _frame(str(name), page)
