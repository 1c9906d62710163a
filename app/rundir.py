"""The run directory: claimed under a new name or given empty, and locked while a run works in it."""

from __future__ import annotations

import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

from strokegraph._text import check_utf8
from strokegraph.errors import UsageError

__all__ = ["LOCK_FILE", "RUN_FILE", "RunLock", "new_run_dir"]


def _slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "run"


def new_run_dir(prompt: str, out: str | os.PathLike | None = None, root: str | os.PathLike = "runs") -> Path:
    """Create the run directory. An existing non-empty directory is never reused or overwritten."""
    if out is None:
        base = Path(root) / f"{datetime.now():%Y%m%d-%H%M%S}-{_slug(prompt)}"
        path = _claim(base)
    else:
        path = Path(check_utf8("output directory", os.fspath(out)))
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UsageError(f"output directory {str(path)!r} already exists and is not empty; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write to output directory {str(path)!r}: {exc.strerror or exc}") from exc
    return path


def _claim(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``...: the first name this call could create.

    ``mkdir`` without ``exist_ok`` claims a name atomically, so runs started at the same second (in
    threads, as :func:`agenerate` prepares them, or in processes) never share a directory.
    """
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        except OSError as exc:
            raise UsageError(f"cannot write to output directory {str(path)!r}: {exc.strerror or exc}") from exc


RUN_FILE = "run.json"


LOCK_FILE = ".lock"


class RunLock:
    """The exclusive lock on a run directory, held while a run works in it.

    Two processes (or two calls in one process) never run the same run's nodes at once: the second
    gets a one-line :class:`UsageError`. The lock is the system's lock on ``.lock`` in the directory
    (``flock`` on POSIX, ``LockFileEx`` on Windows, through filelock's ``lock_descriptor``), so the
    system releases it when the process dies, and a killed run never leaves a stale lock.

    The file is opened here, never through a link (``O_NOFOLLOW``) and never truncated, and only the
    open descriptor is handed to filelock: its ``FileLock`` opens the path itself, and in older
    releases (3.12 among them) with ``O_TRUNC``, following links, so a ``.lock`` planted as a link
    would empty its target.
    """

    def __init__(self, run_dir: Path) -> None:
        from filelock import lock_descriptor

        self.fd: int | None = None
        try:
            # Taking the lock needs a file we may write; this is also the check that we may write here.
            fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with tempfile.TemporaryFile(dir=run_dir):
                pass
        except OSError as exc:
            raise UsageError(f"cannot write to run directory {str(run_dir)!r}: {exc.strerror or exc}") from None
        try:
            locked = lock_descriptor(fd, blocking=False)
        except OSError as exc:  # a file system without locks
            os.close(fd)
            raise UsageError(f"cannot lock run directory {str(run_dir)!r}: {exc.strerror or exc}") from None
        if not locked:
            os.close(fd)
            raise UsageError(f"run directory {str(run_dir)!r} is in use by another strokegraph run; wait until it ends")
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None
