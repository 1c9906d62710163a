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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from strokegraph.agents.drafter import DraftRequest, DraftResult
from strokegraph.agents.refiner import RefineRequest, RefineResult, refine_text
from strokegraph.errors import UsageError
from strokegraph.geometry import relation_holds
from strokegraph.schema import COLOURS, Colour, Entity, Plan, Refinement, Relation, SceneGraph, Violation
from strokegraph.tools.sketch.codebook import BACKGROUND, codes_for, draw_icon, glyph_box, halo_width, silhouette_for
from strokegraph.tools.sketch.layout import MIN_SIDE, RELATION_MARGIN, PixelBox, acyclic_relations, solve_layout
from strokegraph.tools.sketch.truth import Drawing, FaultKind, InjectedFault, Instance

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["DEFAULT_COLOURS", "MIN_READABLE_PX", "SketchDrafter", "SketchFaults", "SketchRefiner", "default_colour"]

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


#: The smallest icon side, in pixels, the sketch world draws: the pixel critic misreads smaller icons.
MIN_READABLE_PX = 30
#: Shrink factors a flipped group tries, largest first (see ``_Sketch.flip``).
_FLIP_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
#: Pixels the pixel detector needs between an icon's halo and a glyph that icon partly covers.
_GLYPH_GAP = 3
_INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _rng(*keys: object) -> random.Random:
    """A generator seeded by a stable hash of ``keys`` (Python's ``hash()`` changes per process).

    Callers key it by the prompt as well as the seed, so two prompts never share their faults.
    """
    digest = hashlib.sha256("\x1f".join(map(str, keys)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class SketchFaults(BaseModel):
    """How often :class:`SketchDrafter` gets each thing wrong: probabilities in 0..1, drawn per entity.

    - ``missing`` (0.12): an entity of the step is not drawn at all (no other fault applies then).
    - ``count`` (0.15): one instance too few (only when at least one stays; even odds otherwise) or
      one too many, added at a free spot near the entity's own instances (background on the
      canvas and outside every entity's layout box, so later steps still fit). For an entity of
      count 0 ("no cars") it draws one anyway, as models asked for "no cars" do.
    - ``colour_leak`` (0.2): only for an entity with a required colour; all its instances take the
      colour of another coloured entity of the scene (a random one), or another of the ten colours
      when there is none.
    - ``flip`` (0.3): per position relation (of :func:`~strokegraph.tools.sketch.layout.acyclic_relations`;
      not "next to", which a mirror image keeps) whose subject the step draws, drawn in the scene's
      order; the first that fires mirrors the subject across the object's centre, so the relation is
      inverted. The flipped subject is drawn after the rest of the step and never covers a glyph
      drawn before it (a partly hidden object, not an unreadable one); where no place does both, it
      keeps the glyphs clear and the relation is only partly inverted (see ``_Sketch.flip``).

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


#: The largest canvas side: a 4096 px canvas is 48 MiB of pixels; 16000 px took 9.8 GB and 213 s.
MAX_SIZE = 4096


def _check_size(size: object) -> None:
    """The drafter's and refiner's ``size`` setting, wherever it comes from (config, Python, run.json)."""
    if not (isinstance(size, int) and 64 <= size <= MAX_SIZE):
        raise UsageError(f"size must be a whole number of px from 64 to {MAX_SIZE}, got {size!r}")


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
        smallest = min((b[2] - b[0] for boxes in self.layout.values() for b in boxes), default=MIN_READABLE_PX)
        if smallest < MIN_READABLE_PX:
            instances = sum(len(boxes) for boxes in self.layout.values())
            raise UsageError(
                f"the sketch world cannot draw {instances} objects legibly on a {width}x{height} canvas: icons would "
                f"be {smallest} px, and the pixel critic reads {MIN_READABLE_PX} px and up; ask for fewer objects "
                "or a larger canvas (the drafter's and refiner's 'size' setting)"
            )
        # Mirroring keeps "next to", so only position relations can be flipped.
        self.relations = tuple(r for r in acyclic_relations(scene) if r.predicate in _INVERSE)
        self.codes = codes_for(e.noun for e in scene.entities)
        self.halo = halo_width(max((b[2] - b[0] for boxes in self.layout.values() for b in boxes), default=64))
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
        """One instance fewer (only if one stays) or, even odds, one more at a free spot of ``canvas``.

        An entity with no instances (count 0, or dropped) gets one, as large as the largest icon of the layout.
        """
        if len(icons) > 1 and (not may_add or rng.random() < 0.5):
            drop = rng.randrange(len(icons))
            return icons[:drop] + icons[drop + 1 :]
        if not icons:
            side = max((b[2] - b[0] for boxes in self.layout.values() for b in boxes), default=self.width // 4)
            colour = entity.colour or default_colour(entity.noun)
            return [_Icon(entity.id, entity.noun, colour, self._free_spot(entity, side, rng, canvas))]
        return [*icons, replace(icons[0], box=self._free_spot(entity, _side(icons[0]), rng, canvas))]

    def _free_spot(self, entity: Entity, side: int, rng: random.Random, canvas: Image.Image) -> PixelBox:
        """A box near the entity's own instances that is background on ``canvas`` and in no layout box.

        Shrinks the box down to 60% when nothing fits; with no room at all it lands anywhere.
        """
        busy = (np.asarray(canvas.convert("RGB")) != np.array(BACKGROUND, dtype=np.uint8)).any(axis=-1)
        for boxes in self.layout.values():
            for box in boxes:
                x0, y0, x1, y1 = (round(v) for v in _grown(box, self.halo))
                busy[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = True
        # Summed-area table: the busy pixels inside any rectangle in O(1).
        table = np.zeros((busy.shape[0] + 1, busy.shape[1] + 1), dtype=np.int64)
        table[1:, 1:] = busy.cumsum(0).cumsum(1)
        own = self.layout[entity.id] or [(0, 0, self.width, self.height)]
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

    def glyph(self, icon: _Icon) -> tuple[float, float, float, float]:
        """Where ``icon``'s glyph sits (not always the middle of its box: triangles, stars, hearts)."""
        return glyph_box(silhouette_for(icon.noun, self.codes[icon.noun]), icon.box)

    def flip(self, icons: list[_Icon], relation: Relation, drawn: Sequence[_Icon], canvas: Image.Image) -> list[_Icon]:
        """The subject's instances mirrored across the object's centre, so the relation is inverted.

        ``drawn`` are the instances on ``canvas`` as far as the caller knows; the object's instances
        count too, drawn yet or not. The group is reflected along the relation's axis and its near
        edge put at the mirror image of the old one. Where that runs off the canvas or onto
        something, the group moves to the nearest free place (in pixels), shrinking uniformly as it
        must, but no icon below :data:`~strokegraph.tools.sketch.layout.MIN_SIDE`, so it stays
        readable. Free means first that its halos touch nothing on ``canvas`` nor any box of
        ``drawn``; failing that, that they keep 3 px clear of every glyph of ``drawn`` (what the
        pixel detector needs to still read a partly covered icon), covering rims only. A place
        counts only where it inverts the relation, with half the layout's ``RELATION_MARGIN`` to
        spare. If none does, the group takes the place of the second kind nearest the mirror image,
        at the largest scale that has one, and the relation is then only partly inverted or not at
        all; with no such place on the canvas the subject stays where it was. The caller draws the
        result after everything in ``drawn``, so nothing covers its glyph in turn.
        """
        if not icons:
            return icons
        axis = 0 if relation.predicate in ("left of", "right of") else 1
        obj = self.ideal(relation.object)
        known = [*drawn, *obj]
        boxes = [icon.box for icon in icons]
        lo = [min(b[i] for b in boxes) for i in (0, 1)]
        hi = [max(b[i + 2] for b in boxes) for i in (0, 1)]
        obj_lo, obj_hi = min(i.box[axis] for i in obj), max(i.box[axis + 2] for i in obj)
        forward = sum(b[axis] + b[axis + 2] for b in boxes) / len(boxes) < (
            sum(i.box[axis] + i.box[axis + 2] for i in obj) / len(obj)
        )
        floor = MIN_SIDE * min(self.width, self.height) / min(b[2] - b[0] for b in boxes)
        scales = sorted({max(k, min(1.0, floor)) for k in _FLIP_SCALES}, reverse=True)

        def shape(k: float) -> list[PixelBox]:
            """The group reflected along the axis and scaled by ``k``, from its top-left corner."""
            out = []
            for b in boxes:
                offset = [k * (b[0] - lo[0]), k * (b[1] - lo[1])]
                offset[axis] = k * (hi[axis] - b[axis + 2])
                x0, y0, side = round(offset[0]), round(offset[1]), round(k * (b[2] - b[0]))
                out.append((x0, y0, x0 + side, y0 + side))
            return out

        def mirror(k: float) -> tuple[float, float]:
            """Where the top-left corner of the group scaled by ``k`` goes in the mirror image."""
            near = obj_lo + obj_hi - (hi[axis] if forward else lo[axis])
            along = near if forward else near - k * (hi[axis] - lo[axis])
            across = (lo[1 - axis] + hi[1 - axis] - k * (hi[1 - axis] - lo[1 - axis])) / 2
            return (along, across) if axis == 0 else (across, along)

        gap = 2 * self.halo + 2
        busy = (np.asarray(canvas.convert("RGB")) != np.array(BACKGROUND, dtype=np.uint8)).any(axis=-1)
        # Summed-area table of the busy pixels, the canvas padded by ``gap``: the padded window of
        # a box grown by ``gap`` starts where the box does on the canvas.
        table = np.zeros((busy.shape[0] + 2 * gap + 1, busy.shape[1] + 2 * gap + 1), dtype=np.int32)
        table[1:, 1:] = np.pad(busy, gap).cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
        untouched = [_grown(i.box, gap) for i in known]
        readable = [_grown(self.glyph(i), self.halo + _GLYPH_GAP) for i in known]
        inverse = _INVERSE[relation.predicate]
        targets = [self.unit(i.box) for i in obj]
        fallback = None
        for keep_out, busy_table in ((untouched, table), (readable, None)):
            for k in scales:
                rel = shape(k)
                ys, xs = np.nonzero(self._free_origins(rel, keep_out, busy_table, gap))
                if not len(xs):
                    continue
                ox, oy = mirror(k)
                j = int(np.argmin((xs - ox) ** 2 + (ys - oy) ** 2))
                x, y = int(xs[j]), int(ys[j])
                placed = [(x + r[0], y + r[1], x + r[2], y + r[3]) for r in rel]
                # Some margin, as the layout keeps: the critic measures the silhouettes' boxes, not these squares.
                if all(
                    relation_holds(self.unit(box), target, inverse, RELATION_MARGIN / 2)
                    for box in placed
                    for target in targets
                ):
                    return [replace(icon, box=box) for icon, box in zip(icons, placed, strict=True)]
                if busy_table is None and fallback is None:
                    fallback = placed
        if fallback is None:
            return icons
        return [replace(icon, box=box) for icon, box in zip(icons, fallback, strict=True)]

    def instance(self, icon: _Icon) -> Instance:
        """What the sketch world knows of a painted icon: its entity, noun, colour and normalised box."""
        return Instance(entity_id=icon.entity_id, noun=icon.noun, colour=icon.colour, box=self.unit(icon.box))

    def unit(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """``box`` normalised by the canvas size, as the critic sees boxes."""
        return (box[0] / self.width, box[1] / self.height, box[2] / self.width, box[3] / self.height)

    def _free_origins(
        self, shape: Sequence[PixelBox], keep_out: Sequence[Sequence[float]], table: np.ndarray | None, gap: int
    ) -> np.ndarray:
        """``free[y, x]``: whether ``shape`` moved by ``(x, y)`` stays on the canvas and off ``keep_out``.

        Off ``keep_out``: no box of ``shape`` meets one of its rectangles, and, given ``table`` (the
        busy pixels' summed-area table, canvas padded by ``gap``), none has a busy pixel within ``gap``.
        """
        w, h, m = self.width, self.height, self.margin
        free = np.zeros((h, w), dtype=bool)
        x_lo, y_lo = max(0, m - min(r[0] for r in shape)), max(0, m - min(r[1] for r in shape))
        x_hi, y_hi = max(0, w - m - max(r[2] for r in shape) + 1), max(0, h - m - max(r[3] for r in shape) + 1)
        free[y_lo:y_hi, x_lo:x_hi] = True
        for r in shape:
            for k in keep_out:
                # Moved by p, r meets k where p + r0 < k2 and p + r2 > k0 on both axes.
                y0, y1 = max(0, math.floor(k[1] - r[3]) + 1), max(0, math.ceil(k[3] - r[1]))
                x0, x1 = max(0, math.floor(k[0] - r[2]) + 1), max(0, math.ceil(k[2] - r[0]))
                free[y0:y1, x0:x1] = False
        if table is None or not free.any():
            return free
        clear: dict[int, np.ndarray] = {}
        for r in shape:
            n = r[2] - r[0] + 2 * gap + 1
            if n not in clear:
                clear[n] = (table[n:, n:] - table[:-n, n:] - table[n:, :-n] + table[:-n, :-n]) == 0
            free[y_lo:y_hi, x_lo:x_hi] &= clear[n][y_lo + r[1] : y_hi + r[1], x_lo + r[0] : x_hi + r[0]]
        return free


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
    ``flip`` (see :class:`SketchFaults`); flipped entities are drawn after the others. Each draft
    reports ``sampling_steps=1``: the sketch world counts one render as one step.
    """

    def __init__(self, faults: SketchFaults = SketchFaults(), size: int = 512) -> None:  # noqa: B008
        _check_size(size)
        self.faults = faults
        self.size = size

    def draft(self, request: DraftRequest) -> DraftResult:
        return self.draw(request).result

    def draw(self, request: DraftRequest) -> Drawing:
        """The draft of :meth:`draft`, with the icons it painted and the faults it injected (the truth)."""
        from PIL import Image

        scene, step, seed = request.scene, request.step, request.seed
        _check_step(scene, request.plan, step)
        if request.image is None:
            image = Image.new("RGB", (self.size, self.size), BACKGROUND)
        else:
            image = request.image.convert("RGB").copy()
        sketch = _Sketch(scene, image.width, image.height, seed)
        f = self.faults
        faults: list[InjectedFault] = []
        # What earlier steps drew, as far as the drafter knows: their entities at their layout boxes.
        earlier = dict.fromkeys(i for s in request.plan.steps[:step] for i in s.entity_ids)
        drawn = [icon for i in earlier for icon in sketch.ideal(i)]
        painted: list[_Icon] = []
        flipped: list[tuple[list[_Icon], Relation]] = []
        for entity_id in request.plan.steps[step].entity_ids:
            entity = scene.entity(entity_id)
            icons = sketch.ideal(entity_id)
            if _rng(scene.prompt, seed, step, entity_id, "missing").random() < f.missing:
                faults.append(InjectedFault(kind="missing", entity_id=entity_id, detail=f"{len(icons)} not drawn"))
                continue
            rng = _rng(scene.prompt, seed, step, entity_id, "count")
            if rng.random() < f.count:
                before = len(icons)
                icons = sketch.miscount(entity, icons, rng, image)
                faults.append(InjectedFault(kind="count", entity_id=entity_id, detail=f"{before} -> {len(icons)}"))
            rng = _rng(scene.prompt, seed, step, entity_id, "colour_leak")
            if entity.colour and rng.random() < f.colour_leak:
                icons = sketch.leak(entity, icons, rng)
                leaked = icons[0].colour if icons else "?"
                faults.append(
                    InjectedFault(kind="colour_leak", entity_id=entity_id, detail=f"{entity.colour} -> {leaked}")
                )
            rel = next(
                (
                    r
                    for r in sketch.relations
                    if r.subject == entity_id and _rng(scene.prompt, seed, step, entity_id, "flip", r).random() < f.flip
                ),
                None,
            )
            if rel is None:
                sketch.paint(image, icons)
                drawn += icons
                painted += icons
            else:
                flipped.append((icons, rel))
        # Flipped groups go on last, each clear of every glyph drawn before it, so no icon of the
        # draft covers another's glyph (an unreadable icon is not a mistake models make).
        for icons, rel in flipped:
            icons = sketch.flip(icons, rel, drawn, image)
            sketch.paint(image, icons)
            drawn += icons
            painted += icons
            detail = f"{rel.subject} {rel.predicate} {rel.object} drawn as {_INVERSE[rel.predicate]}"
            faults.append(InjectedFault(kind="flip", entity_id=rel.subject, detail=detail))
        return Drawing(
            result=DraftResult(image=image, sampling_steps=1),
            painted=tuple(sketch.instance(i) for i in painted),
            faults=tuple(faults),
            mode="over",
        )


# ---------------------------------------------------------------------------------------------
# Refiner
# ---------------------------------------------------------------------------------------------


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
        _check_size(size)
        self.failure_rate = failure_rate
        self.size = size

    def refine(self, request: RefineRequest) -> RefineResult:
        return self.draw(request).result

    def draw(self, request: RefineRequest) -> Drawing:
        """The redraw of :meth:`refine`, with the icons it painted, where, and the fault it injected if it failed."""
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
            text=refine_text(violations, scene),
            operation="regenerate" if regenerate else "inpaint",
            region=None,
            violations=violations,
        )

        def drawing(out: Image.Image, icons: Sequence[_Icon], faults=(), region=None) -> Drawing:
            done = refinement.model_copy(update={"region": region}) if region and any(region) else refinement
            return Drawing(
                result=RefineResult(image=out, refinement=done, sampling_steps=1),
                painted=tuple(sketch.instance(i) for i in icons),
                faults=tuple(faults),
                mode="inpaint" if region is not None else "fresh",
                region=region,
            )

        icons = {i: sketch.ideal(i) for i in introduced}
        rng = _rng(scene.prompt, seed, step, request.round, "refine")
        faults: list[InjectedFault] = []
        if rng.random() < self.failure_rate:
            if not concerned:
                # Nothing redrawn: an empty region keeps every instance of the image it was given.
                return drawing(image.copy(), [], region=(0.0, 0.0, 0.0, 0.0))
            faults.append(self._fail(sketch, icons, rng.choice(concerned), rng, regenerate))
        every = [icon for group in icons.values() for icon in group]
        ideal = sketch.render(every)
        if regenerate:
            return drawing(ideal, every, faults)

        rect = self._region(sketch, violations, concerned)
        out = image.copy()
        if rect is None:
            return drawing(out, [], region=(0.0, 0.0, 0.0, 0.0))
        out.paste(ideal.crop(rect), rect[:2])
        x0, y0, x1, y1 = rect
        region = (x0 / image.width, y0 / image.height, x1 / image.width, y1 / image.height)
        return drawing(out, every, faults, region=region)

    @staticmethod
    def _fail(
        sketch: _Sketch, icons: dict[str, list[_Icon]], entity_id: str, rng: random.Random, regenerate: bool
    ) -> InjectedFault:
        entity = sketch.scene.entity(entity_id)
        relations = [r for r in sketch.relations if r.subject == entity_id and r.object in icons]
        kinds: list[FaultKind] = ["missing"]
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
            others = [icon for i, group in icons.items() if i != entity_id for icon in group]
            flipped = sketch.flip(icons[entity_id], rng.choice(relations), others, sketch.render(others))
            # Re-inserted, so it is drawn last and nothing covers its glyph.
            del icons[entity_id]
            icons[entity_id] = flipped
        return InjectedFault(kind=kind, entity_id=entity_id, detail="the redraw failed")

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
