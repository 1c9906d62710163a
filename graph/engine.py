"""What :func:`strokegraph.graph.run.generate` and ``resume`` run on: the loop compiled once per process,
and each run's SQLite checkpointer, tuned for one writer.

Compiling the loop takes milliseconds, as much as a sketch-world node; a compiled graph holds no
run's data, so every run of a process shares one per ``review`` flag and gets its own checkpointer
through a shallow copy (:meth:`Pregel.copy <langgraph.pregel.Pregel.copy>`), which compiles nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from strokegraph.graph.builder import build_graph
from strokegraph.graph.state import CheckpointError, checkpoint_serializer

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph.state import CompiledStateGraph

__all__ = ["acheckpointer", "checkpointer", "compiled", "graph"]

# WAL with synchronous=NORMAL: a commit appends to the write-ahead log without waiting for the
# disk, and SQLite syncs the log when it copies it back into the database (at the latest when the
# run closes the connection). That is still crash-safe for the crash `resume` promises to survive,
# a killed process (kill -9, Ctrl-C, a backend that brings Python down): every committed checkpoint
# is already in the OS's hands, which writes it out, and the next connection replays the log. Only
# an OS crash or a power cut can lose the last commits, and the file stays consistent even then.
# With the default synchronous=FULL every checkpoint would wait for an fsync.
_RUN_PRAGMA = "PRAGMA synchronous=NORMAL"
# A new database gets its schema (LangGraph's setup) before it holds any checkpoint, so those first
# writes need no fsync at all; with one they cost more than the rest of a sketch-world run's commits.
_SETUP_PRAGMAS = ("PRAGMA synchronous=OFF", "PRAGMA journal_mode=WAL")


@cache
def compiled(review: bool = False) -> CompiledStateGraph:
    """The loop (:func:`~strokegraph.graph.build_graph`) without a checkpointer, compiled once per process."""
    return build_graph(review=review)


def graph(checkpointer: BaseCheckpointSaver | None, *, review: bool = False) -> CompiledStateGraph:
    """The compiled loop with ``checkpointer``: a copy of :func:`compiled` that shares its nodes and channels."""
    return compiled(review).copy({"checkpointer": checkpointer})


@contextmanager
def checkpointer(path: str | Path) -> Iterator[SqliteSaver]:
    """A ``SqliteSaver`` on the database ``path`` (created if missing), closed when the block ends.

    One connection, in WAL mode with ``synchronous=NORMAL``, and the serializer of
    :func:`~strokegraph.graph.checkpoint_serializer`. A file that is not a SQLite database raises
    :class:`~strokegraph.graph.CheckpointError`.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver

    with closing(sqlite3.connect(path, check_same_thread=False)) as conn:
        try:
            for pragma in _SETUP_PRAGMAS:
                conn.execute(pragma)
            saver = SqliteSaver(conn, serde=checkpoint_serializer())
            saver.setup()
            conn.execute(_RUN_PRAGMA)
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(f"corrupt checkpoint database {str(path)!r}: {exc}") from None
        yield saver


@asynccontextmanager
async def acheckpointer(path: str | Path) -> AsyncIterator[AsyncSqliteSaver]:
    """:func:`checkpointer` for async runs: an ``AsyncSqliteSaver`` on one ``aiosqlite`` connection."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(path) as conn:
        try:
            for pragma in _SETUP_PRAGMAS:
                await conn.execute(pragma)
            saver = AsyncSqliteSaver(conn, serde=checkpoint_serializer())
            await saver.setup()
            await conn.execute(_RUN_PRAGMA)
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(f"corrupt checkpoint database {str(path)!r}: {exc}") from None
        yield saver
