"""OpenAI backends against hostile or broken servers: trickled and huge replies, image bombs, hangs, leaked URLs."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image
from red_apple import CHAT, IMAGE, PLAN, PROMPT, SCENE

from strokegraph.agents.drafter import DraftRequest
from strokegraph.app.runner import generate
from strokegraph.errors import RunError
from strokegraph.testing.openai_server import (
    FakeOpenAI,
    Reply,
    any_prompt_replies,
    chat_reply,
    error_reply,
    huge_reply,
    image_reply,
)
from strokegraph.tools import openai_api

pytestmark = pytest.mark.usefixtures("no_ambient_openai_env")

SECRET = "sk-test-secret"


def _planner(server, **settings):
    return openai_api.planner(CHAT, base_url=server.url, api_key=SECRET, **settings)


def _drafter(server, **settings):
    return openai_api.drafter(IMAGE, base_url=server.url, api_key=SECRET, **settings)


def _draft(drafter):
    return drafter.draft(DraftRequest(scene=SCENE, plan=PLAN, step=0, image=None, seed=0))


def _b64_reply(data: bytes) -> Reply:
    return Reply(body={"created": 0, "data": [{"b64_json": base64.b64encode(data).decode("ascii")}]})


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` (1 bit per pixel) but holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------
# A deadline for the whole request
# ---------------------------------------------------------------------------------------------


def test_a_server_that_trickles_its_reply_times_out_at_the_deadline(server):
    # Each byte comes well within the timeout, so only a deadline for the whole request ends it:
    # the reply would take 600 * 0.05 = 30 s, against a timeout of 1 s.
    padded = chat_reply("{}").body | {"padding": "x" * 600}
    server.script("chat/completions", Reply(body=padded, drip=0.05))
    with pytest.raises(RunError, match=rf"^openai:{CHAT}: timed out \(1 s per try\) \(node 'planner'\)$") as info:
        _planner(server, timeout=1, max_retries=0).plan(PROMPT)
    assert info.value.transient


@pytest.mark.slow
def test_every_try_gets_the_whole_timeout_and_the_retries_are_named(server):
    padded = chat_reply("{}").body | {"padding": "x" * 600}
    server.script("chat/completions", Reply(body=padded, drip=0.05), Reply(body=padded, drip=0.05))
    with pytest.raises(RunError, match=rf"^openai:{CHAT}: timed out \(1 s per try\) after 1 retry "):
        _planner(server, timeout=1, max_retries=1).plan(PROMPT)
    assert len(server.sent("chat/completions")) == 2


# ---------------------------------------------------------------------------------------------
# A deadline for the whole call, retries included
# ---------------------------------------------------------------------------------------------

# A reply trickled a byte every 0.05 s: 6000 bytes would take 300 s, so every try is cut.
TRICKLE = Reply(body=chat_reply("{}").body | {"padding": "x" * 6000}, drip=0.05)


def test_the_deadline_ends_a_call_across_the_client_retries(server):
    # Tries of 0.5 s with waits of at least 0.375 s between: within 1.2 s two can start, where the
    # retries alone would allow six. Counting requests, not seconds: a slow machine sends fewer.
    server.script("chat/completions", *[TRICKLE] * 6)
    with pytest.raises(RunError, match=r"the call's 1.2 s deadline ran out \(node 'planner'\)$") as info:
        _planner(server, timeout=0.5, deadline=1.2, max_retries=5).plan(PROMPT)
    assert not info.value.transient  # the graph must not start the call again
    assert 1 <= len(server.sent("chat/completions")) <= 2


def test_a_call_out_of_its_deadline_is_not_run_again_by_the_graph(server, tmp_path):
    # Without the deadline, each of the graph's 3 tries of the planner sent 6 requests: 18 in all.
    server.script("chat/completions", *[TRICKLE] * 18)
    settings = {"base_url": server.url, "api_key": SECRET, "timeout": 0.5, "deadline": 1.2, "max_retries": 5}
    with pytest.raises(RunError, match=r"deadline ran out"):
        generate(PROMPT, out=tmp_path / "run", planner=f"openai:{CHAT}", settings={"planner": settings})
    assert 1 <= len(server.sent("chat/completions")) <= 2


def test_a_wait_longer_than_the_deadline_leaves_is_not_started(server):
    limited = Reply(status=429, body=error_reply(429).body, headers={"retry-after": "30"})
    server.script("chat/completions", limited)
    with pytest.raises(RunError, match=r": 429 rate limited: .*; the call's 5 s deadline ran out") as info:
        _planner(server, deadline=5).plan(PROMPT)
    assert not info.value.transient
    assert len(server.sent("chat/completions")) == 1


# ---------------------------------------------------------------------------------------------
# Caps on what a reply may cost
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("declare_length", [True, False])
def test_a_huge_chat_reply_is_refused_at_the_cap(server, declare_length):
    server.script("chat/completions", huge_reply(64 * 2**20, declare_length=declare_length))
    with pytest.raises(RunError, match=rf"^openai:{CHAT}: the reply is larger than the 8 MiB limit; refused") as info:
        _planner(server, max_retries=0).plan(PROMPT)
    assert not info.value.transient  # the same server would send the same reply again
    assert len(server.sent("chat/completions")) == 1


def test_a_huge_image_reply_is_refused_at_the_cap(server):
    server.script("images/generations", huge_reply(100 * 2**20, declare_length=False))
    with pytest.raises(RunError, match=r"the reply is larger than the 64 MiB limit.*\(node 'drafter', step 0\)$"):
        _draft(_drafter(server))


def test_replies_are_asked_uncompressed_and_a_compressed_one_is_refused(server):
    body = gzip.compress(json.dumps(chat_reply("{}").body).encode())
    server.script("chat/completions", Reply(body=body, headers={"content-encoding": "gzip"}))
    with pytest.raises(RunError, match=r"the reply is compressed \('gzip'\) although no compression was asked for"):
        _planner(server).plan(PROMPT)
    (request,) = server.sent("chat/completions")
    assert request.headers["accept-encoding"] == "identity"


def test_an_image_that_declares_too_many_pixels_is_refused_before_decoding(server):
    # 12000 x 12000 at 1 bit per pixel: 0.1 MB as PNG, 432 MB once decoded to RGB.
    server.script("images/generations", _b64_reply(_png(Image.new("1", (12000, 12000)))))
    # PIL warns as it reads a header over 89 MP; the library leaves warnings to its caller (the CLI
    # silences this one: test_the_cli_says_an_oversized_reply_image_in_one_line).
    with pytest.warns(Image.DecompressionBombWarning):
        with pytest.raises(RunError, match=r"the reply's image is 12000x12000, over the limit of 16777216 pixels"):
            _draft(_drafter(server))


def test_a_requested_size_above_the_pixel_cap_raises_it(server):
    server.script("images/generations", _b64_reply(_png(Image.new("1", (4608, 4608)))))
    result = _draft(_drafter(server, size="4608x4608"))
    assert result.image.size == (4608, 4608)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (_png_header_only(20000, 20000), "exceeds limit"),  # PIL's own DecompressionBombError
        (b"not an image at all", "cannot identify image file"),
        (_png(Image.new("RGB", (8, 8))).replace(b"IDAT", b"IDAX"), ""),  # a broken PNG
    ],
)
def test_an_unreadable_reply_image_is_a_one_line_run_error(server, payload, why):
    server.script("images/generations", _b64_reply(payload))
    with pytest.raises(RunError, match=rf"^openai:{IMAGE}: the reply's image cannot be read: .*{why}") as info:
        _draft(_drafter(server))
    assert "\n" not in str(info.value) and not info.value.transient


def test_bad_base64_is_a_run_error(server):
    server.script("images/generations", Reply(body={"created": 0, "data": [{"b64_json": "abc"}]}))
    with pytest.raises(RunError, match=r"the reply's image cannot be read"):
        _draft(_drafter(server))


def test_only_png_jpeg_and_webp_images_are_read(server):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="GIF")
    server.script("images/generations", _b64_reply(buf.getvalue()))
    with pytest.raises(RunError, match=r"the reply's image cannot be read: cannot identify image file"):
        _draft(_drafter(server))
    server.script("images/generations", image_reply(Image.new("RGB", (8, 8), "red")))
    assert _draft(_drafter(server, size="8x8")).image.getpixel((0, 0)) == (255, 0, 0)


# ---------------------------------------------------------------------------------------------
# Cancelling calls in flight
# ---------------------------------------------------------------------------------------------


def _plan_in_thread(planner) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def plan():
        try:
            planner.plan(PROMPT)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            raised.append(exc)

    thread = threading.Thread(target=plan, daemon=True)
    thread.start()
    return thread, raised


def _wait_for_request(server, endpoint: str, count: int = 1) -> None:
    for _ in range(600):
        if len(server.sent(endpoint)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server got no request on {endpoint}")


def test_cancel_requests_ends_a_call_to_a_hung_server(server):
    server.script("chat/completions", Reply(body={}, delay=300))
    thread, raised = _plan_in_thread(_planner(server, timeout=300))
    _wait_for_request(server, "chat/completions")
    openai_api.cancel_requests()
    thread.join(60)  # a liveness bound: the hang lasts 300 s
    assert not thread.is_alive()
    (error,) = raised
    assert isinstance(error, RunError) and not error.transient
    assert str(error) == f"openai:{CHAT}: cancelled (node 'planner')"
    assert len(server.sent("chat/completions")) == 1  # the client did not retry it


def test_cancel_requests_ends_a_wait_between_retries(server):
    # A rate limit that asks to come back in 100 s: the client sleeps, which no socket can cut short.
    limited = Reply(status=429, body=error_reply(429).body, headers={"retry-after": "100"})
    server.script("chat/completions", limited)
    thread, raised = _plan_in_thread(_planner(server))
    _wait_for_request(server, "chat/completions")
    time.sleep(0.5)  # into the sleep
    openai_api.cancel_requests()
    thread.join(60)
    assert not thread.is_alive()
    assert [str(e) for e in raised] == [f"openai:{CHAT}: cancelled (node 'planner')"]


def test_a_call_after_a_cancel_runs_normally(server):
    server.script("chat/completions", Reply(body={}, delay=300))
    thread, _ = _plan_in_thread(_planner(server, timeout=300))
    _wait_for_request(server, "chat/completions")
    openai_api.cancel_requests()
    thread.join(60)
    server.script("chat/completions", any_prompt_replies()["chat/completions"])
    scene, _ = _planner(server).plan(PROMPT)
    assert [e.noun for e in scene.entities] == ["apple"]


def _strokegraph(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    # A test run in the background of a shell inherits SIGINT ignored; the child must not.
    return subprocess.Popen(
        [sys.executable, "-m", "strokegraph", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.slow
def test_ctrl_c_during_a_hung_request_exits_130_at_once_and_the_run_resumes(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    with FakeOpenAI(fallback=any_prompt_replies()) as fake:
        fake.script("chat/completions", Reply(body={}, delay=300))  # the first planner request hangs
        env["OPENAI_BASE_URL"] = fake.url
        run_dir = tmp_path / "run"
        process = _strokegraph(
            "generate", "a red cat", "--planner", "openai:m", "--out", str(run_dir), cwd=tmp_path, env=env
        )
        try:
            _wait_for_request(fake, "chat/completions")
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)  # a liveness bound: the hang lasts 300 s
        finally:
            process.kill()
        assert process.returncode == 130, stderr
        assert "strokegraph: interrupted" in stderr and "strokegraph resume" in stderr

        resumed = _strokegraph("resume", str(run_dir), "--planner", "openai:m", cwd=tmp_path, env=env)
        _, stderr = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, stderr
        assert (run_dir / "final.png").is_file()
        assert len(fake.sent("chat/completions")) == 2  # the hung request, then the resumed one


# ---------------------------------------------------------------------------------------------
# Credentials in base URLs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pass@host:8000/v1", "http://***@host:8000/v1"),
        ("https://only-a-token@host/v1?x=1", "https://***@host/v1?x=1"),
        ("http://u:p%40ss@word@host/v1", "http://***@host/v1"),
        ("http://host:8000/v1", "http://host:8000/v1"),
        ("http://host/v1/users/@me", "http://host/v1/users/@me"),
    ],
)
def test_redact_url_hides_userinfo(url, shown):
    assert openai_api.redact_url(url) == shown


def test_credentials_in_the_base_url_never_show_in_errors():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    planner = openai_api.planner(CHAT, base_url=f"http://admin:hunter2pw@127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(RunError, match=rf"cannot connect to http://\*\*\*@127.0.0.1:{port}/v1") as info:
        planner.plan(PROMPT)
    assert "hunter2pw" not in str(info.value) and "admin" not in str(info.value)


def test_a_server_that_echoes_the_credentials_does_not_leak_them(server):
    echo = lambda request: error_reply(401, f"bad credentials {request.headers['authorization']}")  # noqa: E731
    server.script("chat/completions", echo)
    url = server.url.replace("http://", "http://admin:hunter2pw@")
    with pytest.raises(RunError, match="401 authentication failed") as info:
        openai_api.planner(CHAT, base_url=url, api_key=SECRET).plan(PROMPT)
    basic = base64.b64encode(b"admin:hunter2pw").decode()
    for secret in ("hunter2pw", basic, SECRET):
        assert secret not in str(info.value)


def test_the_cli_says_an_oversized_reply_image_in_one_line(server, tmp_path, capsys, recwarn):
    # 144 MP is over PIL's own warning threshold (89 MP): PIL would print a warning (two lines of
    # stderr) before strokegraph's own refusal, which already says what is wrong.
    from strokegraph.app.cli import EXIT_RUN_ERROR, main

    server.script("images/generations", _b64_reply(_png(Image.new("1", (12000, 12000)))))
    config = tmp_path / "drafter.toml"
    endpoint = f'base_url = "{server.url}"\napi_key = "{SECRET}"\n'
    # A critic and refiner that fit the drafter's natural images; the run stops at the first draft.
    roles = {"drafter": IMAGE, "critic": CHAT, "refiner": IMAGE}
    config.write_text("".join(f'[{role}]\nid = "openai:{model}"\n{endpoint}' for role, model in roles.items()))
    out = tmp_path / "run"
    assert main(["generate", PROMPT, "--out", str(out), "--config", str(config), "-q"]) == EXIT_RUN_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "12000x12000, over the limit" in err[0], err
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
