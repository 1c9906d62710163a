"""--review: a person answers interrupts after the plan and after every critique."""

from __future__ import annotations

import io
import json

import pytest

from strokegraph import registry
from strokegraph.app.cli import EXIT_STOPPED, main
from strokegraph.app.runner import generate, resume
from strokegraph.errors import UsageError

PROMPT = "two red apples to the left of a blue cup"


class CountingDrafter:
    def __init__(self):
        self.inner = registry.build("drafter", "builtin:sketch")
        self.calls = 0

    def draft(self, request):
        self.calls += 1
        return self.inner.draft(request)


MINE = {"kind": "count", "expected": "3 apples", "observed": "2 apples", "message": "my own violation"}


def test_review_round_trip(tmp_path):
    out = tmp_path / "run"
    drafter = CountingDrafter()
    r = generate(PROMPT, out=out, drafter=drafter, review=True)
    assert r.interrupt["kind"] == "plan" and not r.passed
    assert r.interrupt["plan"]["steps"] and r.interrupt["scene"]["entities"]
    assert json.loads((out / "run.json").read_text())["review"] is True
    assert (out / "trajectory.json").is_file() and drafter.calls == 0

    r = resume(out, drafter=drafter, answer={"action": "accept"})
    assert r.interrupt["kind"] == "critique" and r.interrupt["step"] == 0 and r.interrupt["round"] == 0
    assert (out / r.interrupt["image"]).is_file()
    assert drafter.calls == 1

    # An edited violation list with one of mine: the refiner runs for it; the drafter does not run again.
    r = resume(out, drafter=drafter, answer={"action": "edit", "violations": [MINE]})
    assert drafter.calls == 1
    refines = [e for e in r.trajectory if e.stage == "refine"]
    assert len(refines) == 1
    assert r.interrupt["kind"] == "critique" and r.interrupt["round"] == 1

    r = resume(out, drafter=drafter, answer={"action": "stop"})
    assert r.interrupt is None and not r.passed
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["stopped"] is True and [x["answer"]["action"] for x in doc["reviews"]] == ["accept", "edit", "stop"]
    assert (out / "final.png").is_file() and (out / "report.html").is_file()
    # A stopped run stays stopped.
    assert resume(out, drafter=drafter).interrupt is None
    with pytest.raises(UsageError):
        resume(out, drafter=drafter, answer={"action": "accept"})


def test_add_violation_refines(tmp_path):
    out = tmp_path / "run"
    generate(PROMPT, out=out, review=True)
    r = resume(out, answer={"action": "accept"})
    r = resume(out, answer={"action": "add", "violation": MINE})
    assert any(e.stage == "refine" for e in r.trajectory)
    assert r.interrupt["kind"] == "critique"


@pytest.mark.parametrize(
    "answer",
    [
        "accept",
        {"action": "nope"},
        {"action": "edit"},
        {"action": "add", "violation": MINE},  # add is for critiques
        {"action": "edit", "plan": {"steps": []}},
        {"action": "accept", "extra": 1},
    ],
)
def test_invalid_plan_answers(tmp_path, answer):
    out = tmp_path / "run"
    generate(PROMPT, out=out, review=True)
    with pytest.raises(UsageError, match="invalid review answer"):
        resume(out, answer=answer)
    assert resume(out).interrupt["kind"] == "plan"  # the review stays open


def test_plan_edit_must_cover_entities(tmp_path):
    out = tmp_path / "run"
    r = generate(PROMPT, out=out, review=True)
    plan = r.interrupt["plan"]
    short = {"steps": plan["steps"][:1]} if len(plan["steps"]) > 1 else None
    if short is not None:
        with pytest.raises(UsageError, match="cover"):
            resume(out, answer={"action": "edit", "plan": short})
    # One step that draws everything is a valid edit.
    ids = [e["id"] for e in r.interrupt["scene"]["entities"]]
    one = {"steps": [{"instruction": "draw it all", "description": PROMPT, "entity_ids": ids}]}
    r = resume(out, answer={"action": "edit", "plan": one})
    assert len(r.plan.steps) == 1 and r.interrupt["kind"] == "critique"


def test_stop_at_plan(tmp_path):
    out = tmp_path / "run"
    generate(PROMPT, out=out, review=True)
    r = resume(out, answer={"action": "stop"})
    assert r.interrupt is None and not r.passed and r.final_image is None
    assert (out / "trajectory.json").is_file()


def test_cli_accept_everything(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr("sys.stdin", io.StringIO("a\n" * 50))
    code = main(["generate", PROMPT, "--out", str(out), "--review", "-q"])
    assert code in (0, 3)
    err = capsys.readouterr().err
    assert "review: plan" in err and "review: critique" in err
    assert (out / "final.png").is_file() and (out / "report.html").is_file()
    assert json.loads((out / "trajectory.json").read_text())["finished"] is True


def test_cli_stop_and_eof(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr("sys.stdin", io.StringIO("x\ne not json\na\ns\n"))
    code = main(["generate", PROMPT, "--out", str(out), "--review", "-q"])
    assert code == EXIT_STOPPED  # a person's stop is not a spent budget
    captured = capsys.readouterr()
    assert "unknown choice" in captured.err and "not JSON" in captured.err
    # Piped answers are shown after the question, each on its line, as a terminal would echo them.
    assert "[s]top? x\n" in captured.err and "[s]top? a\n" in captured.err
    assert captured.out.startswith("stopped in review")
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["stopped"] is True and doc["finished"] is False

    out2 = tmp_path / "run2"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # EOF = stop
    assert main(["generate", PROMPT, "--out", str(out2), "--review", "-q"]) == EXIT_STOPPED
    assert json.loads((out2 / "trajectory.json").read_text())["stopped"] is True
    # Stopped at the plan, before anything was drawn: the summary says so (it printed "None").
    out = capsys.readouterr().out.splitlines()
    assert out == [f"stopped in review: nothing drawn yet, in {out2}", f"report: {out2 / 'report.html'}"]


def test_cli_add_violation(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr("sys.stdin", io.StringIO("a\nd " + json.dumps(MINE) + "\ns\n"))
    assert main(["generate", PROMPT, "--out", str(out), "--review", "-q"]) == EXIT_STOPPED
    doc = json.loads((out / "trajectory.json").read_text())
    assert any(e["stage"] == "refine" for e in doc["events"])


def test_cli_review_with_faults_never_spins(tmp_path, monkeypatch, capsys):
    # --faults gives the default drafter and refiner settings without an id; each answer used to be
    # refused for that ("settings for the drafter need its id too") and, past the end of input, the
    # question repeated without end.
    out = tmp_path / "run"
    monkeypatch.setattr("sys.stdin", io.StringIO("a\ns\n"))
    code = main(["generate", PROMPT, "--out", str(out), "--review", "--faults", "0", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_STOPPED
    assert "need its id" not in err
    assert err.count("[s]top?") == 2  # the plan, then the first critique: asked once each
    reviews = json.loads((out / "trajectory.json").read_text())["reviews"]
    assert [r["answer"]["action"] for r in reviews] == ["accept", "stop"]


def test_cli_review_error_that_no_answer_mends_ends_the_command(tmp_path, monkeypatch, capsys):
    # An error that is not about the answer (here run.json damaged while the review waited) is said
    # once and ends the command with exit 2, instead of asking again for ever.
    out = tmp_path / "run"
    real_resume = resume

    def damaging_resume(run_dir, **kwargs):
        (out / "run.json").write_text("{}")
        return real_resume(run_dir, **kwargs)

    monkeypatch.setattr("strokegraph.app.runner.resume", damaging_resume)
    monkeypatch.setattr("sys.stdin", io.StringIO("a\n" * 5))
    assert main(["generate", PROMPT, "--out", str(out), "--review", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("[s]top?") == 1 and err.count("is not a run record") == 1


def test_added_violation_stays_open_until_judged(tmp_path):
    # The sketch world's critic cannot judge "make the cup bigger": the refiner acts on it, and
    # every critique after that lists it as not judged, so the run cannot end in a plain pass.
    out = tmp_path / "run"
    settings = {"drafter": {"fault_scale": 0}, "refiner": {"fault_scale": 0}}
    mine = {
        "kind": "attribute",
        "expected": "a bigger cup",
        "observed": "a small cup",
        "message": "make the cup bigger",
    }
    generate(PROMPT, out=out, review=True, settings=settings)
    r = resume(out, answer={"action": "accept"}, drafter="builtin:sketch", refiner="builtin:sketch", settings=settings)
    while r.interrupt is not None:
        answer = (
            {"action": "add", "violation": mine}
            if r.interrupt["round"] == 0 and r.interrupt["step"] == 0
            else {"action": "accept"}
        )
        r = resume(out, answer=answer, drafter="builtin:sketch", refiner="builtin:sketch", settings=settings)
    refines = [e for e in r.trajectory if e.stage == "refine"]
    assert any("make the cup bigger" in e.text for e in refines)
    critiques = [e for e in r.trajectory if e.stage == "critique"]
    assert all("asked in review: make the cup bigger" in e.critique.unjudged for e in critiques[1:])
    assert r.passed and r.unjudged == ("asked in review: make the cup bigger",)  # exit 4, not 0
    doc = json.loads((out / "trajectory.json").read_text())
    assert "asked in review: make the cup bigger" in doc["final_critique"]["unjudged"]


class RequestJudge:
    """A critic that judges a person's requests: each is unmet until it has been asked about twice."""

    judges_requests = True

    def __init__(self):
        self.inner = registry.build("critic", "builtin:pixels")
        self.seen = []

    def critique(self, request):
        self.seen.append(request.requests)
        critique = self.inner.critique(request)
        unmet = tuple(v for v in request.requests if sum(v in seen for seen in self.seen) < 2)
        return critique.model_copy(update={"violations": (*critique.violations, *unmet)})


def test_a_critic_that_judges_requests_gets_them_until_met(tmp_path):
    from strokegraph.schema import Violation

    out = tmp_path / "run"
    critic = RequestJudge()
    mine = Violation.model_validate({**MINE, "message": "make the cup bigger", "kind": "attribute"})
    settings = {"drafter": {"fault_scale": 0}, "refiner": {"fault_scale": 0}}
    kw = {"critic": critic, "drafter": "builtin:sketch", "refiner": "builtin:sketch", "settings": settings}
    generate(PROMPT, out=out, review=True, **kw)
    resume(out, answer={"action": "accept"}, **kw)
    r = resume(out, answer={"action": "add", "violation": mine.model_dump()}, **kw)
    # The critique after the refinement was asked about the request and still found it unmet.
    assert critic.seen[-1] == (mine,) and mine in r.critique.violations
    while r.interrupt is not None:
        r = resume(out, answer={"action": "accept"}, **kw)
    assert all(seen == (mine,) for seen in critic.seen[1:])  # every critique after the addition
    assert r.passed and not r.unjudged  # judged and met: nothing left unjudged


def test_an_invalid_answer_through_langgraph_asks_again_and_a_valid_one_ends_the_review():
    """A LangGraph client answers with Command(resume=...) and nothing checks the answer first: a refused
    answer must not stick (LangGraph replays a node's answers on every resume) but ask again with the error."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from strokegraph.graph import Budget, RunContext, build_graph
    from strokegraph.graph.state import RunState

    graph = build_graph(InMemorySaver(), review=True)
    backends, _ = registry.build_backends()
    config = {"configurable": {"thread_id": "t"}}

    def context(run_dir):
        return RunContext(backends=backends, run_dir=run_dir)

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "images").mkdir()
        state = RunState(prompt="a red cup", budget=Budget())
        graph.invoke(state, config, context=context(Path(tmp)))
        pending = graph.get_state(config).interrupts
        assert pending and pending[0].value["kind"] == "plan" and "error" not in pending[0].value
        graph.invoke(Command(resume={"action": "dance"}), config, context=context(Path(tmp)))
        pending = graph.get_state(config).interrupts
        assert pending and pending[0].value["kind"] == "plan"
        assert "action 'dance' is not one of" in pending[0].value["error"]
        graph.invoke(Command(resume={"action": "accept"}), config, context=context(Path(tmp)))
        pending = graph.get_state(config).interrupts
        assert pending and pending[0].value["kind"] == "critique" and "error" not in pending[0].value
        assert [r["answer"] for r in graph.get_state(config).values["reviews"]] == [{"action": "accept"}]


@pytest.mark.parametrize("box", [[0.6, 0.2, 0.4, 0.5], [-0.1, 0.0, 0.5, 0.5], [0.1, 0.1, 0.5, 1.2]])
def test_a_box_a_person_gives_must_lie_inside_the_image(tmp_path, box):
    # Every review answer passes here (CLI, browser UI, LangGraph clients): one check for all.
    out = tmp_path / "run"
    generate(PROMPT, out=out, review=True)
    r = resume(out, answer={"action": "accept"})
    kept = r.interrupt["critique"]["violations"]
    for answer in (
        {"action": "add", "violation": {**MINE, "box": box}},
        {"action": "edit", "violations": [*kept, {**MINE, "box": box}]},
    ):
        with pytest.raises(UsageError, match=r"is not inside the image \(0 <= x0 < x1 <= 1"):
            resume(out, answer=answer)
    r = resume(out, answer={"action": "add", "violation": {**MINE, "box": [0.1, 0.1, 0.5, 0.5]}})
    assert r.interrupt is not None  # a box inside the image is taken
