"""``report.html``: one self-contained page showing a run step by step.

The run state it shows may come from a hostile model reply or a tampered checkpoint, so the page is
built as if every value in it were an attack: every value from state goes through :func:`_h`, which
escapes it unless it is markup this module built itself (:class:`_Html`); numbers are formatted by
:func:`_num` with an explicit format spec; attribute values are only numbers formatted here or
``data:`` URLs built here from checked image bytes. A Content-Security-Policy that allows no script
at all backs this up should an escape ever be missed. Escape sequences, control characters and bidi
controls are removed from every value (:func:`strokegraph._text.printable`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from pathlib import Path

from pydantic import ValidationError

from strokegraph import usage
from strokegraph._text import printable
from strokegraph.errors import RunError
from strokegraph.graph.state import RunState
from strokegraph.schema import Critique, Event, ImageRef, write_new

__all__ = ["write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;background:#fafafa}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ccc}
.ok{color:#1a7f37} .bad{color:#c62828} .muted{color:#666} .warn{color:#9a6700}
.row{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.card{background:#fff;border:1px solid #ddd;padding:.5rem;width:330px;font-size:.9rem}
figure{margin:0}
figure svg{width:320px;height:auto;display:block}
figcaption{font-size:.85rem;margin-top:.4rem}
.missing{width:300px;min-height:120px;padding:10px;border:2px dashed #c62828;color:#c62828;overflow-wrap:anywhere}
code,pre{background:#f0f0f0;padding:.1rem .3rem;border-radius:3px;white-space:pre-wrap}
ul{margin:.3rem 0 .3rem 1.2rem;padding:0} table{border-collapse:collapse} td,th{padding:.2rem .6rem;text-align:left}
"""

# No script, no frame, no form, no remote anything: the page needs only its own stylesheet (allowed
# by hash, so an injected <style> could not apply either) and the data: PNGs it embeds.
_CSP = (
    "default-src 'none'; img-src data:; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()}'; "
    "base-uri 'none'; form-action 'none'"
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Html(str):
    """Markup this module built itself. Every other value that goes into a page is escaped."""


def _esc(value: object) -> _Html:
    """``value`` as text: markup built here passes, anything else (of any type) is escaped.

    Escaping makes text inert as markup, not as text: escape sequences (a page saved and printed
    with ``cat``), control characters and bidi controls (which reorder what the page shows) are
    removed first, as on the terminal.
    """
    if isinstance(value, _Html):
        return value
    return _Html(html.escape(printable(value), quote=True))


def _h(template: str, *args: object, **kwargs: object) -> _Html:
    """Fill ``template`` (a literal of this module) with escaped ``args``/``kwargs``."""
    return _Html(template.format(*map(_esc, args), **{k: _esc(v) for k, v in kwargs.items()}))


def _join(parts, sep: str = "") -> _Html:
    return _Html(sep.join(map(_esc, parts)))


def _num(value: object, spec: str) -> _Html:
    """``value`` formatted with ``spec`` (``"d"`` or a float spec) when it is a plain number that
    fits it; otherwise its escaped text.

    A model built without validation (``model_construct``, as LangGraph's default checkpoint loader
    does when validation fails) can hold anything where a number belongs, and the report must show
    it rather than crash or put it into markup.
    """
    if type(value) is int or (type(value) is float and not spec.endswith("d")):
        return _Html(format(value, spec))
    return _esc(value)


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


def _figure(run_dir: Path, ref: object, caption: _Html, critique: Critique | None = None) -> _Html:
    """The image as inline SVG, with the critique's violation boxes drawn over it; or a placeholder
    naming why the image cannot be shown."""
    found = _checked_png(run_dir, ref)
    if isinstance(found, str):
        return _h(
            '<figure><div class="missing">Image not shown: {}</div><figcaption>{}</figcaption></figure>', found, caption
        )
    checked, data = found
    w, h = checked.width, checked.height
    boxes = []
    for i, v in enumerate(critique.violations if critique else ()):
        if (box := _box(getattr(v, "box", None))) is None:
            continue
        x0, y0, x1, y1 = box
        boxes.append(
            _h(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#ff1744" stroke-width="{}" '
                'stroke-dasharray="8 4"/>'
                '<text x="{}" y="{}" fill="#ff1744" font-size="{}" font-weight="bold">{}</text>',
                _num(x0 * w, ".1f"),
                _num(y0 * h, ".1f"),
                _num((x1 - x0) * w, ".1f"),
                _num((y1 - y0) * h, ".1f"),
                _num(max(2, w // 170), "d"),
                _num(x0 * w + 4, ".1f"),
                _num(y0 * h + 18, ".1f"),
                _num(max(14, w // 28), "d"),
                _num(i + 1, "d"),
            )
        )
    # Base64 of bytes checked to be this PNG: the only characters are [A-Za-z0-9+/=].
    url = _Html("data:image/png;base64," + base64.b64encode(data).decode("ascii"))
    return _h(
        '<figure><svg viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">'
        '<image href="{url}" width="{w}" height="{h}"/>{boxes}</svg><figcaption>{caption}</figcaption></figure>',
        w=_num(w, "d"),
        h=_num(h, "d"),
        url=url,
        boxes=_join(boxes),
        caption=caption,
    )


def _critique_html(c: Critique) -> _Html:
    if c.passed:
        body = _Html('<p class="ok">No violations.</p>')
    else:
        items = _join(
            _h(
                '<li><b>{}. {}</b>: {} <span class="muted">(expected {}; observed {})</span></li>',
                _num(i + 1, "d"),
                v.kind,
                v.message,
                v.expected,
                v.observed,
            )
            for i, v in enumerate(c.violations)
        )
        body = _h('<ul class="bad">{}</ul>', items)
    found = ", ".join(f"{d.colour or ''} {d.noun}".strip() for d in c.detections) or "nothing"
    return _h('{}<p class="muted">Seen: {}</p>', body, found)


def _step_section(run_dir: Path, state: RunState, step: int, events: list[Event]) -> _Html:
    """The step's plan, then one card per image (draft, refinements) with its critique on it."""
    assert state.plan is not None  # a step section is drawn only for a planned run
    plan_step = state.plan.steps[step]
    cards: list[dict] = []
    for e in events:
        if e.stage in ("draft", "refine") and e.image:
            if e.stage == "draft":
                title = _h("Draft ({}, {} s)", e.backend, _num(e.duration_s, ".2f"))
                how = _Html("")
            else:
                r = e.refinement
                region = _Html("")
                if r and r.region:
                    region = _h(", region ({})", _join((_num(x, ".2f") for x in r.region), ", "))
                title = _h("Refinement {} ({}{})", _num(e.round, "d"), r.operation if r else "", region)
                how = _h("<p><code>&lt;refine&gt;</code> {}</p>", e.text)
            cards.append({"image": e.image, "title": title, "how": how, "critique": None})
        elif e.stage == "critique" and e.critique is not None and cards:
            cards[-1]["critique"] = e.critique
    html_cards = []
    for card in cards:
        c = card["critique"]
        if c is None:
            verdict = _Html("")
        elif c.passed:
            verdict = _Html(' · <span class="ok">pass</span>')
        else:
            verdict = _Html(' · <span class="bad">violations</span>')
        figure = _figure(run_dir, card["image"], _h("{}{}", card["title"], verdict), c)
        notes = _h("{}{}", card["how"], _critique_html(c) if c is not None else "")
        html_cards.append(_h('<div class="card">{}{}</div>', figure, notes))
    return _h(
        "<h2>Step {} of {}</h2><p><b>Plan</b> <code>&lt;ins&gt;</code> {}<br><code>&lt;des&gt;</code> {}</p>"
        '<div class="row">{}</div>',
        _num(step + 1, "d"),
        _num(len(state.plan.steps), "d"),
        plan_step.instruction,
        plan_step.description,
        _join(html_cards),
    )


def _usage_text(state: RunState) -> _Html:
    try:
        used = usage.total(e.usage for e in state.trajectory)
    except (TypeError, ValueError):  # counts that are not numbers (an unvalidated checkpoint)
        return _Html(' · <span class="bad">usage unreadable</span>')
    if used is None:
        return _Html("")
    cost = _h(" · ≈ ${}", _num(used.cost_usd, ".4f")) if used.cost_usd is not None else ""
    return _h(
        " · {} API/model call(s), {} token(s), {} image(s){}",
        _num(used.calls, "d"),
        _num(used.prompt_tokens + used.completion_tokens, "d"),
        _num(used.images, "d"),
        cost,
    )


def _verdict(state: RunState, passed: bool) -> _Html:
    """The run's result in words, from ``state``: never a bare "passed" while the critic left
    constraints unjudged, and "passed" only when the caller says the run passed."""
    c = state.critique
    unjudged = tuple(c.unjudged) if c is not None else ()
    judged_last = c is not None and state.plan is not None and state.step == len(state.plan.steps) - 1
    if state.stopped:
        verdict = _Html('<b class="bad">stopped in review</b>')
    elif not judged_last:
        # Interrupted, failed or waiting: the last step was never judged, whatever the last critique said.
        verdict = _Html('<b class="bad">not finished</b>')
    elif c is not None and not c.passed:  # judged_last says c is not None
        verdict = _Html('<b class="bad">violations left</b>')
    elif unjudged:
        verdict = _Html('<b class="warn">passed what was judged</b>')
    elif passed:
        verdict = _Html('<b class="ok">passed</b>')
    else:
        verdict = _Html('<b class="bad">not finished</b>')
    if unjudged:
        verdict = _h(
            '{} · <span class="warn">{} part(s) of the prompt not judged: {}</span>',
            verdict,
            _num(len(unjudged), "d"),
            _join((_h("“{}”", c) for c in unjudged), "; "),
        )
    return verdict


def write_report(run_dir: Path, state: RunState, *, passed: bool) -> Path:
    """Write ``run_dir/report.html`` for ``state`` (a finished or an interrupted run).

    Every value from ``state`` is shown as text; an image that fails its checks is replaced by a
    placeholder naming the problem. The file replaces whatever ``report.html`` was (never written
    through a symlink).
    """
    run_dir = Path(run_dir)
    mode = "single pass" if state.single_pass else "plan → draft → critique → refine loop"
    out = [
        _h('<!doctype html><html><head><meta http-equiv="Content-Security-Policy" content="{}">', _Html(_CSP)),
        _h("<meta charset='utf-8'><title>strokegraph: {}</title>", state.prompt),
        _h("<style>{}</style></head><body><h1>{}</h1>", _Html(_CSS), state.prompt),
        _h(
            "<p>Result: {} · {} · {} step(s) · {} refine round(s) · {} sampling step(s){}</p>",
            _verdict(state, passed),
            mode,
            _num(len(state.plan.steps) if state.plan else 0, "d"),
            _num(state.rounds_total, "d"),
            _num(state.sampling_steps, "d"),
            _usage_text(state),
        ),
    ]
    if state.scene is not None:
        rows = _join(_h("<tr><td>{}</td><td>{}</td></tr>", e.id, e.phrase()) for e in state.scene.entities)
        rels = _join(_h("<li>{} {} {}</li>", r.subject, r.predicate, r.object) for r in state.scene.relations)
        cons = _join(_h("<li>{}</li>", c) for c in state.scene.constraints)
        out.append(_h("<h2>Scene graph</h2><table>{}</table>", rows))
        if rels:
            out.append(_h("<p>Relations:</p><ul>{}</ul>", rels))
        if cons:
            out.append(_h("<p>Free-text constraints (kept, not judged by the built-in critic):</p><ul>{}</ul>", cons))
    if state.plan is not None:
        for step in range(len(state.plan.steps)):
            events = [e for e in state.trajectory if e.step == step]
            if events:
                out.append(_step_section(run_dir, state, step, events))
    if state.image is not None:
        out.append(_Html("<h2>Final image</h2>"))
        out.append(_figure(run_dir, state.image, _Html("final.png"), state.critique))
    out.append(_Html("</body></html>"))
    path = run_dir / "report.html"
    # A model reply can carry a lone surrogate, which UTF-8 cannot encode; it shows as '?'.
    write_new(path, "\n".join(out).encode("utf-8", "replace"))
    return path
