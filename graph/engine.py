"""What :func:`strokegraph.app.runner.generate` and ``resume`` run on: the loop compiled once per process,
and each run's checkpointer: a journal file in the run directory (:mod:`strokegraph.graph.journal`;
SQLite for runs made before it), or a PostgreSQL database that runs on several machines share (the
``postgres`` extra).

Compiling the loop takes milliseconds, as much as a sketch-world node; a compiled graph holds no
run's data, so every run of a process shares one per ``review`` flag and gets its own checkpointer
through a shallow copy (:meth:`Pregel.copy <langgraph.pregel.Pregel.copy>`), which compiles nothing.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from strokegraph._redact import redact_url
from strokegraph.errors import UsageError
from strokegraph.graph.builder import build_graph
from strokegraph.graph.journal import JournalSaver, read_journal
from strokegraph.graph.state import CheckpointError, RunContext, RunState, checkpoint_serializer

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.graph.state import CompiledStateGraph

    Loop = CompiledStateGraph[RunState, RunContext, RunState, RunState]

__all__ = [
    "JOURNAL",
    "SQLITE",
    "acheckpointer",
    "checkpoint_url",
    "checkpointer",
    "compiled",
    "describe",
    "graph",
    "holds_thread",
    "is_postgres",
    "lock_thread",
    "run_checkpoints",
]

#: A run directory's checkpoints: the journal (:class:`~strokegraph.graph.journal.JournalSaver`);
#: runs made before it have a SQLite database instead, which they keep.
JOURNAL = "checkpoints.journal"
SQLITE = "checkpoints.sqlite"

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
def _serializer() -> JsonPlusSerializer:
    """:func:`~strokegraph.graph.checkpoint_serializer`, built once per process: it keeps no state
    between calls, and building it (its allowlist of types) takes about as long as one save."""
    return checkpoint_serializer()


@cache
def compiled(review: bool = False, asynchronous: bool = False) -> Loop:
    """The loop (:func:`~strokegraph.graph.build_graph`) without a checkpointer, compiled once per process
    and flag pair (``asynchronous``: the coroutine nodes that async runs await)."""
    return build_graph(review=review, asynchronous=asynchronous)


def graph(checkpointer: BaseCheckpointSaver | None, *, review: bool = False, asynchronous: bool = False) -> Loop:
    """The compiled loop with ``checkpointer``: a copy of :func:`compiled` that shares its nodes and channels."""
    return compiled(review, asynchronous).copy({"checkpointer": checkpointer})


_POSTGRES = re.compile(r"postgres(?:ql)?://", re.IGNORECASE)
_AUTHORITY = re.compile(r"[^:]*://[^/?#]*")


def is_postgres(where: str | Path) -> bool:
    """Whether ``where`` (a checkpointer's path or URL) names a PostgreSQL database."""
    return isinstance(where, str) and _POSTGRES.match(where) is not None


def checkpoint_url(spec: str | None) -> str | None:
    """The PostgreSQL URL ``spec`` names, or None for SQLite in the run directory (``None`` or ``"sqlite"``)."""
    if spec is None or spec == "sqlite":
        return None
    if not is_postgres(spec):
        raise UsageError(f"checkpoint {redact_url(str(spec))[:200]!r} is neither 'sqlite' nor a postgres:// URL")
    authority = _AUTHORITY.match(spec)
    if authority is not None and authority[0].count("@") > 1:
        # libpq splits at the first '@' and would look up the rest of the password as a host name.
        raise UsageError(
            f"checkpoint {redact_url(spec)[:200]!r} has a raw '@' in its user name or password; write it as %40"
        )
    return spec


def describe(where: str | Path) -> str:
    """``where`` as messages show it: a URL without its password."""
    return redact_url(str(where))


def run_checkpoints(run_dir: Path) -> Path:
    """The checkpoint file of the run directory ``run_dir``: its SQLite database when it has one (a run
    made before the journal), else its journal (which a new run creates)."""
    sqlite = run_dir / SQLITE
    return sqlite if sqlite.exists() or sqlite.is_symlink() else run_dir / JOURNAL


def _is_journal(path: str | Path) -> bool:
    return isinstance(path, Path) and path.suffix == ".journal"


def holds_thread(path: Path, thread_id: str) -> str | None:
    """Why the checkpoint file ``path`` (a journal or a SQLite database) holds no checkpoint of
    ``thread_id``; None when it holds one.

    Reads without writing a byte: :func:`checkpointer` would start a journal or create LangGraph's
    tables in an empty or foreign file. Checkpoints a killed run left in SQLite's write-ahead log
    are read too.
    """
    if not path.is_file() or path.is_symlink():
        return "it is missing" if not path.exists() else "it is not a plain file"
    if path.stat().st_size == 0:
        return "it is empty"
    if _is_journal(path):
        try:
            records, _ = read_journal(path)
        except CheckpointError as exc:
            return f"it holds no strokegraph checkpoints ({' '.join(str(exc).split())[:200]})"
        found = False
        for record in records:  # a thread's checkpoints, unless a later record deleted them
            if record[0] == "c" and record[1] == thread_id and record[2] == "":
                found = True
            elif record[0] == "d" and record[1] == thread_id:
                found = False
        return None if found else f"it holds no checkpoint of thread {thread_id[:80]!r}"
    # immutable=1 opens no -wal or -shm file (read-only mode would create both); with a -wal file
    # beside it, which may hold the latest checkpoints, read-only mode reads it.
    wal = path.with_name(path.name + "-wal").is_file()
    uri = f"{path.absolute().as_uri()}?{'mode=ro' if wal else 'immutable=1'}"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            found = conn.execute(
                "select 1 from checkpoints where thread_id = ? and checkpoint_ns = '' limit 1", (thread_id,)
            ).fetchone()
    except sqlite3.Error as exc:
        return f"it holds no strokegraph checkpoints ({' '.join(str(exc).split())[:100]})"
    return None if found else f"it holds no checkpoint of thread {thread_id[:80]!r}"


@contextmanager
def checkpointer(path: str | Path) -> Iterator[BaseCheckpointSaver]:
    """A checkpointer on ``path``, closed when the block ends.

    A path ending in ``.journal`` is a journal (created if missing): a
    :class:`~strokegraph.graph.journal.JournalSaver`. Another path is a SQLite database (created if
    missing): a ``SqliteSaver`` on one connection, in WAL mode with ``synchronous=NORMAL``. A
    ``postgres://`` URL is a ``PostgresSaver`` on one autocommit connection, so that each checkpoint
    is committed when it is written. All use the serializer of
    :func:`~strokegraph.graph.checkpoint_serializer`. A file that is not a journal or a SQLite
    database raises :class:`~strokegraph.graph.CheckpointError`; a database that cannot be reached,
    a :class:`~strokegraph.errors.UsageError` that names it without its password.
    """
    if is_postgres(path):
        with _postgres(str(path)) as saver:
            yield saver
        return
    if _is_journal(path):
        with JournalSaver(path, serde=_serializer()) as journal:
            yield journal
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    with closing(sqlite3.connect(path, check_same_thread=False)) as conn:
        try:
            for pragma in _SETUP_PRAGMAS:
                conn.execute(pragma)
            saver = SqliteSaver(conn, serde=_serializer())
            saver.setup()
            conn.execute(_RUN_PRAGMA)
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(f"corrupt checkpoint database {str(path)!r}: {exc}") from None
        yield saver


@asynccontextmanager
async def acheckpointer(path: str | Path) -> AsyncIterator[BaseCheckpointSaver]:
    """:func:`checkpointer` for async runs: the same journal (its saves, appends to a local file, are
    made in the event loop's thread), an ``AsyncSqliteSaver`` on one ``aiosqlite`` connection, or an
    ``AsyncPostgresSaver`` on one autocommit connection."""
    if is_postgres(path):
        async with _apostgres(str(path)) as saver:
            yield saver
        return
    if _is_journal(path):
        with JournalSaver(path, serde=_serializer()) as journal:
            yield journal
        return
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(path) as conn:
        try:
            for pragma in _SETUP_PRAGMAS:
                await conn.execute(pragma)
            saver = AsyncSqliteSaver(conn, serde=_serializer())
            await saver.setup()
            await conn.execute(_RUN_PRAGMA)
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(f"corrupt checkpoint database {str(path)!r}: {exc}") from None
        yield saver


def _postgres_modules():
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
    except ImportError:
        raise UsageError("postgres:// checkpoints need psycopg: pip install 'strokegraph[postgres]'") from None
    return psycopg, PostgresSaver, AsyncPostgresSaver, dict_row


# Each database gets LangGraph's schema once per process: setup() checks its migrations table,
# a round trip per run that would otherwise run for every generate.
_SET_UP: set[str] = set()

# Autocommit, or a checkpoint stays in an open transaction until the connection commits, and a
# killed run loses all of them; prepare_threshold=0 keeps it usable behind pgbouncer; dict rows are
# what the savers read.
_CONNECT = {"autocommit": True, "prepare_threshold": 0}


def _connect_error(url: str, exc: Exception) -> UsageError:
    reason = redact_url(" ".join(str(exc).split()))[:300]
    return UsageError(f"cannot use the checkpoint database {redact_url(url)!r}: {reason}")


def lock_thread(saver: BaseCheckpointSaver, thread_id: str) -> None:
    """Hold ``thread_id`` for this process while ``saver`` (a ``PostgresSaver``) stays open.

    A run directory's lock keeps two runs of one machine apart; a thread in a shared database can be
    resumed from any machine, so the database holds the lock: a session advisory lock, which the
    server drops when the connection closes, a killed process's too. Raises :class:`UsageError`
    when another process holds it.
    """
    _, PostgresSaver, _, _ = _postgres_modules()
    if not isinstance(saver, PostgresSaver):
        raise TypeError(f"lock_thread needs a PostgresSaver, not {type(saver).__name__}")
    with saver.lock:
        row = saver.conn.execute(
            "select pg_try_advisory_lock(hashtextextended(%s, 0)) as locked", (f"strokegraph:{thread_id}",)
        ).fetchone()
    if not row["locked"]:
        raise UsageError(f"thread {thread_id!r} is in use by another strokegraph run; wait until it ends")


@contextmanager
def _postgres(url: str) -> Iterator[BaseCheckpointSaver]:
    psycopg, PostgresSaver, _, dict_row = _postgres_modules()
    try:
        conn = psycopg.Connection.connect(url, **_CONNECT, row_factory=dict_row)
    except psycopg.Error as exc:
        raise _connect_error(url, exc) from None
    with conn:
        saver = PostgresSaver(conn, serde=_serializer())
        if url not in _SET_UP:
            try:
                saver.setup()
            except psycopg.Error as exc:
                raise _connect_error(url, exc) from None
            _SET_UP.add(url)
        yield saver


@asynccontextmanager
async def _apostgres(url: str) -> AsyncIterator[BaseCheckpointSaver]:
    psycopg, _, AsyncPostgresSaver, dict_row = _postgres_modules()
    try:
        conn = await psycopg.AsyncConnection.connect(url, **_CONNECT, row_factory=dict_row)
    except psycopg.Error as exc:
        raise _connect_error(url, exc) from None
    async with conn:
        saver = AsyncPostgresSaver(conn, serde=_serializer())
        if url not in _SET_UP:
            try:
                await saver.setup()
            except psycopg.Error as exc:
                raise _connect_error(url, exc) from None
            _SET_UP.add(url)
        yield saver
