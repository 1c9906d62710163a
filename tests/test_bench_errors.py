"""A benchmark whose images fail: error records counted and listed, exit 1, retried on a rerun, time limits,
progress, and a finished benchmark that starts nothing (Ray's dead and stuck workers: test_bench_scale.py)."""

from __future__ import annotations

import html
import io
import json
import threading

import pytest

from strokegraph.app import cli
from strokegraph.app.cli import main
from strokegraph.bench import run_bench
from strokegraph.errors import UsageError
from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies, error_reply
from strokegraph.tools.sketch.drafter import SketchDrafter

CLOCKS = "a photo of two clocks"  # GenEval's first counting prompt (index 179)
BROKE = "RuntimeError: the drafter broke on purpose (node 'drafter', step 0)"


class Picky:
    """Draws like the sketch world, but breaks on a scene with a noun in ``breaks``, and waits (up to a
    minute, or until ``release`` is set) on the first ``hangs`` scenes with a noun in ``hang_on``."""

    def __init__(self, breaks: frozenset[str] = frozenset(), hang_on: frozenset[str] = frozenset(), hangs: int = 0):
        self.sketch = SketchDrafter()
        self.breaks, self.hang_on, self.hangs = breaks, hang_on, hangs
        self.release = threading.Event()

    def draft(self, request):
        nouns = {e.noun for e in request.scene.entities}
        if nouns & self.breaks:
            raise RuntimeError("the drafter broke on purpose")
        if nouns & self.hang_on and self.hangs:
            self.hangs -= 1
            self.release.wait(60)
        return self.sketch.draft(request)


def _errors(out) -> dict:
    return json.loads((out / "results.json").read_text())["errors"]


def test_failed_images_are_counted_and_listed_in_every_result_file(tmp_path):
    out = tmp_path / "bench"
    events = []
    run_bench("geneval", out=out, limit=1, drafter=Picky(breaks=frozenset({"clock"})), on_progress=events.append)
    errors = _errors(out)
    assert errors["count"] == 2 and errors["scored_as"] == "incorrect"
    assert errors["images"] == [
        {"mode": mode, "tag": "counting", "index": 179, "image_index": 0, "prompt": CLOCKS, "seed": 0, "error": BROKE}
        for mode in ("single_pass", "loop")
    ]
    assert [e["errors"] for e in events][-1] == 2

    md = (out / "results.md").read_text()
    assert "Failed images: 2 of 12, listed under 'Failed images'; their scores count them as incorrect." in md
    assert "A failed image (an error record" in md and "is scored as incorrect, not left out." in md
    assert "## Failed images\n\n| mode | tag | prompt | image | seed | error |" in md
    assert f"| loop | counting | {CLOCKS} | 179-0 | 0 | {BROKE} |" in md
    assert f"| single pass | counting | {CLOCKS} | 179-0 | 0 | {BROKE} |" in md
    page = (out / "results.html").read_text()
    assert "<h2>Failed images</h2>" in page and "the drafter broke on purpose (node 'drafter'" in html.unescape(page)

    clean = run_bench("geneval", out=tmp_path / "clean", limit=1)
    assert clean.summary["errors"] == {"count": 0, "scored_as": "incorrect", "images": []}
    md = (tmp_path / "clean" / "results.md").read_text()
    assert "Failed images: none of 12." in md and "## Failed images" not in md


@pytest.mark.slow
def test_cli_bench_with_failed_images_exits_1_and_a_rerun_draws_them_again(
    tmp_path, capsys, monkeypatch, no_ambient_openai_env
):
    out = tmp_path / "bench"
    command = ["bench", "geneval", "--limit", "1", "--planner", "openai:gpt-4.1-mini", "--out", str(out)]

    # A server that refuses every planner request (a 400 is not retried, so this takes no time).
    with FakeOpenAI(fallback={"chat/completions": error_reply(400, "no planner here")}) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        assert main(command) == 1
    captured = capsys.readouterr()
    assert "12 image(s) drawn, 0 resumed" in captured.out
    last = captured.err.strip().splitlines()[-1]
    assert last == (
        f"strokegraph: 12 of 12 image(s) failed (scored as incorrect); listed in {out / 'results.md'}; "
        "rerun with the same --out to draw them again"
    )
    assert "12/12 images (loop), 12 errors" in captured.err
    assert _errors(out)["count"] == 12 and "no planner here" in _errors(out)["images"][0]["error"]

    assert main([*command, "--no-retry-errors", "-q"]) == 1  # kept, and said again
    captured = capsys.readouterr()
    assert "0 image(s) drawn, 12 resumed" in captured.out
    assert captured.err.startswith("strokegraph: 12 of 12 image(s) failed") and captured.err.count("\n") == 1
    assert "without --no-retry-errors" in captured.err

    with FakeOpenAI(fallback=any_prompt_replies()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        assert main([*command, "-q"]) == 0
    captured = capsys.readouterr()
    assert "12 image(s) drawn, 0 resumed" in captured.out and captured.err == ""
    assert _errors(out)["count"] == 0


def test_a_rerun_retries_error_records_only_and_no_retry_errors_keeps_them(tmp_path):
    out = tmp_path / "bench"
    first = run_bench("geneval", out=out, limit=1, drafter=Picky(breaks=frozenset({"clock"})))
    assert (first.generated, first.summary["errors"]["count"]) == (12, 2)

    kept = run_bench("geneval", out=out, limit=1, drafter=Picky(), retry_errors=False)
    assert (kept.generated, kept.resumed, kept.summary["errors"]["count"]) == (0, 12, 2)

    again = run_bench("geneval", out=out, limit=1, drafter=Picky())
    assert (again.generated, again.resumed, again.summary["errors"]["count"]) == (2, 10, 0)
    record = json.loads((out / "loop" / "counting" / "179-0" / "record.json").read_text())
    assert record["error"] is None and record["prompt"] == CLOCKS


@pytest.mark.slow
def test_an_image_over_the_time_limit_is_an_error_record_and_the_bench_moves_on(tmp_path):
    out = tmp_path / "bench"
    drafter = Picky(hang_on=frozenset({"clock"}), hangs=1)  # single pass's clocks hang; the loop's do not
    try:
        result = run_bench("geneval", out=out, limit=1, drafter=drafter, timeout_per_image=1)
        # The thread drawing it cannot be stopped: it waits on, in the background.
        assert any(t.name == "sg-bench-single_pass/counting/179-0" for t in threading.enumerate())
    finally:
        drafter.release.set()
    assert result.generated == 12
    errors = _errors(out)
    assert [(e["mode"], e["prompt"], e["error"]) for e in errors["images"]] == [
        ("single_pass", CLOCKS, "timed out after 1 s")
    ]
    run_dir = out / "single_pass" / "counting" / "179-0"
    assert [p.name for p in run_dir.iterdir()] == ["record.json"]  # the abandoned draw writes only its scratch
    assert json.loads((out / "loop" / "counting" / "179-0" / "record.json").read_text())["error"] is None


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
def test_a_time_limit_must_be_a_number_of_seconds_over_0(tmp_path, seconds):
    with pytest.raises(UsageError, match="timeout_per_image must be a number of seconds over 0"):
        run_bench("geneval", out=tmp_path / "bench", limit=1, timeout_per_image=seconds)
    assert not (tmp_path / "bench").exists()


def test_cli_refuses_a_time_limit_of_0(tmp_path, capsys):
    assert main(["bench", "geneval", "--timeout-per-image", "0", "--out", str(tmp_path / "b")]) == 2
    assert "--timeout-per-image must be a number of seconds over 0, got 0.0" in capsys.readouterr().err


def test_progress_shows_done_errors_and_time_left(monkeypatch):
    clock = iter([100.0, 112.3, 130.0])
    monkeypatch.setattr(cli.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    show = cli._bench_progress(stream)
    show({"mode": "loop", "done": 48, "total": 240, "resumed": 8, "errors": 2})
    show({"mode": "loop", "done": 240, "total": 240, "resumed": 8, "errors": 1})
    lines = stream.getvalue().splitlines()
    # 40 images drawn in 12.3 s: the 192 left take about 59 s more.
    assert lines == [
        "[  12.3s] 48/240 images (loop, 8 resumed), 2 errors, ~59s left",
        "[  30.0s] 240/240 images (loop, 8 resumed), 1 error",
    ]
    stream = io.StringIO()
    clock = iter([0.0, 12.3])
    cli._bench_progress(stream)({"mode": "single_pass", "done": 36, "total": 240, "resumed": 0, "errors": 0})
    assert stream.getvalue() == "[  12.3s] 36/240 images (single_pass), 0 errors, ~1m10s left\n"


@pytest.mark.slow
def test_a_finished_bench_starts_no_ray(tmp_path, closed_port, no_ambient_openai_env):
    nowhere = f"127.0.0.1:{closed_port}"  # Ray is not there (nor, maybe, installed): only summarising works
    run_bench("geneval", out=tmp_path / "done", limit=1)
    done = run_bench("geneval", out=tmp_path / "done", limit=1, ray=nowhere, workers=2)
    assert (done.generated, done.resumed, done.nodes) == (0, 12, {})

    out = tmp_path / "failed"
    planner = "openai:gpt-4.1-mini"
    with FakeOpenAI(fallback={"chat/completions": error_reply(400, "no planner here")}) as server:
        settings = {"planner": {"base_url": server.url, "max_retries": 0}}
        run_bench("geneval", out=out, limit=1, planner=planner, settings=settings)
    kept = run_bench("geneval", out=out, limit=1, planner=planner, settings=settings, ray=nowhere, retry_errors=False)
    assert (kept.generated, kept.resumed, kept.summary["errors"]["count"]) == (0, 12, 12)
    # Error records to retry need the workers.
    with pytest.raises(UsageError, match="Ray"):
        run_bench("geneval", out=out, limit=1, planner=planner, settings=settings, ray=nowhere)
