"""``run.json``, the run record: what resume needs to rebuild a run, and the rules for trusting it.

A record may come from someone else: it is read as a plain small file, validated with the bounds
of every setting, and never supplies a credential; it is written without keys and with every URL's
credentials masked."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from strokegraph import __version__, registry
from strokegraph._redact import SECRET_NAME, redact_url
from strokegraph._text import check_prompt
from strokegraph.app.rundir import RUN_FILE
from strokegraph.artifacts import ArtifactStore, check_thread, record_key
from strokegraph.errors import RunError, UsageError
from strokegraph.graph import Budget, engine
from strokegraph.schema import read_plain, write_new

__all__ = [
    "MAX_COUNT",
    "MAX_SEED",
    "RECORD_SHA",
    "RunRecord",
    "check_limits",
    "fetch_record",
    "new_thread_id",
    "public_settings",
    "read_record",
]


#: Budgets and seeds beyond these are mistakes, and 2**64 does not even fit a checkpoint.
MAX_COUNT = 1_000_000


MAX_SEED = 2**63 - 1


MAX_RECORD_BYTES = 1 << 20


class RunRecord(BaseModel):
    """``run.json``: what :func:`resume` needs to rebuild a run. ``format`` changes with its shape."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1]
    strokegraph: str
    thread_id: str
    prompt: str
    backends: dict[registry.Role, str]
    settings: dict[str, dict[str, Any]]
    seed: int
    budget: Budget
    single_pass: bool
    review: bool = False
    checkpoint: Literal["sqlite", "postgres"] = "sqlite"
    """Where the checkpoints are: a file in the run directory (``checkpoints.journal``, or
    ``checkpoints.sqlite`` for a run made before the journal), or a PostgreSQL
    database (never its URL: resume is given that again)."""
    store: str | None = None
    """The artifact store the run's images also go to, as given (it holds no credentials); resume
    is given it again and never opens one on this record's word."""


def without_secrets(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if not SECRET_NAME.search(k)}


def public_settings(settings: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Settings as run.json records them: no credentials, none inside URLs either.

    Credentials (:data:`SECRET_NAME`) never reach run.json: a resumed run takes its key from the
    environment (OPENAI_API_KEY...), as any run does that is given none.
    """
    return {
        role: {k: redact_url(v) if isinstance(v, str) else v for k, v in without_secrets(s).items()}
        for role, s in (settings or {}).items()
    }


def check_limits(seed: int, budget: Budget) -> None:
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    for name in ("rounds_per_step", "max_rounds", "max_sampling_steps"):
        value = getattr(budget, name)
        if value is not None and value > MAX_COUNT:
            raise UsageError(f"{name} must be at most {MAX_COUNT}, got {value}")


def read_small(path: Path, limit: int) -> bytes:
    """A record's bytes: a regular file, no symlink, at most ``limit`` bytes; else a :class:`UsageError`."""
    try:
        return read_plain(path, limit)
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None


def read_record(run_dir: Path, postgres: bool = False) -> RunRecord:
    """The run's record; anything that is not a run directory of this version is a :class:`UsageError`.

    ``postgres``: the checkpoints are in a PostgreSQL database, so the directory holds no
    checkpoint file, and the record must say so.
    """
    if not run_dir.is_dir():
        raise UsageError(f"run directory {str(run_dir)!r} does not exist")
    path = run_dir / RUN_FILE
    checkpoints = engine.run_checkpoints(run_dir)
    if not (path.is_file() or path.is_symlink()) or not (postgres or checkpoints.is_file()):
        if (path.is_file() or path.is_symlink()) and _recorded_checkpoint(path) == "postgres":
            raise UsageError(
                f"{str(run_dir)!r} keeps its checkpoints in PostgreSQL: give --checkpoint postgres://... again"
            )
        if checkpoints.exists() and not checkpoints.is_symlink() and not checkpoints.is_file():
            raise UsageError(f"{str(checkpoints)!r} is not a regular file; a run directory holds its own files")
        raise UsageError(f"{str(run_dir)!r} is not a strokegraph run directory (no {RUN_FILE} or {checkpoints.name})")
    for name in (RUN_FILE, engine.JOURNAL, engine.SQLITE, "images"):
        if (run_dir / name).is_symlink():
            raise UsageError(f"{str(run_dir / name)!r} is a symlink; a run directory holds its own files")
    try:
        record = RunRecord.model_validate_json(read_small(path, MAX_RECORD_BYTES))
    except ValidationError as exc:
        raise UsageError(
            f"{str(path)!r} is not a run record this strokegraph ({__version__}) can resume "
            f"({exc.error_count()} problem(s), first at {'.'.join(map(str, exc.errors()[0]['loc'])) or 'top level'})"
        ) from None
    try:
        check_prompt(record.prompt)
        check_limits(record.seed, record.budget)
        unknown = set(record.backends) - set(registry.ROLES)
        if unknown or set(record.settings) - set(registry.ROLES):
            raise UsageError(f"unknown role(s) {sorted(unknown)!r}")
    except UsageError as exc:
        raise UsageError(f"{str(path)!r} is not a run record strokegraph can resume: {exc}") from None
    # A key in a record was planted there (runs never write one): it is never read, whatever the
    # backends; a resumed run takes its key from the environment or from what it is given now.
    record.settings = {role: without_secrets(s) for role, s in record.settings.items()}
    if record.checkpoint != ("postgres" if postgres else "sqlite"):
        raise UsageError(
            "this run's checkpoints are in PostgreSQL: give --checkpoint postgres://... again"
            if record.checkpoint == "postgres"
            else "this run's checkpoints are in its run directory: resume it without --checkpoint"
        )
    return record


def _recorded_checkpoint(path: Path) -> str | None:
    """What a record says of its checkpoints, for an error message only (the record may be anything)."""
    try:
        return json.loads(read_small(path, MAX_RECORD_BYTES)).get("checkpoint")
    except (UsageError, ValueError, AttributeError, RecursionError):
        return None


def new_thread_id(run_dir: Path, shared: bool) -> str:
    """A new run's thread: its directory's name, as always, when only its own files hold it.

    A run whose checkpoints or images go to a place other runs share (a database, a store) gets a
    plain name with a random suffix, so that runs on two machines never share one.
    """
    if not shared:
        return run_dir.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", run_dir.name).strip("-._")[:100] or "run"
    return check_thread(f"{name}-{secrets.token_hex(6)}")


# The checkpoint metadata key of the sha256 of the run's record in the store.
RECORD_SHA = "strokegraph_record_sha256"


SHA256 = re.compile(r"[0-9a-f]{64}")


def fetch_record(run_dir: Path, thread: str, url: str, store: ArtifactStore) -> None:
    """Write ``thread``'s run.json into ``run_dir`` from ``store``, checked against its checkpoints' sha256."""
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise UsageError(f"{str(run_dir)!r} is not a directory to resume thread {thread!r} into")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        here = run_dir / RUN_FILE
        try:
            mine = json.loads(read_small(here, MAX_RECORD_BYTES)).get("thread_id") if here.is_file() else None
        except (ValueError, AttributeError, RecursionError):
            mine = None
        if mine != thread:
            raise UsageError(
                f"{str(run_dir)!r} is not empty and holds no earlier resume of thread {thread!r}; choose another --out"
            )
    with engine.checkpointer(url) as saver:
        found = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
    if found is None:
        raise UsageError(f"the checkpoint database holds no thread {thread!r}")
    sha = (found.metadata or {}).get(RECORD_SHA)
    if not isinstance(sha, str) or not SHA256.fullmatch(sha):
        raise UsageError(f"thread {thread!r} was made without an artifact store; resume it in its run directory")
    try:
        data = store.get(record_key(thread), sha, max_bytes=MAX_RECORD_BYTES)
    except RunError as exc:
        raise UsageError(f"cannot resume thread {thread!r}: {exc}") from None
    run_dir.mkdir(parents=True, exist_ok=True)
    write_new(run_dir / RUN_FILE, data)
