"""The critic: GenEval's position rule, judging detections, and the ``builtin:pixels`` detector.

Detector tests draw icons with the codebook on a background canvas, so they know what is there
without the drafter.
"""

from __future__ import annotations

import io
import random
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from strokegraph.agents.critic import (
    Critic,
    CritiqueRequest,
    Detector,
    DetectorCritic,
    judge,
)
from strokegraph.errors import UsageError
from strokegraph.grammar import parse
from strokegraph.schema import COLOURS, POSITION_PREDICATES, Colour, Detection, Entity, Relation, SceneGraph
from strokegraph.tools.sketch.codebook import (
    BACKGROUND,
    codes_for,
    draw_icon,
    fixed_nouns,
    glyph_box,
    halo_width,
    silhouette_for,
)
from strokegraph.tools.sketch.pixels import UNKNOWN_NOUN, PixelDetector

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def box_at(cx: float, cy: float, size: float = 0.1) -> tuple[float, float, float, float]:
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


def det(noun: str, colour: Colour | None, cx: float, cy: float, size: float = 0.1, score: float = 1.0) -> Detection:
    return Detection(noun=noun, colour=colour, box=box_at(cx, cy, size), score=score)


def render(icons, size=(512, 512), nouns=None) -> Image.Image:
    """``icons``: (noun, colour, x, y, side) in pixels, drawn in order (later ones on top)."""
    image = Image.new("RGB", size, BACKGROUND)
    codes = codes_for({*(nouns or ()), *(i[0] for i in icons)})
    draw = ImageDraw.Draw(image)
    for noun, colour, x, y, side in icons:
        draw_icon(draw, (x, y, x + side, y + side), noun, colour, codes[noun])
    return image


def degrade(image: Image.Image, seed: int = 0, sigma: float = 6.0, quality: int = 85) -> Image.Image:
    """Gaussian noise, then a JPEG round trip."""
    noisy = np.asarray(image).astype(np.float64) + np.random.default_rng(seed).normal(0, sigma, (*image.size[::-1], 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def found(detections) -> list[tuple[str, str | None]]:
    return sorted((d.noun, d.colour) for d in detections)


def wanted(icons) -> list[tuple[str, str]]:
    return sorted((noun, colour) for noun, colour, *_ in icons)


# ---------------------------------------------------------------------------------------------
# judge: detections to violations
# ---------------------------------------------------------------------------------------------

APPLES_LEFT_OF_CUP = SceneGraph(
    prompt="two red apples to the left of a blue cup",
    entities=(Entity(id="e0", noun="apple", count=2, colour="red"), Entity(id="e1", noun="cup", colour="blue")),
    relations=(Relation(subject="e0", predicate="left of", object="e1"),),
    constraints=("on a wooden table",),
)
BOTH = frozenset({"e0", "e1"})
GOOD = [det("apple", "red", 0.15, 0.3), det("apple", "red", 0.15, 0.7), det("cup", "blue", 0.8, 0.5)]


def test_judge_passes_a_right_image():
    critique = judge(APPLES_LEFT_OF_CUP, BOTH, GOOD)
    assert critique.passed
    assert critique.detections == tuple(GOOD)
    assert critique.judged_entity_ids == ("e0", "e1")
    assert critique.unjudged == ("on a wooden table",)


def test_judge_missing():
    (v,) = judge(APPLES_LEFT_OF_CUP, BOTH, GOOD[:2]).violations
    assert (v.kind, v.entity_ids, v.expected, v.observed, v.box) == ("missing", ("e1",), "a blue cup", "none", None)
    assert v.message == "expected a blue cup, found none"


def test_judge_count_too_few_and_too_many():
    (few,) = judge(APPLES_LEFT_OF_CUP, BOTH, GOOD[1:]).violations
    assert (few.kind, few.entity_ids, few.expected, few.observed) == ("count", ("e0",), "2", "1")
    assert few.message == "expected two red apples, found one (too few)"
    assert few.box == GOOD[1].box

    extra_apple = det("apple", "red", 0.15, 0.5)
    (many,) = judge(APPLES_LEFT_OF_CUP, BOTH, [*GOOD, extra_apple]).violations
    assert (many.kind, many.expected, many.observed) == ("count", "2", "3")
    assert "too many" in many.message
    assert many.box == pytest.approx((0.1, 0.25, 0.2, 0.75))  # all three apples


def test_judge_attribute():
    blue_apple = det("apple", "blue", 0.15, 0.7)
    (v,) = judge(APPLES_LEFT_OF_CUP, BOTH, [GOOD[0], blue_apple, GOOD[2]]).violations
    assert (v.kind, v.entity_ids, v.expected, v.observed, v.box) == (
        "attribute",
        ("e0",),
        "red",
        "blue",
        blue_apple.box,
    )
    assert v.message == "expected two red apples, found a blue apple"


def test_judge_attribute_and_count_together():
    violations = judge(APPLES_LEFT_OF_CUP, BOTH, [det("apple", "green", 0.15, 0.3), GOOD[2]]).violations
    assert [v.kind for v in violations] == ["count", "attribute"]


OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
OFFSET = {"left of": (-0.3, 0), "right of": (0.3, 0), "above": (0, -0.3), "below": (0, 0.3)}


@pytest.mark.parametrize("predicate", POSITION_PREDICATES)
def test_judge_relation_each_predicate(predicate):
    scene = SceneGraph(
        prompt=f"a dog {predicate} a cat",
        entities=(Entity(id="e0", noun="dog"), Entity(id="e1", noun="cat")),
        relations=(Relation(subject="e0", predicate=predicate, object="e1"),),
    )
    cat = det("cat", "orange", 0.5, 0.5)
    dx, dy = OFFSET[predicate]
    assert judge(scene, frozenset({"e0", "e1"}), [det("dog", "brown", 0.5 + dx, 0.5 + dy), cat]).passed

    wrong_dog = det("dog", "brown", 0.5 - dx, 0.5 - dy)
    (v,) = judge(scene, frozenset({"e0", "e1"}), [wrong_dog, cat]).violations
    assert (v.kind, v.entity_ids, v.relation) == ("relation", ("e0", "e1"), scene.relations[0])
    assert (v.expected, v.observed, v.box) == (predicate, OPPOSITE[predicate], wrong_dog.box)
    assert v.message == f"expected the dog {predicate} the cat, found the dog {OPPOSITE[predicate]} the cat"


def test_judge_relation_with_no_clear_relation_and_several_instances():
    # One apple is left of the cup, the other sits on it: only that one is in the violation's box.
    on_cup = det("apple", "red", 0.78, 0.52)
    (v,) = judge(APPLES_LEFT_OF_CUP, BOTH, [GOOD[0], on_cup, GOOD[2]]).violations
    assert (v.kind, v.observed, v.box) == ("relation", "no clear relation", on_cup.box)
    assert v.message == "expected the apples left of the cup, found no clear relation between an apple and the cup"


def test_judge_extra():
    car = det("car", "red", 0.5, 0.9)
    (v,) = judge(APPLES_LEFT_OF_CUP, BOTH, [*GOOD, car]).violations
    assert (v.kind, v.entity_ids, v.expected, v.observed, v.box) == ("extra", (), "none", "a red car", car.box)
    assert v.message == "found a red car that the prompt does not ask for"


def test_judge_scope_not_drawn_yet_is_not_wrong():
    # Step 0 drew the apples only: the missing cup and the apples-cup relation are not judged ...
    assert judge(APPLES_LEFT_OF_CUP, frozenset({"e0"}), GOOD[:2]).passed
    # ... and a cup drawn early (even on the wrong side) is not an extra.
    critique = judge(APPLES_LEFT_OF_CUP, frozenset({"e0"}), [*GOOD[:2], det("cup", "green", 0.05, 0.5)])
    assert critique.passed
    assert critique.judged_entity_ids == ("e0",)


def test_judge_assigns_shared_nouns_by_colour():
    scene = SceneGraph(
        prompt="a red apple and a green apple",
        entities=(Entity(id="e0", noun="apple", colour="red"), Entity(id="e1", noun="apple", colour="green")),
    )
    scope = frozenset({"e0", "e1"})
    assert judge(scene, scope, [det("apple", "green", 0.2, 0.5), det("apple", "red", 0.8, 0.5)]).passed
    (v,) = judge(scene, scope, [det("apple", "red", 0.2, 0.5), det("apple", "red", 0.8, 0.5)]).violations
    assert (v.kind, v.entity_ids, v.expected, v.observed) == ("attribute", ("e1",), "green", "red")
    # With only the red apple in scope, a green apple already drawn belongs to the later entity.
    assert judge(scene, frozenset({"e0"}), [det("apple", "red", 0.2, 0.5), det("apple", "green", 0.8, 0.5)]).passed


def test_judge_uncoloured_entity_in_scope_comes_before_a_later_coloured_one():
    scene = SceneGraph(
        prompt="an apple, later a red apple",
        entities=(Entity(id="e0", noun="apple"), Entity(id="e1", noun="apple", colour="red")),
    )
    assert judge(scene, frozenset({"e0"}), [det("apple", "red", 0.2, 0.5)]).passed


def test_judge_is_deterministic_and_ordered():
    detections = [det("apple", "blue", 0.9, 0.3), det("car", "red", 0.5, 0.9), det("bus", "red", 0.5, 0.1)]
    critique = judge(APPLES_LEFT_OF_CUP, BOTH, detections)
    kinds = [(v.kind, v.entity_ids) for v in critique.violations]
    assert kinds == [
        ("count", ("e0",)),
        ("attribute", ("e0",)),
        ("missing", ("e1",)),
        ("extra", ()),
        ("extra", ()),
    ]
    assert [v.observed for v in critique.violations if v.kind == "extra"] == ["a red bus", "a red car"]
    shuffled = detections[::-1]
    assert judge(APPLES_LEFT_OF_CUP, BOTH, shuffled).violations == critique.violations


def test_judge_rejects_scope_outside_the_scene():
    with pytest.raises(UsageError, match="'e9'"):
        judge(APPLES_LEFT_OF_CUP, frozenset({"e0", "e9"}), GOOD)


# ---------------------------------------------------------------------------------------------
# The pixel detector
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector() -> PixelDetector:
    return PixelDetector()


def test_pixel_detector_satisfies_the_protocols(detector):
    assert isinstance(detector, Detector)
    assert isinstance(DetectorCritic(detector), Critic)


@pytest.mark.parametrize("shift", [0, 3, 7])
def test_reads_every_fixed_noun(detector, shift):
    # 91 icons of 48-64 px in a 13 x 7 grid; three colour shifts give each noun three colours.
    nouns = fixed_nouns()
    rng = random.Random(shift)
    icons = [
        (noun, COLOURS[(i + shift) % len(COLOURS)], 10 + (i % 13) * 78, 10 + (i // 13) * 78, rng.randint(48, 64))
        for i, noun in enumerate(nouns)
    ]
    image = render(icons, size=(1024, 560))
    if shift:
        image = degrade(image, seed=shift)
    detections = detector.detect(image, ())
    cell = {
        (int((d.box[0] + d.box[2]) * 512 - 10) // 78, int((d.box[1] + d.box[3]) * 280 - 10) // 78): d
        for d in detections
    }
    assert len(detections) == len(nouns)
    for i, (noun, colour, *_) in enumerate(icons):
        d = cell[(i % 13, i // 13)]
        assert (d.noun, d.colour) == (noun, colour)


SCENE_ICONS = [
    ("dog", "brown", 20, 30, 170),
    ("cat", "orange", 230, 20, 120),
    ("square", "purple", 380, 200, 100),
    ("banana", "yellow", 60, 260, 48),
    ("star", "pink", 200, 300, 90),
    ("bus", "green", 350, 380, 110),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_survives_jpeg_and_noise(detector, seed):
    image = degrade(render(SCENE_ICONS), seed=seed)
    detections = detector.detect(image, ("dog", "cat", "banana", "bus"))
    assert found(detections) == wanted(SCENE_ICONS)
    # A square silhouette fills its box, so the detected box is the drawn one, to a pixel or two.
    (square,) = [d for d in detections if d.noun == "square"]
    assert np.allclose(np.array(square.box) * 512, (380, 200, 481, 301), atol=2)
    assert all(d.score == 1.0 for d in detections)


def test_black_white_and_sizes(detector):
    icons = [
        ("car", "black", 10, 10, 48),
        ("car", "white", 80, 10, 48),
        ("bed", "white", 150, 10, 170),
        ("bed", "black", 330, 10, 170),
        ("heart", "black", 10, 250, 60),
        ("cross", "white", 100, 250, 60),
        ("triangle", "white", 200, 250, 52),
        ("star", "black", 300, 250, 52),
    ]
    image = degrade(render(icons))
    assert found(detector.detect(image, ("car", "bed"))) == wanted(icons)


def _clear_of_glyph(top: tuple[int, int, int], lower: tuple[str, int, int, int], gap: int = 3) -> bool:
    """Whether an icon at ``top`` (x, y, side) drawn over ``lower`` leaves its glyph ``gap`` px clear."""
    noun, x, y, side = lower
    gx0, gy0, gx1, gy1 = glyph_box(silhouette_for(noun, codes_for([noun])[noun]), (x, y, x + side, y + side))
    tx, ty, ts = top
    reach = halo_width(ts) + gap
    return tx > gx1 + reach or ty > gy1 + reach or tx + ts < gx0 - reach or ty + ts < gy0 - reach


@pytest.mark.parametrize("colours", [("red", "blue"), ("blue", "blue"), ("yellow", "yellow"), ("white", "white")])
def test_partial_overlap_and_same_colour_neighbours(detector, colours):
    lower, upper = colours
    icons = [
        ("dog", lower, 60, 60, 160),  # a corner covered by the cat
        ("cat", upper, 185, 185, 110),
        ("cup", lower, 300, 40, 100),  # touching the horse's top edge
        ("horse", upper, 300, 141, 100),
        ("bird", lower, 40, 330, 90),  # its right edge covered by the book
        ("book", upper, 110, 340, 90),
    ]
    for top, bottom in [(1, 0), (5, 4)]:
        assert _clear_of_glyph(icons[top][2:], (icons[bottom][0], *icons[bottom][2:]))
    assert (130 - 110) * 80 >= 0.15 * 90 * 90  # the book covers a fifth of the bird's box
    detections = detector.detect(degrade(render(icons)), ())
    assert found(detections) == wanted(icons)
    # The partly covered dog's box is what is visible of it.
    (dog,) = [d for d in detections if d.noun == "dog"]
    assert np.allclose(np.array(dog.box) * 512, (60, 60, 221, 221), atol=2)


def test_unknown_and_unrequested_nouns(detector):
    icons = [
        ("lighthouse", "red", 20, 20, 100),
        ("teapot", "blue", 150, 20, 100),
        ("zebra", "white", 280, 20, 100),  # a fixed noun nobody asked for
        ("unicorn", "pink", 20, 200, 100),  # an unknown noun nobody asked for
    ]
    requested = ("lighthouse", "teapot")
    image = degrade(render(icons, nouns=requested))
    assert found(detector.detect(image, requested)) == sorted(
        [("lighthouse", "red"), ("teapot", "blue"), ("zebra", "white"), (UNKNOWN_NOUN, "pink")]
    )


def test_fragments_are_ignored_and_big_unreadable_shapes_reported(detector):
    image = Image.new("RGB", (512, 512), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 30, 30), fill=(214, 39, 40))  # a glyphless chip: a fragment
    draw.line((50, 300, 400, 300), fill=(31, 90, 220))  # a 1 px sliver
    draw.rectangle((200, 100, 320, 220), fill=(34, 160, 60))  # a big glyphless shape
    (d,) = detector.detect(degrade(image), ())
    assert (d.noun, d.colour, d.score) == (UNKNOWN_NOUN, "green", 0.5)
    assert np.allclose(np.array(d.box) * 512, (200, 100, 321, 221), atol=2)
    assert detector.detect(Image.new("RGB", (64, 64), BACKGROUND), ()) == []


def test_detect_speed(detector):
    image = degrade(render(SCENE_ICONS))
    detector.detect(image, ())  # builds the colour table once
    best = min(_timed(detector, image) for _ in range(3))
    print(f"\nPixelDetector.detect on 512x512 with {len(SCENE_ICONS)} icons: {best * 1000:.1f} ms")
    assert best < 0.3


def _timed(detector: PixelDetector, image: Image.Image) -> float:
    t0 = time.perf_counter()
    detector.detect(image, ())
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# DetectorCritic end to end
# ---------------------------------------------------------------------------------------------

APPLE_CUP_DOG = SceneGraph(
    prompt="a red apple to the left of a blue cup, and a lighthouse",
    entities=(
        Entity(id="e0", noun="apple", colour="red"),
        Entity(id="e1", noun="cup", colour="blue"),
        Entity(id="e2", noun="lighthouse"),
    ),
    relations=(Relation(subject="e0", predicate="left of", object="e1"),),
)
NOUNS = ["apple", "cup", "lighthouse"]


def _critique(icons, scope):
    image = degrade(render(icons, nouns=NOUNS))
    request = CritiqueRequest(scene=APPLE_CUP_DOG, scope=frozenset(scope), image=image)
    return DetectorCritic(PixelDetector()).critique(request)


def test_detector_critic_judges_what_it_sees():
    apple, cup = ("apple", "red", 40, 180, 120), ("cup", "blue", 330, 180, 120)
    assert _critique([apple, cup], {"e0", "e1"}).passed
    # The lighthouse is not drawn yet: not a violation until its step.
    assert _critique([apple, cup], {"e0", "e1"}).judged_entity_ids == ("e0", "e1")
    (missing,) = _critique([apple, cup], {"e0", "e1", "e2"}).violations
    assert (missing.kind, missing.entity_ids) == ("missing", ("e2",))

    swapped = [("apple", "red", 330, 180, 120), ("cup", "blue", 40, 180, 120), ("car", "green", 200, 380, 80)]
    critique = _critique(swapped, {"e0", "e1"})
    assert [(v.kind, v.observed) for v in critique.violations] == [("relation", "right of"), ("extra", "a green car")]
    (relation, extra) = critique.violations
    assert np.allclose(np.array(relation.box) * 512, (330, 180, 451, 301), atol=3)


# -- count 0 and "next to" -------------------------------------------------------------------


def test_an_entity_of_count_0_is_judged_absent():
    scene = parse("a dog and no cats")
    scope = frozenset({"e0", "e1"})
    assert judge(scene, scope, [det("dog", "brown", 0.3, 0.5)]).passed
    critique = judge(
        scene, scope, [det("dog", "brown", 0.3, 0.5), det("cat", "orange", 0.7, 0.5), det("cat", None, 0.7, 0.2)]
    )
    (extra,) = critique.violations
    assert (extra.kind, extra.entity_ids, extra.expected, extra.observed) == ("extra", ("e1",), "none", "two cats")
    assert extra.message == "expected no cats, found two cats"
    assert extra.box == pytest.approx((0.65, 0.15, 0.75, 0.55))


def test_next_to_asks_each_subject_instance_for_some_object_instance_nearby():
    scene = parse("two cats next to two dogs")
    scope = frozenset({"e0", "e1"})
    near = [
        det("cat", None, 0.1, 0.5),
        det("cat", None, 0.7, 0.5),
        det("dog", None, 0.25, 0.5),
        det("dog", None, 0.85, 0.5),
    ]
    assert judge(scene, scope, near).passed
    far = [
        det("cat", None, 0.1, 0.5),
        det("cat", None, 0.5, 0.9),
        det("dog", None, 0.25, 0.5),
        det("dog", None, 0.85, 0.5),
    ]
    (v,) = judge(scene, scope, far).violations
    assert (v.kind, v.expected, v.observed) == ("relation", "next to", "not next to")
    assert v.message == "expected the cats next to the dogs, found a cat far from a dog"
    assert v.box == pytest.approx(box_at(0.5, 0.9))


def test_in_front_of_and_behind_are_never_violations_but_are_listed_unjudged():
    scene = parse("a dog in front of a house; a cat behind the house")
    far_apart = [det("dog", None, 0.1, 0.1), det("house", None, 0.9, 0.9), det("cat", None, 0.1, 0.9)]
    critique = judge(scene, frozenset({"e0", "e1", "e2"}), far_apart)
    assert critique.passed
    assert critique.unjudged == ("the dog in front of the house", "the cat behind the house")
