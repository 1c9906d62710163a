"""langchain:<provider>:<model> ids with each provider's real LangChain class against a loopback
server speaking its protocol: ChatOpenAI (OpenAI chat completions), ChatOllama (Ollama's /api/chat),
ChatAnthropic (the Messages API), ChatGoogleGenerativeAI (the Gemini API's generateContent, on
``gemini_server.FakeGemini``), ChatMistralAI (Mistral's chat API, OpenAI's chat completions:
``openai_server.FakeOpenAI`` serves it) and ChatBedrockConverse (Bedrock's Converse API, on
``bedrock_server.FakeBedrock``). Each test checks that the provider's structured path was used (a
JSON schema in the request, Ollama's ``format``, Gemini's ``responseJsonSchema``, a forced tool
call), that the critic's request carried the image, that a failure is retried (``max_retries``
times, not fewer) and an invalid reply re-asked once, and that the key never reaches the run
directory."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain", reason="needs the langchain extra (pip install 'strokegraph[langchain]')")

from conftest import GOOD, PROMPT  # noqa: E402

from strokegraph import registry  # noqa: E402
from strokegraph.agents.chat import PlannerReply  # noqa: E402
from strokegraph.app.runner import generate  # noqa: E402
from strokegraph.errors import RunError  # noqa: E402
from strokegraph.testing import (  # noqa: E402
    anthropic_server,
    bedrock_server,
    gemini_server,
    ollama_server,
    openai_server,
)
from strokegraph.testing.openai_server import Reply, Request  # noqa: E402

KEY = "sk-test-4f1c9e-never-stored"


@dataclass(frozen=True)
class Case:
    """One provider: its id, its server, how it answers, and how its structured path shows in a request."""

    id: str
    module: str
    package: str
    key_env: str
    server: Callable[..., Any]
    endpoint: str
    planner_reply: Callable[[dict], Reply]
    critic_reply: Callable[[dict], Reply]
    error: Callable[[int], Reply]
    structured: Callable[[dict], Any]
    """What in a planner request shows the structured path (the schema's or tool's name)."""
    image: Callable[[dict], bool]
    """Whether a request carries a PNG image."""
    prompt_tokens: int
    any_prompt: Callable[[], dict[str, Any]]
    """Fallback replies that answer any planner and critic request."""


def _openai_image(body: dict) -> bool:
    parts = [p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]]
    return any(
        p.get("type") == "image_url" and p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts
    )


def _anthropic_image(body: dict) -> bool:
    parts = [p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]]
    return any(p.get("type") == "image" and p["source"]["media_type"] == "image/png" for p in parts)


def _gemini_image(body: dict) -> bool:
    inline = [p["inlineData"] for c in body["contents"] for p in c["parts"] if "inlineData" in p]
    # google-genai 3.6 sends the part's mime type as "mime_type"; the API's JSON name is "mimeType".
    return any(i.get("mimeType", i.get("mime_type")) == "image/png" and i["data"] for i in inline)


def _gemini_structured(body: dict) -> Any:
    config = body["generationConfig"]
    return (config["responseMimeType"], config["responseJsonSchema"]["title"])


def _bedrock_image(body: dict) -> bool:
    blocks = [b for m in body["messages"] for b in m["content"]]
    return any(
        b.get("image", {}).get("format") == "png"
        and base64.b64decode(b["image"]["source"]["bytes"]).startswith(b"\x89PNG")
        for b in blocks
    )


def _bedrock_tool_choice(body: dict) -> tuple[str, str | None]:
    (kind, choice), *_ = body["toolConfig"]["toolChoice"].items()
    return kind, choice.get("name")


BEDROCK_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"


CASES = [
    Case(
        "langchain:openai:gpt-4.1-mini",
        "langchain_openai",
        "langchain-openai",
        "OPENAI_API_KEY",
        openai_server.FakeOpenAI,
        "chat/completions",
        lambda reply: openai_server.chat_reply(json.dumps(reply)),
        lambda reply: openai_server.chat_reply(json.dumps(reply)),
        openai_server.error_reply,
        lambda body: (body["response_format"]["type"], body["response_format"]["json_schema"]["name"]),
        _openai_image,
        11,
        openai_server.any_prompt_replies,
    ),
    Case(
        "langchain:ollama:qwen2.5vl:7b",
        "langchain_ollama",
        "langchain-ollama",
        "OLLAMA_API_KEY",
        ollama_server.FakeOllama,
        "api/chat",
        lambda reply: ollama_server.chat_reply(json.dumps(reply)),
        lambda reply: ollama_server.chat_reply(json.dumps(reply)),
        ollama_server.error_reply,
        lambda body: ("format", body["format"]["title"]),
        lambda body: any(m.get("images") for m in body["messages"]),
        13,
        ollama_server.any_prompt_replies,
    ),
    Case(
        "langchain:anthropic:claude-sonnet-4-5",
        "langchain_anthropic",
        "langchain-anthropic",
        "ANTHROPIC_API_KEY",
        anthropic_server.FakeAnthropic,
        "v1/messages",
        lambda reply: anthropic_server.tool_reply("PlannerReply", reply),
        lambda reply: anthropic_server.tool_reply("CriticReply", reply),
        anthropic_server.error_reply,
        lambda body: (body["tool_choice"]["type"], body["tool_choice"]["name"]),
        _anthropic_image,
        17,
        anthropic_server.any_prompt_replies,
    ),
    Case(
        "langchain:google_genai:gemini-2.5-flash",
        "langchain_google_genai",
        "langchain-google-genai",
        "GOOGLE_API_KEY",
        gemini_server.FakeGemini,
        "generateContent",
        lambda reply: gemini_server.chat_reply(json.dumps(reply)),
        lambda reply: gemini_server.chat_reply(json.dumps(reply)),
        gemini_server.error_reply,
        _gemini_structured,
        _gemini_image,
        19,
        gemini_server.any_prompt_replies,
    ),
    Case(
        f"langchain:bedrock_converse:{BEDROCK_MODEL}",
        "langchain_aws",
        "langchain-aws",
        "AWS_ACCESS_KEY_ID",  # SigV4 sends it in the authorization header; the secret key never leaves
        bedrock_server.FakeBedrock,
        "converse",
        lambda reply: bedrock_server.tool_reply("PlannerReply", reply),
        lambda reply: bedrock_server.tool_reply("CriticReply", reply),
        bedrock_server.error_reply,
        _bedrock_tool_choice,
        _bedrock_image,
        19,
        bedrock_server.any_prompt_replies,
    ),
]


def _mistral_structured(body: dict) -> tuple[str, str, bool]:
    schema = body["response_format"]
    return schema["type"], schema["json_schema"]["name"], schema["json_schema"]["strict"]


# Mistral's chat API is OpenAI's chat completions (path, body, image_url parts, usage), so
# FakeOpenAI speaks it; ChatMistralAI reads an error's status, not its body, whose shape differs.
# Mistral's custom structured output is a strict JSON schema.
CASES.append(
    dataclasses.replace(
        CASES[0],
        id="langchain:mistralai:mistral-medium-latest",
        module="langchain_mistralai",
        package="langchain-mistralai",
        key_env="MISTRAL_API_KEY",
        structured=_mistral_structured,
    )
)
EXPECTED: dict[str, tuple[Any, ...]] = {
    "openai": ("json_schema", "PlannerReply"),
    "ollama": ("format", "PlannerReply"),
    "anthropic": ("tool", "PlannerReply"),
    "google_genai": ("application/json", "PlannerReply"),
    "bedrock_converse": ("tool", "PlannerReply"),
    "mistralai": ("json_schema", "PlannerReply", True),
}


def _param(case: Case) -> Any:
    missing = importlib.util.find_spec(case.module) is None
    why = f"needs {case.package} (pip install 'strokegraph[{case.package}]')"
    return pytest.param(case, id=case.id.split(":")[1], marks=pytest.mark.skipif(missing, reason=why))


PARAMS = [_param(case) for case in CASES]


pytestmark = pytest.mark.usefixtures("no_ambient_provider_env")


@pytest.fixture(autouse=True)
def aws_test_signing(monkeypatch):
    """botocore signs each Bedrock request with a secret key for a region: test ones, and nothing
    of the machine's AWS setup (profiles, config files, endpoints, retry modes, bearer tokens)."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-never-sent")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _fallback(case: Case) -> dict[str, Callable[[Request], Reply]]:
    """After the scripted replies: the critic finds nothing wrong."""
    return {case.endpoint: lambda request: case.critic_reply({"violations": [], "detections": []})}


def _run(case: Case, fake: Any, out: Path) -> Any:
    settings = {"base_url": fake.url, "max_retries": 2}
    return generate(
        PROMPT,
        out=out,
        planner=case.id,
        critic=case.id,
        settings={"planner": settings, "critic": settings},
    )


@pytest.mark.parametrize("case", PARAMS)
def test_a_run_uses_the_providers_structured_output_and_sends_the_image(case, tmp_path, monkeypatch):
    monkeypatch.setenv(case.key_env, KEY)
    with case.server(fallback=_fallback(case)) as fake:
        fake.script(case.endpoint, case.planner_reply(GOOD))
        result = _run(case, fake, tmp_path / "r")
    assert [e.noun for e in result.scene.entities] == ["cat", "kite"]
    planner_request, *critic_requests = fake.sent(case.endpoint)
    assert case.structured(planner_request.json) == EXPECTED[case.id.split(":")[1]]
    assert critic_requests and all(case.image(r.json) for r in critic_requests)
    assert not case.image(planner_request.json)
    plan = result.trajectory[0]
    assert plan.stage == "plan" and plan.backend == case.id
    assert plan.usage is not None and plan.usage.prompt_tokens == case.prompt_tokens


@pytest.mark.parametrize("case", PARAMS)
def test_a_server_error_is_retried(case, tmp_path, monkeypatch):
    monkeypatch.setenv(case.key_env, KEY)
    with case.server(fallback=_fallback(case)) as fake:
        fake.script(case.endpoint, case.error(500), case.planner_reply(GOOD))
        result = _run(case, fake, tmp_path / "r")
    assert result.scene.entities
    first, second = fake.sent(case.endpoint)[:2]
    assert first.raw == second.raw  # the same request, sent again


@pytest.mark.parametrize("case", PARAMS)
def test_max_retries_counts_the_retries_after_the_first_request(case, monkeypatch):
    # Google's class takes its SDK's count of attempts, the first included, under the same name.
    monkeypatch.setenv(case.key_env, KEY)
    with case.server() as fake:
        fake.script(case.endpoint, case.error(503), case.error(503), case.planner_reply(GOOD))
        chat = registry.build("planner", case.id, base_url=fake.url, max_retries=1).model
        with pytest.raises(RunError) as caught:
            chat.complete([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], schema=PlannerReply)
    assert str(caught.value).startswith(f"{case.id}: 503") and caught.value.transient
    assert len(fake.sent(case.endpoint)) == 2


@pytest.mark.parametrize("case", PARAMS)
def test_a_failure_past_the_retries_is_one_line_naming_the_backend(case, tmp_path, monkeypatch):
    monkeypatch.setenv(case.key_env, KEY)
    with case.server() as fake:
        fake.script(case.endpoint, case.error(400, f"bad request, key {KEY}"))
        chat = registry.build("planner", case.id, base_url=fake.url, max_retries=0).model
        with pytest.raises(RunError) as caught:
            chat.complete([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], schema=PlannerReply)
    message = str(caught.value)
    assert message.startswith(f"{case.id}: 400") and "\n" not in message
    assert KEY not in message and not caught.value.transient


@pytest.mark.parametrize("case", PARAMS)
def test_an_invalid_reply_is_re_asked_once(case, tmp_path, monkeypatch):
    monkeypatch.setenv(case.key_env, KEY)
    invalid = {"scene": {"entities": [], "relations": [], "constraints": []}}  # no plan
    with case.server(fallback=_fallback(case)) as fake:
        fake.script(case.endpoint, case.planner_reply(invalid), case.planner_reply(GOOD))
        result = _run(case, fake, tmp_path / "r")
    assert [e.noun for e in result.scene.entities] == ["cat", "kite"]
    re_ask = fake.sent(case.endpoint)[1]
    assert "That answer was not valid" in re_ask.raw.decode()
    assert case.structured(re_ask.json) == EXPECTED[case.id.split(":")[1]]


@pytest.mark.parametrize("case", PARAMS)
def test_the_key_is_sent_but_never_reaches_the_run_directory(case, tmp_path, monkeypatch):
    monkeypatch.setenv(case.key_env, KEY)
    with case.server(fallback=_fallback(case)) as fake:
        fake.script(case.endpoint, case.planner_reply(GOOD))
        _run(case, fake, tmp_path / "r")
    assert any(KEY in value for value in fake.sent(case.endpoint)[0].headers.values())
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    assert files and not [p for p in files if KEY.encode() in p.read_bytes()]
    recorded = json.loads((tmp_path / "r" / "run.json").read_text())
    assert recorded["backends"]["planner"] == case.id


@pytest.mark.parametrize("case", PARAMS)
def test_acomplete_asks_the_same_way_on_the_event_loop(case, monkeypatch):
    monkeypatch.setenv(case.key_env, KEY)
    with case.server() as fake:
        fake.script(case.endpoint, case.planner_reply(GOOD))
        chat = registry.build("planner", case.id, base_url=fake.url).model
        text = asyncio.run(
            chat.acomplete([{"role": "user", "content": [{"type": "text", "text": "plan"}]}], schema=PlannerReply)
        )
    assert PlannerReply.model_validate_json(text).plan.steps[0].entity_ids == ["e1"]
    assert case.structured(fake.sent(case.endpoint)[0].json) == EXPECTED[case.id.split(":")[1]]


def _conformance_cases() -> list[Any]:
    from strokegraph.testing import conformance

    return [
        pytest.param(case, role, check, id=f"{case.id.split(':')[1]}-{role}-{check}", marks=param.marks)
        for param in PARAMS
        for case in param.values
        for role in ("planner", "critic")
        for check in conformance.checks(role)
    ]


@pytest.mark.parametrize(("case", "role", "check"), _conformance_cases())
def test_the_langchain_backends_conform_against_loopback_servers(case, role, check, monkeypatch):
    from strokegraph.testing import conformance

    monkeypatch.setenv(case.key_env, KEY)
    with case.server(fallback=case.any_prompt()) as fake:
        backend = registry.build(role, case.id, base_url=fake.url, max_retries=0)
        conformance.run_check(role, check, backend)


MISTRAL = next(c for c in CASES if c.id.startswith("langchain:mistralai:"))


@pytest.mark.parametrize("status", [429, 500])
@pytest.mark.parametrize("case", [_param(MISTRAL)])
def test_mistral_a_rate_limit_or_server_error_is_retried_by_the_backend_itself(case, status, monkeypatch):
    # ChatMistralAI retries connection errors only; the run tests above pass on the graph's node
    # retry too, so this calls the backend alone.
    monkeypatch.setenv(case.key_env, KEY)
    with case.server() as fake:
        fake.script(case.endpoint, case.error(status), case.planner_reply(GOOD))
        chat = registry.build("planner", case.id, base_url=fake.url, max_retries=1).model
        text = chat.complete([{"role": "user", "content": [{"type": "text", "text": "plan"}]}], schema=PlannerReply)
    assert PlannerReply.model_validate_json(text).plan.steps[0].entity_ids == ["e1"]
    assert len(fake.sent(case.endpoint)) == 2


@pytest.mark.parametrize("case", [_param(MISTRAL)])
def test_mistral_a_timeout_is_retried_max_retries_times_and_no_more(case, monkeypatch):
    # Its class's own max_retries counts attempts; strokegraph makes that one, so each retry is one request.
    monkeypatch.setenv(case.key_env, KEY)
    slow = Reply(delay=30)
    with case.server() as fake:
        fake.script(case.endpoint, slow, slow, slow, case.planner_reply(GOOD))
        chat = registry.build("planner", case.id, base_url=fake.url, timeout=1, max_retries=2).model
        with pytest.raises(RunError) as caught:
            chat.complete([{"role": "user", "content": [{"type": "text", "text": "plan"}]}], schema=PlannerReply)
        assert caught.value.transient and "Timeout" in str(caught.value)
        assert len(fake.sent(case.endpoint)) == 3 and fake.left() == {case.endpoint: 1}
