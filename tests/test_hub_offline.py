"""A model named by its hub id while the Hub cannot be reached: from the cache at once, or one line saying why not.

The end-to-end cases run strokegraph in a fresh interpreter, since huggingface_hub reads
``HF_ENDPOINT`` and ``HF_HUB_CACHE`` when it is imported: the endpoint is a loopback port nothing
listens on, the cache a folder laid out as the Hub's cache, holding the tiny models the tests build.
Nothing goes further than that port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")

from strokegraph.tools import _hub  # noqa: E402

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _cache_with(cache: Path, repo: str, folder: Path) -> None:
    """Lay ``folder`` out in ``cache`` as the Hub's cache holds the snapshot of ``repo`` at main."""
    entry = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, entry / "snapshots" / REVISION)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(REVISION)


def _run(code: str, cache: Path, port: int, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env |= {
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    # A bound on the wait, not a speed check: the old way retried every file for minutes.
    return subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=240, check=False
    )


LOAD = "import sys; from strokegraph import registry; registry.build(sys.argv[1], sys.argv[2]); print('loaded')"


@pytest.mark.slow
def test_a_cached_detector_loads_from_the_cache_when_the_hub_is_out_of_reach(owl_dir, tmp_path, closed_port):
    _cache_with(tmp_path / "cache", "tiny/owl", owl_dir)
    done = _run(LOAD, tmp_path / "cache", closed_port, "critic", "transformers-detect:tiny/owl")
    assert done.returncode == 0 and done.stdout.strip() == "loaded", done.stderr[-2000:]
    assert "Retrying" not in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
def test_a_cached_diffusers_model_loads_from_the_cache_when_the_hub_is_out_of_reach(tmp_path, closed_port):
    pytest.importorskip("diffusers")
    from tiny_sd import save_tiny_sd

    _cache_with(tmp_path / "cache", "tiny/sd", save_tiny_sd(tmp_path / "sd"))
    done = _run(LOAD, tmp_path / "cache", closed_port, "drafter", "diffusers:tiny/sd")
    assert done.returncode == 0 and done.stdout.strip() == "loaded", done.stderr[-2000:]
    assert "Retrying" not in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
def test_a_model_that_is_not_cached_fails_in_one_line_saying_the_hub_is_out_of_reach(tmp_path, closed_port):
    (tmp_path / "cache").mkdir()
    cli = "import sys; from strokegraph.app.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["generate", "a cat", "--critic", "transformers-detect:tiny/absent", "--out", str(tmp_path / "run"), "-q"]
    done = _run(cli, tmp_path / "cache", closed_port, *args)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "cannot load processor 'tiny/absent'" in lines[0]
    assert "cannot be reached" in lines[0] and "only the local cache was read" in lines[0]


# ---------------------------------------------------------------------------------------------
# What counts as out of reach (the request itself stubbed: no HTTP here)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def answer(monkeypatch):
    """Make the Hub's model_info answer with ``answer(value)``: an exception to raise, or None."""
    _hub.forget()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    calls: list[str] = []
    reply: list[BaseException | None] = [None]

    def model_info(repo_id, *, timeout=None):
        calls.append(repo_id)
        if reply[0] is not None:
            raise reply[0]

    monkeypatch.setattr(huggingface_hub, "model_info", model_info)

    def set_reply(value: BaseException | None) -> list[str]:
        reply[0] = value
        _hub.forget()
        return calls

    yield set_reply
    _hub.forget()


def _http_error(status: int) -> Exception:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx2.Request("GET", "http://hub.test/api/models/x")
    return HfHubHTTPError(f"{status}", response=httpx2.Response(status, request=request))


def test_errors_that_mean_out_of_reach(answer):
    answer(ConnectionError("[Errno 111] Connection refused"))
    assert _hub.unreachable("a/b") == "[Errno 111] Connection refused"
    answer(TimeoutError())
    assert _hub.unreachable("a/b") == "TimeoutError"
    answer(_http_error(503))
    assert _hub.unreachable("a/b") == "it answered 503"


def test_answers_that_mean_the_hub_is_there(answer):
    answer(None)
    assert _hub.unreachable("a/b") is None
    for status in (401, 404):  # gated or missing: the load says so, as it would online
        answer(_http_error(status))
        assert _hub.unreachable("a/b") is None, status


def test_one_answer_serves_the_loads_that_follow_and_offline_mode_asks_nothing(answer, monkeypatch):
    calls = answer(ConnectionError("down"))
    assert _hub.unreachable("a/b") == _hub.unreachable("c/d") == "down"
    assert calls == ["a/b"]  # the processor, the model and the next backend do not ask again
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    _hub.forget()
    assert _hub.unreachable("e/f") is None and calls == ["a/b"]  # the libraries read only the cache
