"""Backend ids: parsing, suggestions, lazy building."""

from __future__ import annotations

import subprocess
import sys

import pytest

from strokegraph import registry
from strokegraph.errors import UsageError


def test_defaults_are_the_offline_backends():
    assert registry.DEFAULT_IDS == {
        "planner": "builtin:rules",
        "drafter": "builtin:sketch",
        "critic": "builtin:pixels",
        "refiner": "builtin:sketch",
    }
    for role, backend_id in registry.DEFAULT_IDS.items():
        assert registry.parse_id(role, backend_id) == tuple(backend_id.split(":"))


@pytest.mark.parametrize(
    ("role", "backend_id", "needle"),
    [
        ("drafter", "builtin:skech", "did you mean 'builtin:sketch'"),
        ("critic", "builtin:pixel", "did you mean 'builtin:pixels'"),
        ("planner", "rules", "valid ids: builtin:rules"),
        ("planner", "builtin:", "unknown planner id"),
        ("critic", "builtin:sketch", "unknown critic id"),
        ("refiner", "nosuch:thing", "valid ids: builtin:sketch"),
    ],
)
def test_unknown_ids_are_usage_errors_naming_valid_ones(role, backend_id, needle):
    with pytest.raises(UsageError, match=needle):
        registry.parse_id(role, backend_id)


def test_unknown_role():
    with pytest.raises(UsageError, match="unknown role"):
        registry.parse_id("painter", "builtin:sketch")


def test_backends_satisfy_their_role_protocols():
    from strokegraph.agents.critic import Critic
    from strokegraph.agents.drafter import Drafter
    from strokegraph.agents.planner import Planner
    from strokegraph.agents.refiner import Refiner

    protocols = {"planner": Planner, "drafter": Drafter, "critic": Critic, "refiner": Refiner}
    for role, backend_id in registry.DEFAULT_IDS.items():
        assert isinstance(registry.build(role, backend_id), protocols[role])


def test_importing_the_cli_loads_no_backend():
    code = (
        "import sys, strokegraph.cli, strokegraph.registry; "
        "print(sorted(m for m in sys.modules if 'sketch' in m or 'langgraph' in m))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
