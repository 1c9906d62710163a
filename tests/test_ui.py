"""The browser UI (app/ui.py), driven through gradio_client against the app served on loopback."""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the browser UI needs the ui extra (pip install 'strokegraph[ui]')")
gradio_client = pytest.importorskip("gradio_client", reason="the UI tests drive the app with gradio_client")

from strokegraph import progress, registry  # noqa: E402
from strokegraph.app import ui  # noqa: E402
from strokegraph.app.cli import main  # noqa: E402
from strokegraph.tools.sketch.drafter import SketchDrafter  # noqa: E402

ROLES = tuple(registry.DEFAULT_IDS[role] for role in registry.ROLES)  # a picker per role, in order
PROMPT = ui.DEFAULT_PROMPT
# The outputs of /run, /accept, /edit, /add, /stop and /resume, in order.
STATUS, LOG, GALLERY, FINAL, VERDICT, PLAN, VIOLATIONS, REVIEW_IMAGE = range(8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BreakingDrafter:
    """Draws the first step like the sketch world, then fails (a backend failing mid-run)."""

    def __init__(self, model: str = "") -> None:
        self.sketch = SketchDrafter()

    def draft(self, request):
        if request.step == 1:
            raise MemoryError("out of memory")
        return self.sketch.draft(request)


class SamplingDrafter:
    """The sketch world's drafter, reporting denoising steps as a diffusers backend does, slowly
    (``sampling:slow`` more slowly still: 4 s a draft)."""

    def __init__(self, model: str = "") -> None:
        self.sketch = SketchDrafter()
        self.pause = 0.5 if model == "slow" else 0.15

    def draft(self, request):
        for i in range(1, 9):
            time.sleep(self.pause)
            progress.emit({"kind": "progress", "stage": "draft", "step": i, "total": 8})
        return self.sketch.draft(request)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    registry.register("drafter", "breaking", BreakingDrafter, offline=True, draws="sketch", package="test-ui")
    registry.register("drafter", "sampling", SamplingDrafter, offline=True, draws="sketch", package="test-ui")
    runs = tmp_path_factory.mktemp("runs")
    app = ui.launch(runs, port=_free_port(), block=False, quiet=True)
    try:
        yield app.local_url, runs
    finally:
        app.close()
        registry.unregister("drafter", "breaking")
        registry.unregister("drafter", "sampling")


@pytest.fixture
def client(served):
    return gradio_client.Client(served[0], verbose=False)


def _ids(**chosen: str) -> tuple[str, ...]:
    """A picker value per role (the defaults but for ``chosen``), in the page's order."""
    return tuple(chosen.get(role, registry.DEFAULT_IDS[role]) for role in registry.ROLES)


def _run(client, prompt=PROMPT, roles=ROLES, review=False, seed=0, budget=12):
    job = client.submit(prompt, *roles, seed, budget, review, api_name="/run")
    steps = list(job)
    return steps, job.outputs()[-1]


def _value(output):
    """An output's value: the page gets the review tables as updates (value and visibility)."""
    return output["value"] if isinstance(output, dict) and output.get("__type__") == "update" else output


def _trajectory(runs: Path, status: str) -> dict:
    run_dir = Path(status.split("Files in ")[1].rstrip("."))
    assert run_dir.parent == runs
    return json.loads((run_dir / "trajectory.json").read_text())


def test_a_run_streams_each_stage_then_the_verdict(client, served):
    # A drafter that takes a while, so that stages end apart (the page coalesces what arrives at once).
    steps, last = _run(client, roles=_ids(drafter="sampling:x"))
    logs = [s[LOG] for s in steps if isinstance(s[LOG], str) and s[LOG]]  # an activity line skips the log
    # Each stage appeared as it finished: the log grew from the plan alone to the last critique.
    assert "<h4>Plan" in logs[0] and "Draft" not in logs[0]
    assert "Draft, step 1" in logs[1] and "Draft, step 2" not in logs[1]
    assert len({len(x) for x in logs}) >= 3
    assert "<ol><li><b>Draw a blue cup.</b>" in last[LOG]
    assert "&lt;refine&gt;" in last[LOG]  # the sketch world's first draft is off; the refiner redraws it
    assert [g["caption"] for g in last[GALLERY]][:2] == ["draft step 1", "critique step 1: 1 violation(s)"]
    assert last[FINAL] is not None
    assert "<b>passed</b>" in last[VERDICT]
    assert _trajectory(served[1], last[STATUS])["passed"] is True


def test_sampling_shows_a_bar_with_the_time_left(client):
    steps, last = _run(client, roles=_ids(drafter="sampling:x"))
    bars = [s[STATUS] for s in steps if "<progress" in s[STATUS]]
    assert bars and all("s left" in b for b in bars)
    assert any("<progress value='8' max='8'>" in b or "<progress value='7' max='8'>" in b for b in bars)
    # Between events, the line of a stage at work still moves (the activity indicator).
    assert any("working (" in s[STATUS] for s in steps)
    assert "<b>passed</b>" in last[VERDICT]


def test_review_in_the_browser_records_the_answers_the_cli_records(client, served):
    _, last = _run(client, review=True)
    assert "review of the plan" in last[STATUS]
    rows = _value(last[PLAN])["data"]
    assert [r[0] for r in rows] == ["Draw a blue cup.", "Add two red apples to the left of the blue cup."]
    rows[0][0] = "Draw one blue cup."
    headers = _value(last[PLAN])["headers"]
    out = client.predict({"headers": headers, "data": rows}, {"headers": [], "data": []}, api_name="/edit")
    assert "review of the critique" in out[STATUS]
    assert _value(out[VIOLATIONS])["data"], "the sketch world's first draft has a violation to review"
    # A box outside the image is refused in one message; the review stays open.
    bad = client.predict("extra", "a stray bird", "", "", 0.5, 0.5, 1.5, 0.9, api_name="/add")
    assert "not inside the image" in bad[STATUS] and "review of the critique" not in bad[STATUS]
    assert _value(bad[VIOLATIONS])["data"]
    out = client.predict("extra", "a stray bird", "no bird", "a bird", 0.1, 0.2, 0.3, 0.4, api_name="/add")
    # The added violation is carried into the next critique: never dropped on the way.
    assert "asked in review: a stray bird" in out[LOG]
    out = client.predict(api_name="/stop")
    assert "stopped in review" in out[VERDICT]
    doc = _trajectory(served[1], out[STATUS])
    answers = [r["answer"] for r in doc["reviews"]]
    assert answers[0]["action"] == "edit" and answers[0]["plan"]["steps"][0]["instruction"] == "Draw one blue cup."
    assert answers[1] == {
        "action": "add",
        "violation": {
            "kind": "extra",
            "expected": "no bird",
            "observed": "a bird",
            "message": "a stray bird",
            "box": [0.1, 0.2, 0.3, 0.4],
        },
    }
    assert answers[-1] == {"action": "stop"} and doc["stopped"] is True


def test_accepting_every_review_finishes_the_run(client):
    _, out = _run(client, review=True)
    for _ in range(20):
        if out[VERDICT]:
            break
        out = client.predict(api_name="/accept")
    assert "<b>passed</b>" in out[VERDICT]


def test_editing_violations_deletes_and_changes_them(client, served):
    _, out = _run(client, review=True)
    out = client.predict(api_name="/accept")  # the plan
    table = _value(out[VIOLATIONS])
    table["data"][0][0] = False  # untick keep: the critic's violation is deleted
    out = client.predict({"headers": [], "data": []}, table, api_name="/edit")
    out = client.predict(api_name="/stop") if not out[VERDICT] else out
    doc = _trajectory(served[1], out[STATUS])
    assert doc["reviews"][1]["answer"] == {"action": "edit", "violations": []}


@pytest.mark.parametrize(
    ("prompt", "roles", "expected"),
    [
        ("   ", ROLES, "prompt is empty"),
        ("x" * 2001, ROLES, "the limit is 2000"),
        (PROMPT, _ids(drafter="builtin:sketchy"), "unknown drafter id"),
    ],
)
def test_bad_input_is_one_message_and_the_app_keeps_serving(client, served, prompt, roles, expected):
    before = sorted(p.name for p in served[1].iterdir())
    _, out = _run(client, prompt=prompt, roles=roles)
    assert out[STATUS].startswith("<b>Error:</b>") and expected in out[STATUS]
    assert sorted(p.name for p in served[1].iterdir()) == before  # no empty run left behind
    _, again = _run(client)
    assert "<b>passed</b>" in again[VERDICT]


def test_a_backend_failing_mid_run_keeps_what_it_made(client, served):
    roles = _ids(drafter="breaking:x")
    _, out = _run(client, roles=roles)
    assert "out of memory" in out[STATUS] and "resume it from Runs" in out[STATUS]
    assert "Draft, step 1" in out[LOG]  # the stages shown before the failure stay on the page
    run_dir = next(p for p in served[1].iterdir() if (p / "images" / "step01-draft.png").exists())
    assert (run_dir / "trajectory.json").exists()


def test_a_model_backed_id_needs_the_operators_leave(client):
    roles = _ids(planner="openai:gpt-4.1-mini")
    _, out = _run(client, roles=roles)
    assert "planner &#x27;openai:gpt-4.1-mini&#x27; is not allowed here" in out[STATUS]


def test_a_run_folder_deleted_at_a_review_is_one_message(client, served):
    _, out = _run(client, review=True)
    assert "review of the plan" in out[STATUS]
    shutil.rmtree(max(served[1].iterdir(), key=lambda p: p.stat().st_mtime))  # the run waiting here
    out = client.predict(api_name="/accept")
    assert out[STATUS].startswith("<b>Error:</b>") and "\n" not in out[STATUS]
    _, again = _run(client)
    assert "<b>passed</b>" in again[VERDICT]


def test_gallery_filters_opens_and_compares_runs(client, served):
    _, passed = _run(client, seed=1)
    _, other = _run(client, seed=5)
    _run(client, review=True, seed=2)
    stopped = client.predict(api_name="/stop")  # at the plan: no stage to compare
    thumbs, table, run_a, run_b = client.predict("all", api_name="/gallery")
    captions = [t["caption"] for t in thumbs]
    assert any(c.startswith("passed · two red apples") for c in captions)
    assert "builtin:sketch" in table and "<td>stopped in review</td>" in table
    thumbs, table, *_ = client.predict("stopped in review", api_name="/gallery")
    assert table.count("<tr>") - 1 == table.count("<td>stopped in review</td>") >= 1
    names = [n for n in sorted(p.name for p in served[1].iterdir()) if (served[1] / n / "report.html").exists()]
    page = client.predict(names[0], api_name="/open")
    assert "<iframe sandbox=''" in page and "srcdoc=" in page and "&lt;/html&gt;" in page
    finished, again, at_plan = (
        Path(o[STATUS].split("Files in ")[1].rstrip(".")).name for o in (passed, other, stopped)
    )
    both = client.predict(finished, again, api_name="/compare")
    assert both.count("<iframe") == 1 and "step by step" in both  # tests/test_ui_compare.py reads it
    assert "pick two different runs" in client.predict(names[0], names[0], api_name="/compare")
    not_finished = client.predict(finished, at_plan, api_name="/compare")
    assert "cannot be compared step by step: the run did not finish" in not_finished


def test_resume_from_the_gallery_continues_a_stopped_run(client, served):
    _, out = _run(client, review=True, seed=3)
    name = max(served[1].iterdir(), key=lambda p: p.stat().st_mtime).name
    job = client.submit(name, api_name="/resume")
    list(job)
    out = job.outputs()[-1]
    assert "review of the plan" in out[STATUS]  # it waits on the same review, the page shows it again
    out = client.predict(api_name="/accept")
    assert "review of the critique" in out[STATUS]
    # Another page resumes it at that review, with the image to draw a new box on.
    elsewhere = gradio_client.Client(served[0], verbose=False)
    job = elsewhere.submit(name, api_name="/resume")
    list(job)
    out = job.outputs()[-1]
    assert "review of the critique" in out[STATUS] and _value(out[REVIEW_IMAGE]) is not None


def test_only_pictures_of_checked_runs_reach_the_page(client, served, tmp_path):
    runs = served[1]
    _run(client, seed=4)
    name = max(runs.iterdir(), key=lambda p: p.stat().st_mtime).name
    base = served[0].rstrip("/")
    # Neither a run's files nor any file of the working directory (where --runs usually lies).
    for path in (runs / name / "final.png", runs / name / "run.json", Path("/etc/passwd"), Path("pyproject.toml")):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{base}/gradio_api/file={path}")
        assert caught.value.code in (403, 404)
    # A symlinked run, a run whose final.png is a link or not a PNG: no thumbnail, no page.
    outside = tmp_path / "elsewhere"
    shutil.copytree(runs / name, outside)
    (runs / "linked").symlink_to(outside, target_is_directory=True)
    fake = runs / "20990101-000000-fake"
    shutil.copytree(runs / name, fake)
    (fake / "final.png").unlink()
    (fake / "final.png").symlink_to(outside / "final.png")
    text = runs / "20990101-000001-text"
    shutil.copytree(runs / name, text)
    (text / "final.png").write_bytes(b"GIF89a not a png")
    try:
        assert ui.thumbnail(runs, "linked") is None and "linked" not in ui.run_names(runs)
        assert ui.thumbnail(runs, fake.name) is None and ui.thumbnail(runs, text.name) is None
        assert ui.thumbnail(runs, name) is not None
        assert "not under --runs" in client.predict("linked", api_name="/open")
        assert "pick a run" in client.predict("../etc", api_name="/open")
    finally:
        (runs / "linked").unlink()
        shutil.rmtree(fake)
        shutil.rmtree(text)


@pytest.mark.slow
def test_eight_sessions_run_at_once_each_to_its_own_run(served):
    results: dict[int, list] = {}

    def session(i: int) -> None:
        c = gradio_client.Client(served[0], verbose=False)
        results[i] = _run(c, seed=100 + i)[1]

    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    dirs = {r[STATUS].split("Files in ")[1] for r in results.values()}
    assert len(dirs) == 8 and all("Done:" in r[STATUS] for r in results.values())


def test_a_public_address_needs_a_login(capsys, monkeypatch):
    monkeypatch.delenv(ui.AUTH_ENV, raising=False)
    assert main(["ui", "--host", "0.0.0.0"]) == 2
    assert "--auth USER:PASS" in capsys.readouterr().err
    assert main(["ui", "--host", "0.0.0.0", "--auth", "nopass"]) == 2
    assert "must be USER:PASS" in capsys.readouterr().err


def test_a_login_guards_the_app(tmp_path):
    app = ui.launch(tmp_path / "runs", port=_free_port(), auth=("ann", "s3cret"), block=False, quiet=True)
    try:
        with pytest.raises(Exception, match="(?i)login|auth|401"):
            gradio_client.Client(app.local_url, verbose=False)
        c = gradio_client.Client(app.local_url, auth=("ann", "s3cret"), verbose=False)
        assert "<b>passed</b>" in _run(c)[1][VERDICT]
    finally:
        app.close()


def test_a_tab_closed_at_a_review_leaves_a_run_the_cli_resumes(client, served, monkeypatch, capsys):
    _, out = _run(client, review=True, seed=5)
    assert "review of the plan" in out[STATUS]
    run_dir = max(served[1].iterdir(), key=lambda p: p.stat().st_mtime)
    # The page is gone; the person answers on the terminal instead, accepting every review.
    monkeypatch.setattr("sys.stdin", io.StringIO("a\n" * 20))
    assert main(["resume", str(run_dir), "-q"]) == 0
    assert capsys.readouterr().out.startswith("passed: ")
    reviews = json.loads((run_dir / "trajectory.json").read_text())["reviews"]
    assert reviews[0]["kind"] == "plan" and all(r["answer"] == {"action": "accept"} for r in reviews)


def test_a_long_run_does_not_hold_up_another_session(served):
    slow, fast = (gradio_client.Client(served[0], verbose=False) for _ in range(2))
    roles = _ids(drafter="sampling:slow")
    job = slow.submit(PROMPT, *roles, 6, 12, False, api_name="/run")
    updates = iter(job)
    next(updates)  # the slow run has started: its page got its first update
    _, out = _run(fast, seed=7)
    assert "<b>passed</b>" in out[VERDICT]
    for _ in updates:
        pass
    last = job.outputs()[-1]
    assert last[STATUS].startswith("Done:")
    # The run started second finished first: it never waited for the other session's run.
    finished = [Path(o[STATUS].split("Files in ")[1].rstrip(".")) / "trajectory.json" for o in (out, last)]
    assert finished[0].stat().st_mtime < finished[1].stat().st_mtime
