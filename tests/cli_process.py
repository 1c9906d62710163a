"""The command line run as its own process, as a person runs it: for tests of what reaches the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def run_cli(
    *args: str | bytes,
    cwd: Path | None = None,
    preexec: Callable[[], object] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """``python -m strokegraph ARGS``, its output captured as bytes, its stderr in UTF-8."""
    return subprocess.run(
        [sys.executable, "-m", "strokegraph", *args],
        capture_output=True,
        timeout=timeout,
        cwd=cwd,
        preexec_fn=preexec,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
