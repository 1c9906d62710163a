"""Packaging: one ``strokegraph`` namespace over the top-level folders, nothing bare installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BARE = ("agents", "graph", "tools", "prompts", "app", "bench")


@pytest.mark.parametrize("name", BARE)
def test_folders_import_only_under_strokegraph(name, tmp_path):
    code = f"import importlib.util as u, strokegraph.{name}; print(u.find_spec({name!r}) is None)"
    # Run outside the checkout, so only what is installed can be imported.
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True", f"a bare {name!r} package is importable"


def test_no_module_imports_a_folder_by_its_bare_name():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if any(part.startswith(".") or part in ("build", "runs") for part in path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in BARE]
    assert offenders == []


def test_package_data_is_installed():
    from importlib import resources

    from strokegraph import prompts

    # The foundation's nouns and the benchmarks' prompts, each with the licence it was copied under.
    nouns = resources.files("strokegraph.data.geneval")
    assert len(nouns.joinpath("object_names.txt").read_text().splitlines()) == 80
    geneval = resources.files("strokegraph.bench.data.geneval")
    assert len(geneval.joinpath("evaluation_metadata.jsonl").read_text().splitlines()) == 553
    compbench = resources.files("strokegraph.bench.data.t2i_compbench")
    assert len(compbench.joinpath("spatial_val.txt").read_text().splitlines()) == 300
    for data, licence in ((nouns, "LICENSE"), (geneval, "LICENSE"), (compbench, "License.txt")):
        assert "MIT License" in data.joinpath(licence).read_text()
        assert data.joinpath("SOURCE.md").is_file()
    assert set(prompts.names()) == {"planner", "critic"}


# The layers, bottom up: a module imports, at its top, only from its own layer and those below.
# (The CLI, in app/, reaches the loop and the benchmarks inside its commands, so its import stays light.)
LAYERS = {"strokegraph": 0, "prompts": 0, "agents": 1, "tools": 2, "graph": 3, "app": 4, "bench": 5}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "strokegraph":
        return None
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def test_each_folder_imports_only_the_layers_below_it():
    offenders = []
    for folder, layer in LAYERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module == "strokegraph":
                    names = [f"strokegraph.{a.name}" for a in node.names]  # from strokegraph import graph
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                else:
                    continue
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if (_layer(n) or 0) > layer]
    assert offenders == []
