"""The sketch world on the everyday constructs: what must be absent, "next to", depth, crowded scenes."""

from __future__ import annotations

import pytest

from strokegraph.agents.drafter import DraftRequest
from strokegraph.errors import UsageError
from strokegraph.geometry import failing_pairs
from strokegraph.grammar import RulesPlanner, parse
from strokegraph.tools.sketch.drafter import SketchDrafter, SketchFaults
from strokegraph.tools.sketch.layout import RELATION_MARGIN, acyclic_relations, solve_layout
from strokegraph.tools.sketch.pixels import PixelDetector

NONE = SketchFaults.none()


def _draw(prompt: str, faults: SketchFaults, seed: int = 0):
    scene, plan = RulesPlanner().plan(prompt)
    image = None
    for step in range(len(plan.steps)):
        image = SketchDrafter(faults).draft(DraftRequest(scene, plan, step, image, seed)).image
    assert image is not None  # every plan has a step
    nouns = tuple(dict.fromkeys(e.noun for e in scene.entities))
    return scene, sorted(d.noun for d in PixelDetector().detect(image, nouns))


def test_what_must_be_absent_gets_no_box_and_is_not_drawn():
    scene = parse("no cars on the street")
    assert solve_layout(scene, 512, 512, 0)["e0"] == []
    assert _draw("no cars on the street", NONE)[1] == ["street"]


def test_the_count_fault_draws_what_must_be_absent():
    only_count = SketchFaults(missing=0.0, count=1.0, colour_leak=0.0, flip=0.0)
    # The street gets one too many as well: a count fault on a single instance adds one.
    assert _draw("a street without cars", only_count)[1] == ["car", "street", "street"]


@pytest.mark.parametrize(
    "prompt",
    [
        "a cat next to a dog",
        "three cats next to a dog",
        "a cat next to two dogs",
        "a cat left of a dog, a bird next to the cat",
        "a cat right of a dog; the cat is next to the dog",
        "a red apple next to a blue cup and a green bowl",
        "a cup above a bowl; a cat next to the bowl; a dog next to the cup",
        # A subject next to two objects, with something beside them that the line must not take in.
        "a boy holding an umbrella next to a dog and a red bus",
        "a girl with a kite next to a dog and a bench",
        "a bird left of two cats; the cats are next to a dog and a cup",
        "a cat next to a dog, a bird next to a cup, and a car",
    ],
)
def test_next_to_is_laid_out_near(prompt):
    scene = parse(prompt)
    boxes = solve_layout(scene, 512, 512, 0)
    unit = {i: [tuple(v / 512 for v in b) for b in bs] for i, bs in boxes.items()}
    placed = acyclic_relations(scene)
    assert {r.predicate for r in placed} & {"next to"}
    for rel in placed:
        assert failing_pairs(rel.predicate, unit[rel.subject], unit[rel.object], RELATION_MARGIN / 2) == [], rel


def test_depth_relations_are_not_placed_but_both_objects_are_drawn():
    scene = parse("a dog in front of a house")
    assert acyclic_relations(scene) == ()
    assert _draw("a dog in front of a house", NONE)[1] == ["dog", "house"]


def test_a_scene_too_crowded_to_read_is_refused():
    prompt = ", ".join(
        f"a {c} {n}"
        for c in ("red", "blue", "green", "pink")
        for n in ("cat", "dog", "cup", "bus", "car", "kite", "bowl", "vase")
    )
    with pytest.raises(UsageError, match="cannot draw 32 objects legibly on a 512x512 canvas"):
        _draw(prompt, NONE)
