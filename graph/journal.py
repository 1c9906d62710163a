"""A checkpointer that appends each checkpoint and each node's writes to one file: a run's journal.

:class:`JournalSaver` keeps what LangGraph's :class:`~langgraph.checkpoint.memory.InMemorySaver`
keeps, in the same structures (so reading a checkpoint is InMemorySaver's code), and appends every
save to the file before it returns, as one ``write`` of one record. Nothing is read back from the
file while the saver is open; opening it replays the records into memory.

It keeps what SQLite in WAL mode with ``synchronous=NORMAL`` promised the runs before it. A save is
in the operating system's hands before the graph moves on, so a killed process (kill -9, Ctrl-C, a
backend that brings Python down) loses nothing saved. Nothing waits for the disk (an fsync): an OS
crash or a power cut can lose the last saves, as with SQLite, and the journal stays consistent even
then, because each record carries its length and a CRC-32 and the journal ends before a last record
that is incomplete or fails its check, as a write-ahead log ends at its first bad frame. A save
costs one serialization of what changed (InMemorySaver's), not of the whole state, and one system
call; opening costs one ``open`` instead of a database connection and its schema.

Record: ``<length u32 LE><crc32 u32 LE><msgpack payload>``; the file starts with :data:`MAGIC`.
Payloads are plain msgpack lists of strings and bytes; the checkpoint data in them stays as the
serializer wrote it and is loaded by that serializer (strokegraph's strict one validates it).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    SerializerProtocol,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel

from strokegraph.graph.state import CheckpointError

__all__ = ["MAGIC", "JournalSaver", "frame", "read_journal", "write_journal"]

MAGIC = b"strokegraph-journal-1\n"
_HEADER = struct.Struct("<II")
# A record is one node's writes or one checkpoint's changed channels: megabytes at most for any
# state strokegraph keeps (images are files, not state). A length beyond this is damage.
_MAX_RECORD = 1 << 30


def _typed(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], bytes)


def _check(record: Any) -> list:
    """``record`` if it has one of the shapes :class:`JournalSaver` writes; else raises ValueError."""
    if not isinstance(record, list) or not record or record[0] not in ("c", "w", "d"):
        raise ValueError("unknown record")
    kind, rest = record[0], record[1:]
    if kind == "c":  # thread, ns, id, parent id, checkpoint, metadata, [[channel, version, typed]]
        ok = (
            len(rest) == 7
            and all(isinstance(v, str) for v in rest[:3])
            and (rest[3] is None or isinstance(rest[3], str))
            and _typed(rest[4])
            and _typed(rest[5])
            and isinstance(rest[6], list)
            and all(
                isinstance(b, list)
                and len(b) == 3
                and isinstance(b[0], str)
                and isinstance(b[1], str | int | float)
                and _typed(b[2])
                for b in rest[6]
            )
        )
    elif kind == "w":  # thread, ns, checkpoint id, task id, task path, [[idx, channel, typed]]
        ok = (
            len(rest) == 6
            and all(isinstance(v, str) for v in rest[:5])
            and isinstance(rest[5], list)
            and all(
                isinstance(w, list)
                and len(w) == 3
                and isinstance(w[0], int)
                and not isinstance(w[0], bool)
                and isinstance(w[1], str)
                and _typed(w[2])
                for w in rest[5]
            )
        )
    else:  # thread
        ok = len(rest) == 1 and isinstance(rest[0], str)
    if not ok:
        raise ValueError(f"malformed {kind!r} record")
    return record


def _array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` items (fixarray, array 16, array 32)."""
    if n < 16:
        return bytes([0x90 | n])
    return b"\xdc" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xdd" + n.to_bytes(4, "big")


def _keeps(kind: type) -> bool:
    """Whether :meth:`JournalSaver._dumps` keeps the serialized form of values of type ``kind``: strings
    and frozen pydantic models, which cannot change while they are kept."""
    return kind is str or (issubclass(kind, BaseModel) and kind.model_config.get("frozen") is True)


def frame(record: list) -> bytes:
    """``record`` as the journal holds it: length, CRC-32, msgpack."""
    payload = ormsgpack.packb(record)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def write_journal(path: str | Path, records: list[list]) -> None:
    """Write a journal of ``records`` at ``path``, replacing the file (what editing a journal takes)."""
    Path(path).write_bytes(MAGIC + b"".join(frame(r) for r in records))


def read_journal(path: str | Path) -> tuple[list[list], int]:
    """The records of the journal at ``path`` and the length of its valid part, in bytes.

    Reads without writing. The journal ends before a last record that is cut short or fails its
    checksum (what a killed write or a lost disk write leaves). Raises :class:`CheckpointError` for
    a file that is not a journal, a record that fails its checksum with whole records after it, and
    a record that passes its checksum but has a shape no :class:`JournalSaver` writes.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint journal {str(path)!r}: {exc.strerror or exc}") from None
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{str(path)!r} is not a strokegraph checkpoint journal")
    records: list[list] = []
    at = len(MAGIC)
    while at + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, at)
        start, end = at + _HEADER.size, at + _HEADER.size + length
        if length > _MAX_RECORD or end > len(data):
            break  # the last write, cut short
        if zlib.crc32(data[start:end]) != crc:
            if end == len(data):
                break  # the last write, its bytes not all on disk
            # Whole records follow a damaged one: not what a kill or a lost write leaves.
            raise CheckpointError(f"corrupt checkpoint journal {str(path)!r}: record {len(records) + 1} is damaged")
        try:
            records.append(_check(ormsgpack.unpackb(data[start:end])))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(
                f"corrupt checkpoint journal {str(path)!r}: record {len(records) + 1}: {exc}"
            ) from None
        at = end
    return records, at


class JournalSaver(InMemorySaver):
    """LangGraph's in-memory checkpointer, with every save appended to the journal at ``path``.

    Opens (creating) the file and replays its records; the first save cuts off anything after the
    last valid record, and until then the file is left as it was. A file that is not a journal
    raises :class:`CheckpointError`. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.path = Path(path)
        self._lock = threading.Lock()
        self._valid: int | None = None
        # id -> (value, its serialized form): what the last checkpoint and the writes since serialized.
        self._packed: dict[int, tuple[Any, tuple[str, bytes]]] = {}
        self._recent: dict[int, tuple[Any, tuple[str, bytes]]] = {}
        # Asked once: the serializer is a protocol class, and isinstance against one is slow.
        self._arrays = isinstance(self.serde, JsonPlusSerializer)  # it writes lists as msgpack arrays
        self._kept: dict[type, bool] = {}  # type -> whether its values are kept (see _keeps)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            self._fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise CheckpointError(f"cannot open checkpoint journal {str(path)!r}: {exc.strerror or exc}") from None
        try:
            if os.fstat(self._fd).st_size == 0:  # a new journal: nothing to read back
                self._append_raw(MAGIC)
            else:
                records, self._valid = read_journal(self.path)
                for record in records:
                    self._apply(record)
        except BaseException:
            os.close(self._fd)
            raise

    def close(self) -> None:
        """Close the file (the records are written already)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        conf = config["configurable"]
        thread_id, ns = conf["thread_id"], conf["checkpoint_ns"]
        c = checkpoint.copy()
        values: dict[str, Any] = c.pop("channel_values")  # type: ignore[misc]
        blobs = [(k, v, self._dumps(values[k]) if k in values else ("empty", b"")) for k, v in new_versions.items()]
        record = [
            "c",
            thread_id,
            ns,
            checkpoint["id"],
            conf.get("checkpoint_id"),
            self.serde.dumps_typed(c),
            self.serde.dumps_typed(get_checkpoint_metadata(config, metadata)),
            blobs,
        ]
        self._save(record)
        self._packed, self._recent = self._recent, {}
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        conf = config["configurable"]
        thread_id, ns, checkpoint_id = conf["thread_id"], conf.get("checkpoint_ns", ""), conf["checkpoint_id"]
        stored = self.writes.get((thread_id, ns, checkpoint_id))
        new = []
        for idx, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, idx)
            if stored and idx >= 0 and (task_id, idx) in stored:  # a task's regular writes are saved once
                continue
            new.append((idx, channel, self._dumps(value)))
        if new:
            self._save(["w", thread_id, ns, checkpoint_id, task_id, task_path, new])

    def delete_thread(self, thread_id: str) -> None:
        self._save(["d", thread_id])

    def _dumps(self, value: Any) -> tuple[str, bytes]:
        """``self.serde.dumps_typed(value)``, the same bytes, without serializing again what is unchanged.

        A checkpoint holds every channel that changed, and a channel that gathers values (the
        trajectory) is a new list each step of the values before and one more: serialized whole, a
        run's checkpoints cost the square of its length. A msgpack array is its header followed by
        its items' encodings, so a list is put together from its items' bytes, and an item (a frozen
        pydantic model, or a string) serialized for the last checkpoint or for a node's writes since
        is not serialized again. Each entry holds its value, so its id is not reused while cached.
        """
        kind = type(value)
        if kind is list and self._arrays:
            items = [self._dumps(v) for v in value]
            if all(typed[0] == "msgpack" for typed in items):
                return ("msgpack", _array_header(len(items)) + b"".join([typed[1] for typed in items]))
            return self.serde.dumps_typed(value)
        keep = self._kept.get(kind)
        if keep is None:
            keep = self._kept[kind] = _keeps(kind)
        if not keep:
            return self.serde.dumps_typed(value)
        key = id(value)
        hit = self._recent.get(key) or self._packed.get(key)
        if hit is not None and hit[0] is value:
            self._recent[key] = hit
            return hit[1]
        typed = self.serde.dumps_typed(value)
        self._recent[key] = (value, typed)
        return typed

    def _save(self, record: list) -> None:
        data = frame(record)
        with self._lock:
            if self._valid is not None:  # the first save cuts off what follows the last valid record
                os.ftruncate(self._fd, self._valid)
                self._valid = None
            self._append_raw(data)
            self._apply(record)

    def _append_raw(self, data: bytes) -> None:
        if self._fd < 0:
            raise CheckpointError(f"checkpoint journal {str(self.path)!r} is closed")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def _apply(self, record: list) -> None:
        """Put ``record`` into InMemorySaver's structures, as its own put, put_writes or delete_thread would."""
        kind = record[0]
        if kind == "c":
            _, thread_id, ns, checkpoint_id, parent_id, checkpoint, metadata, blobs = record
            for channel, version, typed in blobs:
                self.blobs[(thread_id, ns, channel, version)] = tuple(typed)
            self.storage[thread_id][ns][checkpoint_id] = (tuple(checkpoint), tuple(metadata), parent_id)
        elif kind == "w":
            _, thread_id, ns, checkpoint_id, task_id, task_path, writes = record
            stored = self.writes[(thread_id, ns, checkpoint_id)]
            for idx, channel, typed in writes:
                stored[(task_id, idx)] = (task_id, channel, tuple(typed), task_path)
        else:
            super().delete_thread(record[1])
