"""Presets: every shipped set of roles parses, fits together, and builds against tiny local models or
the loopback server; --preset layers under --config and flags; the CLI keeps the libraries' noise off stderr."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from strokegraph import registry
from strokegraph.app.cli import EXIT_BUDGET, EXIT_USAGE, main
from strokegraph.app.runner import generate
from strokegraph.config import RunConfig
from strokegraph.graph import Budget
from strokegraph.presets import describe_preset, load_preset, preset_names
from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies

SHIPPED = ["anthropic", "flux-schnell-grounding-dino", "ollama", "openai", "sdxl-turbo-owlv2", "vllm-qwen2.5-vl"]
SECRET = "sk-test-preset"


def test_the_shipped_presets_are_listed():
    assert preset_names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_each_preset_names_four_roles_that_fit_and_nothing_else(name):
    preset = load_preset(name)
    ids = {role: preset.role(role).id for role in registry.ROLES if preset.role(role).id is not None}
    # Every role a run needs (a Backends field without a default) is named.
    fields = dataclasses.fields(registry.Backends)
    needed = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert needed <= set(ids), ids
    for role, backend_id in ids.items():
        registry.parse_id(role, backend_id)
    registry.check_pairing(ids)
    # A preset is roles only: run options belong to the run.
    assert preset.model_dump(exclude=set(registry.ROLES)) == RunConfig().model_dump(exclude=set(registry.ROLES))
    description = describe_preset(name)
    assert description and "\n" not in description


def test_the_cli_lists_the_presets_one_line_each(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[: len(SHIPPED)]] == SHIPPED
    assert "SDXL-Turbo draws and refines, OWLv2 detects" in lines[SHIPPED.index("sdxl-turbo-owlv2")]


def test_an_unknown_preset_is_one_line_with_the_closest_name(tmp_path, capsys):
    assert main(["generate", "a cat", "--preset", "sdxl-turbo", "--out", str(tmp_path / "r")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset 'sdxl-turbo'; did you mean 'sdxl-turbo-owlv2'?" in err[0], err


# ---------------------------------------------------------------------------------------------
# Every preset against tiny local models and the loopback server
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def openai_server(no_ambient_openai_env):
    pytest.importorskip("openai")
    with FakeOpenAI(fallback=any_prompt_replies()) as fake:
        yield fake


@pytest.fixture
def anthropic_server(monkeypatch):
    pytest.importorskip("langchain_anthropic", reason="needs pip install 'strokegraph[langchain-anthropic]'")
    from strokegraph.testing.anthropic_server import FakeAnthropic
    from strokegraph.testing.anthropic_server import any_prompt_replies as any_reply

    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)  # the langchain: ids read keys from the environment only
    with FakeAnthropic(fallback=any_reply()) as fake:
        yield fake


@pytest.fixture
def local(sd_dir, owl_dir, dino_dir, openai_server, anthropic_server):
    """``local(name)``: the preset's ids and settings, each hub id swapped for a tiny model of the same
    provider, each API endpoint for the loopback server; settings kept but for sizes and steps."""
    tiny = {"diffusers": sd_dir, "owlv2": owl_dir, "grounding-dino": dino_dir}

    def swap(name: str) -> tuple[dict, dict]:
        preset = load_preset(name)
        ids, settings = {}, {}
        for role in registry.ROLES:
            table = preset.role(role)
            if table.id is None:
                continue
            provider, model = registry.parse_id(role, table.id)
            ids[role], settings[role] = table.id, dict(table.settings)
            if provider == "diffusers":
                ids[role] = f"diffusers:{tiny['diffusers']}"
                settings[role] |= {"steps": 2}
                for key in ("width", "height"):
                    settings[role].pop(key, None)  # the tiny model's own 64 px
            elif provider == "transformers-detect":
                kind = "grounding-dino" if "grounding-dino" in model else "owlv2"
                ids[role] = f"transformers-detect:{tiny[kind]}"
            elif provider == "langchain":
                assert model.startswith("anthropic:"), table.id  # the one langchain provider a preset names
                settings[role] |= {"base_url": anthropic_server.url, "max_retries": 0}
            elif provider == "openai":
                settings[role] |= {"base_url": openai_server.url, "api_key": SECRET, "max_retries": 0}
                if role in ("drafter", "refiner"):
                    settings[role]["size"] = "64x64"
            else:
                assert provider == "builtin", table.id
        return ids, settings

    return swap


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_each_preset_builds_on_tiny_models_and_the_loopback_server(name, local):
    ids, settings = local(name)
    everyone = {**registry.DEFAULT_IDS, **ids}  # a role the preset leaves out takes its default
    assert registry.backend_ids(ids, settings) == everyone  # every id, setting and pairing accepted
    backends, built = registry.build_backends(ids, settings)
    assert built == everyone
    methods = {"planner": "plan", "drafter": "draft", "critic": "critique", "refiner": "refine"}
    for role, method in methods.items():
        assert callable(getattr(getattr(backends, role), method)), role


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_each_preset_runs_one_short_loop(name, local, openai_server, anthropic_server, tmp_path):
    ids, settings = local(name)
    result = generate(
        "a red cup", out=tmp_path / "run", **ids, settings=settings, budget=Budget(rounds_per_step=1, max_rounds=1)
    )
    doc = json.loads((result.run_dir / "trajectory.json").read_text())
    assert doc["finished"] and doc["error"] is None
    assert {e["stage"]: e["backend"] for e in doc["events"]}["draft"] == ids["drafter"]
    assert (result.run_dir / "final.png").is_file()
    providers = {registry.parse_id(role, i)[0] for role, i in ids.items()}
    if "openai" in providers:
        assert openai_server.requests  # the API roles went to the loopback server
    if "langchain" in providers:
        assert anthropic_server.requests  # and the LangChain ones to theirs


# ---------------------------------------------------------------------------------------------
# Layering: flags over --config over --preset
# ---------------------------------------------------------------------------------------------


def test_config_and_flags_override_the_preset(openai_server, tmp_path, capsys):
    # ollama: planner and critic at localhost:11434, the sketch world draws. The config points the
    # planner at the loopback server (its id kept, so the preset's other settings stay); the flag
    # names another critic, which drops the preset's base_url for it (builtin:pixels takes none).
    config = tmp_path / "here.toml"
    config.write_text(f'[planner]\nbase_url = "{openai_server.url}"\napi_key = "{SECRET}"\nmax_retries = 0\n')
    out = tmp_path / "run"
    args = ["generate", "a red cup", "--preset", "ollama", "--config", str(config), "--critic", "builtin:pixels"]
    code = main([*args, "--out", str(out), "--faults", "0", "-q"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "run.json").read_text())
    assert record["backends"] == {
        **registry.DEFAULT_IDS,
        "planner": "openai:qwen2.5vl:7b",
        "drafter": "builtin:sketch",
        "critic": "builtin:pixels",
        "refiner": "builtin:sketch",
    }
    [request] = openai_server.sent("chat/completions")
    assert request.json["model"] == "qwen2.5vl:7b"


# ---------------------------------------------------------------------------------------------
# The libraries' own output stays off the terminal
# ---------------------------------------------------------------------------------------------

LONG_PROMPT = (
    "a red cup to the left of a blue dog, and a green bench and a yellow car and a purple umbrella "
    "and an orange clock and a white cat and a black horse and a brown bear and a gray elephant"
)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter, so that transformers and diffusers are imported by the run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_", "DIFFUSERS_", "TQDM_"))}
    env |= {"HF_HUB_OFFLINE": "1"}
    code = "import sys; from strokegraph.app.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
def test_a_tiny_diffusers_run_with_a_long_prompt_prints_only_strokegraphs_lines(sd_dir, owl_dir, tmp_path):
    # The preset's roles, its models swapped for tiny ones by a config file (which drops its sizes).
    config = tmp_path / "tiny.toml"
    config.write_text(
        f'[drafter]\nid = "diffusers:{sd_dir}"\nsteps = 2\n[refiner]\nid = "diffusers:{sd_dir}"\nsteps = 2\n'
        f'[critic]\nid = "transformers-detect:{owl_dir}"\n'
    )
    args = ["generate", LONG_PROMPT, "--preset", "sdxl-turbo-owlv2", "--config", str(config), "--max-rounds", "0"]
    done = _cli(*args, "--out", str(tmp_path / "quiet"))
    assert done.returncode == EXIT_BUDGET, done.stderr[-3000:]
    # Only the progress lines: no "Token indices sequence length ... (> 77)", no "truncated because
    # CLIP can only handle sequences up to 77 tokens", no loading bars or library notes.
    lines = done.stderr.splitlines()
    assert lines and all(re.match(r"\[ *\d+\.\ds\] ", line) for line in lines), lines[:5]
    assert "77" not in done.stderr and "[transformers]" not in done.stderr

    # -v shows them: the run above had them to hide.
    loud = _cli(*args, "--out", str(tmp_path / "loud"), "-v", "-q")
    assert loud.returncode == EXIT_BUDGET, loud.stderr[-3000:]
    assert "CLIP can only handle sequences up to 77 tokens" in loud.stderr
