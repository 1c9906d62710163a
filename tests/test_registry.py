"""Backend ids: parsing, suggestions, lazy building."""

from __future__ import annotations

import subprocess
import sys

import pytest

from strokegraph import registry
from strokegraph.errors import UsageError


def test_defaults_are_the_offline_backends():
    assert (
        registry.DEFAULT_IDS.items()
        >= {
            "planner": "builtin:rules",
            "drafter": "builtin:sketch",
            "critic": "builtin:pixels",
            "refiner": "builtin:sketch",
        }.items()
    )
    for role, backend_id in registry.DEFAULT_IDS.items():
        assert registry.parse_id(role, backend_id) == tuple(backend_id.split(":"))
        assert registry.capabilities(role, backend_id).offline, backend_id


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


def test_every_surface_that_names_a_role_names_every_role():
    """One record (``Backends``) lists the roles; the surfaces that take one argument per role follow it."""
    import inspect
    import typing

    from strokegraph.app.cli import _parser
    from strokegraph.app.runner import agenerate, generate, resume
    from strokegraph.app.server import ServerContext
    from strokegraph.bench import run_bench
    from strokegraph.config import RunConfig

    roles = set(registry.ROLES)
    assert typing.get_args(registry.Role) == registry.ROLES and set(registry.DEFAULT_IDS) == roles
    assert set(registry.RoleChoices.__optional_keys__) == roles
    for function in (generate, agenerate, resume, run_bench):
        (keywords,) = [p for p in inspect.signature(function).parameters.values() if p.kind is p.VAR_KEYWORD]
        assert keywords.annotation == "Unpack[RoleChoices]", function.__name__
    assert roles <= set(RunConfig.model_fields) and roles <= set(ServerContext.__dataclass_fields__)
    commands = _parser()._subparsers._group_actions[0].choices
    for command in ("generate", "resume", "bench"):
        assert roles <= {a.dest for a in commands[command]._actions}, command


def test_the_entry_points_refuse_an_unknown_role_in_one_line(tmp_path):
    from strokegraph.app.runner import generate, resume
    from strokegraph.bench import run_bench

    with pytest.raises(UsageError, match="unknown role.*'painter'; expected planner, drafter"):
        generate("a red cat", out=tmp_path / "run", painter="builtin:sketch")  # type: ignore[call-arg]
    with pytest.raises(UsageError, match="unknown role.*'painter'; expected planner, drafter"):
        run_bench("geneval", out=tmp_path / "bench", painter="builtin:sketch")  # type: ignore[call-arg]
    assert not (tmp_path / "run").exists() and not (tmp_path / "bench").exists()
    made = generate("a red cat", out=tmp_path / "made").run_dir
    with pytest.raises(UsageError, match="unknown role.*'painter'; expected planner, drafter"):
        resume(made, painter="builtin:sketch")  # type: ignore[call-arg]


def test_build_backends_fills_in_defaults_and_records_objects_by_type():
    class MyCritic:
        def critique(self, request): ...

    mine = MyCritic()
    backends, ids = registry.build_backends({"critic": mine, "drafter": "builtin:sketch"}, {"drafter": {"size": 64}})
    assert backends.critic is mine and backends.drafter.size == 64
    assert ids == {**registry.DEFAULT_IDS, "critic": "custom:MyCritic"}
    assert list(backends.by_role()) == list(registry.ROLES)
    with pytest.raises(UsageError, match="unknown role.*'painter'"):
        registry.build_backends({"painter": "builtin:sketch"})
    with pytest.raises(UsageError, match="unknown settings for role.*'painter'"):
        registry.backend_ids(settings={"painter": {}})
    with pytest.raises(UsageError, match="apply to backends named by id"):
        registry.backend_ids({"critic": mine}, {"critic": {"threshold": 0.5}})


def test_backends_satisfy_their_role_protocols():
    import dataclasses
    import importlib

    # Each role's protocol is the type of its Backends field, defined in strokegraph.agents.<role>.
    for field in dataclasses.fields(registry.Backends):
        protocol = getattr(importlib.import_module(f"strokegraph.agents.{field.name}"), str(field.type))
        assert isinstance(registry.build(field.name, registry.DEFAULT_IDS[field.name]), protocol), field.name


def test_importing_the_cli_loads_no_backend():
    code = (
        "import sys, strokegraph.app.cli, strokegraph.registry; "
        "print(sorted(m for m in sys.modules if 'sketch' in m or 'langgraph' in m))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
