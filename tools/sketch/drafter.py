"""``builtin:sketch``: the offline drafter and refiner that stand in for a diffusion model.

Both draw the sketch world's icons (:func:`~strokegraph.tools.sketch.codebook.draw_icon`) at the
boxes of :func:`~strokegraph.tools.sketch.layout.solve_layout`, computed from the whole scene graph
so that later steps fit. One render counts as one sampling step.

**Faults.** :class:`SketchDrafter` makes the mistakes text-to-image models make, each at a
documented, seeded rate (:class:`SketchFaults`); :class:`SketchRefiner` fixes what the critic
reports and fails at its own rate, so the critic has to check its work. Every random draw comes
from a :class:`random.Random` seeded by a SHA-256 of the request's seed, the step (and round), the
entity and the fault kind, so the same request always gives the same, byte-identical image, and
changing one rate does not reshuffle the other faults.

**Colours.** An entity with a required colour is painted in it; one without gets
:func:`default_colour` of its noun: :data:`DEFAULT_COLOURS` for common nouns, otherwise a colour
picked by a hash of the noun.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from strokegraph._text import pluralize
from strokegraph.agents.drafter import DraftRequest, DraftResult
from strokegraph.agents.refiner import RefineRequest, RefineResult
from strokegraph.errors import UsageError
from strokegraph.schema import COLOURS, Colour, Entity, Plan, Refinement, Relation, SceneGraph, Violation
from strokegraph.tools.sketch.codebook import BACKGROUND, GLYPH_SIZE, codes_for, draw_icon, halo_width
from strokegraph.tools.sketch.layout import PixelBox, acyclic_relations, solve_layout

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["DEFAULT_COLOURS", "SketchDrafter", "SketchFaults", "SketchRefiner", "default_colour"]

#: Colour of an entity with no required colour, for nouns whose everyday colour is clear.
DEFAULT_COLOURS: dict[str, Colour] = {
    "apple": "red",
    "banana": "yellow",
    "bear": "brown",
    "bed": "white",
    "bench": "brown",
    "bicycle": "blue",
    "bird": "blue",
    "book": "blue",
    "broccoli": "green",
    "bus": "yellow",
    "cake": "pink",
    "car": "red",
    "carrot": "orange",
    "cat": "orange",
    "chair": "brown",
    "couch": "brown",
    "cow": "black",
    "cup": "white",
    "dining table": "brown",
    "dog": "brown",
    "donut": "pink",
    "fire hydrant": "red",
    "giraffe": "yellow",
    "horse": "brown",
    "hot dog": "red",
    "laptop": "black",
    "orange": "orange",
    "pizza": "orange",
    "potted plant": "green",
    "refrigerator": "white",
    "sheep": "white",
    "sink": "white",
    "stop sign": "red",
    "teddy bear": "brown",
    "toilet": "white",
    "tv": "black",
    "umbrella": "purple",
    "vase": "blue",
    "zebra": "black",
}


def default_colour(noun: str) -> Colour:
    """:data:`DEFAULT_COLOURS` of ``noun``, else one of the ten colours picked by a SHA-256 of it."""
    if noun in DEFAULT_COLOURS:
        return DEFAULT_COLOURS[noun]
    return COLOURS[int.from_bytes(hashlib.sha256(noun.encode()).digest()[:4], "big") % len(COLOURS)]


def _rng(*keys: object) -> random.Random:
    """A generator seeded by a stable hash of ``keys`` (Python's ``hash()`` changes per process)."""
    digest = hashlib.sha256("\x1f".join(map(str, keys)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class SketchFaults(BaseModel):
    """How often :class:`SketchDrafter` gets each thing wrong: probabilities in 0..1, drawn per entity.

    - ``missing`` (0.12): an entity of the step is not drawn at all (no other fault applies then).
    - ``count`` (0.15): one instance too few (only when at least one stays; even odds otherwise) or
      one too many, added at a free spot near the entity's own instances (background on the
      canvas and outside every entity's layout box, so later steps still fit).
    - ``colour_leak`` (0.2): only for an entity with a required colour; all its instances take the
      colour of another coloured entity of the scene (a random one), or another of the ten colours
      when there is none.
    - ``flip`` (0.3): per relation (of :func:`~strokegraph.tools.sketch.layout.acyclic_relations`)
      whose subject the step draws, drawn in the scene's order; the first that fires mirrors the
      subject across the object's centre, so the relation is inverted (see ``_Sketch.flip``).

    The defaults are of the order of the failure rates text-to-image models show on GenEval
    (colour binding and position being the hardest), so a run with them has work to do.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    missing: float = Field(default=0.12, ge=0.0, le=1.0, description="An entity of the step is not drawn at all.")
    count: float = Field(
        default=0.15,
        ge=0.0,
        le=1.0,
        description="One instance too many (at a free spot) or too few (only when at least one is left).",
    )
    colour_leak: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="An entity with a required colour takes another coloured entity's colour (else another colour).",
    )
    flip: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="Per relation whose subject the step draws: the subject is mirrored across the object.",
    )

    @classmethod
    def none(cls) -> SketchFaults:
        """No faults: the drafter draws exactly what the step asks."""
        return cls(missing=0.0, count=0.0, colour_leak=0.0, flip=0.0)

    @classmethod
    def scaled(cls, factor: float) -> SketchFaults:
        """The default rates times ``factor`` (>= 0), each capped at 1; 0 is :meth:`none`."""
        if not (factor >= 0 and math.isfinite(factor)):
            raise UsageError(f"fault scale must be a finite number >= 0, got {factor!r}")
        return cls(**{name: min(1.0, f.default * factor) for name, f in cls.model_fields.items()})


# ---------------------------------------------------------------------------------------------
# Rendering, shared by the drafter and the refiner
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Icon:
    entity_id: str
    noun: str
    colour: Colour
    box: PixelBox


def _side(icon: _Icon) -> int:
    return icon.box[2] - icon.box[0]


def _grown(box: Sequence[float], by: float) -> tuple[float, float, float, float]:
    return (box[0] - by, box[1] - by, box[2] + by, box[3] + by)


class _Sketch:
    """One scene on one canvas: its layout, glyph codes and colours, and the faults as edits of icons."""

    def __init__(self, scene: SceneGraph, width: int, height: int, seed: int) -> None:
        self.scene = scene
        self.width, self.height = width, height
        self.layout = solve_layout(scene, width, height, seed)
        self.relations = acyclic_relations(scene)
        self.codes = codes_for(e.noun for e in scene.entities)
        self.halo = halo_width(max(b[2] - b[0] for boxes in self.layout.values() for b in boxes))
        self.margin = max(2, round(0.01 * min(width, height)))

    def ideal(self, entity_id: str) -> list[_Icon]:
        """The entity's instances at their layout boxes, in its required or default colour."""
        e = self.scene.entity(entity_id)
        colour = e.colour or default_colour(e.noun)
        return [_Icon(e.id, e.noun, colour, box) for box in self.layout[e.id]]

    def paint(self, image: Image.Image, icons: Iterable[_Icon]) -> None:
        from PIL import ImageDraw

        draw = ImageDraw.Draw(image)
        for icon in icons:
            draw_icon(draw, icon.box, icon.noun, icon.colour, self.codes[icon.noun])

    def render(self, icons: Iterable[_Icon]) -> Image.Image:
        """A fresh canvas with ``icons`` on the background."""
        from PIL import Image

        image = Image.new("RGB", (self.width, self.height), BACKGROUND)
        self.paint(image, icons)
        return image

    # -- faults ---------------------------------------------------------------------------------

    def miscount(
        self, entity: Entity, icons: list[_Icon], rng: random.Random, canvas: Image.Image, may_add: bool = True
    ) -> list[_Icon]:
        """One instance fewer (only if one stays) or, even odds, one more at a free spot of ``canvas``."""
        if len(icons) > 1 and (not may_add or rng.random() < 0.5):
            drop = rng.randrange(len(icons))
            return icons[:drop] + icons[drop + 1 :]
        return [*icons, replace(icons[0], box=self._free_spot(entity, _side(icons[0]), rng, canvas))]

    def _free_spot(self, entity: Entity, side: int, rng: random.Random, canvas: Image.Image) -> PixelBox:
        """A box near the entity's own instances that is background on ``canvas`` and in no layout box.

        Shrinks the box down to 60% when nothing fits; with no room at all it lands anywhere.
        """
        busy = (np.asarray(canvas.convert("RGB")) != np.array(BACKGROUND, dtype=np.uint8)).any(axis=-1)
        for boxes in self.layout.values():
            for b in boxes:
                x0, y0, x1, y1 = (round(v) for v in _grown(b, self.halo))
                busy[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = True
        # Summed-area table: the busy pixels inside any rectangle in O(1).
        table = np.zeros((busy.shape[0] + 1, busy.shape[1] + 1), dtype=np.int64)
        table[1:, 1:] = busy.cumsum(0).cumsum(1)
        own = self.layout[entity.id]
        cx = sum(b[0] + b[2] for b in own) / (2 * len(own))
        cy = sum(b[1] + b[3] for b in own) / (2 * len(own))
        for s in sorted({side, round(side * 0.8), round(side * 0.6)}, reverse=True):
            pad = self.halo + 1
            lo, step = self.margin + pad, max(2, s // 6)
            free = []
            for y0 in range(lo, self.height - self.margin - pad - s + 1, step):
                for x0 in range(lo, self.width - self.margin - pad - s + 1, step):
                    a, b, c, d = y0 - pad, x0 - pad, y0 + s + pad + 1, x0 + s + pad + 1
                    if table[c, d] - table[a, d] - table[c, b] + table[a, b] == 0:
                        free.append((math.hypot(x0 + s / 2 - cx, y0 + s / 2 - cy), x0, y0))
            if free:
                _, x0, y0 = rng.choice(sorted(free)[:3])
                return (x0, y0, x0 + s, y0 + s)
        x0 = rng.randrange(self.margin, max(self.margin + 1, self.width - self.margin - side))
        y0 = rng.randrange(self.margin, max(self.margin + 1, self.height - self.margin - side))
        return (x0, y0, x0 + side, y0 + side)

    def leak(self, entity: Entity, icons: list[_Icon], rng: random.Random) -> list[_Icon]:
        """All instances in another coloured entity's colour, else in another of the ten colours."""
        others = sorted({e.colour for e in self.scene.entities if e.colour and e.colour != entity.colour})
        colour = rng.choice(others or [c for c in COLOURS if c != entity.colour])
        return [replace(icon, colour=colour) for icon in icons]

    def flip(self, icons: list[_Icon], relation: Relation) -> list[_Icon]:
        """The subject's instances mirrored across the object's centre, so the relation is inverted.

        When the mirror image runs off the canvas, the subject's group shrinks (down to 60%) to fit
        between the object and the edge; with still no room it shrinks further (down to 30%) and
        may cover the object's rim, but not its glyph.
        """
        if not icons:
            return icons
        axis = 0 if relation.predicate in ("left of", "right of") else 1
        length = (self.width, self.height)[axis]
        subject = [(i.box[axis], i.box[axis + 2]) for i in icons]
        obj = [(b[axis], b[axis + 2]) for b in self.layout[relation.object]]
        forward = sum(a + b for a, b in subject) / len(subject) < sum(a + b for a, b in obj) / len(obj)

        def oriented(span: tuple[float, float]) -> tuple[float, float]:
            # Work as if the subject sat on the low side of the object; reflect the axis otherwise.
            return span if forward else (length - span[1], length - span[0])

        subject, obj = [oriented(s) for s in subject], [oriented(s) for s in obj]
        lo, hi = min(a for a, _ in subject), max(b for _, b in subject)
        obj_lo, obj_hi = min(a for a, _ in obj), max(b for _, b in obj)
        extent, room_end = hi - lo, length - self.margin
        clear_of_object = obj_hi + 2 * self.halo + 2
        clear_of_glyph = max((a + b) / 2 + GLYPH_SIZE / 2 * (b - a) for a, b in obj) + self.halo + 2
        if (mirrored := obj_lo + obj_hi - hi) + extent <= room_end:
            k, start = 1.0, mirrored
        elif 0.6 * extent <= room_end - clear_of_object:
            k, start = (room_end - clear_of_object) / extent, clear_of_object
        else:
            k = min(0.6, max(0.3, (room_end - clear_of_glyph) / extent))
            start = room_end - k * extent
        across = [(i.box[1 - axis], i.box[3 - axis]) for i in icons]
        middle = (min(a for a, _ in across) + max(b for _, b in across)) / 2
        out = []
        for icon, (a, b), (c, _) in zip(icons, subject, across, strict=True):
            side = max(4, round(k * (b - a)))
            # A mirror reverses the order of the instances along the axis.
            new_lo = start + k * (hi - b)
            along = round(new_lo if forward else length - new_lo - side)
            cross = round(middle + k * (c - middle))
            x0, y0 = (along, cross) if axis == 0 else (cross, along)
            out.append(replace(icon, box=(x0, y0, x0 + side, y0 + side)))
        return out


def _check_step(scene: SceneGraph, plan: Plan, step: int) -> None:
    if not 0 <= step < len(plan.steps):
        raise UsageError(f"request.step must be in 0..{len(plan.steps) - 1}, got {step!r}")
    known = {e.id for e in scene.entities}
    for s in plan.steps[: step + 1]:
        for entity_id in s.entity_ids:
            if entity_id not in known:
                raise UsageError(f"plan step names entity {entity_id!r}, which the scene graph does not have")


# ---------------------------------------------------------------------------------------------
# Drafter
# ---------------------------------------------------------------------------------------------


class SketchDrafter:
    """Draws the entities a plan step introduces, with seeded :class:`SketchFaults`.

    Starts from a ``size`` x ``size`` background canvas when the request has no image; otherwise
    draws on a copy of it (at its size) and leaves every pixel outside the new icons (and their
    halos) as it was. Per entity of the step, in order: ``missing``, ``count``, ``colour_leak``,
    ``flip`` (see :class:`SketchFaults`). Each draft reports ``sampling_steps=1``: the sketch world
    counts one render as one step.
    """

    def __init__(self, faults: SketchFaults = SketchFaults(), size: int = 512) -> None:  # noqa: B008
        if size < 64:
            raise UsageError(f"size must be at least 64 px, got {size!r}")
        self.faults = faults
        self.size = size

    def draft(self, request: DraftRequest) -> DraftResult:
        from PIL import Image

        scene, step, seed = request.scene, request.step, request.seed
        _check_step(scene, request.plan, step)
        if request.image is None:
            image = Image.new("RGB", (self.size, self.size), BACKGROUND)
        else:
            image = request.image.convert("RGB").copy()
        sketch = _Sketch(scene, image.width, image.height, seed)
        f = self.faults
        for entity_id in request.plan.steps[step].entity_ids:
            entity = scene.entity(entity_id)
            icons = sketch.ideal(entity_id)
            if _rng(seed, step, entity_id, "missing").random() < f.missing:
                continue
            rng = _rng(seed, step, entity_id, "count")
            if rng.random() < f.count:
                icons = sketch.miscount(entity, icons, rng, image)
            rng = _rng(seed, step, entity_id, "colour_leak")
            if entity.colour and rng.random() < f.colour_leak:
                icons = sketch.leak(entity, icons, rng)
            for rel in sketch.relations:
                if rel.subject == entity_id and _rng(seed, step, entity_id, "flip", rel).random() < f.flip:
                    icons = sketch.flip(icons, rel)
                    break
            sketch.paint(image, icons)
        return DraftResult(image=image, sampling_steps=1)


# ---------------------------------------------------------------------------------------------
# Refiner
# ---------------------------------------------------------------------------------------------

_PREDICATE_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


def _words(entity: Entity, *, colour: bool = True) -> str:
    """``'red apples'`` / ``'cup'``: the entity's noun, plural when it has several, without a count."""
    noun = entity.noun if entity.count == 1 else pluralize(entity.noun)
    return " ".join([*entity.attributes, *([entity.colour] if colour and entity.colour else []), noun])


def _correction(violation: Violation, scene: SceneGraph) -> str:
    """The ``<refine>`` sentence for one violation."""
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


class SketchRefiner:
    """Fixes the critique's violations by redrawing from the ideal layout; fails at ``failure_rate``.

    A relation violation regenerates the whole canvas: every entity introduced up to the step at its
    layout boxes. Otherwise it inpaints: the region is the union of the violations' boxes and the
    layout boxes of the entities they name, grown by a halo; inside it the canvas becomes that same
    ideal rendering (background where nothing belongs, which erases extra objects), outside it stays
    byte-identical.

    With probability ``failure_rate`` (seeded by seed, step and round) the redraw fails: it reports
    the same :class:`~strokegraph.schema.Refinement`, but one entity named by the violations gets one
    fault: ``missing``, ``colour_leak`` (if it has a required colour), ``count`` (one fewer if it has
    several; one more at a free spot only when regenerating) or ``flip`` (only when regenerating, for
    a relation it is the subject of). With no such entity (say, only an unknown extra object) the
    failed redraw changes nothing.
    """

    def __init__(self, failure_rate: float = 0.2, size: int = 512) -> None:
        if not 0.0 <= failure_rate <= 1.0:
            raise UsageError(f"failure_rate must be a probability in 0..1, got {failure_rate!r}")
        if size < 64:
            raise UsageError(f"size must be at least 64 px, got {size!r}")
        self.failure_rate = failure_rate
        self.size = size

    def refine(self, request: RefineRequest) -> RefineResult:
        scene, step, seed = request.scene, request.step, request.seed
        _check_step(scene, request.plan, step)
        violations = request.critique.violations
        if not violations:
            raise UsageError("request.critique has no violations: there is nothing to refine")
        image = request.image.convert("RGB")
        sketch = _Sketch(scene, image.width, image.height, seed)
        introduced = list(dict.fromkeys(i for s in request.plan.steps[: step + 1] for i in s.entity_ids))
        concerned = list(dict.fromkeys(i for v in violations for i in v.entity_ids if i in introduced))
        regenerate = any(v.kind == "relation" for v in violations)
        refinement = Refinement(
            text=" ".join(dict.fromkeys(_correction(v, scene) for v in violations)),
            operation="regenerate" if regenerate else "inpaint",
            region=None,
            violations=violations,
        )

        icons = {i: sketch.ideal(i) for i in introduced}
        rng = _rng(seed, step, request.round, "refine")
        if rng.random() < self.failure_rate:
            if not concerned:
                return RefineResult(image=image.copy(), refinement=refinement, sampling_steps=1)
            self._fail(sketch, icons, rng.choice(concerned), rng, regenerate)
        ideal = sketch.render(icon for i in introduced for icon in icons[i])
        if regenerate:
            return RefineResult(image=ideal, refinement=refinement, sampling_steps=1)

        rect = self._region(sketch, violations, concerned)
        out = image.copy()
        if rect is None:
            return RefineResult(image=out, refinement=refinement, sampling_steps=1)
        out.paste(ideal.crop(rect), rect[:2])
        x0, y0, x1, y1 = rect
        region = (x0 / image.width, y0 / image.height, x1 / image.width, y1 / image.height)
        return RefineResult(image=out, refinement=refinement.model_copy(update={"region": region}), sampling_steps=1)

    @staticmethod
    def _fail(
        sketch: _Sketch, icons: dict[str, list[_Icon]], entity_id: str, rng: random.Random, regenerate: bool
    ) -> None:
        entity = sketch.scene.entity(entity_id)
        relations = [r for r in sketch.relations if r.subject == entity_id and r.object in icons]
        kinds = ["missing"]
        if entity.colour:
            kinds.append("colour_leak")
        if entity.count > 1 or regenerate:
            kinds.append("count")
        if regenerate and relations:
            kinds.append("flip")
        kind = rng.choice(kinds)
        if kind == "missing":
            icons[entity_id] = []
        elif kind == "colour_leak":
            icons[entity_id] = sketch.leak(entity, icons[entity_id], rng)
        elif kind == "count":
            others = [icon for i, group in icons.items() if i != entity_id for icon in group]
            canvas = sketch.render(others)
            icons[entity_id] = sketch.miscount(entity, icons[entity_id], rng, canvas, may_add=regenerate)
        else:
            icons[entity_id] = sketch.flip(icons[entity_id], rng.choice(relations))

    @staticmethod
    def _region(
        sketch: _Sketch, violations: Sequence[Violation], concerned: Sequence[str]
    ) -> tuple[int, int, int, int] | None:
        """Pixel rectangle ``(x0, y0, x1, y1)``, ``x1`` exclusive, to inpaint; None when nothing is known."""
        w, h = sketch.width, sketch.height
        boxes = [(v.box[0] * w, v.box[1] * h, v.box[2] * w, v.box[3] * h) for v in violations if v.box is not None]
        boxes += [b for i in concerned for b in sketch.layout[i]]
        if not boxes:
            return None
        grow = sketch.halo + 2
        x0 = max(0, math.floor(min(b[0] for b in boxes) - grow))
        y0 = max(0, math.floor(min(b[1] for b in boxes) - grow))
        x1 = min(w, math.ceil(max(b[2] for b in boxes) + grow) + 1)
        y1 = min(h, math.ceil(max(b[3] for b in boxes) + grow) + 1)
        return (x0, y0, x1, y1)
