"""The nouns strokegraph knows by name: GenEval's 80 object classes and a few basic shapes."""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["SHAPES", "geneval_nouns", "known_nouns"]

#: Basic shapes people ask for by name ("three purple stars above a green circle").
SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "diamond",
    "hexagon",
    "pentagon",
    "heart",
    "cross",
    "rectangle",
    "oval",
)


@cache
def geneval_nouns() -> tuple[str, ...]:
    """GenEval's 80 COCO class names, in the detector's class order."""
    text = resources.files("strokegraph.data.geneval").joinpath("object_names.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def known_nouns() -> tuple[str, ...]:
    """:func:`geneval_nouns` followed by :data:`SHAPES`."""
    return (*geneval_nouns(), *SHAPES)
