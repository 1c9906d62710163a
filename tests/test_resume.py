"""Resuming a run: after a kill, after a spent budget, and what cannot be resumed."""

from __future__ import annotations

import hashlib
import json
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from strokegraph.app.cli import EXIT_RUN_ERROR, EXIT_USAGE, main
from strokegraph.app.runner import generate, resume
from strokegraph.errors import RunError, UsageError
from strokegraph.graph import Budget, RunState, build_graph, engine
from strokegraph.graph.journal import read_journal, write_journal
from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies
from strokegraph.tools.sketch.drafter import SketchDrafter

PROMPT = "two red apples left of a blue cup and a green bird"
FAULTS = 3.33  # enough faults that the loop refines: 9 images for this prompt and seed
SETTINGS = {"drafter": {"fault_scale": FAULTS}, "refiner": {"fault_scale": FAULTS}}


def _images(run_dir) -> dict[str, tuple[str, int, int]]:
    """name -> (sha256, mtime_ns, inode) of every image in the run."""
    out = {}
    for path in sorted((run_dir / "images").glob("*.png")):
        st = path.stat()
        out[path.name] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_ino)
    return out


def _checkpointed(run_dir) -> RunState | None:
    """The state of the run's last checkpoint, or None when it has none."""
    path = engine.run_checkpoints(run_dir)
    if not path.exists():
        return None
    with engine.checkpointer(path) as saver:
        values = build_graph(checkpointer=saver).get_state({"configurable": {"thread_id": run_dir.name}}).values
    return RunState.model_validate(values) if values else None


def _key(e):
    return (e.stage, e.step, e.round)


def test_a_killed_run_resumes_without_running_a_finished_node_twice(tmp_path, capsys):
    reference = generate(PROMPT, out=tmp_path / "reference", seed=5, settings=SETTINGS)
    assert len(_images(tmp_path / "reference")) > 3
    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "strokegraph", "generate", PROMPT, "--out", str(run_dir), "--seed", "5"]
    proc = subprocess.Popen([*cmd, "--faults", str(FAULTS), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        # Kill as soon as the second image lands, well before the run's last node.
        while proc.poll() is None and time.monotonic() < deadline:
            if (run_dir / "images").is_dir() and len(list((run_dir / "images").glob("*.png"))) >= 2:
                break
            time.sleep(0.01)
        finished_first = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert finished_first or proc.returncode == -signal.SIGKILL
    before = _images(run_dir)
    state = _checkpointed(run_dir)
    done = {e.image.path.removeprefix("images/") for e in state.trajectory if e.image} if state else set()

    assert main(["resume", str(run_dir), "-q"]) == (0 if reference.passed else 3)
    assert str(run_dir / "final.png") in capsys.readouterr().out

    after = _images(run_dir)
    assert (run_dir / "final.png").read_bytes() == reference.final_image.read_bytes()
    assert {h for h, _, _ in after.values()} == {h for h, _, _ in _images(tmp_path / "reference").values()}
    # Images of nodes whose checkpoint was written before the kill are the very same files.
    assert all(after[name] == before[name] for name in done)
    events = json.loads((run_dir / "trajectory.json").read_text())["events"]
    counts = Counter((e["stage"], e["step"], e["round"]) for e in events)
    assert set(counts.values()) == {1}
    assert list(counts) == [_key(e) for e in reference.trajectory]
    if finished_first:  # a fast machine finished before the kill: resume had nothing to run
        assert after == before
    else:
        assert len(done) < len(after)


def test_a_spent_budget_can_be_raised_and_the_run_refines_further(tmp_path):
    first = generate(PROMPT, out=tmp_path / "r", seed=5, settings=SETTINGS, budget=Budget(max_rounds=0))
    assert not first.passed and first.rounds == 0 and first.critique.violations
    resumed = resume(tmp_path / "r", max_rounds=5)
    assert 0 < resumed.rounds <= 5
    assert resumed.trajectory[: len(first.trajectory)] == first.trajectory
    new = resumed.trajectory[len(first.trajectory) :]
    # The router decides again after the last critique: refine, critique, refine...
    assert [e.stage for e in new[:2]] == ["refine", "critique"]
    assert set(Counter(map(_key, resumed.trajectory)).values()) == {1}
    trajectory = json.loads((tmp_path / "r" / "trajectory.json").read_text())
    assert trajectory["rounds"] == resumed.rounds and trajectory["budget"]["max_rounds"] == 5


@pytest.mark.parametrize("max_rounds", [None, 5])
def test_a_node_that_finished_before_its_step_was_committed_is_not_run_again(tmp_path, max_rounds):
    first = generate(PROMPT, out=tmp_path / "r", seed=5, settings=SETTINGS, budget=Budget(max_rounds=0))
    # A kill between the critic's saved writes and its step's checkpoint leaves exactly this: the
    # checkpoint the final critique is a pending write of is the last one (whatever nodes follow it).
    journal = tmp_path / "r" / engine.JOURNAL
    records, _ = read_journal(journal)
    critiqued = max(r[3] for r in records if r[0] == "w" and any(w[1] == "critique" for w in r[6]))
    write_journal(journal, [r for r in records if r[0] == "d" or r[3] <= critiqued])
    resumed = resume(tmp_path / "r", max_rounds=max_rounds)
    # The very same critique event (its duration too): the critic did not run again.
    assert resumed.trajectory[: len(first.trajectory)] == first.trajectory
    assert set(Counter(map(_key, resumed.trajectory)).values()) == {1}
    if max_rounds is None:
        assert resumed.trajectory == first.trajectory and not resumed.passed
    else:
        assert resumed.trajectory[len(first.trajectory)].stage == "refine" and resumed.rounds > 0


def test_a_finished_passing_run_resumes_to_the_same_result(tmp_path):
    first = generate(PROMPT, out=tmp_path / "r", seed=5, settings={"drafter": {"fault_scale": 0}})
    assert first.passed
    again = resume(tmp_path / "r", max_rounds=20)
    assert again.passed and again.trajectory == first.trajectory and again.rounds == first.rounds
    assert again.final_image.read_bytes() == first.final_image.read_bytes()


@pytest.mark.parametrize(("stop", "code"), [(OSError("disk on fire"), EXIT_RUN_ERROR), (KeyboardInterrupt(), 130)])
def test_a_failed_or_interrupted_run_says_how_to_resume(tmp_path, capsys, monkeypatch, stop, code):
    calls = []

    def flaky(self, request):
        calls.append(request.step)
        if len(calls) == 2:
            raise stop
        return original(self, request)

    original = SketchDrafter.draft
    monkeypatch.setattr(SketchDrafter, "draft", flaky)
    run_dir = tmp_path / "r"
    assert main(["generate", PROMPT, "--out", str(run_dir), "--seed", "5", "-q"]) == code
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"; resume with: strokegraph resume {run_dir}") and "\n" not in err
    assert main(["resume", str(run_dir), "-q"]) == 0
    reference = generate(PROMPT, out=tmp_path / "reference", seed=5)
    assert (run_dir / "final.png").read_bytes() == reference.final_image.read_bytes()


@pytest.mark.parametrize("make", ["missing", "empty", "file", "no-record", "other-format"])
def test_what_is_not_a_run_is_a_usage_error(tmp_path, capsys, make):
    path = tmp_path / "x"
    if make == "empty":
        path.mkdir()
    elif make == "file":
        path.write_text("hi")
    elif make in ("no-record", "other-format"):
        generate(PROMPT, out=path, seed=5)
        if make == "no-record":
            (path / "run.json").unlink()
        else:
            record = json.loads((path / "run.json").read_text())
            (path / "run.json").write_text(json.dumps({**record, "format": 99}))
    with pytest.raises(UsageError):
        resume(path)
    assert main(["resume", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("strokegraph: error: ") and err.count("\n") == 1


def test_a_run_with_a_backend_object_needs_it_again(tmp_path, capsys):
    class Broken:
        def draft(self, request):
            raise OSError("no")

    with pytest.raises(RunError):
        generate(PROMPT, out=tmp_path / "r", drafter=Broken())
    assert main(["resume", str(tmp_path / "r")]) == EXIT_USAGE
    assert "drafter" in capsys.readouterr().err
    result = resume(tmp_path / "r", drafter=SketchDrafter())
    assert result.final_image.is_file()


def test_run_json_records_the_run_but_never_a_key(tmp_path, monkeypatch):
    secret = "sk-test-secret"
    with FakeOpenAI(fallback=any_prompt_replies()) as server:
        chat = {"base_url": server.url, "api_key": secret, "detail": "low"}
        first = generate(
            PROMPT,
            out=tmp_path / "r",
            planner="openai:gpt-4.1-mini",
            critic="openai:gpt-4.1-mini",
            settings={"planner": {k: v for k, v in chat.items() if k != "detail"}, "critic": chat},
        )
        text = (tmp_path / "r" / "run.json").read_text()
        assert secret not in text
        record = json.loads(text)
        assert record["backends"]["planner"] == "openai:gpt-4.1-mini"
        assert record["settings"]["critic"] == {"base_url": server.url, "detail": "low"}
        # A resumed run takes its key where any run given none does: from the environment. Its
        # model-backed backends and their endpoint are named again; "detail" comes from the record.
        monkeypatch.setenv("OPENAI_API_KEY", secret)
        endpoint = {"base_url": server.url}
        again = resume(
            tmp_path / "r",
            max_rounds=0,
            planner="openai:gpt-4.1-mini",
            critic="openai:gpt-4.1-mini",
            settings={"planner": endpoint, "critic": endpoint},
        )
    assert again.passed == first.passed and again.trajectory == first.trajectory


@pytest.mark.usefixtures("no_ambient_openai_env")
def test_the_resume_hint_names_the_config_file_that_held_the_endpoint(tmp_path, capsys, server):
    # The base_url lived only in the config: a hint without --config failed with "no OpenAI API key".
    from strokegraph.testing.openai_server import any_prompt_replies, error_reply

    config = tmp_path / "vllm.toml"
    config.write_text(f'[critic]\nid = "openai:qwen"\nbase_url = "{server.url}"\nmax_retries = 0\n')
    server.script("chat/completions", error_reply(400, "scripted failure"))
    run_dir = tmp_path / "r"
    assert main(["generate", PROMPT, "--out", str(run_dir), "--config", str(config), "-q"]) == EXIT_RUN_ERROR
    err = capsys.readouterr().err.strip()
    hint = err.partition("; resume with: ")[2]
    assert hint == f"strokegraph resume {run_dir} --config {config} --critic openai:qwen"
    server.fallback = any_prompt_replies()
    assert main(shlex.split(hint)[1:] + ["-q"]) in (0, 3, 4)


def test_a_stage_shown_as_finished_never_runs_again(tmp_path):
    # A kill right after a stage's progress line used to land before its checkpoint, so resume ran
    # the node again (with an API backend, one more paid call). The line now comes once it is saved.
    calls = []

    class Counting:
        def __init__(self):
            self.inner = SketchDrafter()

        def draft(self, request):
            calls.append(request.step)
            return self.inner.draft(request)

    def kill_after_first_draft(event):
        if event["kind"] == "end" and event["stage"] == "draft":
            raise KeyboardInterrupt  # as a Ctrl-C would, the moment the line is shown

    drafter = Counting()
    with pytest.raises(KeyboardInterrupt):
        generate(PROMPT, out=tmp_path / "r", seed=5, drafter=drafter, on_progress=kill_after_first_draft)
    assert calls == [0]
    resume(tmp_path / "r", drafter=drafter)
    assert calls[0] == 0 and calls.count(0) == 1  # step 1's draft was not drawn twice
    assert calls == sorted(set(calls))
