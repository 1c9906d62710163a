"""The refiner role: turn a critique into a ``<refine>`` correction and redraw."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from strokegraph._text import pluralize
from strokegraph.schema import Critique, Entity, Plan, Refinement, SceneGraph, Violation

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["RefineRequest", "RefineResult", "Refiner", "correction", "refine_text"]


@dataclass(frozen=True)
class RefineRequest:
    scene: SceneGraph
    plan: Plan
    step: int
    round: int
    """1 for the first refinement of a step."""
    image: Image.Image
    critique: Critique
    seed: int


@dataclass(frozen=True)
class RefineResult:
    image: Image.Image
    refinement: Refinement
    sampling_steps: int = 0


@runtime_checkable
class Refiner(Protocol):
    def refine(self, request: RefineRequest) -> RefineResult: ...


_PREDICATE_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


def _words(entity: Entity, *, colour: bool = True) -> str:
    """``'red apples'`` / ``'cup'``: the entity's noun, plural when it has several, without a count."""
    noun = entity.noun if entity.count == 1 else pluralize(entity.noun)
    return " ".join([*entity.attributes, *([entity.colour] if colour and entity.colour else []), noun])


def correction(violation: Violation, scene: SceneGraph) -> str:
    """The ``<refine>`` sentence that fixes one violation, e.g. ``'Redraw the apples in red.'``."""
    known = [scene.entity(i) for i in violation.entity_ids if i in {e.id for e in scene.entities}]
    rel = violation.relation
    if violation.kind == "relation" and rel is not None:
        subject, obj = (_words(scene.entity(i), colour=False) for i in (rel.subject, rel.object))
        return f"Move the {subject} {_PREDICATE_WORDS[rel.predicate]} the {obj}."
    if not known:
        if violation.kind == "extra":
            thing = re.sub(r"^(a|an|the|one|1)\s+", "", violation.observed.strip())
            return f"Remove the extra {thing}."
        return f"Fix: {violation.message}"
    e = known[0]
    if violation.kind == "missing":
        return f"Add the missing {_words(e)}."
    if violation.kind == "extra":
        return f"Remove the extra {e.noun}."
    if violation.kind == "count":
        return f"Draw exactly {e.phrase()}."
    if violation.kind == "attribute" and e.colour:
        return f"Redraw the {_words(e, colour=False)} in {e.colour}."
    return f"Fix the {_words(e, colour=False)}: {violation.message}"


def refine_text(violations: tuple[Violation, ...], scene: SceneGraph) -> str:
    """The whole ``<refine>`` text: one sentence per violation, in order, without repeats."""
    return " ".join(dict.fromkeys(correction(v, scene) for v in violations))
