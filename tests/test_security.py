"""What a run directory, a checkpoint, a model reply or a prompt from someone else may not do.

Each test plays the attacker: it edits a run directory, plants links, feeds hostile input, and
checks that strokegraph contacts no endpoint the user did not name now, reads and writes nothing
outside the run, keeps its records intact, and answers with one line and a documented exit code.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cli_process import run_cli as _cli
from pydantic import ValidationError

from strokegraph.app.cli import EXIT_RUN_ERROR, EXIT_USAGE, main, safe
from strokegraph.app.runner import generate, resume
from strokegraph.errors import RunError, UsageError
from strokegraph.graph import Budget, build_graph, engine
from strokegraph.graph.journal import MAGIC
from strokegraph.schema import ImageRef
from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies, chat_reply
from strokegraph.tools.sketch.drafter import SketchDrafter

PROMPT = "a red cat below a blue kite"
KEY = "sk-test-must-not-leave"
MODEL = "openai:gpt-4.1-mini"
RECORDS = ("final.png", "trajectory.json", "report.html", "run.json")


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every regular file of the run (the lock file aside), by relative path."""
    return {
        p.relative_to(run_dir).as_posix(): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != ".lock"
    }


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


class BrokenPlanner:
    """A planner whose service is down: the run stops before its first checkpoint."""

    def plan(self, prompt):
        raise RunError("service unavailable", node="planner")


def _run_stopped_at_planning(run_dir: Path) -> None:
    with pytest.raises(RunError):
        generate(PROMPT, out=run_dir, planner=BrokenPlanner())


def _point_planner_at(run_dir: Path, url: str) -> None:
    """Edit run.json as an attacker would: the planner becomes an API backend at ``url``."""
    record = json.loads((run_dir / "run.json").read_text())
    record["backends"]["planner"] = MODEL
    record["settings"]["planner"] = {"base_url": url}
    (run_dir / "run.json").write_text(json.dumps(record))


# ---------------------------------------------------------------------------------------------
# resume: no endpoint or model on a run directory's word
# ---------------------------------------------------------------------------------------------


def test_resume_never_contacts_an_endpoint_that_only_run_json_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    run = tmp_path / "run"
    _run_stopped_at_planning(run)
    with FakeOpenAI(fallback=any_prompt_replies()) as evil:
        _point_planner_at(run, evil.url)
        with pytest.raises(UsageError, match="name them again"):
            resume(run)
        assert main(["resume", str(run), "-q"]) == EXIT_USAGE  # stdin is not a terminal: nobody to ask
        line = _one_line_error(capsys.readouterr().err)
        assert "--planner ID" in line and evil.url in line  # it says what and where, and how to go on
        asked: list[str] = []
        with pytest.raises(UsageError):
            resume(run, confirm=lambda named: asked.append(named) or False)
        assert asked and evil.url in asked[0]
        assert evil.sent("chat/completions") == []


def test_resume_goes_to_the_endpoint_the_user_names_now_with_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    run = tmp_path / "run"
    _run_stopped_at_planning(run)
    with FakeOpenAI(fallback=any_prompt_replies()) as evil, FakeOpenAI(fallback=any_prompt_replies()) as mine:
        _point_planner_at(run, evil.url)
        result = resume(run, planner=MODEL, settings={"planner": {"base_url": mine.url}})
        assert evil.sent("chat/completions") == []
        sent = mine.sent("chat/completions")
        assert sent and all(r.headers["authorization"] == f"Bearer {KEY}" for r in sent)
    assert result.final_image.is_file()


def _stopped_run_recording(run: Path, role: str, backend: str) -> Path:
    """A run stopped at planning whose run.json was edited to name ``backend`` for ``role``."""
    _run_stopped_at_planning(run)
    record = json.loads((run / "run.json").read_text())
    record["backends"][role] = backend
    (run / "run.json").write_text(json.dumps(record))
    return run


def test_a_recorded_offline_backend_resumes_as_before(tmp_path):
    run = _stopped_run_recording(tmp_path / "run", "planner", "builtin:rules")
    assert resume(run).final_image.is_file()


def test_a_record_naming_an_unknown_role_is_refused_and_nothing_changes(tmp_path):
    run = _stopped_run_recording(tmp_path / "run", "painter", "builtin:sketch")
    before = _snapshot(run)
    with pytest.raises(UsageError, match="run.json"):
        resume(run)
    assert _snapshot(run) == before


# ---------------------------------------------------------------------------------------------
# Paths: nothing outside the run directory is read, copied or written
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["../../etc/passwd", "/etc/passwd", "images/../../x.png", "images/a/../b.png", "images/x.txt", "final.png", ""],
)
def test_an_image_reference_outside_images_is_invalid(path):
    with pytest.raises(ValidationError, match="not a PNG directly under images/"):
        ImageRef(path=path, sha256="0" * 64, width=8, height=8)


def _finished_run(run_dir: Path, **kwargs):
    return generate(PROMPT, out=run_dir, seed=3, **kwargs)


def _tamper_checkpoint(run_dir: Path, values: dict) -> None:
    """Write a new last checkpoint with ``values``, as someone editing the run's checkpoints could."""
    with engine.checkpointer(engine.run_checkpoints(run_dir)) as saver:
        graph = build_graph(checkpointer=saver)
        graph.update_state({"configurable": {"thread_id": run_dir.name}}, values, as_node="critic")


def test_a_checkpointed_image_path_outside_the_run_is_refused_and_the_records_stay(tmp_path, capsys):
    run = tmp_path / "run"
    result = _finished_run(run, budget=Budget(max_rounds=0), settings={"drafter": {"fault_scale": 3.33}})
    assert not result.passed  # it has work left, so a resume would draw and write
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"\x89PNG not yours")
    hostile = ImageRef.model_construct(
        path="../secret.png", sha256=hashlib.sha256(outside.read_bytes()).hexdigest(), width=8, height=8
    )
    _tamper_checkpoint(run, {"image": hostile})
    before = _snapshot(run)
    assert main(["resume", str(run), "--max-rounds", "5", "-q"]) == EXIT_USAGE
    assert "cannot be loaded" in _one_line_error(capsys.readouterr().err)
    assert _snapshot(run) == before
    assert outside.read_bytes() not in (run / "final.png").read_bytes()


def test_planted_links_are_replaced_never_written_through(tmp_path):
    run = tmp_path / "run"
    result = _finished_run(run, budget=Budget(max_rounds=0), settings={"drafter": {"fault_scale": 3.33}})
    assert not result.passed
    victims = {}
    for name in ("final.png", "trajectory.json", "report.html"):
        victim = tmp_path / f"victim-{name}"
        victim.write_text("precious")
        (run / name).unlink()
        (run / name).symlink_to(victim)
        victims[name] = victim
    resume(run, max_rounds=5)
    for name, victim in victims.items():
        assert victim.read_text() == "precious"
        assert (run / name).is_file() and not (run / name).is_symlink()


def test_an_image_swapped_for_a_link_is_not_read(tmp_path):
    run = tmp_path / "run"
    result = _finished_run(run, budget=Budget(max_rounds=0), settings={"drafter": {"fault_scale": 3.33}})
    image = run / result.trajectory[-1].image.path
    outside = tmp_path / "copy.png"
    outside.write_bytes(image.read_bytes())  # same bytes, same sha256: only the link gives it away
    image.unlink()
    image.symlink_to(outside)
    with pytest.raises(RunError, match="symlink"):
        resume(run, max_rounds=5)


# ---------------------------------------------------------------------------------------------
# Damaged checkpoints: one line, exit 2, records untouched
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "damaged record"])
def test_a_corrupt_checkpoint_file_leaves_every_record_as_it_was(tmp_path, capsys, damage):
    # A journal cut short is what a killed write leaves, so the run goes on from its last whole
    # record (tests/test_saver_journal.py); a damaged record with whole ones after it is corrupt.
    run = tmp_path / "run"
    _finished_run(run)
    journal = run / engine.JOURNAL
    data = bytearray(journal.read_bytes())
    if damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    else:  # a byte in the payload of the middle record (each is <length u32><crc32 u32><payload>)
        at, middles = len(MAGIC), []
        while at < len(data):
            length = int.from_bytes(data[at : at + 4], "little")
            middles.append(at + 8 + length // 2)
            at += 8 + length
        data[middles[len(middles) // 2]] ^= 0xFF
    journal.write_bytes(bytes(data))
    before = _snapshot(run)
    assert main(["resume", str(run), "--max-rounds", "20", "-q"]) == EXIT_USAGE
    line = _one_line_error(capsys.readouterr().err)
    assert engine.JOURNAL in line
    assert _snapshot(run) == before


# ---------------------------------------------------------------------------------------------
# One run at a time in a run directory
# ---------------------------------------------------------------------------------------------


class BlockingDrafter:
    """The sketch drafter, held at its first draft until released."""

    def __init__(self):
        self.sketch = SketchDrafter()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def draft(self, request):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(30)
        return self.sketch.draft(request)


def test_a_second_run_in_a_locked_run_directory_is_refused(tmp_path):
    run = tmp_path / "run"
    drafter = BlockingDrafter()
    done: list = []
    worker = threading.Thread(target=lambda: done.append(generate(PROMPT, out=run, drafter=drafter)))
    worker.start()
    try:
        assert drafter.entered.wait(30)
        with pytest.raises(UsageError, match="in use by another strokegraph run"):
            resume(run, drafter=drafter)
    finally:
        drafter.release.set()
        worker.join(60)
    assert done and done[0].final_image.is_file()
    assert drafter.calls == len([e for e in done[0].trajectory if e.stage == "draft"])  # nothing ran twice


def test_the_lock_is_released_when_a_run_ends(tmp_path):
    run = tmp_path / "run"
    _finished_run(run, budget=Budget(max_rounds=0), settings={"drafter": {"fault_scale": 3.33}})
    resume(run, max_rounds=1)
    resume(run, max_rounds=2)  # no stale lock left by the first


# ---------------------------------------------------------------------------------------------
# Bad input: one line and a documented exit code, never a traceback
# ---------------------------------------------------------------------------------------------


def test_a_prompt_that_is_not_utf8_is_a_usage_error(tmp_path):
    done = _cli("generate", b"two red apples \xff\xfe", "--out", str(tmp_path / "r"), "-q")
    assert done.returncode == EXIT_USAGE
    assert "not valid UTF-8" in _one_line_error(done.stderr.decode())
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-rounds", str(2**64)], "--max-rounds"),
        (["--rounds-per-step", str(2**70)], "--rounds-per-step"),
        (["--seed", str(2**64)], "--seed"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_counts_and_seeds_out_of_range_are_usage_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", PROMPT, "--out", str(tmp_path / "r"), *args])
    assert exit_.value.code == EXIT_USAGE
    assert message in _one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'seed = 1\n[planner]\nid = "builtin:rules\xff"\n', "not UTF-8"),
        (b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n", "nest"),
        (b'seed = "seven"\n', "seed"),
        (b"planner = 3\n", "planner"),
        (b"[planner]\nid = 5\n", "planner.id"),
        (b"max_rounds = 18446744073709551616\n", "max_rounds"),
        (b'[drafter]\nid = "builtin:sketch"\nfault_scale = [[[[[1]]]]]\n', "nest"),
    ],
)
def test_a_broken_config_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    config = tmp_path / "c.toml"
    config.write_bytes(content)
    assert main(["generate", PROMPT, "--out", str(tmp_path / "r"), "--config", str(config), "-q"]) == EXIT_USAGE
    assert message in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_config_from_a_device_is_refused_without_reading_it_all(tmp_path, capsys):
    assert main(["generate", PROMPT, "--out", str(tmp_path / "r"), "--config", "/dev/zero", "-q"]) == EXIT_USAGE
    assert "/dev/zero" in _one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [("apples " * 400, "limit is 2000"), ("a red \x1b]0;owned\x07cat", "control character")],
)
def test_overlong_or_control_character_prompts_are_usage_errors(tmp_path, capsys, prompt, message):
    assert main(["generate", prompt, "--out", str(tmp_path / "r"), "-q"]) == EXIT_USAGE
    assert message in _one_line_error(capsys.readouterr().err)
    with pytest.raises(UsageError, match=message):
        generate(prompt, out=tmp_path / "r2")


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_run_stays_resumable(tmp_path):
    run = tmp_path / "run"
    done = _cli("generate", PROMPT, "--out", str(run), "--faults", "3.33", "-q", preexec=_limit_file_size(40_000))
    assert done.returncode == EXIT_RUN_ERROR, done.stderr.decode()
    assert "run failed" in _one_line_error(done.stderr.decode())
    again = _cli("resume", str(run), "-q")
    assert again.returncode in (0, 3), again.stderr.decode()
    assert (run / "final.png").is_file()


def _read_only_resume(run: Path) -> subprocess.CompletedProcess:
    """``strokegraph resume`` with ``run`` read-only: by permissions, or for root (who ignores them)
    by a read-only bind mount in a mount namespace of the child's own."""
    args = [sys.executable, "-m", "strokegraph", "resume", str(run), "--max-rounds", "5", "-q"]
    if os.getuid() != 0:
        for path in [run, *run.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            return subprocess.run(args, capture_output=True, timeout=120)
        finally:
            for path in [run, *run.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("running as root, which ignores permission bits, and no mount namespace for a read-only mount")
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    return subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", str(run), *args], capture_output=True)


def test_a_read_only_run_directory_is_one_line_and_left_as_it_was(tmp_path):
    run = tmp_path / "run"
    _finished_run(run, budget=Budget(max_rounds=0), settings={"drafter": {"fault_scale": 3.33}})
    before = _snapshot(run)
    done = _read_only_resume(run)
    assert done.returncode == EXIT_USAGE, done.stderr.decode()
    assert "cannot write to run directory" in _one_line_error(done.stderr.decode())
    assert _snapshot(run) == before


# ---------------------------------------------------------------------------------------------
# Model text on the terminal; credentials in URLs
# ---------------------------------------------------------------------------------------------

HOSTILE = "cat gone\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\\x9b31m"


def test_model_text_reaches_the_terminal_without_escape_sequences(tmp_path, capsys):
    violation = {
        "kind": "missing",
        "entity_ids": ["e1"],
        "expected": "a blue kite",
        "observed": "none",
        "relation": None,
        "box": None,
        "message": HOSTILE,
    }
    with FakeOpenAI(fallback=any_prompt_replies()) as server:
        server.script("chat/completions", chat_reply(json.dumps({"violations": [violation], "detections": []})))
        code = main(
            ["generate", PROMPT, "--out", str(tmp_path / "r"), "--critic", MODEL, "--config", _config(tmp_path, server)]
        )
    assert code in (0, 3)
    err = capsys.readouterr().err
    assert "cat gone" in err and "click" in err  # the words are shown...
    assert "\x1b" not in err and "\x07" not in err and "\x9b" not in err  # ...the sequences are not


def _config(tmp_path: Path, server: FakeOpenAI) -> str:
    path = tmp_path / "critic.toml"
    path.write_text(f'[critic]\nid = "{MODEL}"\nbase_url = "{server.url}"\napi_key = "{KEY}"\n')
    return str(path)


def test_safe_keeps_text_and_drops_every_control_sequence():
    assert safe(HOSTILE) == "cat goneclick31m"
    assert safe("two red apples\tleft of\na cup") == "two red apples\tleft of\na cup"


@pytest.mark.slow
def test_a_password_in_base_url_reaches_no_file_of_the_run(tmp_path, closed_port):
    run = tmp_path / "run"
    url = f"http://alice:hunter2-secret@127.0.0.1:{closed_port}/v1"
    with pytest.raises(RunError):
        generate(PROMPT, out=run, planner=MODEL, settings={"planner": {"base_url": url, "max_retries": 0}})
    record = json.loads((run / "run.json").read_text())
    assert record["settings"]["planner"]["base_url"].startswith("http://***@127.0.0.1:")
    for name, data in _snapshot(run).items():
        assert b"hunter2-secret" not in data, name


def test_a_second_run_is_refused_where_python_has_no_fcntl(tmp_path, monkeypatch):
    # Windows has no fcntl, and the lock used to be skipped there without a word. filelock locks
    # with each system's own primitive; loaded first, as on any platform, then fcntl goes away.
    import filelock  # noqa: F401

    monkeypatch.setitem(sys.modules, "fcntl", None)
    test_a_second_run_in_a_locked_run_directory_is_refused(tmp_path)


def test_a_lock_file_planted_as_a_link_is_not_followed(tmp_path):
    run = tmp_path / "run"
    _finished_run(run, budget=Budget(max_rounds=0), settings={"drafter": {"fault_scale": 3.33}})
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(victim)
    with pytest.raises(UsageError, match="cannot write to run directory"):
        resume(run, max_rounds=5)
    assert victim.read_text() == "precious"


_HOLD_THE_LOCK = """
import sys, time
from strokegraph.app.runner import generate
from strokegraph.tools.sketch.drafter import SketchDrafter

class Hung(SketchDrafter):
    def draft(self, request):
        print("drafting", flush=True)
        time.sleep(300)

generate("a red cat below a blue kite", out=sys.argv[1], drafter=Hung())
"""


def test_the_lock_of_a_killed_run_is_released(tmp_path):
    run = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", _HOLD_THE_LOCK, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "drafting"
        with pytest.raises(UsageError, match="in use by another strokegraph run"):
            resume(run, drafter=SketchDrafter())
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert resume(run, drafter=SketchDrafter()).final_image.is_file()
