"""``report.html``: one self-contained page showing a run step by step."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from strokegraph import usage
from strokegraph.graph.state import RunState
from strokegraph.schema import Critique, Event, ImageRef

__all__ = ["write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;background:#fafafa}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ccc}
.ok{color:#1a7f37} .bad{color:#c62828} .muted{color:#666}
.row{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.card{background:#fff;border:1px solid #ddd;padding:.5rem;width:330px;font-size:.9rem}
figure{margin:0}
figure svg{width:320px;height:auto;display:block}
figcaption{font-size:.85rem;margin-top:.4rem}
code,pre{background:#f0f0f0;padding:.1rem .3rem;border-radius:3px;white-space:pre-wrap}
ul{margin:.3rem 0 .3rem 1.2rem;padding:0} table{border-collapse:collapse} td,th{padding:.2rem .6rem;text-align:left}
"""


def _data_url(run_dir: Path, ref: ImageRef) -> str:
    data = (run_dir / ref.path).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure(run_dir: Path, ref: ImageRef, caption: str, critique: Critique | None = None) -> str:
    """The image as inline SVG, with the critique's violation boxes drawn over it."""
    w, h = ref.width, ref.height
    boxes = []
    for i, v in enumerate(critique.violations if critique else ()):
        if v.box is None:
            continue
        x0, y0, x1, y1 = v.box
        boxes.append(
            f'<rect x="{x0 * w:.1f}" y="{y0 * h:.1f}" width="{(x1 - x0) * w:.1f}" height="{(y1 - y0) * h:.1f}" '
            f'fill="none" stroke="#ff1744" stroke-width="{max(2, w // 170)}" stroke-dasharray="8 4"/>'
            f'<text x="{x0 * w + 4:.1f}" y="{y0 * h + 18:.1f}" fill="#ff1744" font-size="{max(14, w // 28)}" '
            f'font-weight="bold">{i + 1}</text>'
        )
    return (
        f'<figure><svg viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">'
        f'<image href="{_data_url(run_dir, ref)}" width="{w}" height="{h}"/>{"".join(boxes)}</svg>'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _critique_html(c: Critique) -> str:
    if c.passed:
        body = '<p class="ok">No violations.</p>'
    else:
        items = "".join(
            f"<li><b>{i + 1}. {html.escape(v.kind)}</b>: {html.escape(v.message)} "
            f'<span class="muted">(expected {html.escape(v.expected)}; observed {html.escape(v.observed)})</span></li>'
            for i, v in enumerate(c.violations)
        )
        body = f'<ul class="bad">{items}</ul>'
    found = ", ".join(f"{d.colour or ''} {d.noun}".strip() for d in c.detections) or "nothing"
    return f'{body}<p class="muted">Seen: {html.escape(found)}</p>'


def _step_section(run_dir: Path, state: RunState, step: int, events: list[Event]) -> str:
    """The step's plan, then one card per image (draft, refinements) with its critique on it."""
    plan_step = state.plan.steps[step]
    cards: list[dict] = []
    for e in events:
        if e.stage in ("draft", "refine") and e.image:
            if e.stage == "draft":
                title = f"Draft ({e.backend}, {e.duration_s:.2f} s)"
                how = ""
            else:
                r = e.refinement
                region = f", region {tuple(round(x, 2) for x in r.region)}" if r and r.region else ""
                title = f"Refinement {e.round} ({r.operation if r else ''}{region})"
                how = f"<p><code>&lt;refine&gt;</code> {html.escape(e.text)}</p>"
            cards.append({"image": e.image, "title": title, "how": how, "critique": None})
        elif e.stage == "critique" and e.critique is not None and cards:
            cards[-1]["critique"] = e.critique
    html_cards = []
    for card in cards:
        c = card["critique"]
        verdict = (
            ""
            if c is None
            else (' · <span class="ok">pass</span>' if c.passed else ' · <span class="bad">violations</span>')
        )
        figure = _figure(run_dir, card["image"], card["title"] + verdict, c)
        notes = card["how"] + (_critique_html(c) if c is not None else "")
        html_cards.append(f'<div class="card">{figure}{notes}</div>')
    return (
        f"<h2>Step {step + 1} of {len(state.plan.steps)}</h2>"
        f"<p><b>Plan</b> <code>&lt;ins&gt;</code> {html.escape(plan_step.instruction)}<br>"
        f"<code>&lt;des&gt;</code> {html.escape(plan_step.description)}</p>"
        f'<div class="row">{"".join(html_cards)}</div>'
    )


def _usage_text(state: RunState) -> str:
    used = usage.total(e.usage for e in state.trajectory)
    if used is None:
        return ""
    cost = f" · ≈ ${used.cost_usd:.4f}" if used.cost_usd is not None else ""
    return (
        f" · {used.calls} API/model call(s), {used.prompt_tokens + used.completion_tokens} token(s), "
        f"{used.images} image(s){cost}"
    )


def write_report(run_dir: Path, state: RunState, *, passed: bool) -> Path:
    """Write ``run_dir/report.html`` for ``state`` (a finished or an interrupted run)."""
    title = html.escape(state.prompt)
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>strokegraph: {title}</title>"]
    out.append(f"<style>{_CSS}</style></head><body><h1>{title}</h1>")
    verdict = '<b class="ok">passed</b>' if passed else '<b class="bad">violations left</b>'
    mode = "single pass" if state.single_pass else "plan → draft → critique → refine loop"
    out.append(
        f"<p>Result: {verdict} · {mode} · {len(state.plan.steps) if state.plan else 0} step(s) · "
        f"{state.rounds_total} refine round(s) · {state.sampling_steps} sampling step(s){_usage_text(state)}</p>"
    )
    if state.scene is not None:
        rows = "".join(f"<tr><td>{e.id}</td><td>{html.escape(e.phrase())}</td></tr>" for e in state.scene.entities)
        rels = "".join(f"<li>{r.subject} {html.escape(r.predicate)} {r.object}</li>" for r in state.scene.relations)
        cons = "".join(f"<li>{html.escape(c)}</li>" for c in state.scene.constraints)
        out.append(f"<h2>Scene graph</h2><table>{rows}</table>")
        if rels:
            out.append(f"<p>Relations:</p><ul>{rels}</ul>")
        if cons:
            out.append(f"<p>Free-text constraints (kept, not judged by the built-in critic):</p><ul>{cons}</ul>")
    if state.plan is not None:
        for step in range(len(state.plan.steps)):
            events = [e for e in state.trajectory if e.step == step]
            if events:
                out.append(_step_section(run_dir, state, step, events))
    if state.image is not None:
        out.append("<h2>Final image</h2>")
        out.append(_figure(run_dir, state.image, "final.png", state.critique))
    out.append("</body></html>")
    path = run_dir / "report.html"
    path.write_text("\n".join(out), encoding="utf-8")
    return path
