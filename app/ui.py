"""The browser UI (``strokegraph ui``, extra ``ui``): run a prompt, review it, browse and compare runs.

A Gradio app over the public runner API. Each run works in its own thread and hands its progress
events to the page's generator through a queue, so a page shows every stage as it finishes and no
browser session waits on another's run. Reviews are answered with the same answers the CLI's
``--review`` builds (:func:`strokegraph.graph.nodes.review_answer` checks them) and recorded the
same way, in the run's checkpoints: a tab closed at a review leaves a run that ``strokegraph resume``
(or the gallery here) continues.

Everything a run directory holds is untrusted. Text reaches the page escaped (after
:func:`~strokegraph._text.printable`), images only after the checks of
:meth:`ImageRef.read_bytes <strokegraph.schema.ImageRef.read_bytes>` or
:func:`strokegraph.app.webapp.read_image` (plain names, no symlinks, PNG only, under ``--runs``), as
pictures Gradio serves from its own cache: no path under ``--runs`` is ever served by name. A run's
page is its ``report.html`` in a sandboxed frame that may run no script; two runs compared step by
step and a benchmark's ``results.html`` are shown the same way.

Gradio is imported by :func:`build` and :func:`launch` only.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pydantic import ValidationError

from strokegraph import registry
from strokegraph._text import check_prompt, printable
from strokegraph.app.allowed import allowed_ids, is_allowed
from strokegraph.app.record import MAX_COUNT, MAX_SEED
from strokegraph.app.ui_views import (
    PLAN_HEADERS,
    VERDICTS,
    VIOLATION_HEADERS,
    Session,
    bench_frame,
    bench_names,
    check_box,
    checked_picture,
    compare_steps,
    esc,
    follow_run,
    one_line,
    plan_answer,
    plan_rows,
    report_frame,
    route_picture,
    run_card,
    run_folder,
    run_names,
    thumbnail,
    violation_rows,
    violations_answer,
    whole,
)
from strokegraph.config import RunConfig
from strokegraph.errors import UsageError
from strokegraph.registry import ROLES, Role
from strokegraph.schema import Critique, ViolationKind

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["AUTH_ENV", "BACKENDS_ENV", "DEFAULT_PROMPT", "build", "check_launch", "launch", "parse_auth"]

DEFAULT_PROMPT = "two red apples to the left of a blue cup"
#: ``USER:PASS`` for the login page, when ``--auth`` is not given (keeps it out of ``ps``).
AUTH_ENV = "STROKEGRAPH_UI_AUTH"
#: Model-backed ids a browser may pick, comma-separated, as whole ids or providers (``openai:``),
#: as ``$STROKEGRAPH_SERVER_BACKENDS`` is for the LangGraph server. Offline ids are always allowed.
BACKENDS_ENV = "STROKEGRAPH_UI_BACKENDS"

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def parse_auth(text: str) -> tuple[str, str]:
    """``USER:PASS`` as a pair; a :class:`UsageError` for anything else."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise UsageError(f"--auth (or ${AUTH_ENV}) must be USER:PASS with neither part empty")
    return user, password


def check_launch(host: str, auth: tuple[str, str] | None) -> None:
    """Refuse to serve a non-loopback address without a login: anyone who reaches it could spend your keys."""
    if host not in _LOOPBACK and auth is None:
        raise UsageError(
            f"--host {host!r} is reachable from other machines; give --auth USER:PASS (or ${AUTH_ENV}) to serve it"
        )


@dataclass(frozen=True)
class _Setup:
    """What the operator chose: where runs go, the config's backends and settings, the allowed ids."""

    runs: Path
    config: RunConfig
    allowed: tuple[str, ...]

    def ids(self, role: Role) -> list[str]:
        """The ids a page offers for ``role``: the config's, the allowed whole ids, the offline ones."""
        offered = [i for i in (getattr(self.config, role).id,) if i]
        offered += [a for a in self.allowed if not a.endswith(":")]
        offered += [i for i in registry.known_ids(role) if "<" not in i and registry.capabilities(role, i).offline]
        return list(dict.fromkeys(offered))

    def chosen(self, ids: dict[str, str]) -> dict[str, Any]:
        """``ids`` checked as the CLI checks them and against the allow-list, with the config's settings."""
        settings = {}
        for role in ROLES:
            backend_id = (ids.get(role) or "").strip()
            if not backend_id:
                raise UsageError(f"pick a {role} backend")
            given = getattr(self.config, role)
            role_settings = given.settings if backend_id == given.id else {}
            registry.check(role, backend_id, role_settings)
            if not (backend_id == given.id or is_allowed(role, backend_id, self.allowed)):
                raise UsageError(
                    f"{role} {backend_id!r} is not allowed here; the operator names allowed ids in --config "
                    f"or ${BACKENDS_ENV}"
                )
            ids[role] = backend_id
            if role_settings:
                settings[role] = dict(role_settings)
        return {"settings": settings, **{role: ids[role] for role in ROLES}}


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------

_CSS = """
.busy { display: inline-block; width: .8em; height: .8em; border: 2px solid #999; border-top-color: transparent;
        border-radius: 50%; animation: sg-spin .8s linear infinite; vertical-align: middle; }
@keyframes sg-spin { to { transform: rotate(360deg); } }
.run-page iframe { width: 100%; height: 75vh; border: 1px solid #ccc; background: white; }
.verdict { font-size: 1.3em; }
"""


def build(
    runs: str | os.PathLike, config: RunConfig | None = None, allowed: tuple[str, ...] | None = None
) -> gr.Blocks:
    """The app over the run folder ``runs``; ``config`` gives the default backends and settings,
    ``allowed`` the model-backed ids a page may pick (default: ``$STROKEGRAPH_UI_BACKENDS``)."""
    import gradio as gr

    from strokegraph.app.runner import generate, new_run_dir, resume
    from strokegraph.graph import Budget

    if allowed is None:
        allowed = allowed_ids(BACKENDS_ENV)
    setup = _Setup(Path(runs), config or RunConfig(), allowed)
    setup.runs.mkdir(parents=True, exist_ok=True)
    # Outside --runs and outside the working directory: Gradio serves files from the temporary folder.
    shelf = Path(tempfile.mkdtemp(prefix="strokegraph-ui-"))
    # The pictures shown are copies; they go with the process, whether it ends on Ctrl-C or app.close.
    atexit.register(shutil.rmtree, shelf, ignore_errors=True)
    cfg = setup.config

    def review_picture(s: Session) -> Any:
        if s.interrupt is None or s.interrupt["kind"] != "critique" or s.run_dir is None:
            return None
        critique = Critique.model_validate(s.interrupt["critique"])
        if s.last_image is not None:
            return checked_picture(s.run_dir, s.last_image, critique)
        # A run resumed in this page shows no stage before its review: the review names its image.
        return route_picture(s.run_dir, s.interrupt.get("image"), critique)

    def view(s: Session) -> tuple:
        kind = s.interrupt["kind"] if s.interrupt else None
        return (
            s.status,
            "".join(s.log),
            list(s.gallery),
            s.final,
            s.verdict,
            gr.update(visible=kind is not None),
            gr.update(value=plan_rows(s.interrupt), visible=kind == "plan"),
            gr.update(value=violation_rows(s.interrupt), visible=kind == "critique"),
            gr.update(value=review_picture(s), visible=kind == "critique"),
            gr.update(visible=kind == "critique"),
            s,
        )

    def activity(s: Session) -> tuple:
        return (s.status, *(gr.skip() for _ in range(10)))

    def follow(s: Session, call: Callable) -> Iterator[tuple]:
        shown = len(s.log)
        for now in follow_run(s, call):
            if len(now.log) == shown and now.interrupt is None and not now.verdict and now.error is None:
                yield activity(now)
            else:
                shown = len(now.log)
                yield view(now)

    def start(prompt, *rest):
        # One picker per role (registry.ROLES, in order), then seed, budget, review and the session.
        *picked, seed, max_rounds, review, _ = rest
        s = Session(shelf=shelf)
        try:
            check_prompt(prompt)
            chosen = setup.chosen(dict(zip(ROLES, picked, strict=True)))
            seed, max_rounds = whole("seed", seed, MAX_SEED), whole("budget", max_rounds, MAX_COUNT)
            budget = Budget(
                max_rounds=max_rounds,
                rounds_per_step=cfg.rounds_per_step if cfg.rounds_per_step is not None else 3,
                max_sampling_steps=cfg.max_sampling_steps,
            )
            run_dir = new_run_dir(prompt, root=setup.runs)
        except (UsageError, ValidationError) as exc:
            s.status = f"<b>Error:</b> {esc(one_line(exc))}"
            yield view(s)
            return
        s.run_dir, s.chosen = run_dir, chosen
        s.status = "<span class='busy'></span> starting"
        yield view(s)
        yield from follow(
            s,
            lambda on_progress: generate(
                prompt,
                out=run_dir,
                **chosen,
                seed=seed,
                budget=budget,
                single_pass=bool(cfg.single_pass),
                on_progress=on_progress,
                review=bool(review),
            ),
        )
        if run_dir.is_dir() and not any(run_dir.iterdir()):  # refused before anything was made
            run_dir.rmdir()

    def answer(s: Session, build_answer: Callable[[dict], dict]) -> Iterator[tuple]:
        pending = s.interrupt
        if pending is None or s.run_dir is None:
            s.status = "<b>Error:</b> no review is waiting in this page"
            yield view(s)
            return
        try:
            reply = build_answer(pending)
        except UsageError as exc:
            s.status = f"<b>Error:</b> {esc(one_line(exc))}"
            yield view(s)
            return
        s.interrupt, s.status = None, "<span class='busy'></span> going on"
        yield view(s)
        run_dir = s.run_dir
        for out in follow(s, lambda on_progress: resume(run_dir, answer=reply, **s.chosen, on_progress=on_progress)):
            if isinstance(s.error, UsageError):  # refused before anything ran: the review is still open
                s.interrupt = pending
                out = view(s)
            yield out

    def accept(s):
        yield from answer(s, lambda pending: {"action": "accept"})

    def stop(s):
        yield from answer(s, lambda pending: {"action": "stop"})

    def edit(plan, violations, s):
        def made(pending: dict) -> dict:
            return plan_answer(plan) if pending["kind"] == "plan" else violations_answer(violations, pending)

        yield from answer(s, made)

    def add(kind, message, expected, observed, x0, y0, x1, y1, s):
        def made(pending: dict) -> dict:
            if pending["kind"] != "critique":
                raise UsageError("a violation is added to a critique, not to the plan")
            if not str(message or "").strip():
                raise UsageError("say what is wrong in the violation's message")
            if None in (x0, y0, x1, y1):
                raise UsageError("draw the violation's box on the image first (click two corners)")
            box = [float(c) for c in (x0, y0, x1, y1)]
            check_box(box)
            violation = {"kind": kind, "expected": expected or "", "observed": observed or "", "message": message}
            return {"action": "add", "violation": {**violation, "box": box}}

        yield from answer(s, made)

    def corner(s: Session, x0, y0, x1, y1, evt: gr.SelectData):
        """Two clicks on the review image: the first sets one corner of the new box, the second the other."""
        picture = review_picture(s)
        if picture is None or not isinstance(evt.index, list | tuple) or len(evt.index) != 2:
            return x0, y0, x1, y1, gr.skip()
        w, h = picture.size
        x, y = min(1.0, max(0.0, evt.index[0] / w)), min(1.0, max(0.0, evt.index[1] / h))
        if x0 is None or x1 is not None:  # a new box starts
            return round(x, 3), round(y, 3), None, None, gr.skip()
        box = [round(min(x0, x), 3), round(min(y0, y), 3), round(max(x0, x), 3), round(max(y0, y), 3)]
        from PIL import ImageDraw

        ImageDraw.Draw(picture).rectangle(
            (box[0] * w, box[1] * h, box[2] * w, box[3] * h), outline=(30, 90, 220), width=max(2, w // 170)
        )
        return (*box, picture)

    def gallery_of(verdict_filter):
        names = run_names(setup.runs)
        items, shown, rows, problems = [], [], [], []
        for name in names:
            try:
                card = run_card(setup.runs, name)
            except (OSError, ValueError, UsageError) as exc:
                problems.append(f"<li>{esc(name)}: {esc(one_line(exc))}</li>")
                continue
            if verdict_filter not in (None, "all") and card.category != verdict_filter:
                continue
            cost = f"${card.cost:.4f}" if card.cost is not None else "no cost"
            caption = f"{card.verdict} · {card.prompt[:80]} · {card.seconds:.1f} s · {cost}"
            thumb = thumbnail(setup.runs, name)
            if thumb is not None:
                items.append((thumb, printable(caption)))
                shown.append(name)
            rows.append(
                f"<tr><td>{esc(name)}</td><td>{esc(card.verdict)}</td><td>{esc(card.prompt[:200])}</td>"
                f"<td>{esc(card.backends)}</td><td>{card.seconds:.1f} s</td><td>{esc(cost)}</td></tr>"
            )
        table = (
            "<table class='runs'><tr><th>run</th><th>verdict</th><th>prompt</th><th>backends</th><th>time</th>"
            f"<th>cost</th></tr>{''.join(rows)}</table>"
            + (f"<p>Not shown:</p><ul>{''.join(problems)}</ul>" if problems else "")
        )
        choices = [n for n in names]
        return items, table, gr.update(choices=choices), gr.update(choices=choices), shown

    def picked(shown, evt: gr.SelectData):
        index = evt.index if isinstance(evt.index, int) else None
        return shown[index] if index is not None and 0 <= index < len(shown) else gr.skip()

    def error(message):
        return f"<p><b>Error:</b> {esc(message)}</p>"

    def framed(page, *names):
        """``page(runs, *names)``'s HTML, or the one-line message of the UsageError it raised."""
        try:
            return page(setup.runs, *names)
        except UsageError as exc:
            return error(one_line(exc))

    def page_of(name):
        return framed(report_frame, name)

    def compare(a, b):
        if not a or not b or a == b:
            return error("pick two different runs to compare")
        return framed(compare_steps, a, b)

    def benches():
        return gr.update(choices=bench_names(setup.runs))

    def bench_of(name):
        return framed(bench_frame, name)

    def resume_run(name, s):
        s = Session(shelf=shelf)
        try:
            run_dir = run_folder(setup.runs, name)
            given = {role: getattr(cfg, role).id for role in ROLES if getattr(cfg, role).id}
            chosen = {
                "settings": {role: getattr(cfg, role).settings for role in given if getattr(cfg, role).settings},
                **given,
            }
        except UsageError as exc:
            s.status = f"<b>Error:</b> {esc(one_line(exc))}"
            yield view(s)
            return
        s.run_dir, s.chosen = run_dir, chosen
        s.status = f"<span class='busy'></span> resuming {esc(name)}"
        yield view(s)
        yield from follow(s, lambda on_progress: resume(run_dir, **chosen, on_progress=on_progress))

    # Gradio finds the event-data parameter by its annotation, which ``from __future__ import annotations``
    # leaves a string; give it the class.
    corner.__annotations__["evt"] = picked.__annotations__["evt"] = gr.SelectData

    # delete_cache: Gradio's copies of the pictures a page was sent go after a day (checked hourly).
    with gr.Blocks(title="strokegraph", analytics_enabled=False, delete_cache=(3600, 86400)) as app:
        session = gr.State(Session(shelf=shelf))
        gr.Markdown("# strokegraph\nPlan → draft → critique → refine, one stage at a time.")
        with gr.Tab("Run"):
            with gr.Row():
                with gr.Column(scale=2):
                    prompt = gr.Textbox(label="Prompt", value=DEFAULT_PROMPT, max_length=2000, elem_id="prompt")
                    with gr.Row():
                        pickers = [
                            gr.Dropdown(
                                setup.ids(role),
                                value=getattr(cfg, role).id or registry.DEFAULT_IDS[role],
                                label=role,
                                allow_custom_value=True,
                            )
                            for role in ROLES
                        ]
                    with gr.Row():
                        seed = gr.Number(label="Seed", value=cfg.seed or 0, precision=0, minimum=0)
                        rounds = gr.Number(
                            label="Budget (refine rounds)",
                            value=cfg.max_rounds if cfg.max_rounds is not None else 12,
                            precision=0,
                            minimum=0,
                        )
                        review = gr.Checkbox(label="Review each stage", value=False, elem_id="review")
                    go = gr.Button("Run", variant="primary", elem_id="run")
                    status = gr.HTML(elem_id="status")
                    log = gr.HTML(elem_id="log")
                with gr.Column(scale=3):
                    verdict_box = gr.HTML(elem_id="verdict")
                    final = gr.Image(
                        label="Final image", type="filepath", interactive=False, height=320, elem_id="final"
                    )
                    gallery = gr.Gallery(label="Stages", columns=4, height="auto", elem_id="stages")
            with gr.Column(visible=False, elem_id="review-panel") as review_panel:
                gr.Markdown("## Review")
                plan_table = gr.Dataframe(
                    headers=PLAN_HEADERS,
                    datatype=["str", "str", "str"],
                    interactive=True,
                    label="Plan: one row per step (clear an instruction to delete its step)",
                )
                violations_table = gr.Dataframe(
                    headers=VIOLATION_HEADERS,
                    datatype=["bool", "str", "str", "str", "str", "str"],
                    interactive=True,
                    label="Violations: untick keep to delete one; box is x0, y0, x1, y1 (0..1)",
                )
                with gr.Row():
                    accept_button = gr.Button("Accept", variant="primary", elem_id="accept")
                    edit_button = gr.Button("Save edits and go on", elem_id="edit")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="stop")
                with gr.Group(visible=False) as add_group:
                    review_image = gr.Image(
                        label="Click two corners to draw a new violation's box",
                        type="pil",
                        interactive=False,
                        elem_id="review-image",
                    )
                    with gr.Row():
                        kind = gr.Dropdown(list(get_args(ViolationKind)), value="missing", label="Kind")
                        message = gr.Textbox(label="What is wrong", elem_id="violation-message")
                        expected = gr.Textbox(label="Expected")
                        observed = gr.Textbox(label="Observed")
                    with gr.Row():
                        corners = [
                            gr.Number(label=n, precision=3, elem_id=f"box-{n}") for n in ("x0", "y0", "x1", "y1")
                        ]
                    add_button = gr.Button("Add violation and go on", elem_id="add")
        with gr.Tab("Runs") as runs_tab:
            with gr.Row():
                verdict_filter = gr.Radio(list(VERDICTS), value="all", label="Verdict")
                refresh = gr.Button("Refresh")
            shown = gr.State([])
            thumbs = gr.Gallery(label="Runs", columns=5, height="auto", allow_preview=False, elem_id="runs-gallery")
            listing = gr.HTML()
            with gr.Row():
                run_a = gr.Dropdown([], label="Run", allow_custom_value=True, elem_id="run-a")  # checked by run_folder
                run_b = gr.Dropdown([], label="Compare with", allow_custom_value=True, elem_id="run-b")
            with gr.Row():
                open_button = gr.Button("Open", elem_id="open")
                compare_button = gr.Button("Compare step by step", elem_id="compare")
                resume_button = gr.Button("Resume (continues in the Run tab)")
            page = gr.HTML(elem_id="run-page")
        with gr.Tab("Bench") as bench_tab:
            with gr.Row():
                # A name typed in is checked as a run's is (plain names under --runs, no link).
                bench = gr.Dropdown(
                    [],
                    label="Benchmark (a folder under --runs holding results.json)",
                    allow_custom_value=True,
                    elem_id="bench",
                )
                bench_refresh = gr.Button("Refresh")
                bench_button = gr.Button("Open", elem_id="open-bench")
            bench_view = gr.HTML(elem_id="bench-page")

        outputs = [
            status,
            log,
            gallery,
            final,
            verdict_box,
            review_panel,
            plan_table,
            violations_table,
            review_image,
            add_group,
            session,
        ]
        # concurrency_limit=None: each run works in its own thread, so no page waits on another's run.
        go.click(
            start, [prompt, *pickers, seed, rounds, review, session], outputs, api_name="run", concurrency_limit=None
        )
        accept_button.click(accept, [session], outputs, api_name="accept", concurrency_limit=None)
        stop_button.click(stop, [session], outputs, api_name="stop", concurrency_limit=None)
        edit_button.click(
            edit, [plan_table, violations_table, session], outputs, api_name="edit", concurrency_limit=None
        )
        add_button.click(
            add, [kind, message, expected, observed, *corners, session], outputs, api_name="add", concurrency_limit=None
        )
        review_image.select(corner, [session, *corners], [*corners, review_image], api_visibility="private")
        listed = [thumbs, listing, run_a, run_b, shown]
        refresh.click(gallery_of, [verdict_filter], listed, api_name="gallery")
        for trigger in (verdict_filter.change, runs_tab.select, app.load):
            trigger(gallery_of, [verdict_filter], listed, api_visibility="private")
        thumbs.select(picked, [shown], [run_a], api_visibility="private")
        open_button.click(page_of, [run_a], [page], api_name="open")
        compare_button.click(compare, [run_a, run_b], [page], api_name="compare")
        bench_refresh.click(benches, None, [bench], api_name="benches")
        for trigger in (bench_tab.select, app.load):
            trigger(benches, None, [bench], api_visibility="private")
        bench_button.click(bench_of, [bench], [bench_view], api_name="bench")
        resume_button.click(resume_run, [run_a, session], outputs, api_name="resume", concurrency_limit=None)
    return app


def launch(
    runs: str | os.PathLike,
    *,
    config: RunConfig | None = None,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    auth: tuple[str, str] | None = None,
    share: bool = False,
    block: bool = True,
    quiet: bool = False,
) -> gr.Blocks:
    """Serve the app on ``host:port`` (a free port for None); with ``block=False`` return it running.

    Refuses (:class:`UsageError`) a non-loopback ``host`` without ``auth``. No public share link unless
    ``share``; no file under ``runs`` is served by path (pictures go through Gradio's own cache).
    """
    check_launch(host, auth)
    app = build(runs, config)
    app.queue(default_concurrency_limit=None)
    app.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        share=share,
        prevent_thread_lock=not block,
        quiet=quiet,
        max_file_size="1mb",  # the page uploads nothing; a client posting files gets little room
        ssr_mode=False,
        mcp_server=False,
        footer_links=["api", "gradio", "settings"],  # no "runs": Gradio's own history of calls is not shown
        css=_CSS,
    )
    return app
