"""How generate's engine runs the loop: the shared compiled graph, the run's SQLite checkpointer,
strict checkpoint loading, progress through the run context, and the decoded last image."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing, contextmanager
from dataclasses import replace

import pytest
from PIL import Image

from strokegraph import progress
from strokegraph.agents.drafter import DraftRequest, DraftResult
from strokegraph.agents.refiner import RefineResult
from strokegraph.app.runner import generate
from strokegraph.errors import RunError
from strokegraph.graph import CheckpointError, RunContext, RunState, engine
from strokegraph.registry import Backends, build_backends
from strokegraph.schema import Critique, Refinement, Violation

PROMPT = "a red apple left of a blue cup"
GREY, RED = (153, 153, 153), (214, 39, 40)


def config(thread: str = "t") -> dict:
    return {"configurable": {"thread_id": thread}, "recursion_limit": 100}


def sketch_context(run_dir, on_progress=None, **roles) -> RunContext:
    """The sketch world's context, with the backends of ``roles`` swapped in."""
    backends, ids = build_backends()
    return RunContext(replace(backends, **roles), run_dir=run_dir, seed=1, ids=ids, on_progress=on_progress)


# ---------------------------------------------------------------------------------------------
# One compiled graph per process, a checkpointer per run
# ---------------------------------------------------------------------------------------------


def test_runs_share_one_compiled_graph_and_keep_their_own_checkpoints(tmp_path):
    assert engine.compiled() is engine.compiled()
    assert engine.compiled(review=True) is not engine.compiled()
    states = {}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        with engine.checkpointer(tmp_path / name / "checkpoints.sqlite") as saver:
            graph = engine.graph(saver)
            assert graph.checkpointer is saver
            prompt = f"{name} red apples"
            graph.invoke(RunState(prompt=prompt), config(), context=sketch_context(tmp_path / name), durability="sync")
            states[name] = RunState.model_validate(graph.get_state(config()).values)
    assert engine.compiled().checkpointer is None  # attaching a saver left the shared graph alone
    assert states["one"].prompt == "one red apples" and states["two"].prompt == "two red apples"
    assert states["one"].scene.entities[0].count == 1 and states["two"].scene.entities[0].count == 2


def test_the_checkpointer_is_wal_with_normal_sync_and_refuses_a_file_that_is_no_database(tmp_path):
    with engine.checkpointer(tmp_path / "checkpoints.sqlite") as saver:
        assert saver.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert saver.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all, just some bytes " * 200)
    with pytest.raises(CheckpointError, match="corrupt checkpoint database"):
        with engine.checkpointer(tmp_path / "junk.sqlite"):
            pass


KILLED_RUN = """
import os, signal, sys
from dataclasses import replace
from pathlib import Path
from strokegraph.graph import RunContext, RunState, engine
from strokegraph.registry import build_backends

backends, ids = build_backends()
sketch = backends.drafter

class KillsItselfOnTheSecondDraft:
    calls = 0

    def draft(self, request):
        KillsItselfOnTheSecondDraft.calls += 1
        if KillsItselfOnTheSecondDraft.calls == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return sketch.draft(request)

run_dir = Path(sys.argv[1])
context = RunContext(replace(backends, drafter=KillsItselfOnTheSecondDraft()), run_dir=run_dir, seed=1, ids=ids)
with engine.checkpointer(run_dir / sys.argv[3]) as saver:
    config = {"configurable": {"thread_id": "t"}}
    for _ in engine.graph(saver).stream(RunState(prompt=sys.argv[2]), config, context=context, durability="sync"):
        pass
"""


@pytest.mark.parametrize("name", [engine.JOURNAL, engine.SQLITE])
def test_checkpoints_committed_before_a_kill_9_survive_it(tmp_path, name):
    # Neither the journal nor WAL with synchronous=NORMAL waits for the disk; a killed process must
    # still lose nothing.
    cmd = [sys.executable, "-c", textwrap.dedent(KILLED_RUN), str(tmp_path), PROMPT, name]
    proc = subprocess.run(cmd, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    if name == engine.SQLITE:
        assert (tmp_path / "checkpoints.sqlite-wal").is_file()  # not cleanly closed: the log holds the commits

    with engine.checkpointer(tmp_path / name) as saver:
        snapshot = engine.graph(saver).get_state(config())
    state = RunState.model_validate(snapshot.values)
    assert snapshot.next == ("drafter",)  # every node before the killed draft is on disk
    assert [e.stage for e in state.trajectory][:3] == ["plan", "draft", "critique"]
    assert state.trajectory[-1].stage == "critique" and state.step == 0
    for event in state.trajectory:
        if event.image is not None:
            assert hashlib.sha256((tmp_path / event.image.path).read_bytes()).hexdigest() == event.image.sha256


# ---------------------------------------------------------------------------------------------
# Strict checkpoint loading
# ---------------------------------------------------------------------------------------------


def _tamper(db, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` (same length) in every checkpoint and pending write of ``db``."""
    assert len(old) == len(new)
    with closing(sqlite3.connect(db)) as conn:
        changed = 0
        for table, column in (("checkpoints", "checkpoint"), ("writes", "value")):
            rows = conn.execute(f"SELECT rowid, {column} FROM {table}").fetchall()
            for rowid, blob in rows:
                if blob and old in blob:
                    conn.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (blob.replace(old, new), rowid))
                    changed += 1
        conn.commit()
    assert changed


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # A path out of the run directory: ImageRef's validator refuses it; LangGraph's loader would
        # have built the ImageRef anyway with model_construct.
        (
            b"images/step01-draft.png",
            b"../../../../tmp/abc.png",
            "its \\w+ fails validation .*'../../../../tmp/abc.png'",
        ),
        # Another of our models under the same fields.
        (b"ImageRef", b"Relation", "its Relation fails validation"),
        # A class outside strokegraph's state types.
        (
            b"strokegraph.schema",
            b"strokegraph.schemx",
            r"it holds a strokegraph.schemx.\w+, which is not",
        ),
    ],
)
def test_a_tampered_checkpoint_fails_to_load_instead_of_loading_unvalidated(tmp_path, old, new, message):
    db = tmp_path / "checkpoints.sqlite"
    with engine.checkpointer(db) as saver:
        engine.graph(saver).invoke(RunState(prompt=PROMPT), config(), context=sketch_context(tmp_path))
    _tamper(db, old, new)
    with engine.checkpointer(db) as saver:
        with pytest.raises(CheckpointError, match=f"^corrupt checkpoint: {message}"):
            engine.graph(saver).get_state(config())


def test_a_checkpoint_value_that_is_not_msgpack_fails_to_load(tmp_path):
    db = tmp_path / "checkpoints.sqlite"
    with engine.checkpointer(db) as saver:
        engine.graph(saver).invoke(RunState(prompt=PROMPT), config(), context=sketch_context(tmp_path))
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE checkpoints SET type = 'pickle'")
        conn.commit()
    with engine.checkpointer(db) as saver:
        with pytest.raises(CheckpointError, match="type 'pickle', not msgpack"):
            engine.graph(saver).get_state(config())


# ---------------------------------------------------------------------------------------------
# Progress through the run context
# ---------------------------------------------------------------------------------------------


class EmittingDrafter:
    """The sketch drafter, reporting one sampling step through strokegraph.progress as it works."""

    def __init__(self, sketch):
        self.sketch = sketch

    def draft(self, request: DraftRequest) -> DraftResult:
        progress.emit({"kind": "progress", "stage": "draft", "step": 1, "total": 1})
        return self.sketch.draft(request)


def test_nodes_and_backends_report_progress_to_the_context_and_to_the_custom_stream(tmp_path):
    calls = []
    backends, _ = build_backends()
    context = sketch_context(tmp_path, drafter=EmittingDrafter(backends.drafter), on_progress=calls.append)
    streamed = [
        data
        for mode, data in engine.compiled().stream(
            RunState(prompt=PROMPT), config(), context=context, stream_mode=["custom", "values"]
        )
        if mode == "custom"
    ]
    assert calls == streamed
    assert [(e["kind"], e["stage"]) for e in calls[:5]] == [
        ("start", "plan"),
        ("end", "plan"),
        ("start", "draft"),
        ("progress", "draft"),
        ("end", "draft"),
    ]
    critiques = [e for e in calls if e["kind"] == "end" and e["stage"] == "critique"]
    assert critiques and all("violations" in e for e in critiques)


def test_progress_reaches_the_context_without_the_custom_stream_and_goes_nowhere_outside_a_node(tmp_path):
    calls = []
    backends, _ = build_backends()
    context = sketch_context(tmp_path, drafter=EmittingDrafter(backends.drafter), on_progress=calls.append)
    for _ in engine.compiled().stream(RunState(prompt=PROMPT), config(), context=context, stream_mode="values"):
        pass
    drafts = sum(1 for e in calls if e["kind"] == "start" and e["stage"] == "draft")
    assert drafts > 0 and sum(1 for e in calls if e["kind"] == "progress") == drafts
    progress.emit({"kind": "progress", "stage": "draft", "step": 1, "total": 1})  # no node, no listener: no error


# ---------------------------------------------------------------------------------------------
# The last image, kept decoded
# ---------------------------------------------------------------------------------------------


class PlainPlanner:
    def __init__(self, planner):
        self.planner = planner

    def plan(self, prompt):
        return self.planner.plan(prompt)


class RedSquareDrafter:
    def draft(self, request: DraftRequest) -> DraftResult:
        image = Image.new("RGB", (32, 32), GREY)
        image.paste(RED, (4, 4, 12, 12))
        return DraftResult(image=image)


class ScribblingCritic:
    """Draws on the image it is given (a backend may), then asks for one refinement per step."""

    def __init__(self):
        self.seen = set()

    def critique(self, request) -> Critique:
        request.image.paste((0, 0, 0), (0, 0, 32, 32))
        if request.instruction in self.seen:
            return Critique()
        self.seen.add(request.instruction)
        bad = Violation(kind="missing", entity_ids=(), expected="x", observed="none", message="x is missing")
        return Critique(violations=(bad,))


class RecordingRefiner:
    def __init__(self):
        self.received = []

    def refine(self, request) -> RefineResult:
        self.received.append(request.image.copy())
        return RefineResult(image=request.image, refinement=Refinement(text="again", operation="regenerate"))


def test_a_backend_that_draws_on_its_input_cannot_change_what_the_next_node_sees(tmp_path):
    backends, _ = build_backends()
    refiner = RecordingRefiner()
    context = RunContext(
        Backends(
            planner=PlainPlanner(backends.planner),
            drafter=RedSquareDrafter(),
            critic=ScribblingCritic(),
            refiner=refiner,
        ),
        run_dir=tmp_path,
    )
    engine.compiled().invoke(RunState(prompt=PROMPT), config(), context=context)
    assert refiner.received
    with Image.open(tmp_path / "images" / "step01-draft.png") as drafted:
        drafted = drafted.convert("RGB")
    assert refiner.received[0].tobytes() == drafted.tobytes()
    assert refiner.received[0].getpixel((6, 6)) == RED


def test_an_image_from_a_checkpoint_is_read_and_checked_again_by_a_new_context(tmp_path):
    db = tmp_path / "checkpoints.sqlite"
    with engine.checkpointer(db) as saver:
        graph = engine.graph(saver)
        graph.invoke(RunState(prompt=PROMPT), config(), context=sketch_context(tmp_path), interrupt_before=["critic"])
        assert graph.get_state(config()).next == ("critic",)
    # The draft is changed on disk between the two processes.
    target = tmp_path / "images" / "step01-draft.png"
    Image.new("RGB", (64, 64), RED).save(target)
    with engine.checkpointer(db) as saver:
        with pytest.raises(RunError, match="sha256 mismatch"):
            engine.graph(saver).invoke(None, config(), context=sketch_context(tmp_path))


def _record_saves(monkeypatch, events: list[tuple[str, str]]) -> None:
    """Make every run's checkpointer log its saves in the order they reach the database, with a slow
    ``put_writes`` (a busy disk): a save handed over later then overtakes it unless saves are serial."""
    real = engine.checkpointer

    @contextmanager
    def recording(path):
        with real(path) as saver:
            put_writes, put = saver.put_writes, saver.put

            def slow_put_writes(config, writes, task_id, task_path=""):
                time.sleep(0.05)
                put_writes(config, writes, task_id, task_path)
                events.append(("writes", task_id))

            def logged_put(config, checkpoint, metadata, new_versions):
                saved = put(config, checkpoint, metadata, new_versions)
                events.append(("checkpoint", checkpoint["id"]))
                return saved

            saver.put_writes, saver.put = slow_put_writes, logged_put
            yield saver

    monkeypatch.setattr(engine, "checkpointer", recording)


def test_a_nodes_writes_reach_the_database_before_the_checkpoint_after_it(tmp_path, monkeypatch):
    # Resuming replays a finished node's saved writes, or runs the node again if they are missing.
    # Written in order, a crash while the next checkpoint is being saved still finds the writes; when
    # that save may start first (LangGraph's pool), the crash can lose both and the node runs twice.
    events: list[tuple[str, str]] = []
    _record_saves(monkeypatch, events)
    generate("a red apple", out=tmp_path / "run", seed=0)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "checkpoint" and kinds.count("writes") >= 4, events  # the input, then plan, draft, critique...
    # After the input's checkpoint, every node's writes come first, then the checkpoint they make.
    assert kinds[1:] == ["writes", "checkpoint"] * (len(kinds[1:]) // 2), events
