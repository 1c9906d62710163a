"""Presets: coherent sets of the four roles, shipped as config files (``--preset NAME``).

Each preset is a ``NAME.toml`` in this package, in the format of ``--config`` files (see
:mod:`strokegraph.config`), holding a table per role and no run options; its first line, a comment,
says what it is. A config file overrides a preset, and command-line flags override both; a preset's
settings for a role go with its id, so naming another id for that role drops them.
"""

from __future__ import annotations

import difflib
from importlib import resources

from strokegraph.config import RunConfig, parse_config
from strokegraph.errors import UsageError
from strokegraph.registry import ROLES

__all__ = ["describe_preset", "load_preset", "preset_names"]

_SUFFIX = ".toml"


def preset_names() -> list[str]:
    """The shipped presets' names, sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(_SUFFIX) for f in files if f.name.endswith(_SUFFIX))


def _text(name: str) -> str:
    names = preset_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.4)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(f"unknown preset {name!r}; {hint}presets: {', '.join(names)} (see 'strokegraph presets')")
    return resources.files(__name__).joinpath(name + _SUFFIX).read_text(encoding="utf-8")


def load_preset(name: str) -> RunConfig:
    """The roles of preset ``name``; an unknown name is a :class:`UsageError` with the closest one."""
    config = parse_config(_text(name), f"preset {name!r}")
    options = [key for key in RunConfig.model_fields if key not in ROLES and getattr(config, key) is not None]
    if options:  # a preset is a set of roles; run options belong to the run (flags, --config)
        raise UsageError(f"preset {name!r} sets run options ({', '.join(options)}); a preset names roles only")
    return config


def describe_preset(name: str) -> str:
    """What preset ``name`` is, in one line: its first line, a comment."""
    first = _text(name).partition("\n")[0]
    return first.removeprefix("#").strip()
