"""Trust boundaries, second pass (issue 18): each case reproduced from outside, through the CLI or the API."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from cli_process import run_cli as _cli

from strokegraph.app.cli import EXIT_USAGE, main
from strokegraph.app.runner import generate
from strokegraph.graph import engine
from strokegraph.graph.journal import read_journal, write_journal

PROMPT = "two red apples to the left of a blue cup"


def _files(run_dir: Path) -> dict[str, bytes]:
    """Every file under ``run_dir`` (links as their target's name), by relative path: nothing may change."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        name = p.relative_to(run_dir).as_posix()
        if p.is_symlink():
            out[name] = b"-> " + os.readlink(p).encode()
        elif p.is_file():
            out[name] = p.read_bytes()
    return out


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished sketch-world run, copied by each test that damages it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    generate(PROMPT, out=run, seed=3)
    return run


def _copy(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to, symlinks=True)
    return to


# ---------------------------------------------------------------------------------------------
# 1. Checkpoints that do not hold the progress the records show: refused, nothing changes
# ---------------------------------------------------------------------------------------------


def _empty(journal: Path) -> None:
    journal.write_bytes(b"")


def _foreign(journal: Path) -> None:
    journal.unlink()
    with closing(sqlite3.connect(journal)) as conn:  # a database, under the journal's name
        conn.execute("create table notes (text)")
        conn.execute("insert into notes values ('not a strokegraph journal')")
        conn.commit()


def _no_rows(journal: Path) -> None:
    write_journal(journal, [])


def _garbage(journal: Path) -> None:
    journal.write_bytes(os.urandom(4096))


@pytest.mark.parametrize("damage", [_empty, _foreign, _no_rows, _garbage], ids=lambda f: f.__name__[1:])
def test_checkpoints_without_the_runs_progress_are_refused_and_every_file_stays(finished, tmp_path, capsys, damage):
    run = _copy(finished, tmp_path / "run")
    damage(run / engine.JOURNAL)
    before = _files(run)
    assert main(["resume", str(run), "-q"]) == EXIT_USAGE
    line = _one_line(capsys.readouterr().err)
    assert engine.JOURNAL in line and "run it all again" in line
    assert _files(run) == before  # byte for byte


def test_a_run_killed_before_its_first_checkpoint_still_starts_over(finished, tmp_path, capsys):
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "run.json").write_bytes((finished / "run.json").read_bytes().replace(b'"run"', b'"fresh"'))
    (run / "checkpoints.sqlite").write_bytes(b"")  # killed right after SQLite created the file
    (run / ".lock").write_bytes(b"")
    assert main(["resume", str(run), "-q"]) == 0
    assert (run / "final.png").read_bytes() == (finished / "final.png").read_bytes()


# ---------------------------------------------------------------------------------------------
# 3. Credentials in every URL form: masked in messages and records
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgres://u:p@ss@host/db", "postgres://***@host/db"),
        ("postgres://h/db?password=hunter2&sslmode=require", "postgres://h/db?password=***&sslmode=require"),
        (
            "'postgres://h/db?sslmode=require&PassWord=hunter2': refused",
            "'postgres://h/db?sslmode=require&PassWord=***': refused",
        ),
        (
            "http://h/v1?api_key=k1&apikey=k2&token=t&access_token=a",
            "http://h/v1?api_key=***&apikey=***&token=***&access_token=***",
        ),
        (
            "https://b.s3/k?X-Amz-Signature=s&X-Amz-Credential=c&sig=x",
            "https://b.s3/k?X-Amz-Signature=***&X-Amz-Credential=***&sig=***",
        ),
        ("http://h/v1?max_tokens=5&model=m", "http://h/v1?max_tokens=5&model=m"),
        ("see http://u:pw@a/x and http://b/y?secret=s#frag", "see http://***@a/x and http://b/y?secret=***#frag"),
    ],
)
def test_one_redaction_masks_every_url_form(text, shown):
    from strokegraph._redact import redact_url
    from strokegraph.app import record
    from strokegraph.graph import engine
    from strokegraph.tools import openai_api

    assert redact_url(text) == shown
    # The one function, wherever a URL is printed or stored: no copy left to fall behind.
    assert openai_api.redact_url is redact_url and record.redact_url is redact_url and engine.redact_url is redact_url


def test_a_password_in_a_database_url_query_or_with_a_raw_at_is_never_printed(tmp_path, closed_port, capsys):
    for url in (
        f"postgres://u@127.0.0.1:{closed_port}/db?password=hunter2-secret",
        f"postgres://u:hunter2@secret-tail@127.0.0.1:{closed_port}/db",
    ):
        assert main(["generate", PROMPT, "--out", str(tmp_path / "r"), "-q", "--checkpoint", url]) == EXIT_USAGE
        line = _one_line(capsys.readouterr().err)
        assert "hunter2" not in line and "secret-tail" not in line and "***" in line, line
    assert not (tmp_path / "r").exists()


def test_a_key_in_the_base_url_query_reaches_no_file_of_the_run(tmp_path, closed_port, no_ambient_openai_env):
    from strokegraph.errors import RunError

    run = tmp_path / "run"
    url = f"http://127.0.0.1:{closed_port}/v1?api_key=hunter2-secret"
    settings = {"planner": {"base_url": url, "max_retries": 0, "timeout": 5}}
    with pytest.raises(RunError) as caught:
        generate(PROMPT, out=run, planner="openai:gpt-4.1-mini", settings=settings)
    assert "hunter2" not in str(caught.value)
    assert json.loads((run / "run.json").read_text())["settings"]["planner"]["base_url"].endswith("?api_key=***")
    for name, data in _files(run).items():
        assert b"hunter2" not in data, name


# ---------------------------------------------------------------------------------------------
# 2. run.json's settings: bounded as any setting is, and never a key
# ---------------------------------------------------------------------------------------------

MODEL = "openai:gpt-4.1-mini"


def _stopped_at_planning(run: Path) -> None:
    """A run whose planner failed at once: resumable, with nothing drawn yet."""
    from strokegraph.errors import RunError

    class Down:
        def plan(self, prompt):
            raise RunError("planner service down", node="planner")

    with pytest.raises(RunError):
        generate(PROMPT, out=run, planner=Down())


def _plant(run: Path, backends: dict, settings: dict) -> None:
    record = json.loads((run / "run.json").read_text())
    record["backends"].update({"planner": "builtin:rules", **backends})
    record["settings"].update(settings)
    (run / "run.json").write_text(json.dumps(record))


@pytest.mark.parametrize("trust", [False, True])
def test_a_key_planted_in_run_json_is_never_sent(tmp_path, monkeypatch, trust):
    from strokegraph.app.runner import resume
    from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies

    monkeypatch.setenv("OPENAI_API_KEY", "sk-mine")
    run = tmp_path / "run"
    _stopped_at_planning(run)
    with FakeOpenAI(fallback=any_prompt_replies()) as server:
        _plant(run, {"planner": MODEL}, {"planner": {"api_key": "sk-planted", "base_url": server.url}})
        if trust:  # the record's endpoint is trusted, its key still is not read
            resume(run, trust_record=True)
        else:
            resume(run, planner=MODEL, settings={"planner": {"base_url": server.url}})
        sent = server.sent("chat/completions")
    assert sent and {r.headers["authorization"] for r in sent} == {"Bearer sk-mine"}


@pytest.mark.parametrize(
    ("role", "backend", "settings", "needle"),
    [
        ("drafter", "builtin:sketch", {"size": 16000}, "size must be a whole number of px from 64 to 4096"),
        ("refiner", "builtin:sketch", {"size": 16000}, "size must be a whole number of px from 64 to 4096"),
        ("planner", MODEL, {"max_retries": 1000000}, "max_retries must be a whole number from 0 to 10"),
        ("planner", MODEL, {"timeout": 1e9}, "timeout must be a number of seconds in (0, 3600]"),
        (
            "drafter",
            "openai:gpt-image-1",
            {"size": "30000x30000"},
            "size must be 'WIDTHxHEIGHT' with sides from 1 to 8192",
        ),
    ],
)
def test_settings_in_run_json_meet_the_bounds_of_every_setting(tmp_path, capsys, role, backend, settings, needle):
    run = tmp_path / "run"
    _stopped_at_planning(run)
    # An image API drafter needs a critic and a refiner that fit it (checked before any setting).
    fit = {"critic": MODEL, "refiner": "openai:gpt-image-1"} if backend == "openai:gpt-image-1" else {}
    _plant(run, {role: backend, **fit}, {role: settings})
    before = _files(run)
    named = [] if backend.startswith("builtin:") else [f"--{role}", backend]
    args = ["resume", str(run), "-q", *named]
    if not backend.startswith("builtin:"):
        config = tmp_path / "c.toml"
        tables = {role: backend, **fit}
        config.write_text(
            "".join(f'[{r}]\nid = "{i}"\nbase_url = "http://127.0.0.1:9/v1"\n' for r, i in tables.items())
        )
        args += ["--config", str(config)]
    assert main(args) == EXIT_USAGE
    assert needle in _one_line(capsys.readouterr().err)
    assert _files(run) == before
    # The same bounds hold for a setting given in Python or a config file.
    from strokegraph import registry
    from strokegraph.errors import UsageError

    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace("]", r"\]")):
        registry.build(
            role, backend, **settings, **({} if backend.startswith("builtin:") else {"base_url": "http://h/v1"})
        )


# ---------------------------------------------------------------------------------------------
# 4. No traceback, no hang, nothing left behind
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--out", b"\xff"],
        ["--out", "r", "--store", b"s\xff"],
        ["--out", b"r\xfe", "--store", "s"],
    ],
    ids=["out", "store", "out-with-store"],
)
def test_paths_that_are_not_utf8_are_one_line_and_leave_nothing(tmp_path, args):
    done = _cli("generate", PROMPT, "-q", *args, cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    assert "is not valid UTF-8" in _one_line(done.stderr.decode())
    assert list(tmp_path.iterdir()) == []


def test_a_malformed_base_url_is_one_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[planner]\nid = "openai:gpt-4.1-mini"\nbase_url = "http://[::1:31815/v1"\n')
    done = _cli("generate", PROMPT, "-q", "--out", str(tmp_path / "r"), "--config", str(config))
    assert done.returncode == EXIT_USAGE
    assert "base_url 'http://[::1:31815/v1' is not a URL" in _one_line(done.stderr.decode())
    assert not (tmp_path / "r").exists()


def test_a_config_that_is_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "c.toml"
    os.mkfifo(fifo)
    done = _cli("generate", PROMPT, "-q", "--out", str(tmp_path / "r"), "--config", str(fifo), timeout=30)
    assert done.returncode == EXIT_USAGE
    assert "is not a regular file" in _one_line(done.stderr.decode())


def test_a_checkpoint_journal_that_is_a_fifo_is_named_and_nothing_waits_on_it(tmp_path):
    run = tmp_path / "r"
    assert _cli("generate", PROMPT, "-q", "--out", str(run), "--max-rounds", "0").returncode in (0, 3)
    journal = run / "checkpoints.journal"
    journal.unlink()
    os.mkfifo(journal)
    done = _cli("resume", str(run), "--max-rounds", "3", timeout=30)
    assert done.returncode == EXIT_USAGE
    assert f"{str(journal)!r} is not a regular file" in _one_line(done.stderr.decode())


def _plant_blocked_type(journal: Path, channel: str = "budget") -> None:
    """Make ``channel``'s latest value in the journal an ``os.system`` call, as msgpack can spell one."""
    import ormsgpack

    records, _ = read_journal(journal)
    planted = ["msgpack", ormsgpack.packb(ormsgpack.Ext(0, ormsgpack.packb(("os", "system", "echo pwned"))))]
    latest = max(i for i, r in enumerate(records) if r[0] == "c" and any(b[0] == channel for b in r[7]))
    records[latest][7] = [[c, v, planted if c == channel else typed] for c, v, typed in records[latest][7]]
    write_journal(journal, records)


def test_a_checkpoint_with_a_blocked_type_is_one_line_without_langgraphs_warning(finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    _plant_blocked_type(run / engine.JOURNAL)
    before = _files(run)
    done = _cli("resume", str(run), "-q")  # a process of its own: LangGraph warns once per process
    assert done.returncode == EXIT_USAGE
    line = _one_line(done.stderr.decode())
    assert "cannot be loaded" in line and "Blocked" not in line
    assert _files(run) == before


def test_a_blocked_type_in_a_text_field_is_refused_not_read_as_its_argument(finished, tmp_path):
    # LangGraph hands back the raw argument of a type it does not revive ("echo pwned"), which
    # passed as the prompt's text; the strict serializer refuses any type that is not plain data.
    from strokegraph.app.runner import resume
    from strokegraph.errors import UsageError

    run = _copy(finished, tmp_path / "run")
    _plant_blocked_type(run / engine.JOURNAL, channel="prompt")
    before = _files(run)
    with pytest.raises(UsageError, match="os.system, which is not a strokegraph state type"):
        resume(run, max_rounds=20)
    assert _files(run) == before


# ---------------------------------------------------------------------------------------------
# 5. SIGTERM: handled as Ctrl-C is, and the run resumes
# ---------------------------------------------------------------------------------------------


def test_sigterm_writes_the_runs_files_says_so_in_one_line_and_the_run_resumes(tmp_path):
    import signal
    import time

    from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies

    run = tmp_path / "run"
    with FakeOpenAI(latency=0.4, fallback=any_prompt_replies()) as server:
        config = tmp_path / "slow.toml"
        config.write_text(
            f'[drafter]\nid = "openai:gpt-image-1"\nbase_url = "{server.url}"\n'
            f'[critic]\nid = "openai:gpt-4.1-mini"\nbase_url = "{server.url}"\n'
            f'[refiner]\nid = "openai:gpt-image-1"\nbase_url = "{server.url}"\n'
        )
        args = ["generate", PROMPT, "--out", str(run), "--config", str(config), "-q"]
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "OPENAI_API_KEY": "sk-test"}
        proc = subprocess.Popen([sys.executable, "-m", "strokegraph", *args], stderr=subprocess.PIPE, env=env)
        try:
            deadline = time.monotonic() + 60
            # The first draft is on disk; its critique (0.4 s on the wire) is in flight.
            while not list(run.glob("images/*.png")) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert proc.poll() is None, "the run ended before it could be stopped"
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 143, err.decode()
        line = _one_line(err.decode())
        assert line.startswith(f"strokegraph: terminated; what the run made so far is in {run}; resume with: ")
        assert "--drafter openai:gpt-image-1 --critic openai:gpt-4.1-mini" in line
        doc = json.loads((run / "trajectory.json").read_text())
        assert doc["events"] and not doc["finished"] and (run / "report.html").is_file()

        done = _cli("resume", str(run), "--config", str(config), "-q")
    assert done.returncode == 0, done.stderr.decode()
    doc = json.loads((run / "trajectory.json").read_text())
    assert doc["finished"] and doc["passed"] and (run / "final.png").is_file()
    assert [e["stage"] for e in doc["events"]].count("draft") == 2  # the first draft was not made again


# ---------------------------------------------------------------------------------------------
# 6. Bidi controls and escape bytes: refused in prompts, removed from model text on screen and page
# ---------------------------------------------------------------------------------------------

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


@pytest.mark.parametrize("char", list(BIDI))
def test_a_prompt_with_a_bidi_control_is_refused(tmp_path, capsys, char):
    assert main(["generate", f"two red apples {char}left of a blue cup", "--out", str(tmp_path / "r")]) == EXIT_USAGE
    line = _one_line(capsys.readouterr().err)
    assert "bidi control character" in line and char not in line
    assert not (tmp_path / "r").exists()


def test_model_text_reaches_neither_terminal_nor_report_with_bidi_controls_or_escapes(tmp_path, capsys):
    from strokegraph.app.cli import safe
    from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies, chat_reply

    hostile = f"cup\u202egnissim{BIDI} red\x1b[2J\x1b]0;owned\x07 bird\x9b31m"
    assert safe(hostile) == "cupgnissim red bird31m"
    violation = {
        "kind": "missing",
        "entity_ids": ["e1"],
        "expected": "a blue cup",
        "observed": "none",
        "relation": None,
        "box": None,
        "message": hostile,
    }
    run = tmp_path / "r"
    with FakeOpenAI(fallback=any_prompt_replies()) as server:
        server.script("chat/completions", chat_reply(json.dumps({"violations": [violation], "detections": []})))
        config = tmp_path / "critic.toml"
        config.write_text(f'[critic]\nid = "{MODEL}"\nbase_url = "{server.url}"\napi_key = "sk-test"\n')
        code = main(["generate", PROMPT, "--out", str(run), "--config", str(config)])
    assert code in (0, 3)
    err = capsys.readouterr().err
    page = (run / "report.html").read_text(encoding="utf-8")
    for shown in (err, page):
        assert "gnissim" in shown and "owned" not in shown  # the words are shown, the sequences are not
        assert not any(c in shown for c in BIDI + "\x1b\x07\x9b")


# ---------------------------------------------------------------------------------------------
# 7. A damaged latest image: exit 2 naming it, as the README says, with no resume hint
# ---------------------------------------------------------------------------------------------


def _link(image: Path) -> None:
    image.unlink()
    image.symlink_to("step01-draft.png")


def _append(image: Path) -> None:
    image.write_bytes(image.read_bytes() + b"x")


@pytest.mark.parametrize("damage", [_link, _append], ids=["symlink", "sha256"])
@pytest.mark.parametrize("spent", [False, True], ids=["finished", "budget-spent"])
def test_a_damaged_latest_image_is_exit_2_naming_it(tmp_path, capsys, damage, spent):
    from strokegraph.graph import Budget

    run = tmp_path / "run"
    kwargs = {"budget": Budget(max_rounds=0), "settings": {"drafter": {"fault_scale": 3.33}}} if spent else {}
    result = generate(PROMPT, out=run, seed=3, **kwargs)
    assert result.passed != spent
    latest = run / json.loads((run / "trajectory.json").read_text())["events"][-1]["image"]["path"]
    damage(latest)
    before = _files(run)
    assert main(["resume", str(run), "-q", *(["--max-rounds", "5"] if spent else [])]) == EXIT_USAGE
    line = _one_line(capsys.readouterr().err)
    assert f"image 'images/{latest.name}'" in line and "damaged" in line and "resume with" not in line
    assert _files(run) == before


def test_the_resume_hint_prints_no_escape_from_the_run_directorys_name(tmp_path, capsys, monkeypatch):
    from strokegraph.tools.sketch.drafter import SketchDrafter

    def down(self, request):
        raise OSError("disk on fire")

    monkeypatch.setattr(SketchDrafter, "draft", down)
    run = tmp_path / "r\x1b]0;owned\x07\u202e"
    assert main(["generate", PROMPT, "--out", str(run), "-q"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "resume with: strokegraph resume" in line and "owned" not in line
    assert not any(c in line for c in "\x1b\x07\u202e")
