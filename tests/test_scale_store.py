"""Scaling out: checkpoints in PostgreSQL, images in an artifact store (a directory, S3), and a run
killed on one machine resumed on another from the database, the store and its thread id alone.

The fixtures start a throwaway PostgreSQL cluster on a unix socket and a loopback moto S3 server;
without PostgreSQL's server binaries, psycopg or moto the tests that need them are skipped, saying so.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from strokegraph.app.runner import generate, resume
from strokegraph.artifacts import LocalDirStore, S3Store, check_key, image_key, record_key
from strokegraph.errors import RunError, UsageError
from strokegraph.tools.sketch.drafter import SketchDrafter

PROMPT = "two red apples to the left of a blue cup and three green stars"
BUCKET = "sg-artifacts"


# ---------------------------------------------------------------------------------------------
# Fixtures: PostgreSQL and S3 on loopback
# ---------------------------------------------------------------------------------------------


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))  # Debian keeps them off PATH
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh cluster listening on a unix socket only (no port to collide on), removed at the end."""
    pytest.importorskip("psycopg", reason="postgres:// checkpoints need psycopg: pip install 'strokegraph[postgres]'")
    pytest.importorskip("langgraph.checkpoint.postgres", reason="pip install 'strokegraph[postgres]'")
    pgbin = _pg_bin()
    if pgbin is None:
        pytest.skip("PostgreSQL's server is not installed (apt-get install postgresql)")
    # Not tmp_path: pytest's folders are 0700, and the server runs as 'postgres' when we are root.
    # Short, too: a unix socket's path must stay under 108 bytes.
    folder = tempfile.mkdtemp(prefix="sgpg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        os.chmod(folder, 0o755)
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(folder, "data")
    subprocess.run(
        [*as_user, f"{pgbin}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-k {folder} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
    log = os.path.join(folder, "log")
    subprocess.run(
        [*as_user, f"{pgbin}/pg_ctl", "-D", data, "-l", log, "-w", "-o", options, "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@/postgres?host={folder}"
    finally:
        subprocess.run([*as_user, f"{pgbin}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg(postgres_url):
    """A new database of the session's cluster, for one test."""
    import psycopg

    name = "t" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return postgres_url.replace("/postgres?", f"/{name}?")


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on loopback with one bucket, and dummy credentials in the environment."""
    pytest.importorskip("boto3", reason="s3:// stores need boto3: pip install 'strokegraph[s3]'")
    moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto: pip install 'moto[s3]' flask")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
    old = {k: os.environ.get(k) for k in names}
    # boto3 signs nothing without credentials, and a region other than us-east-1 needs a LocationConstraint.
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3(s3_endpoint):
    """A store under a prefix of its own in the session's bucket."""
    return S3Store(f"s3://{BUCKET}/t{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint)


def _bucket_keys(endpoint: str) -> list[str]:
    import boto3

    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=BUCKET)
    return [o["Key"] for o in listing.get("Contents", [])]


# ---------------------------------------------------------------------------------------------
# Killed on machine A, resumed on machine B
# ---------------------------------------------------------------------------------------------

# "Machine A": the command line, with the sketch drafter dying like kill -9 inside its 3rd call.
_DIES_IN_THIRD_DRAFT = """
import os, sys
from strokegraph.app.cli import main
from strokegraph.tools.sketch.drafter import SketchDrafter
draft, calls = SketchDrafter.draft, []
def dying(self, request):
    calls.append(request.step)
    if len(calls) == 3:
        os._exit(137)
    return draft(self, request)
SketchDrafter.draft = dying
sys.exit(main(sys.argv[1:]))
"""

# One progress line per finished node: "[   0.1s] draft    step 2 round 1  ..."
_END = re.compile(r"^\[\s*[\d.]+s\] (\w+)\s+(?:plan|step (\d+)(?: round (\d+))?)\s", re.MULTILINE)


def _nodes(stderr: str) -> list[tuple[str, int, int]]:
    """Every node that finished, as (stage, step, round), from the command's progress lines."""
    return [(m[1], int(m[2] or 0) - 1 if m[2] else -1, int(m[3] or 0)) for m in _END.finditer(stderr)]


def _events(run_dir: Path) -> list[tuple]:
    doc = json.loads((run_dir / "trajectory.json").read_text())
    return [(e["stage"], e["step"], e["round"], (e["image"] or {}).get("sha256")) for e in doc["events"]]


def _cli(*args: str, cwd: Path, script: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "strokegraph", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_run_killed_on_one_machine_resumes_on_another_from_postgres_and_s3(pg, s3_endpoint, tmp_path):
    machine_a, machine_b, clean = tmp_path / "a", tmp_path / "b", tmp_path / "clean"
    for d in (machine_a, machine_b, clean):
        d.mkdir()
    store = f"s3://{BUCKET}/runs"
    where = ["--checkpoint", pg, "--store", store, "--store-endpoint", s3_endpoint]

    ref = _cli("generate", PROMPT, "--seed", "3", "--out", "run", cwd=clean)
    assert ref.returncode in (0, 3, 4), ref.stderr

    a = _cli("generate", PROMPT, "--seed", "3", "--out", "run", *where, cwd=machine_a, script=_DIES_IN_THIRD_DRAFT)
    assert a.returncode == 137, a.stderr  # died inside its 3rd drafter call
    thread = json.loads((machine_a / "run" / "run.json").read_text())["thread_id"]
    assert thread.startswith("run-") and thread != "run"  # unique across machines sharing the database

    # Machine B has none of A's files: only the database, the store and the thread id.
    b = _cli("resume", "--thread", thread, "--out", "elsewhere", *where, cwd=machine_b)
    assert b.returncode == ref.returncode, b.stderr

    # Every node ran exactly once over both machines, in the order of an uninterrupted run.
    done_on_a, done_on_b = _nodes(a.stderr), _nodes(b.stderr)
    assert ("draft", 1, 0) in done_on_a and ("draft", 2, 0) in done_on_b
    assert done_on_a + done_on_b == _nodes(ref.stderr)
    # And B's run is the uninterrupted one: the same trajectory, images and final image.
    run_b = machine_b / "elsewhere"
    assert _events(run_b) == _events(clean / "run")
    assert (run_b / "final.png").read_bytes() == (clean / "run" / "final.png").read_bytes()
    # A's images were fetched (and checked) for the report; the record came from the store.
    assert sorted(p.name for p in (run_b / "images").iterdir()) == sorted(
        p.name for p in (clean / "run" / "images").iterdir()
    )
    assert "Image not shown" not in (run_b / "report.html").read_text()
    assert not (run_b / "checkpoints.journal").exists()
    assert all(k.startswith(f"runs/{thread}/") for k in _bucket_keys(s3_endpoint) if thread in k)


class _DiesInThirdDraft:
    """The sketch drafter, failing its 3rd call as a crashed machine would stop it."""

    def __init__(self) -> None:
        self.inner, self.calls = SketchDrafter(), 0

    def draft(self, request):
        self.calls += 1
        if self.calls == 3:
            raise RunError("machine A went down")
        return self.inner.draft(request)


def _stopped_run(pg: str, store, out: Path) -> str:
    """A run stopped in its 3rd draft, with its checkpoints in ``pg`` and images in ``store``; its thread id."""
    with pytest.raises(RunError, match="went down"):
        generate(PROMPT, out=out, seed=3, drafter=_DiesInThirdDraft(), checkpoint=pg, store=store)
    return json.loads((out / "run.json").read_text())["thread_id"]


def test_an_image_changed_in_the_store_fails_the_resume(pg, s3, s3_endpoint, tmp_path):
    thread = _stopped_run(pg, s3, tmp_path / "a")
    import boto3

    # The image step 3 draws on: its bytes in the store are replaced by another valid PNG.
    key = f"{s3.prefix}/{image_key(thread, 'images/step02-draft.png')}"
    other = (tmp_path / "a" / "images" / "step01-draft.png").read_bytes()
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=BUCKET, Key=key, Body=other)

    with pytest.raises(RunError, match="sha256 mismatch"):
        resume(tmp_path / "b", thread=thread, checkpoint=pg, store=s3, drafter=SketchDrafter())
    assert not (tmp_path / "b" / "images" / "step02-draft.png").exists()


def test_a_changed_record_in_the_store_is_refused(pg, s3, s3_endpoint, tmp_path):
    thread = _stopped_run(pg, s3, tmp_path / "a")
    import boto3

    record = json.loads((tmp_path / "a" / "run.json").read_text())
    record["backends"]["drafter"] = "openai:gpt-image-1.5"
    key = f"{s3.prefix}/{record_key(thread)}"
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=BUCKET, Key=key, Body=json.dumps(record))
    with pytest.raises(UsageError, match="sha256 mismatch"):
        resume(tmp_path / "b", thread=thread, checkpoint=pg, store=s3, drafter=SketchDrafter())


def test_a_run_resumes_in_its_own_directory_with_its_database_and_store_named_again(pg, s3, tmp_path):
    thread = _stopped_run(pg, s3, tmp_path / "a")
    record = (tmp_path / "a" / "run.json").read_text()
    assert pg not in record and "host=" not in record  # no database URL is ever written
    assert json.loads(record)["checkpoint"] == "postgres" and json.loads(record)["store"] == s3.url

    with pytest.raises(UsageError, match="--checkpoint postgres"):
        resume(tmp_path / "a", drafter=SketchDrafter())
    with pytest.raises(UsageError, match="give --store again"):
        resume(tmp_path / "a", checkpoint=pg, drafter=SketchDrafter())
    result = resume(tmp_path / "a", checkpoint=pg, store=s3, drafter=SketchDrafter())
    assert result.final_image is not None and result.final_image.is_file()
    assert sum(e.stage == "plan" for e in result.trajectory) == 1
    # The thread, finished here, is then resumable elsewhere too: it has nothing left to run.
    again = resume(tmp_path / "b", thread=thread, checkpoint=pg, store=s3, drafter=SketchDrafter())
    assert [(e.stage, e.step, e.round) for e in again.trajectory] == [
        (e.stage, e.step, e.round) for e in result.trajectory
    ]
    assert (tmp_path / "b" / "final.png").read_bytes() == (tmp_path / "a" / "final.png").read_bytes()


def test_an_async_run_checkpoints_to_postgres(pg, s3, tmp_path):
    import asyncio

    from strokegraph.app.runner import agenerate

    done = asyncio.run(agenerate(PROMPT, out=tmp_path / "a", seed=3, checkpoint=pg, store=s3))
    thread = json.loads((tmp_path / "a" / "run.json").read_text())["thread_id"]
    elsewhere = resume(tmp_path / "b", thread=thread, checkpoint=pg, store=s3)
    assert elsewhere.trajectory == done.trajectory
    assert (tmp_path / "b" / "final.png").read_bytes() == (tmp_path / "a" / "final.png").read_bytes()


# ---------------------------------------------------------------------------------------------
# Keys, thread ids, stores
# ---------------------------------------------------------------------------------------------

_HOSTILE_KEYS = [
    "../x/images/a.png",
    "t/images/../../a.png",
    "t/../run.json",
    "/etc/run.json",
    "t/images/a.png/../b.png",
    "t/images/sub/a.png",
    "t/run.json/..",
    "t\\..\\run.json",
    "..",
    "t/images/.png",
    "t/other.json",
]


@pytest.mark.parametrize("key", _HOSTILE_KEYS)
def test_a_key_that_is_not_ours_is_refused(key):
    with pytest.raises(RunError, match="artifact key"):
        check_key(key)


@pytest.mark.parametrize("thread", ["../../etc", "a/b", "..", "", ".hidden", "x" * 200, "a b", "t\n"])
def test_a_hostile_thread_id_names_no_key_and_no_resume(thread, tmp_path):
    with pytest.raises(UsageError, match="thread id"):
        image_key(thread, "images/a.png")
    with pytest.raises(UsageError, match="thread id"):
        resume(tmp_path / "b", thread=thread, checkpoint="postgresql://x@/db", store=tmp_path / "store")
    assert not (tmp_path / "b").exists()


def test_local_dir_store_hands_back_only_the_bytes_it_stored(tmp_path):
    store = LocalDirStore(tmp_path / "store")
    key = image_key("run-1", "images/a.png")
    sha = store.put(key, b"png bytes")
    assert store.get(key, sha) == b"png bytes"
    assert (tmp_path / "store" / "run-1" / "images" / "a.png").read_bytes() == b"png bytes"
    (tmp_path / "store" / "run-1" / "images" / "a.png").write_bytes(b"other bytes")
    with pytest.raises(RunError, match="sha256 mismatch"):
        store.get(key, sha)
    with pytest.raises(RunError, match="larger than 4 bytes"):
        store.get(key, sha, max_bytes=4)
    with pytest.raises(RunError, match="cannot read"):
        store.get(image_key("run-1", "images/missing.png"), sha)


def test_local_dir_store_writes_and_reads_through_no_link(tmp_path):
    outside = tmp_path / "outside"
    (outside / "images").mkdir(parents=True)
    (outside / "images" / "a.png").write_bytes(b"secret")
    store = LocalDirStore(tmp_path / "store")
    (tmp_path / "store" / "evil").symlink_to(outside)
    key = image_key("evil", "images/a.png")
    with pytest.raises(RunError, match="symlink"):
        store.put(key, b"x")
    with pytest.raises(RunError, match="symlink"):
        store.get(key, "0" * 64)
    assert (outside / "images" / "a.png").read_bytes() == b"secret"


def test_s3_store_keeps_every_key_under_its_prefix(s3, s3_endpoint):
    sha = s3.put(image_key("run-1", "images/a.png"), b"png bytes")
    assert s3.get(image_key("run-1", "images/a.png"), sha) == b"png bytes"
    for key in _HOSTILE_KEYS:
        with pytest.raises(RunError):
            s3.put(key, b"x")
    assert [k for k in _bucket_keys(s3_endpoint) if k.startswith(s3.prefix)] == [f"{s3.prefix}/run-1/images/a.png"]
    with pytest.raises(RunError, match="NoSuchKey"):
        s3.get(image_key("run-1", "images/b.png"), sha)


@pytest.mark.parametrize("url", ["s3://", "s3://B/x", "s3://bucket/../x", "s3://bucket/a b", "s3://bu"])
def test_a_bad_s3_url_is_a_usage_error(url):
    pytest.importorskip("boto3")
    with pytest.raises(UsageError, match="is not s3://BUCKET"):
        S3Store(url)


def test_a_missing_bucket_fails_before_the_run(s3_endpoint, tmp_path):
    with pytest.raises(UsageError, match="NoSuchBucket|404"):
        generate(PROMPT, out=tmp_path / "run", store=S3Store("s3://no-such-bucket", endpoint_url=s3_endpoint))
    assert not (tmp_path / "run").exists()


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path):
    pytest.importorskip("psycopg")
    with pytest.raises(UsageError, match="cannot use the checkpoint database") as caught:
        generate(PROMPT, out=tmp_path / "run", checkpoint=f"postgresql://u:hunter2@/db?host={tmp_path}/nowhere")
    assert "hunter2" not in str(caught.value) and "***@" in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_the_default_run_writes_what_it_always_did(tmp_path):
    result = generate("a red apple", out=tmp_path / "run", seed=1)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["thread_id"] == "run" and record["checkpoint"] == "sqlite" and record["store"] is None
    assert result.final_image == tmp_path / "run" / "final.png"
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {
        "run.json",
        "checkpoints.journal",
        "images",
        "final.png",
        "trajectory.json",
        "report.html",
    }


def test_a_local_store_keeps_a_copy_of_every_image_under_the_thread(tmp_path):
    result = generate("a red apple", out=tmp_path / "run", seed=1, store=tmp_path / "store")
    thread = json.loads((tmp_path / "run" / "run.json").read_text())["thread_id"]
    images = {e.image.path: e.image.sha256 for e in result.trajectory if e.image}
    store = LocalDirStore(tmp_path / "store")
    for path, sha in images.items():
        assert store.get(image_key(thread, path), sha) == (tmp_path / "run" / path).read_bytes()
    assert (tmp_path / "store" / thread / "run.json").read_bytes() == (tmp_path / "run" / "run.json").read_bytes()


def test_a_thread_needs_a_database_and_a_store(tmp_path):
    with pytest.raises(UsageError, match="needs the database"):
        resume(tmp_path / "b", thread="run-1", store=tmp_path / "store")
    with pytest.raises(UsageError, match="neither 'sqlite' nor a postgres"):
        resume(tmp_path / "b", thread="run-1", checkpoint="mysql://x", store=tmp_path / "store")


def test_a_thread_runs_on_one_machine_at_a_time(pg, s3, tmp_path):
    import psycopg

    thread = _stopped_run(pg, s3, tmp_path / "a")
    with psycopg.connect(pg, autocommit=True) as other_machine:
        other_machine.execute("select pg_advisory_lock(hashtextextended(%s, 0))", (f"strokegraph:{thread}",))
        with pytest.raises(UsageError, match="in use by another strokegraph run"):
            resume(tmp_path / "b", thread=thread, checkpoint=pg, store=s3, drafter=SketchDrafter())
    # Released with the other machine's connection.
    assert resume(tmp_path / "b", thread=thread, checkpoint=pg, store=s3, drafter=SketchDrafter()).final_image


def test_a_shared_run_says_its_thread_and_runs_lists_where_each_thread_stopped(pg, s3, tmp_path, capsys):
    from strokegraph.app.cli import main

    stopped = _stopped_run(pg, s3, tmp_path / "a")
    code = main(
        [
            "generate",
            PROMPT,
            "--seed",
            "3",
            "--out",
            str(tmp_path / "b"),
            "--checkpoint",
            pg,
            "--store",
            str(tmp_path / "store"),
        ]
    )
    captured = capsys.readouterr()
    finished = json.loads((tmp_path / "b" / "run.json").read_text())["thread_id"]
    # Said before the run works (stderr's first line) and in the summary.
    first = captured.err.splitlines()[0]
    assert first.startswith(f"thread {finished}: resume it on any machine with: strokegraph resume --thread {finished}")
    assert "--checkpoint POSTGRES_URL" in first and pg not in captured.err
    assert f"thread: {finished}" in captured.out.splitlines()

    assert main(["runs", "--checkpoint", pg, "--json"]) == 0
    threads = {t["thread_id"]: t for t in json.loads(capsys.readouterr().out)}
    assert set(threads) == {stopped, finished}
    assert threads[stopped]["status"] == "resumable (step 2 of 3 drawn)" and threads[stopped]["prompt"] == PROMPT
    assert threads[finished]["status"].startswith("finished: ")
    assert (threads[finished]["status"] == "finished: passed") == (code in (0, 4))
    assert main(["runs", "--checkpoint", pg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(finished)  # the latest first
