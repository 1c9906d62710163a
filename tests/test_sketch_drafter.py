"""The sketch world's layout solver, drafter and refiner, through their public API."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from importlib import resources

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError

from strokegraph.agents.drafter import Drafter, DraftRequest
from strokegraph.agents.refiner import Refiner, RefineRequest
from strokegraph.errors import UsageError
from strokegraph.geometry import observed_relations, relation_holds
from strokegraph.schema import Critique, Entity, Plan, PlanStep, Relation, SceneGraph, Violation
from strokegraph.tools.sketch import codebook
from strokegraph.tools.sketch.codebook import (
    BACKGROUND,
    PALETTE,
    all_codes,
    code_bits,
    codes_for,
    draw_icon,
    glyph_box,
    halo_width,
    silhouette_for,
)
from strokegraph.tools.sketch.drafter import DEFAULT_COLOURS, SketchDrafter, SketchFaults, SketchRefiner
from strokegraph.tools.sketch.layout import acyclic_relations, solve_layout
from strokegraph.tools.sketch.pixels import PixelDetector

SIZE = 512


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def make_scene(*entities: tuple, relations: Sequence[tuple[str, str, str]] = ()) -> SceneGraph:
    """``make_scene(("e0", "dog", 1, "brown"), relations=[("e1", "left of", "e0")])``."""
    return SceneGraph(
        prompt="test",
        entities=tuple(Entity(id=i, noun=n, count=c, colour=col) for i, n, c, col in entities),
        # Validated as a reply would be: the predicate must be one of Relation's.
        relations=tuple(Relation.model_validate({"subject": s, "predicate": p, "object": o}) for s, p, o in relations),
    )


def make_plan(*steps: tuple[str, ...]) -> Plan:
    return Plan(steps=tuple(PlanStep(instruction="add", description="scene", entity_ids=ids) for ids in steps))


def chain(counts: list[int], predicate: str) -> SceneGraph:
    ids = [f"e{i}" for i in range(len(counts))]
    return make_scene(
        *((i, "cat", c, None) for i, c in zip(ids, counts, strict=True)),
        relations=tuple((a, predicate, b) for a, b in itertools.pairwise(ids)),
    )


def draft_all(scene: SceneGraph, plan: Plan, faults: SketchFaults, seed: int = 0, upto: int | None = None):
    """The canvases after each step, drafting step by step from nothing."""
    drafter = SketchDrafter(faults)
    images, image = [], None
    for step in range(len(plan.steps) if upto is None else upto + 1):
        image = drafter.draft(DraftRequest(scene=scene, plan=plan, step=step, image=image, seed=seed)).image
        images.append(image)
    return images


def shows_icon(image: Image.Image, box, noun: str, colour: str, scene: SceneGraph) -> bool:
    """Whether the glyph of ``noun`` in ``colour`` is at ``box``: every cell hole or solid as coded."""
    code = codes_for(e.noun for e in scene.entities)[noun]
    gx0, gy0, gx1, _ = glyph_box(silhouette_for(noun, code), box)
    cell = (gx1 - gx0) / 4
    for r, row in enumerate(code_bits(code)):
        for c, hole in enumerate(row):
            pixel = image.getpixel((int(gx0 + (c + 0.5) * cell), int(gy0 + (r + 0.5) * cell)))
            if pixel != (BACKGROUND if hole else PALETTE[colour]):
                return False
    return True


def footprint(boxes, size: int = SIZE) -> np.ndarray:
    """Pixels an icon at each box may touch: the box grown by its halo and one pixel more."""
    mask = np.zeros((size, size), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        grow = halo_width(x1 - x0) + 1
        mask[max(0, y0 - grow) : y1 + grow + 1, max(0, x0 - grow) : x1 + grow + 1] = True
    return mask


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def colour_mask(image: Image.Image, colour: str) -> np.ndarray:
    return (pixels(image) == np.array(PALETTE[colour], dtype=np.uint8)).all(axis=-1)


def blobs(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x0, y0, x1, y1) of the 8-connected regions of ``mask``, sampled every 2 px."""
    m = mask[::2, ::2]
    seen = np.zeros_like(m)
    out = []
    for y, x in zip(*np.nonzero(m), strict=True):
        if seen[y, x]:
            continue
        seen[y, x] = True
        todo, ys, xs = [(y, x)], [], []
        while todo:
            cy, cx = todo.pop()
            ys.append(cy)
            xs.append(cx)
            for ny in range(max(0, cy - 1), min(m.shape[0], cy + 2)):
                for nx in range(max(0, cx - 1), min(m.shape[1], cx + 2)):
                    if m[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        todo.append((ny, nx))
        out.append((2 * min(xs), 2 * min(ys), 2 * max(xs) + 2, 2 * max(ys) + 2))
    return out


def unit(box) -> tuple[float, float, float, float]:
    """A pixel box normalised, as the critic sees boxes."""
    return (box[0] / SIZE, box[1] / SIZE, box[2] / SIZE, box[3] / SIZE)


def normalised(boxes) -> tuple[float, float, float, float]:
    return (
        min(b[0] for b in boxes) / SIZE,
        min(b[1] for b in boxes) / SIZE,
        max(b[2] for b in boxes) / SIZE,
        max(b[3] for b in boxes) / SIZE,
    )


def region_mask(region, size: int = SIZE) -> np.ndarray:
    x0, y0, x1, y1 = (round(v * size) for v in region)
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


# ---------------------------------------------------------------------------------------------
# The codebook's shipped table
# ---------------------------------------------------------------------------------------------


def test_the_shipped_code_table_is_what_the_codebook_would_choose():
    # The table ships so that no command spends a quarter second choosing the codes; it must not go stale.
    assert all_codes() == codebook._choose_codes()
    shipped = resources.files("strokegraph.tools.sketch").joinpath("glyph_codes.txt").read_text(encoding="ascii")
    assert shipped == codebook._table_text()
    codes = all_codes()
    assert len(codes) == 512
    assert min((a ^ b).bit_count() for a, b in itertools.combinations(codes, 2)) >= 3


# ---------------------------------------------------------------------------------------------
# GenEval's position rule and the layout
# ---------------------------------------------------------------------------------------------


LAYOUT_SCENES = {
    "one": make_scene(("e0", "cat", 1, None)),
    "four of one": make_scene(("e0", "apple", 4, "red")),
    "left of": make_scene(("e0", "dog", 1, None), ("e1", "cat", 1, None), relations=[("e1", "left of", "e0")]),
    "many above many": make_scene(("e0", "cup", 3, None), ("e1", "dog", 4, None), relations=[("e0", "above", "e1")]),
    "chain of five": chain([1, 2, 3, 4, 1], "left of"),
    "vertical chain": chain([2, 2, 1, 3], "above"),
    "right chain": chain([1, 3, 1], "right of"),
    "cycle": make_scene(
        ("e0", "dog", 2, None),
        ("e1", "cat", 1, None),
        ("e2", "cup", 3, None),
        relations=[("e0", "left of", "e1"), ("e1", "left of", "e2"), ("e2", "left of", "e0")],
    ),
    "contradiction": make_scene(
        ("e0", "dog", 2, None), ("e1", "cat", 1, None), relations=[("e0", "left of", "e1"), ("e0", "right of", "e1")]
    ),
    "star": make_scene(
        ("e0", "dog", 1, None),
        ("e1", "cat", 2, None),
        ("e2", "cup", 2, None),
        ("e3", "apple", 3, None),
        ("e4", "vase", 1, None),
        relations=[("e1", "left of", "e0"), ("e2", "right of", "e0"), ("e3", "above", "e0"), ("e4", "below", "e0")],
    ),
    "both axes": make_scene(
        ("e0", "dog", 1, None), ("e1", "cat", 2, None), relations=[("e0", "left of", "e1"), ("e0", "above", "e1")]
    ),
    "mixed with a free one": make_scene(
        ("e0", "dog", 2, None),
        ("e1", "cat", 3, None),
        ("e2", "cup", 1, None),
        ("e3", "apple", 4, None),
        ("e4", "vase", 2, None),
        relations=[("e0", "left of", "e1"), ("e2", "above", "e1"), ("e3", "below", "e0")],
    ),
    "all free": make_scene(("e0", "dog", 4, None), ("e1", "cat", 3, None), ("e2", "cup", 1, None)),
}


@pytest.mark.parametrize("scene", LAYOUT_SCENES.values(), ids=LAYOUT_SCENES.keys())
@pytest.mark.parametrize("seed", [0, 7])
def test_layout_keeps_every_relation_for_every_pair_of_instances(scene, seed):
    layout = solve_layout(scene, SIZE, SIZE, seed)
    for rel in acyclic_relations(scene):
        for a, b in itertools.product(layout[rel.subject], layout[rel.object]):
            assert rel.predicate in observed_relations(unit(a), unit(b)), (rel, a, b)
            assert relation_holds(unit(a), unit(b), rel.predicate, margin=0.03), (rel, a, b)


@pytest.mark.parametrize("scene", LAYOUT_SCENES.values(), ids=LAYOUT_SCENES.keys())
def test_layout_boxes_are_square_inside_the_canvas_sized_and_apart(scene):
    layout = solve_layout(scene, SIZE, SIZE, 3)
    assert set(layout) == {e.id for e in scene.entities}
    boxes = []
    for e in scene.entities:
        assert len(layout[e.id]) == e.count
        boxes += layout[e.id]
    for x0, y0, x1, y1 in boxes:
        assert x1 - x0 == y1 - y0
        assert 45 <= x1 - x0 <= 170
        margin = halo_width(x1 - x0) + 2
        assert margin <= x0 and x1 <= SIZE - margin and margin <= y0 and y1 <= SIZE - margin
    for a, b in itertools.combinations(boxes, 2):
        overlap = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
        assert overlap <= 0.15 * min(a[2] - a[0], b[2] - b[0]) ** 2


def test_layout_drops_the_relation_that_closes_a_cycle():
    assert [(r.subject, r.object) for r in acyclic_relations(LAYOUT_SCENES["cycle"])] == [("e0", "e1"), ("e1", "e2")]
    assert [r.predicate for r in acyclic_relations(LAYOUT_SCENES["contradiction"])] == ["left of"]
    itself = make_scene(("e0", "dog", 1, None), relations=[("e0", "above", "e0")])
    assert acyclic_relations(itself) == ()
    assert len(solve_layout(itself, SIZE, SIZE, 0)["e0"]) == 1


def test_layout_is_deterministic_and_the_seed_only_jitters():
    scene = LAYOUT_SCENES["star"]
    assert solve_layout(scene, SIZE, SIZE, 5) == solve_layout(scene, SIZE, SIZE, 5)
    layouts = [solve_layout(scene, SIZE, SIZE, seed) for seed in range(4)]
    assert any(layout != layouts[0] for layout in layouts[1:])
    for layout in layouts:
        # Jitter is small: each instance stays within an eighth of its side of seed 0's.
        for i, box in enumerate(layout["e0"]):
            assert abs(box[0] - layouts[0]["e0"][i][0]) <= 0.13 * (box[2] - box[0])


def test_layout_scales_with_the_canvas():
    scene = LAYOUT_SCENES["left of"]
    small, large = solve_layout(scene, 256, 256, 0), solve_layout(scene, 1024, 1024, 0)
    side = {n: layout["e0"][0][2] - layout["e0"][0][0] for n, layout in (("small", small), ("large", large))}
    assert 3.5 <= side["large"] / side["small"] <= 4.5


# ---------------------------------------------------------------------------------------------
# Drafter
# ---------------------------------------------------------------------------------------------

SCENE = make_scene(
    ("e0", "dog", 1, "brown"),
    ("e1", "apple", 3, "red"),
    ("e2", "cup", 2, "blue"),
    ("e3", "banana", 1, None),
    relations=[("e1", "left of", "e0"), ("e2", "above", "e0"), ("e3", "right of", "e0")],
)
PLAN = make_plan(("e0",), ("e1", "e2"), ("e3",))


def test_the_sketch_backends_meet_their_protocols():
    assert isinstance(SketchDrafter(), Drafter)
    assert isinstance(SketchRefiner(), Refiner)


def test_exact_drafts_draw_each_step_and_touch_nothing_else():
    layout = solve_layout(SCENE, SIZE, SIZE, 11)
    before = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    drafter = SketchDrafter(SketchFaults.none())
    image = None
    for step, ids in enumerate(s.entity_ids for s in PLAN.steps):
        result = drafter.draft(DraftRequest(scene=SCENE, plan=PLAN, step=step, image=image, seed=11))
        assert result.sampling_steps == 1
        assert result.image.size == (SIZE, SIZE) and result.image.mode == "RGB"
        for entity_id in ids:
            e = SCENE.entity(entity_id)
            for box in layout[entity_id]:
                assert shows_icon(result.image, box, e.noun, e.colour or DEFAULT_COLOURS[e.noun], SCENE)
        outside = ~footprint([b for i in ids for b in layout[i]])
        assert (pixels(result.image)[outside] == pixels(before)[outside]).all()
        if image is not None:
            assert pixels(image).tobytes() == pixels(before).tobytes(), "the request's image was modified"
        image = before = result.image
    # Nothing beyond the icons: exactly the scene's colours, plus the background.
    colours = {tuple(c) for c in pixels(image).reshape(-1, 3)[::7]}
    assert colours <= {BACKGROUND, *(PALETTE[c] for c in ("brown", "red", "blue", "yellow"))}


def test_an_uncoloured_noun_gets_a_stable_default_colour():
    scene = make_scene(("e0", "zorblax", 1, None))
    images = [draft_all(scene, make_plan(("e0",)), SketchFaults.none())[0] for _ in range(2)]
    assert pixels(images[0]).tobytes() == pixels(images[1]).tobytes()
    box = solve_layout(scene, SIZE, SIZE, 0)["e0"][0]
    assert any(shows_icon(images[0], box, "zorblax", c, scene) for c in PALETTE)


def test_same_seed_gives_the_same_bytes_and_seeds_differ():
    runs = [draft_all(SCENE, PLAN, SketchFaults(), seed=seed)[-1] for seed in (4, 4, *range(5))]
    assert pixels(runs[0]).tobytes() == pixels(runs[1]).tobytes()
    assert len({pixels(r).tobytes() for r in runs[1:]}) > 1


def test_drafts_on_a_given_canvas_keep_its_size():
    canvas = Image.new("RGB", (300, 300), BACKGROUND)
    scene, plan = LAYOUT_SCENES["left of"], make_plan(("e0", "e1"))
    result = SketchDrafter(SketchFaults.none()).draft(
        DraftRequest(scene=scene, plan=plan, step=0, image=canvas, seed=0)
    )
    assert result.image.size == (300, 300)


def test_missing_at_rate_one_draws_nothing():
    first = draft_all(SCENE, PLAN, SketchFaults.none(), upto=0)[0]
    result = SketchDrafter(SketchFaults(missing=1, count=0, colour_leak=0, flip=0)).draft(
        DraftRequest(scene=SCENE, plan=PLAN, step=1, image=first, seed=0)
    )
    assert pixels(result.image).tobytes() == pixels(first).tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_count_at_rate_one_draws_one_too_many_or_too_few(seed):
    scene = make_scene(("e0", "apple", 1, "red"), ("e1", "cup", 3, "blue"))
    image = draft_all(scene, make_plan(("e0", "e1")), SketchFaults(missing=0, count=1, colour_leak=0, flip=0), seed)[0]
    assert len(blobs(colour_mask(image, "red"))) == 2  # one instance can only gain one
    assert len(blobs(colour_mask(image, "blue"))) in (2, 4)


def test_an_extra_instance_lands_at_a_free_spot():
    scene = make_scene(("e0", "apple", 1, "red"), ("e1", "cup", 1, "blue"), relations=[("e1", "right of", "e0")])
    plan = make_plan(("e0",), ("e1",))
    layout = solve_layout(scene, SIZE, SIZE, 1)
    image = draft_all(scene, plan, SketchFaults(missing=0, count=1, colour_leak=0, flip=0), seed=1)[0]
    extra = [b for b in blobs(colour_mask(image, "red")) if not footprint(layout["e0"])[b[1] + 2, b[0] + 2]]
    assert len(extra) == 1
    # Not on the cup's place, which a later step fills.
    assert not footprint(layout["e1"])[extra[0][1] : extra[0][3], extra[0][0] : extra[0][2]].any()


def test_colour_leak_at_rate_one_takes_another_entitys_colour():
    faults = SketchFaults(missing=0, count=0, colour_leak=1, flip=0)
    scene = make_scene(("e0", "apple", 2, "red"), ("e1", "cup", 1, "blue"))
    image = draft_all(scene, make_plan(("e0", "e1")), faults)[0]
    apple_boxes = solve_layout(scene, SIZE, SIZE, 0)["e0"]
    assert all(shows_icon(image, box, "apple", "blue", scene) for box in apple_boxes)
    assert all(shows_icon(image, box, "cup", "red", scene) for box in solve_layout(scene, SIZE, SIZE, 0)["e1"])

    alone = make_scene(("e0", "apple", 1, "red"), ("e1", "dog", 1, None))
    image = draft_all(alone, make_plan(("e0", "e1")), faults)[0]
    layout = solve_layout(alone, SIZE, SIZE, 0)
    assert not colour_mask(image, "red").any()
    assert any(shows_icon(image, layout["e0"][0], "apple", c, alone) for c in PALETTE if c != "red")
    # Only required colours leak.
    assert shows_icon(image, layout["e1"][0], "dog", DEFAULT_COLOURS["dog"], alone)


@pytest.mark.parametrize("predicate", ["left of", "right of", "above", "below"])
def test_flip_at_rate_one_inverts_the_relation(predicate):
    scene = make_scene(("e0", "cup", 1, "blue"), ("e1", "apple", 2, "red"), relations=[("e1", predicate, "e0")])
    image = draft_all(scene, make_plan(("e0",), ("e1",)), SketchFaults(missing=0, count=0, colour_leak=0, flip=1))[-1]
    (cup,) = blobs(colour_mask(image, "blue"))
    apples = blobs(colour_mask(image, "red"))
    assert len(apples) == 2
    inverse = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[predicate]
    for apple in apples:
        assert inverse in observed_relations(unit(apple), unit(cup))
        assert predicate not in observed_relations(unit(apple), unit(cup))


FLIP_CASES = {
    # Glyphs off the middle of their box: a triangle's sits low, a heart's high, a star's a little low.
    "apples above a triangle": (
        make_scene(("e0", "triangle", 1, "blue"), ("e1", "apple", 3, "red"), relations=[("e1", "above", "e0")]),
        make_plan(("e0", "e1")),
    ),
    "dogs below a heart": (
        make_scene(("e0", "heart", 1, "pink"), ("e1", "dog", 2, None), relations=[("e1", "below", "e0")]),
        make_plan(("e0",), ("e1",)),
    ),
    "cups left of a star": (
        make_scene(("e0", "star", 1, "yellow"), ("e1", "cup", 4, None), relations=[("e1", "left of", "e0")]),
        make_plan(("e0", "e1")),
    ),
    # Little room right of the dog: at seed 0 no readable place there clears its glyph, so the cats only
    # partly flip.
    "no room to invert": (
        make_scene(("e0", "dog", 1, None), ("e1", "cat", 3, None), relations=[("e1", "left of", "e0")]),
        make_plan(("e0", "e1")),
    ),
    # Mirror images land on other entities' places.
    "four entities": (SCENE, PLAN),
    "chain of five": (LAYOUT_SCENES["chain of five"], make_plan(*((f"e{i}",) for i in range(5)))),
    "vertical chain": (LAYOUT_SCENES["vertical chain"], make_plan(("e0", "e1", "e2", "e3"))),
}


@pytest.mark.parametrize(("scene", "plan"), FLIP_CASES.values(), ids=FLIP_CASES.keys())
def test_a_flip_never_covers_a_glyph(scene, plan):
    """Every instance on the canvas after a step with every relation flipped is still read as its noun."""
    nouns = tuple(dict.fromkeys(e.noun for e in scene.entities))
    flips = SketchDrafter(SketchFaults(missing=0, count=0, colour_leak=0, flip=1))
    for seed in range(3):
        # Each step is drafted on the exact canvas of the steps before, as after a repair.
        exact = [None, *draft_all(scene, plan, SketchFaults.none(), seed)]
        for step in range(len(plan.steps)):
            request = DraftRequest(scene=scene, plan=plan, step=step, image=exact[step], seed=seed)
            image = flips.draft(request).image
            drawn = Counter()
            for entity_id in dict.fromkeys(i for s in plan.steps[: step + 1] for i in s.entity_ids):
                drawn[scene.entity(entity_id).noun] += scene.entity(entity_id).count
            assert Counter(d.noun for d in PixelDetector().detect(image, nouns)) == drawn, (seed, step)


def test_fault_settings_are_validated_and_scaled():
    with pytest.raises(ValidationError, match="missing"):
        SketchFaults(missing=1.5)
    with pytest.raises(ValidationError, match="flip"):
        SketchFaults(flip=-0.1)
    with pytest.raises(ValidationError):
        SketchFaults(colour=0.1)
    with pytest.raises(ValidationError):
        SketchFaults().missing = 0.5  # frozen
    assert SketchFaults.scaled(0) == SketchFaults.none()
    assert SketchFaults.scaled(1) == SketchFaults()
    assert SketchFaults.scaled(2).flip == pytest.approx(2 * SketchFaults().flip)
    assert SketchFaults.scaled(100) == SketchFaults(missing=1, count=1, colour_leak=1, flip=1)
    with pytest.raises(UsageError, match="scale"):
        SketchFaults.scaled(-1)


def test_bad_requests_and_settings_are_usage_errors():
    with pytest.raises(UsageError, match="size"):
        SketchDrafter(size=10)
    with pytest.raises(UsageError, match="failure_rate"):
        SketchRefiner(failure_rate=1.5)
    with pytest.raises(UsageError, match="step"):
        SketchDrafter().draft(DraftRequest(scene=SCENE, plan=PLAN, step=3, image=None, seed=0))
    with pytest.raises(UsageError, match="'e9'"):
        SketchDrafter().draft(DraftRequest(scene=SCENE, plan=make_plan(("e9",)), step=0, image=None, seed=0))


# ---------------------------------------------------------------------------------------------
# Refiner
# ---------------------------------------------------------------------------------------------


def refine(image, violations, failure_rate=0.0, scene=SCENE, plan=PLAN, step=1, round_=1, seed=0):
    request = RefineRequest(
        scene=scene,
        plan=plan,
        step=step,
        round=round_,
        image=image,
        critique=Critique(violations=tuple(violations)),
        seed=seed,
    )
    return SketchRefiner(failure_rate=failure_rate).refine(request)


def violation(kind, entity_ids=(), box=None, relation=None, observed="?") -> Violation:
    return Violation(
        kind=kind, entity_ids=entity_ids, relation=relation, expected="?", observed=observed, box=box, message=kind
    )


def assert_same_outside(before: Image.Image, after: Image.Image, region) -> None:
    outside = ~region_mask(region)
    assert (pixels(after)[outside] == pixels(before)[outside]).all()


def test_an_attribute_violation_is_inpainted_in_the_right_colour():
    layout = solve_layout(SCENE, SIZE, SIZE, 0)
    leaked = draft_all(SCENE, PLAN, SketchFaults(missing=0, count=0, colour_leak=1, flip=0), upto=1)[-1]
    assert not shows_icon(leaked, layout["e1"][0], "apple", "red", SCENE)
    result = refine(leaked, [violation("attribute", ("e1",), box=normalised(layout["e1"]))])
    r = result.refinement
    assert r.operation == "inpaint" and r.text == "Redraw the apples in red."
    assert result.sampling_steps == 1
    assert all(shows_icon(result.image, box, "apple", "red", SCENE) for box in layout["e1"])
    assert region_mask(r.region)[footprint(layout["e1"])].all()
    assert_same_outside(leaked, result.image, r.region)
    # The refiner works on a copy.
    assert not shows_icon(leaked, layout["e1"][0], "apple", "red", SCENE)


def test_a_missing_entity_without_a_box_is_drawn_at_its_place():
    layout = solve_layout(SCENE, SIZE, SIZE, 0)
    faults = SketchFaults(missing=1, count=0, colour_leak=0, flip=0)
    first = draft_all(SCENE, PLAN, SketchFaults.none(), upto=0)[0]
    without = SketchDrafter(faults).draft(DraftRequest(scene=SCENE, plan=PLAN, step=1, image=first, seed=0)).image
    result = refine(without, [violation("missing", ("e2",))])
    assert result.refinement.text == "Add the missing blue cups."
    assert all(shows_icon(result.image, box, "cup", "blue", SCENE) for box in layout["e2"])
    assert_same_outside(without, result.image, result.refinement.region)


def test_an_extra_object_is_erased():
    exact = draft_all(SCENE, PLAN, SketchFaults.none(), upto=1)[-1]
    stray = exact.copy()
    box = (440, 440, 490, 490)
    assert not colour_mask(exact, "black")[440:490, 440:490].any()
    draw_icon(ImageDraw.Draw(stray), box, "zebra", "black", codes_for(["zebra"])["zebra"])
    result = refine(stray, [violation("extra", box=normalised([box]), observed="a zebra")])
    assert result.refinement.text == "Remove the extra zebra."
    assert not colour_mask(result.image, "black").any()
    assert pixels(result.image).tobytes() == pixels(exact).tobytes()


def test_a_relation_violation_regenerates_the_ideal_canvas():
    flipped = draft_all(SCENE, PLAN, SketchFaults(missing=0, count=0, colour_leak=0, flip=1), upto=1)[-1]
    exact = draft_all(SCENE, PLAN, SketchFaults.none(), upto=1)[-1]
    assert pixels(flipped).tobytes() != pixels(exact).tobytes()
    rel = SCENE.relations[0]
    result = refine(flipped, [violation("relation", ("e1", "e0"), relation=rel), violation("count", ("e2",))])
    r = result.refinement
    assert r.operation == "regenerate" and r.region is None
    assert r.text == "Move the apples to the left of the dog. Draw exactly two blue cups."
    assert r.violations[0].relation == rel
    assert pixels(result.image).tobytes() == pixels(exact).tobytes()


def test_a_failed_refinement_reports_the_same_fix_but_leaves_a_fault():
    layout = solve_layout(SCENE, SIZE, SIZE, 0)
    leaked = draft_all(SCENE, PLAN, SketchFaults(missing=0, count=0, colour_leak=1, flip=0), upto=1)[-1]
    problem = [violation("attribute", ("e1",), box=normalised(layout["e1"]))]
    good = refine(leaked, problem, failure_rate=0.0)
    for round_ in range(1, 4):
        bad = refine(leaked, problem, failure_rate=1.0, round_=round_)
        assert bad.refinement == good.refinement
        assert not all(shows_icon(bad.image, box, "apple", "red", SCENE) for box in layout["e1"])
        assert_same_outside(leaked, bad.image, bad.refinement.region)
    # Seeded: the same request fails the same way.
    again = refine(leaked, problem, failure_rate=1.0, round_=1)
    assert pixels(again.image).tobytes() == pixels(refine(leaked, problem, failure_rate=1.0).image).tobytes()


def test_a_failed_refinement_of_an_unknown_extra_changes_nothing():
    exact = draft_all(SCENE, PLAN, SketchFaults.none(), upto=1)[-1]
    result = refine(exact, [violation("extra", box=(0.0, 0.0, 0.1, 0.1), observed="a zebra")], failure_rate=1.0)
    assert pixels(result.image).tobytes() == pixels(exact).tobytes()


def test_a_critique_without_violations_is_a_usage_error():
    exact = draft_all(SCENE, PLAN, SketchFaults.none(), upto=0)[0]
    with pytest.raises(UsageError, match="no violations"):
        refine(exact, [], step=0)
