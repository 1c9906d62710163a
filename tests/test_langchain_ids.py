"""langchain:<provider>:<model> ids: what is checked before anything runs, the prompt-only fallback,
and the command line of the issue ("Done when") against loopback Ollama and Anthropic servers."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("langchain", reason="needs the langchain extra (pip install 'strokegraph[langchain]')")

from conftest import GOOD, PROMPT  # noqa: E402

from strokegraph import registry  # noqa: E402
from strokegraph.app.cli import main  # noqa: E402
from strokegraph.app.runner import generate  # noqa: E402
from strokegraph.errors import UsageError  # noqa: E402
from strokegraph.testing import anthropic_server, ollama_server  # noqa: E402
from strokegraph.testing.openai_server import FakeOpenAI, chat_reply  # noqa: E402
from strokegraph.tools.langchain import PROVIDERS  # noqa: E402
from strokegraph.tools.langchain._providers import Settings  # noqa: E402

KEY = "sk-ant-test-7d2a-never-stored"
ROOT = Path(__file__).resolve().parent.parent


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


needs_ollama_and_anthropic = pytest.mark.skipif(
    not _installed("langchain_ollama", "langchain_anthropic"),
    reason="needs langchain-ollama and langchain-anthropic "
    "(pip install 'strokegraph[langchain-ollama,langchain-anthropic]')",
)
needs_openai = pytest.mark.skipif(
    not _installed("langchain_openai"), reason="needs langchain-openai (pip install 'strokegraph[langchain-openai]')"
)


pytestmark = pytest.mark.usefixtures("no_ambient_provider_env")


def test_the_ids_take_a_provider_and_a_model_that_may_hold_colons():
    assert registry.parse_id("critic", "langchain:ollama:qwen2.5vl:7b") == ("langchain", "ollama:qwen2.5vl:7b")
    assert registry.capabilities("critic", "langchain:anthropic:claude-sonnet-4-5").reads == {"sketch", "natural"}
    assert "langchain:<model>" in registry.known_ids("planner")


@pytest.mark.parametrize(
    ("backend_id", "settings", "message"),
    [
        ("langchain:antropic:claude-sonnet-4-5", {}, "names no known provider; did you mean 'anthropic'?"),
        ("langchain:anthropic", {}, "names no model; use langchain:anthropic:<model>"),
        ("langchain:ollama: ", {}, "names no model"),
        ("langchain:anthropic:claude-sonnet-4-5", {"api_key": "sk-x"}, "unknown setting(s) 'api_key'"),
        ("langchain:ollama:qwen2.5", {"temperature": 9}, "temperature must be a number from 0 to 2"),
        ("langchain:ollama:qwen2.5", {"max_retries": -1}, "max_retries must be a whole number from 0 to 10"),
        ("langchain:ollama:qwen2.5", {"base_url": "ftp://u:pw@h"}, "'ftp://***@h' is not an http:// or https://"),
        ("langchain:ollama:qwen2.5", {"structured_output": "xml"}, "structured_output must be one of 'auto'"),
        ("langchain:ollama:qwen2.5", {"price_input_per_mtok": 1.0}, "set both price_input_per_mtok"),
    ],
)
def test_bad_ids_and_settings_fail_before_anything_is_built(backend_id, settings, message):
    with pytest.raises(UsageError) as caught:
        registry.check("planner", backend_id, settings)
    assert message in str(caught.value)


def test_a_setting_the_providers_class_does_not_take_fails_before_anything_is_built(monkeypatch):
    # A provider whose class takes no base_url: the entry as shipped, with that setting taken away.
    shipped = PROVIDERS["anthropic"]
    monkeypatch.setitem(PROVIDERS, "anthropic", dataclasses.replace(shipped, settings=shipped.settings - {"base_url"}))
    with pytest.raises(UsageError) as caught:
        registry.check("planner", "langchain:anthropic:claude-sonnet-4-5", {"base_url": "http://h"})
    assert str(caught.value) == (
        "langchain:anthropic takes no 'base_url' setting; its settings: max_retries, max_tokens, temperature, timeout"
    )


def test_a_missing_provider_package_names_its_pip_line(monkeypatch):
    # A provider whose package is not installed: the entry as shipped, with a module no one has.
    gone = dataclasses.replace(PROVIDERS["anthropic"], module="strokegraph_test_no_such_module")
    monkeypatch.setitem(PROVIDERS, "anthropic", gone)
    with pytest.raises(UsageError) as caught:
        registry.check("critic", "langchain:anthropic:claude-sonnet-4-5")
    assert str(caught.value) == (
        "langchain:anthropic needs langchain-anthropic (not installed); "
        "run: pip install 'strokegraph[langchain-anthropic]'"
    )


def test_the_command_line_says_which_package_is_missing_in_one_line(monkeypatch, tmp_path, capsys):
    gone = dataclasses.replace(PROVIDERS["ollama"], module="strokegraph_test_no_such_module")
    monkeypatch.setitem(PROVIDERS, "ollama", gone)
    out = tmp_path / "r"
    assert main(["generate", PROMPT, "--planner", "langchain:ollama:qwen2.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("run: pip install 'strokegraph[langchain-ollama]'") and "\n" not in err
    assert "Traceback" not in err and not out.exists()


@needs_ollama_and_anthropic
def test_a_missing_key_fails_before_anything_is_sent(tmp_path):
    with anthropic_server.FakeAnthropic() as fake:
        with pytest.raises(UsageError, match="langchain:anthropic needs a key: set ANTHROPIC_API_KEY"):
            generate(PROMPT, out=tmp_path / "r", critic="langchain:anthropic:claude-sonnet-4-5")
        assert fake.requests == [] and not (tmp_path / "r").exists()


@pytest.mark.skipif(
    not _installed("langchain_google_genai"),
    reason="needs langchain-google-genai (pip install 'strokegraph[langchain-google-genai]')",
)
def test_gemini_takes_its_endpoint_from_its_variable_and_a_placeholder_key_for_a_base_url(monkeypatch):
    from strokegraph.testing import gemini_server

    planner = "langchain:google_genai:gemini-2.5-flash"
    with gemini_server.FakeGemini(fallback=gemini_server.any_prompt_replies()) as fake:
        registry.build("planner", planner, base_url=fake.url).plan(PROMPT)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        scene, _ = registry.build("planner", planner, structured_output="function_calling").plan(PROMPT)
    assert [e.noun for e in scene.entities] == ["cat", "kite"]
    sent = fake.sent("generateContent")
    assert [r.headers["x-goog-api-key"] for r in sent] == ["not-needed", KEY]
    assert sent[1].json["toolConfig"]["functionCallingConfig"] == {
        "mode": "ANY",
        "allowedFunctionNames": ["PlannerReply"],
    }


@needs_openai
def test_prompt_only_json_for_a_model_without_structured_output(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI() as fake:
        fake.script("chat/completions", chat_reply("```json\n" + json.dumps(GOOD) + "\n```"))
        planner = registry.build(
            "planner", "langchain:openai:some-local-model", base_url=fake.url, structured_output="prompt"
        )
        scene, _ = planner.plan(PROMPT)
    assert [e.noun for e in scene.entities] == ["cat", "kite"]
    body = fake.sent("chat/completions")[0].json
    assert "response_format" not in body and "tools" not in body
    assert '"title": "PlannerReply"' in body["messages"][-1]["content"][0]["text"]


@needs_openai
def test_the_cost_comes_from_the_raw_reply_and_the_prices(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    prices = {"price_input_per_mtok": 2.0, "price_output_per_mtok": 8.0}
    with FakeOpenAI() as fake:
        fake.script("chat/completions", chat_reply(json.dumps(GOOD), prompt_tokens=1000, completion_tokens=500))
        result = generate(
            PROMPT,
            out=tmp_path / "r",
            planner="langchain:openai:gpt-4.1-mini",
            settings={"planner": {"base_url": fake.url, **prices}},
        )
    used = result.trajectory[0].usage
    assert used is not None and (used.prompt_tokens, used.completion_tokens) == (1000, 500)
    assert used.cost_usd == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)


def _servers():
    return (
        ollama_server.FakeOllama(fallback=ollama_server.any_prompt_replies()),
        anthropic_server.FakeAnthropic(fallback=anthropic_server.any_prompt_replies()),
    )


def _check_structured_paths(ollama, anthropic, out: Path) -> None:
    (plan,) = ollama.sent("api/chat")
    assert plan.json["format"]["title"] == "PlannerReply"
    critiques = anthropic.sent("v1/messages")
    assert critiques and all(r.json["tool_choice"] == {"type": "tool", "name": "CriticReply"} for r in critiques)
    assert all(any(b["type"] == "image" for b in r.json["messages"][0]["content"]) for r in critiques)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and not [p for p in files if KEY.encode() in p.read_bytes()]


@needs_ollama_and_anthropic
def test_the_issue_command_runs_with_endpoints_from_the_environment(tmp_path):
    ollama, anthropic = _servers()
    with ollama, anthropic:
        env = {
            **os.environ,
            "OLLAMA_HOST": ollama.url,
            "ANTHROPIC_BASE_URL": anthropic.url,
            "ANTHROPIC_API_KEY": KEY,
        }
        out = tmp_path / "run"
        command = [
            sys.executable,
            "-m",
            "strokegraph",
            "generate",
            "two red apples to the left of a blue cup",
            "--planner",
            "langchain:ollama:qwen2.5",
            "--critic",
            "langchain:anthropic:claude-sonnet-4-5",
            "--out",
            str(out),
        ]
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "passed" in done.stdout
    _check_structured_paths(ollama, anthropic, out)
    recorded = json.loads((out / "run.json").read_text())
    assert recorded["backends"]["planner"] == "langchain:ollama:qwen2.5"


@needs_ollama_and_anthropic
def test_the_issue_command_runs_with_endpoints_from_a_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    ollama, anthropic = _servers()
    with ollama, anthropic:
        config = tmp_path / "hosted.toml"
        config.write_text(
            f'[planner]\nid = "langchain:ollama:qwen2.5"\nbase_url = "{ollama.url}"\ntemperature = 0.0\n\n'
            f'[critic]\nid = "langchain:anthropic:claude-sonnet-4-5"\nbase_url = "{anthropic.url}"\nmax_tokens = 2048\n'
        )
        out = tmp_path / "run"
        prompt = "two red apples to the left of a blue cup"
        code = main(["generate", prompt, "--config", str(config), "--out", str(out)])
    assert code == 0
    _check_structured_paths(ollama, anthropic, out)
    assert anthropic.sent("v1/messages")[0].json["max_tokens"] == 2048
    assert ollama.sent("api/chat")[0].json["options"]["temperature"] == 0.0


@needs_ollama_and_anthropic
def test_resume_never_takes_the_endpoint_from_run_json(tmp_path, monkeypatch):
    """The critic's base_url of the first run is recorded, but a resume that names the critic again
    without one goes where the environment says, never to the recorded server."""
    from strokegraph.app.runner import resume
    from strokegraph.errors import RunError

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    critic = "langchain:anthropic:claude-sonnet-4-5"
    recorded, elsewhere = (anthropic_server.FakeAnthropic(fallback=anthropic_server.any_prompt_replies()) for _ in "ab")
    with recorded, elsewhere:
        recorded.script("v1/messages", anthropic_server.error_reply(400, "scripted failure", "invalid_request_error"))
        with pytest.raises(RunError, match="langchain:anthropic:claude-sonnet-4-5: 400"):
            generate(PROMPT, out=tmp_path / "r", critic=critic, settings={"critic": {"base_url": recorded.url}})
        run = json.loads((tmp_path / "r" / "run.json").read_text())
        assert run["settings"]["critic"] == {"base_url": recorded.url}
        assert KEY not in (tmp_path / "r" / "run.json").read_text()
        monkeypatch.setenv("ANTHROPIC_BASE_URL", elsewhere.url)
        result = resume(tmp_path / "r", critic=critic)
    assert result.final_image.is_file()
    assert len(recorded.requests) == 1 and elsewhere.requests


needs_mistral = pytest.mark.skipif(
    not _installed("langchain_mistralai"),
    reason="needs langchain-mistralai (pip install 'strokegraph[langchain-mistralai]')",
)
MISTRAL = "langchain:mistralai:mistral-medium-latest"


@needs_mistral
def test_mistral_needs_its_key_even_with_a_base_url(tmp_path):
    # ChatMistralAI starts without a key but would send "Bearer None": no placeholder for it.
    with FakeOpenAI() as fake:
        with pytest.raises(UsageError, match="langchain:mistralai needs a key: set MISTRAL_API_KEY"):
            generate(PROMPT, out=tmp_path / "r", planner=MISTRAL, settings={"planner": {"base_url": fake.url}})
        assert fake.requests == [] and not (tmp_path / "r").exists()


@needs_mistral
def test_mistral_takes_its_endpoint_from_mistral_base_url(monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    with FakeOpenAI() as fake:
        monkeypatch.setenv("MISTRAL_BASE_URL", fake.url)
        fake.script("chat/completions", chat_reply(json.dumps(GOOD)))
        scene, _ = registry.build("planner", MISTRAL).plan(PROMPT)
        (sent,) = fake.sent("chat/completions")
    assert [e.noun for e in scene.entities] == ["cat", "kite"]
    assert sent.headers["authorization"] == f"Bearer {KEY}"


@needs_mistral
@pytest.mark.parametrize(("settings", "named"), [({"temperature": 1.5}, "temperature"), ({"timeout": 2.5}, "timeout")])
def test_what_mistrals_class_refuses_is_one_line_before_anything_is_sent(settings, named, monkeypatch):
    # strokegraph takes a temperature to 2 and any timeout; ChatMistralAI only 0 to 1 and whole seconds.
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    with FakeOpenAI() as fake:
        with pytest.raises(UsageError) as caught:
            registry.build("planner", MISTRAL, base_url=fake.url, **settings)
        assert fake.requests == []
    message = str(caught.value)
    assert message.startswith(f"{MISTRAL}: cannot build the chat model") and named in message and "\n" not in message


def test_without_langchain_the_pip_line_names_the_providers_extra(monkeypatch):
    # One pip line that brings everything the id needs: the provider's extra includes langchain.
    import sys

    monkeypatch.setitem(sys.modules, "langchain", None)  # what find_spec meets where it is not installed
    gone = dataclasses.replace(PROVIDERS["ollama"], module="strokegraph_test_no_such_module")
    monkeypatch.setitem(PROVIDERS, "ollama", gone)
    with pytest.raises(UsageError) as caught:
        registry.check("planner", "langchain:ollama:qwen2.5")
    assert str(caught.value).endswith("run: pip install 'strokegraph[langchain-ollama]'")
    # With the provider's package there, what is missing is langchain itself.
    monkeypatch.setitem(PROVIDERS, "ollama", dataclasses.replace(gone, module="json"))
    with pytest.raises(UsageError) as caught:
        registry.check("planner", "langchain:ollama:qwen2.5")
    assert str(caught.value).endswith("run: pip install 'strokegraph[langchain]'")


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503])
def test_the_providers_strokegraph_retries_retry_what_every_backend_retries(status):
    # Ollama's and Mistral's classes leave these to strokegraph: the same statuses as every backend's.
    import httpx

    from strokegraph.errors import transient_status

    assert transient_status(status)
    request = httpx.Request("POST", "http://127.0.0.1/")
    failed = httpx.HTTPStatusError("x", request=request, response=httpx.Response(status, request=request))
    assert PROVIDERS["mistralai"].retry_on(Settings())(failed)
    if importlib.util.find_spec("ollama") is not None:
        from ollama import ResponseError

        assert PROVIDERS["ollama"].retry_on(Settings())(ResponseError("x", status))
    assert not PROVIDERS["mistralai"].retry_on(Settings())(
        httpx.HTTPStatusError("x", request=request, response=httpx.Response(400, request=request))
    )
