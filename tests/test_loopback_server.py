"""What every loopback API server shares (strokegraph.testing.loopback_server): the OpenAI, Ollama,
Anthropic and Gemini fakes record the requests they answered and those whose client hung up while they
waited, and every fake answers a request it has no reply for in its protocol's error shape."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse

import pytest

from strokegraph.testing.anthropic_server import FakeAnthropic
from strokegraph.testing.gemini_server import FakeGemini
from strokegraph.testing.loopback_server import LoopbackServer, Reply
from strokegraph.testing.ollama_server import FakeOllama
from strokegraph.testing.openai_server import FakeOpenAI

SERVERS = [pytest.param(cls, id=cls.__name__) for cls in (FakeOpenAI, FakeOllama, FakeAnthropic, FakeGemini)]


def _post(fake: LoopbackServer, endpoint: str) -> socket.socket:
    """A connection that has sent one JSON request for ``endpoint`` and waits for the reply."""
    url = urllib.parse.urlsplit(fake.url)
    assert url.hostname is not None and url.port is not None
    body = json.dumps({"hello": "there"}).encode()
    head = f"POST {url.path}/{endpoint} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
    connection = socket.create_connection((url.hostname, url.port), timeout=30)
    connection.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return connection


def _until(condition, event: threading.Event) -> bool:
    """Whether ``condition()`` came true, asked every 10 ms for up to 30 s (a backstop, not a limit tested)."""
    for _ in range(3000):
        if condition():
            return True
        event.wait(0.01)
    return False


@pytest.mark.parametrize("server", SERVERS)
def test_a_request_whose_client_hangs_up_during_the_delay_is_abandoned_not_answered(server):
    never = threading.Event()
    with server() as fake:
        endpoint = fake.ENDPOINTS[0]
        fake.script(endpoint, Reply(body={"late": True}, delay=60), Reply(body={"ok": True}))
        with _post(fake, endpoint):
            assert _until(lambda: fake.in_flight == 1, never)
        assert _until(lambda: fake.abandoned, never), "the hang-up was not noticed"
        with _post(fake, endpoint) as connection:
            reply = connection.recv(65536).decode()
        assert reply.startswith("HTTP/1.0 200") or reply.startswith("HTTP/1.1 200")
        assert _until(lambda: fake.answered, never)
        first, second = fake.sent(endpoint)
        assert first.json == second.json == {"hello": "there"}
        assert fake.abandoned == [first] and fake.answered == [second]
        assert _until(lambda: fake.in_flight == 0, never) and fake.most_in_flight == 1


@pytest.mark.parametrize(
    ("module", "path"),
    [
        ("openai_server", "chat/completions"),
        ("ollama_server", "api/chat"),
        ("anthropic_server", "v1/messages"),
        ("gemini_server", "v1/models/m:generateContent"),
        ("bedrock_server", "model/m/converse"),
    ],
)
def test_a_request_with_no_reply_left_is_a_418_in_the_protocols_own_error_shape(module, path):
    # So a client fails as it would on that API (its own error parsing), not on a body it cannot read.
    import importlib
    import urllib.error
    import urllib.request

    served = importlib.import_module(f"strokegraph.testing.{module}")
    server = next(v for k, v in vars(served).items() if k.startswith("Fake"))
    with server() as fake:
        url = f"{fake.url.rstrip('/')}/{path}"
        request = urllib.request.Request(url, data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request, timeout=30)
    assert failed.value.code == 418
    expected = served.error_reply(418, f"no scripted reply left for {urllib.parse.urlsplit(url).path}")
    assert json.loads(failed.value.read()) == expected.body
