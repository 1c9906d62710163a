"""Region masks and compositing: what a local redraw may touch, and what it may not."""

from __future__ import annotations

import numpy as np
from PIL import Image

from strokegraph.agents.refiner import composite, region_mask, violation_region
from strokegraph.schema import Violation


def _v(box):
    return Violation(kind="attribute", entity_ids=("e0",), expected="red", observed="blue", box=box, message="m")


def test_region_is_the_union_of_boxes():
    assert violation_region((_v((0.1, 0.2, 0.3, 0.4)), _v(None), _v((0.2, 0.1, 0.5, 0.3)))) == (0.1, 0.1, 0.5, 0.4)
    assert violation_region((_v(None),)) is None


def test_mask_is_full_inside_feathered_at_the_edge_and_zero_outside():
    mask = np.asarray(region_mask((100, 100), (0.4, 0.4, 0.6, 0.6), grow=0.05, feather=8))
    assert mask[50, 50] == 255 and mask[36, 36] == 255  # the grown box is repainted completely
    assert 0 < mask[33, 50] < 255  # feathered edge
    assert mask[5, 5] == 0 and mask[95, 50] == 0


def test_composite_keeps_pixels_outside_the_mask_exactly():
    rng = np.random.default_rng(0)
    original = Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    edited = Image.new("RGB", (64, 64), (255, 0, 0))  # an editor may even return another size
    mask = region_mask(original.size, (0.25, 0.25, 0.5, 0.5), grow=0.0, feather=4)
    out = np.asarray(composite(original, edited, mask))
    keep = np.asarray(mask) == 0
    assert (out[keep] == np.asarray(original)[keep]).all()
    assert tuple(out[24, 30]) == (255, 0, 0)


def test_every_predicate_has_a_correction_sentence():
    from strokegraph.agents.refiner import correction
    from strokegraph.schema import PREDICATES, Entity, Relation, SceneGraph

    scene = SceneGraph(prompt="p", entities=(Entity(id="e0", noun="cat"), Entity(id="e1", noun="dog")))
    for predicate in PREDICATES:
        rel = Relation(subject="e0", predicate=predicate, object="e1")
        v = Violation(kind="relation", entity_ids=("e0", "e1"), relation=rel, expected="x", observed="y", message="m")
        sentence = correction(v, scene)
        assert sentence.startswith("Move the cat ") and sentence.endswith(f"{predicate} the dog."), sentence
