"""What langgraph.json names, loaded as LangGraph's server loads it: for tests of app/server.py and app/webapp.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load(spec: str, name: str) -> Any:
    """The object ``file.py:variable`` names, imported by path as LangGraph's server does."""
    file, _, variable = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(name, ROOT / file)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # pydantic resolves the module's annotations through sys.modules
    module_spec.loader.exec_module(module)
    return getattr(module, variable)
