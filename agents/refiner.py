"""The refiner role: turn a critique into a ``<refine>`` correction and redraw."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from strokegraph._text import number_word, pluralize
from strokegraph.schema import PREDICATE_PHRASES, Critique, Entity, Plan, Refinement, SceneGraph, Violation

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "RefineRequest",
    "RefineResult",
    "Refiner",
    "composite",
    "correction",
    "refine_text",
    "region_mask",
    "violation_region",
]


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
    """Redraws a step against its critique. A refiner that can wait without a thread may also offer
    ``async def arefine(request) -> RefineResult`` (see :class:`~strokegraph.agents.planner.Planner`'s ``aplan``)."""

    def refine(self, request: RefineRequest) -> RefineResult: ...


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
        return f"Move the {subject} {PREDICATE_PHRASES[rel.predicate]} the {obj}."
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
        return f"Draw exactly {number_word(e.count)} {_words(e)}."
    if violation.kind == "attribute" and e.colour:
        return f"Redraw the {_words(e, colour=False)} in {e.colour}."
    return f"Fix the {_words(e, colour=False)}: {violation.message}"


def refine_text(violations: tuple[Violation, ...], scene: SceneGraph) -> str:
    """The whole ``<refine>`` text: one sentence per violation, in order, without repeats."""
    return " ".join(dict.fromkeys(correction(v, scene) for v in violations))


def violation_region(violations: tuple[Violation, ...]) -> tuple[float, float, float, float] | None:
    """The union of the violations' boxes (normalised), or None when none of them has a box."""
    boxes = [v.box for v in violations if v.box is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def region_mask(
    size: tuple[int, int], region: tuple[float, float, float, float], *, grow: float = 0.05, feather: int = 8
):
    """A greyscale mask for redrawing ``region``: 255 inside (grown by ``grow`` of the image side),
    falling to 0 over ``feather`` pixels, and exactly 0 everywhere else.

    This is the diffusers convention (white = repaint); invert it for APIs where alpha 0 marks the edit.
    """
    from PIL import Image, ImageDraw, ImageFilter

    w, h = size
    x0, y0, x1, y1 = region
    g = grow * max(w, h)
    box = (max(0, x0 * w - g), max(0, y0 * h - g), min(w, x1 * w + g), min(h, y1 * h + g))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    if feather > 0:
        # Blur, then keep the full-strength core so the grown box itself is repainted completely.
        blurred = mask.filter(ImageFilter.GaussianBlur(feather / 2))
        mask = Image.fromarray(np.maximum(np.asarray(blurred), np.asarray(mask)))
    return mask


def composite(original, edited, mask):
    """``edited`` where ``mask`` is white, ``original`` where it is black, blended between.

    Pixels with mask 0 come back byte-identical to ``original``, whatever the editor did there.
    """
    from PIL import Image

    if edited.size != original.size:
        edited = edited.resize(original.size, Image.Resampling.LANCZOS)
    return Image.composite(edited.convert("RGB"), original.convert("RGB"), mask)
