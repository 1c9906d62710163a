"""Backends from other packages: registered through the same hook as strokegraph's own."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from strokegraph import registry
from strokegraph.app.runner import generate
from strokegraph.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "two red apples to the left of a blue cup"


class Mirror:
    """A planner of a test's own: the rules planner's reading, recorded."""

    def __init__(self, model: str, *, note: str = "") -> None:
        self.rules = registry.build("planner", "builtin:rules")
        self.seen: list[str] = []

    def plan(self, prompt):
        self.seen.append(prompt)
        return self.rules.plan(prompt)


@pytest.fixture
def mirror():
    """The provider 'mirror' registered for this test only, as a plugin would register it."""
    registry.register("planner", "mirror", Mirror, models=("one",), offline=True, package="test-plugin")
    yield
    registry.unregister("planner", "mirror")


@pytest.mark.usefixtures("mirror")
def test_a_registered_backend_is_an_id_like_the_built_in_ones(tmp_path):
    assert "mirror:one" in registry.known_ids("planner")
    assert registry.capabilities("planner", "mirror:one").offline is True
    with pytest.raises(UsageError, match="unknown setting"):  # its factory's keywords are its settings
        registry.check("planner", "mirror:one", {"nope": 1})
    registry.check("planner", "mirror:one", {"note": "x"})
    result = generate(PROMPT, out=tmp_path / "r", planner="mirror:one")
    assert result.trajectory[0].backend == "mirror:one"
    listed = [r for r in registry.registered() if r.provider == "mirror"]
    assert [(r.role, r.ids, r.package) for r in listed] == [("planner", ("mirror:one",), "test-plugin")]


def test_a_provider_is_owned_by_the_package_that_registered_it_first():
    with pytest.raises(UsageError, match="which strokegraph registered already"):
        registry.register("critic", "builtin", Mirror, models=("mine",), package="other-plugin")
    assert "builtin:pixels" in registry.known_ids("critic")  # untouched
    with pytest.raises(UsageError, match="unknown role"):
        registry.register("painter", "x", Mirror)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="image kinds"):
        registry.register("drafter", "x", Mirror, draws="oil")  # type: ignore[arg-type]


def test_the_built_in_backends_come_through_the_plugin_hook():
    # strokegraph's own modules register them with the same register function a plugin gets.
    calls: list[tuple] = []
    for name in registry.DEFAULT_PLUGINS:
        importlib.import_module(name).register_backends(lambda *args, **kwargs: calls.append(args))
    assert {(role, provider) for role, provider, _ in calls} == {
        (r.role, r.provider) for r in registry.registered() if r.package == "strokegraph"
    }


@pytest.mark.slow
def test_the_example_plugin_installs_and_runs_from_the_cli_and_a_config_file(tmp_path):
    """examples/plugin, pip-installed into a folder of its own, registers example:one-step."""
    target = tmp_path / "site"
    build = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    if importlib.util.find_spec("setuptools") is not None:  # build with this interpreter's, no download
        build.append("--no-build-isolation")
    installed = subprocess.run([*build, str(ROOT / "examples" / "plugin")], capture_output=True, text=True)
    if installed.returncode != 0 and "setuptools" in installed.stderr and "--no-build-isolation" not in build:
        pytest.skip(f"pip could not fetch setuptools to build the example plugin: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}

    def cli(*args: str) -> subprocess.CompletedProcess:
        code = "import sys; from strokegraph.app.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=tmp_path
        )

    listing = cli("backends")
    assert listing.returncode == 0, listing.stderr
    (line,) = [x for x in listing.stdout.splitlines() if "example:one-step" in x]
    assert line.split()[:3] == ["planner", "example:one-step", "strokegraph-example-plugin"]

    flag = cli("generate", PROMPT, "--planner", "example:one-step", "--out", "flag", "-q", "--faults", "0")
    assert flag.returncode == 0, flag.stderr
    (tmp_path / "one.toml").write_text('[planner]\nid = "example:one-step"\nanchor_first = true\n')
    config = cli("generate", PROMPT, "--config", "one.toml", "--out", "config", "-q", "--faults", "0")
    assert config.returncode == 0, config.stderr
    one = json.loads((tmp_path / "flag" / "trajectory.json").read_text())
    two = json.loads((tmp_path / "config" / "trajectory.json").read_text())
    assert len(one["plan"]["steps"]) == 1  # the whole scene in one step
    assert len(two["plan"]["steps"]) == 2  # its setting, from the config file: the anchor-first plan
    assert json.loads((tmp_path / "flag" / "run.json").read_text())["backends"]["planner"] == "example:one-step"


def test_runs_started_at_once_find_every_backend_on_first_use():
    # The first look-up loads the plugins; threads asking at the same moment (agenerate's runs) wait
    # for it instead of finding an empty table ("unknown drafter id 'builtin:sketch'").
    code = """
import sys, threading
from strokegraph import registry
sys.setswitchinterval(1e-6)  # threads take turns often, as on a busy machine
errors = []
start = threading.Barrier(40)
def check():
    start.wait()
    try:
        registry.check("drafter", "builtin:sketch")
    except Exception as exc:
        errors.append(exc)
threads = [threading.Thread(target=check) for _ in range(40)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(errors))
"""
    for _ in range(3):  # a fresh interpreter each time: the table is loaded once per process
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.strip() == "0", done.stdout + done.stderr
