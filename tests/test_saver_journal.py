"""The journal checkpointer (strokegraph.graph.journal): LangGraph's conformance suite, and what a
killed write or a damaged file leaves."""

from __future__ import annotations

import asyncio
import itertools
import operator
from typing import Annotated

import pytest
from typing_extensions import TypedDict

from strokegraph.graph import CheckpointError, checkpoint_serializer
from strokegraph.graph.journal import MAGIC, JournalSaver, frame, read_journal
from strokegraph.schema import Usage

CONFIG = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}


class _Log(TypedDict):
    n: int
    last: Usage
    log: Annotated[list, operator.add]


def test_journal_saver_passes_langgraph_checkpoint_conformance(tmp_path):
    conformance = pytest.importorskip(
        "langgraph.checkpoint.conformance", reason="needs langgraph-checkpoint-conformance (the 'test' extra)"
    )
    names = itertools.count()

    @conformance.checkpointer_test(name="JournalSaver")
    async def journal():
        with JournalSaver(tmp_path / f"{next(names)}.journal") as saver:
            yield saver

    report = asyncio.run(conformance.validate(journal))
    report.print_report()
    assert report.passed_all_base()


def _graph(saver):
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class S(TypedDict):
        n: int

    builder = StateGraph(S)
    builder.add_node("inc", lambda s: {"n": s["n"] + 1})
    builder.add_edge(START, "inc")
    builder.add_conditional_edges("inc", lambda s: END if s["n"] >= 3 else "inc", ["inc", END])
    return builder.compile(checkpointer=saver)


def _history(saver):
    return [(t.config, t.checkpoint, t.metadata, t.parent_config, t.pending_writes) for t in saver.list(CONFIG)]


def test_a_reopened_journal_holds_what_was_saved(tmp_path):
    path = tmp_path / "c.journal"
    with JournalSaver(path) as saver:
        assert _graph(saver).invoke({"n": 0}, CONFIG, durability="sync") == {"n": 3}
        before = _history(saver)
    with JournalSaver(path) as saver:
        assert _history(saver) == before
        assert _graph(saver).get_state(CONFIG).values == {"n": 3}
    assert len(before) == 5  # the input, three steps, and nothing lost on the way


def test_a_torn_last_record_is_dropped_and_cut_off(tmp_path):
    path = tmp_path / "c.journal"
    with JournalSaver(path) as saver:
        _graph(saver).invoke({"n": 0}, CONFIG, durability="sync")
        whole = _history(saver)
    records, valid = read_journal(path)
    data = path.read_bytes()
    assert valid == len(data)
    path.write_bytes(data[:-3])  # a write the kill cut short
    cut, valid = read_journal(path)
    assert cut == records[:-1]
    with JournalSaver(path) as saver:
        assert path.read_bytes() == data[:-3]  # reading changes nothing
        # The torn record is the last checkpoint, or a node's writes that LangGraph's background save
        # happened to append after it (their order is not fixed): then every checkpoint is still there.
        lost = 1 if records[-1][0] == "c" else 0
        assert len(_history(saver)) == len(whole) - lost
        _graph(saver).invoke({"n": 0}, {"configurable": {"thread_id": "u"}}, durability="sync")
    assert read_journal(path)[0][: len(cut)] == cut
    assert read_journal(path)[1] == path.stat().st_size  # new records follow the valid part


def test_a_damaged_record_with_records_after_it_is_corrupt_not_the_end(tmp_path):
    path = tmp_path / "c.journal"
    with JournalSaver(path) as saver:
        _graph(saver).invoke({"n": 0}, CONFIG, durability="sync")
    data = bytearray(path.read_bytes())
    data[len(MAGIC) + 12] ^= 0xFF  # in the first record's payload
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="record 1 is damaged"):
        JournalSaver(path)
    assert path.read_bytes() == bytes(data)


def test_a_file_that_is_not_a_journal_is_refused(tmp_path):
    path = tmp_path / "c.journal"
    path.write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(CheckpointError, match="not a strokegraph checkpoint journal"):
        JournalSaver(path)
    assert path.read_bytes().startswith(b"SQLite")  # left as it was


def _append(path, record) -> None:
    with open(path, "ab") as f:
        f.write(frame(record))


def test_a_record_of_a_shape_no_saver_writes_is_corrupt(tmp_path):
    path = tmp_path / "c.journal"
    path.write_bytes(MAGIC)
    _append(path, ["c", "t", "", "1", None, ["msgpack", b""], "not typed", []])
    with pytest.raises(CheckpointError, match="record 1: malformed 'c' record"):
        JournalSaver(path)


def test_the_strict_serializer_still_refuses_what_is_not_state(tmp_path):
    import ormsgpack

    path = tmp_path / "c.journal"
    with JournalSaver(path, serde=checkpoint_serializer()) as saver:
        _graph(saver).invoke({"n": 0}, CONFIG, durability="sync")
        last = saver.get_tuple(CONFIG).config["configurable"]["checkpoint_id"]
    planted = ormsgpack.packb(ormsgpack.Ext(0, ormsgpack.packb(("os", "system", "echo pwned"))))
    _append(path, ["w", "t", "", last, "task", "", [[0, "n", ["msgpack", planted]]]])
    with JournalSaver(path, serde=checkpoint_serializer()) as saver:
        with pytest.raises(CheckpointError, match="os.system, which is not a strokegraph state type"):
            saver.get_tuple(CONFIG)


def test_what_the_journal_saves_is_byte_for_byte_what_the_serializer_writes(tmp_path):
    # The saver puts a list together from its items' bytes (serialized once, reused while unchanged);
    # every blob it holds must be what the serializer makes of the value, past 15 items (array 16) too.
    from langgraph.graph import END, START, StateGraph

    def step(s):
        usage = Usage(calls=s["n"], prompt_tokens=1)
        return {"n": s["n"] + 1, "last": usage, "log": [usage, f"step {s['n']}", [s["n"], None]]}

    builder = StateGraph(_Log)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: END if s["n"] >= 8 else "step", ["step", END])
    serde = checkpoint_serializer()
    with JournalSaver(tmp_path / "c.journal", serde=serde) as saver:
        graph = builder.compile(checkpointer=saver)
        graph.invoke({"n": 0, "last": Usage(), "log": []}, CONFIG, durability="sync")
        assert len(graph.get_state(CONFIG).values["log"]) == 24
        blobs = list(saver.blobs.values()) + [w[2] for ws in saver.writes.values() for w in ws.values()]
    assert len(blobs) > 30
    for kind, data in blobs:
        if kind == "msgpack":
            assert serde.dumps_typed(serde.loads_typed((kind, data))) == (kind, data)


def test_a_run_directory_made_before_the_journal_resumes_from_its_sqlite(tmp_path):
    # Runs made before the journal keep their checkpoints.sqlite: resume reads it and goes on in it.
    import shutil
    from collections import defaultdict

    from strokegraph.app.runner import generate, resume
    from strokegraph.graph import Budget, engine

    journal_run, sqlite_run = tmp_path / "journal", tmp_path / "sqlite"
    settings = {"drafter": {"fault_scale": 3.33}}
    first = generate(
        "two red apples to the left of a blue cup",
        out=journal_run,
        seed=3,
        budget=Budget(max_rounds=0),
        settings=settings,
    )
    assert not first.passed  # work left for the resume
    shutil.copytree(journal_run, sqlite_run)
    thread = {"configurable": {"thread_id": "journal", "checkpoint_ns": ""}}
    with JournalSaver(sqlite_run / engine.JOURNAL) as old, engine.checkpointer(sqlite_run / engine.SQLITE) as new:
        for found in reversed(list(old.list(thread))):  # oldest first, as the run saved them
            new.put(
                found.parent_config or thread, found.checkpoint, found.metadata, found.checkpoint["channel_versions"]
            )
            by_task = defaultdict(list)
            for task_id, channel, value in found.pending_writes:
                by_task[task_id].append((channel, value))
            for task_id, writes in by_task.items():
                new.put_writes(found.config, writes, task_id)
    (sqlite_run / engine.JOURNAL).unlink()

    resumed = resume(sqlite_run, max_rounds=5)
    assert not (sqlite_run / engine.JOURNAL).exists()
    assert resumed.final_image.read_bytes() == resume(journal_run, max_rounds=5).final_image.read_bytes()
    assert resumed.rounds > first.rounds
