"""Shared test data."""

from __future__ import annotations

import importlib
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from strokegraph.agents.drafter import DraftRequest, DraftResult
from strokegraph.testing.openai_server import FakeOpenAI
from strokegraph.tools.sketch.drafter import SketchDrafter

PROMPT = "a red cat below a blue kite"

# A valid planner reply for PROMPT.
GOOD = {
    "scene": {
        "entities": [
            {"id": "e0", "noun": "cat", "count": 1, "colour": "red", "attributes": []},
            {"id": "e1", "noun": "kite", "count": 1, "colour": "blue", "attributes": []},
        ],
        "relations": [{"subject": "e0", "predicate": "below", "object": "e1"}],
        "constraints": [],
    },
    "plan": {
        "steps": [
            {"instruction": "Draw a blue kite.", "description": "A blue kite.", "entity_ids": ["e1"]},
            {
                "instruction": "Add a red cat below it.",
                "description": "A red cat below a blue kite.",
                "entity_ids": ["e0"],
            },
        ]
    },
}

# A valid critic reply for PROMPT: the cat is on the wrong side of the kite.
CRITIC_REPLY = {
    "violations": [
        {
            "kind": "relation",
            "entity_ids": ["e0", "e1"],
            "relation": {"subject": "e0", "predicate": "below", "object": "e1"},
            "expected": "cat below kite",
            "observed": "cat above kite",
            "box": [0.1, 0.1, 0.4, 0.3],
            "message": "the cat is above the kite",
        }
    ],
    "detections": [{"noun": "cat", "box": [0.1, 0.1, 0.4, 0.3], "score": 0.9, "colour": "red"}],
}


class FailingDrafter:
    """Draws step 1 like the sketch world, then breaks."""

    def __init__(self):
        self.sketch = SketchDrafter()

    def draft(self, request: DraftRequest) -> DraftResult:
        if request.step == 1:
            raise MemoryError("out of memory")
        return self.sketch.draft(request)


@pytest.fixture
def no_ambient_openai_env(monkeypatch):
    """No OPENAI_* variable of the machine leaks into a test of the OpenAI backends."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_ambient_provider_env(monkeypatch):
    """No endpoint, key or tracing switch of the machine leaks into a test of the langchain: backends;
    each test sets what it needs."""
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_URL",
        "OLLAMA_HOST",
        "OLLAMA_API_KEY",
        "MISTRAL_API_KEY",
        "MISTRAL_BASE_URL",
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "LANGSMITH_TRACING",
        "LANGCHAIN_TRACING_V2",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def closed_port() -> int:
    """A loopback port that was free a moment ago: nothing listens there now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    """A loopback OpenAI-compatible server with nothing scripted yet."""
    with FakeOpenAI() as fake:
        yield fake


def _tiny(tmp_path_factory, library: str, module: str, name: str) -> Path:
    """``save_tiny_<name>`` of ``module`` (tiny_hf.py, tiny_sd.py) run into a new temp folder; the
    test is skipped without ``library``."""
    pytest.importorskip(library)
    save = getattr(importlib.import_module(module), f"save_tiny_{name}")
    return save(tmp_path_factory.mktemp(f"tiny-{name}"))


# Tiny random models (tiny_hf.py: transformers; tiny_sd.py: a Stable Diffusion pipeline), built from
# configs and saved once per session for every module that loads them; a test that changes one works
# on its own copy.
@pytest.fixture(scope="session")
def chat_dir(tmp_path_factory):
    return _tiny(tmp_path_factory, "transformers", "tiny_hf", "chat")


@pytest.fixture(scope="session")
def owl_dir(tmp_path_factory):
    return _tiny(tmp_path_factory, "transformers", "tiny_hf", "owlv2")


@pytest.fixture(scope="session")
def vlm_dir(tmp_path_factory):
    return _tiny(tmp_path_factory, "transformers", "tiny_hf", "vlm")


@pytest.fixture(scope="session")
def dino_dir(tmp_path_factory):
    return _tiny(tmp_path_factory, "transformers", "tiny_hf", "grounding_dino")


@pytest.fixture(scope="session")
def sd_dir(tmp_path_factory):
    return _tiny(tmp_path_factory, "diffusers", "tiny_sd", "sd")


@pytest.fixture(scope="module")
def ray_cluster():
    """The address of a local Ray cluster of two nodes, each of 1 CPU and 1 declared (not real) GPU:
    room for one worker of 1 GPU per node. Nothing here connects to it; run_bench and draw_data do.
    One per test module that asks for it."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'strokegraph[ray]')")
    from ray.cluster_utils import Cluster

    # Ray's unix sockets live under RAY_TMPDIR and a socket path has at most 107 bytes, so it is short;
    # it is ours too, since the cluster writes its address file there whatever temp_dir says.
    temp = tempfile.mkdtemp(prefix="sgray-")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", temp)
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        node = {"num_cpus": 1, "num_gpus": 1, "object_store_memory": 75 << 20}  # Ray's smallest store
        cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
        try:
            cluster.add_node(**node)
            cluster.wait_for_nodes()
            yield cluster.address
        finally:
            cluster.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
