"""A mixed configuration through the CLI: OpenAI planner, diffusers drafter and refiner, detector critic."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("diffusers", reason="needs the diffusers extra")
pytest.importorskip("transformers", reason="needs the transformers extra")
pytest.importorskip("openai", reason="needs the openai extra")

from tiny_hf import save_tiny_owlv2  # noqa: E402
from tiny_sd import save_tiny_sd  # noqa: E402

from strokegraph.app.cli import EXIT_BUDGET, main  # noqa: E402
from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies  # noqa: E402

SECRET = "sk-mixed-secret"


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


@pytest.mark.slow
def test_openai_planner_diffusers_drafter_detector_critic_from_a_config_file(tmp_path, offline, capsys):
    sd = save_tiny_sd(tmp_path / "sd")
    owl = save_tiny_owlv2(tmp_path / "owl")
    with FakeOpenAI(fallback=any_prompt_replies()) as server:
        config = tmp_path / "mixed.toml"
        config.write_text(
            f'seed = 3\nmax_rounds = 1\n[planner]\nid = "openai:gpt-4.1-mini"\nbase_url = "{server.url}"\n'
            f'[drafter]\nid = "diffusers:{sd}"\nsteps = 2\n[refiner]\nid = "diffusers:{sd}"\nsteps = 2\n'
            f'[critic]\nid = "transformers-detect:{owl}"\nthreshold = 0.5\n'
        )
        out = tmp_path / "run"
        code = main(
            ["generate", "two red apples to the left of a blue cup", "--config", str(config), "--out", str(out)]
        )
        planner_requests = server.sent("chat/completions")
    # Random tiny models cannot draw the prompt: the budget runs out, and everything is still written.
    assert code == EXIT_BUDGET, capsys.readouterr().err
    doc = json.loads((out / "trajectory.json").read_text())
    backends = {e["stage"]: e["backend"] for e in doc["events"]}
    assert backends == {
        "plan": "openai:gpt-4.1-mini",
        "draft": f"diffusers:{sd}",
        "critique": f"transformers-detect:{owl}",
        "refine": f"diffusers:{sd}",
    }
    assert len(planner_requests) == 1
    assert planner_requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert doc["sampling_steps"] > 0 and doc["rounds"] == 1
    assert [s["entity_ids"] for s in doc["plan"]["steps"]] == [["e1"], ["e0"]]
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
