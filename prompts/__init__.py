"""Prompt templates for the LLM-backed roles, kept as package data.

Each ``*.txt`` file starts with one line ``# variables: a, b, c`` naming the ``$a``-style
placeholders it expects (``string.Template`` syntax, so JSON braces need no escaping); the rest is
the template. :func:`render` refuses missing or unexpected variables.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cache
from importlib import resources

from strokegraph.errors import UsageError

__all__ = ["PromptTemplate", "load", "names", "render"]


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    variables: tuple[str, ...]
    text: str

    def render(self, **values: str) -> str:
        missing = set(self.variables) - set(values)
        extra = set(values) - set(self.variables)
        if missing or extra:
            raise UsageError(
                f"prompt {self.name!r} takes {', '.join(self.variables)}; "
                f"missing {sorted(missing)!r}, unexpected {sorted(extra)!r}"
            )
        return string.Template(self.text).substitute(values)


def names() -> list[str]:
    return sorted(p.name[:-4] for p in resources.files(__name__).iterdir() if p.name.endswith(".txt"))


@cache
def load(name: str) -> PromptTemplate:
    path = resources.files(__name__).joinpath(f"{name}.txt")
    if not path.is_file():
        raise UsageError(f"no prompt template {name!r}; templates: {', '.join(names())}")
    header, _, body = path.read_text(encoding="utf-8").partition("\n")
    if not header.startswith("# variables:"):
        raise ValueError(f"prompt template {name!r} must start with '# variables: ...'")
    variables = tuple(v.strip() for v in header.removeprefix("# variables:").split(",") if v.strip())
    used = {m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(body)} - {None}
    if used != set(variables):
        raise ValueError(f"prompt template {name!r} declares {sorted(variables)} but uses {sorted(used)}")
    return PromptTemplate(name, variables, body.lstrip("\n"))


def render(name: str, **values: str) -> str:
    return load(name).render(**values)
