"""GenEval's box geometry: the position rule, "next to", and relations between groups of boxes."""

from __future__ import annotations

import math

import pytest

from strokegraph.errors import UsageError
from strokegraph.geometry import failing_pairs, observed_relations, position_offset, relation_holds
from strokegraph.schema import POSITION_PREDICATES


def box_at(cx: float, cy: float, size: float = 0.1) -> tuple[float, float, float, float]:
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


# ---------------------------------------------------------------------------------------------
# GenEval's position rule
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0.2, 0.5), (0.7, 0.5), {"left of"}),
        ((0.7, 0.5), (0.2, 0.5), {"right of"}),
        ((0.5, 0.2), (0.5, 0.7), {"above"}),
        ((0.5, 0.7), (0.5, 0.2), {"below"}),
        ((0.2, 0.2), (0.7, 0.7), {"left of", "above"}),
        ((0.5, 0.5), (0.5, 0.5), set()),
    ],
)
def test_position_rule_directions(a, b, expected):
    assert observed_relations(box_at(*a), box_at(*b)) == expected
    for predicate in POSITION_PREDICATES:
        assert relation_holds(box_at(*a), box_at(*b), predicate) == (predicate in expected)


def test_position_rule_margin_is_a_tenth_of_both_sizes():
    # Two 0.2-wide boxes: 0.04 of the x offset is taken off before the direction is measured.
    b = box_at(0.5, 0.5, 0.2)
    assert observed_relations(box_at(0.54, 0.5, 0.2), b) == set()  # offset eaten entirely
    # Then (offset - 0.04) / offset must exceed 0.5, i.e. the offset must exceed 0.08.
    assert observed_relations(box_at(0.579, 0.5, 0.2), b) == set()
    assert observed_relations(box_at(0.581, 0.5, 0.2), b) == {"right of"}
    assert observed_relations(box_at(0.419, 0.5, 0.2), b) == {"left of"}
    # Tall boxes take their margin from the heights on the y axis.
    tall_a, tall_b = (0.45, 0.30, 0.55, 0.70), (0.45, 0.40, 0.55, 0.80)
    assert observed_relations(tall_a, tall_b) == set()  # (0.1 - 0.08) / 0.1 = 0.2 < 0.5


def test_position_rule_half_threshold_on_the_direction():
    # Tiny boxes, so the margin is negligible and (dx, dy) is the unit direction of the offset.
    b = box_at(0.5, 0.5, 0.001)
    for degrees, expected in [
        (59, {"right of", "below"}),
        (61, {"below"}),
        (29, {"right of"}),
        (31, {"right of", "below"}),
    ]:
        t = math.radians(degrees)
        a = box_at(0.5 + 0.3 * math.cos(t), 0.5 + 0.3 * math.sin(t), 0.001)
        assert observed_relations(a, b) == expected, degrees


def test_position_rule_in_any_unit_and_with_margin():
    # The rule only compares ratios, so pixel boxes read as normalised ones do.
    assert observed_relations((0, 0, 10, 10), (100, 0, 110, 10)) == {"left of"}
    assert observed_relations((100, 0, 110, 10), (0, 0, 10, 10)) == {"right of"}
    assert observed_relations((0, 0, 10, 10), (0, 100, 10, 110)) == {"above"}
    assert observed_relations((0, 100, 10, 110), (0, 0, 10, 10)) == {"below"}
    assert observed_relations((0, 0, 10, 10), (100, 100, 110, 110)) == {"left of", "above"}
    # Mostly vertical: 'below', not 'right of'.
    assert observed_relations((30, 100, 40, 110), (0, 0, 10, 10)) == {"below"}
    # Centres 10 apart, but two 60-wide boxes take 12 off the offset: nothing left.
    assert position_offset((0, 0, 60, 60), (10, 0, 70, 60)) is None
    assert observed_relations((0, 0, 60, 60), (10, 0, 70, 60)) == set()
    # 60 apart, 10 off for the sizes: revised 50 / 60 = 0.83, past 0.5 + 0.3 but not 0.5 + 0.4.
    assert position_offset((0, 0, 50, 50), (60, 0, 110, 50)) == pytest.approx((-50 / 60, 0.0))
    assert relation_holds((0, 0, 50, 50), (60, 0, 110, 50), "left of", margin=0.3)
    assert not relation_holds((0, 0, 50, 50), (60, 0, 110, 50), "left of", margin=0.4)
    scaled = [tuple(v / 512 for v in box) for box in ((0, 0, 50, 50), (60, 0, 110, 50))]
    assert position_offset(*scaled) == pytest.approx((-50 / 60, 0.0))


def test_relation_holds_rejects_unknown_predicate():
    with pytest.raises(UsageError, match="'beside'"):
        relation_holds(box_at(0.2, 0.5), box_at(0.7, 0.5), "beside")


# ---------------------------------------------------------------------------------------------
# "next to"
# ---------------------------------------------------------------------------------------------


def test_next_to_is_judged_by_the_gap_between_boxes():
    a = box_at(0.2, 0.5)  # 0.1 wide
    assert relation_holds(a, box_at(0.35, 0.5), "next to")  # gap 0.05
    assert relation_holds(a, box_at(0.39, 0.5), "next to")  # gap 0.09: under one side
    assert not relation_holds(a, box_at(0.41, 0.5), "next to")
    assert not relation_holds(a, box_at(0.39, 0.5), "next to", margin=0.2)
    assert relation_holds(a, box_at(0.2, 0.5), "next to")  # overlapping boxes are next to each other
    with pytest.raises(UsageError, match="cannot be judged from boxes"):
        relation_holds(a, a, "behind")


def test_failing_pairs_asks_every_pair_for_a_position_and_some_object_for_next_to():
    left, right = box_at(0.2, 0.5), box_at(0.8, 0.5)
    # Position: every subject instance against every object instance.
    assert failing_pairs("left of", [left, right], [box_at(0.5, 0.5)]) == [(1, 0)]
    # "next to": each subject instance needs one object instance near; a lonely one fails with the nearest.
    objects = [box_at(0.35, 0.5), box_at(0.5, 0.9)]
    assert failing_pairs("next to", [left, right], objects) == [(1, 0)]
    assert failing_pairs("left of", [], objects) == [] and failing_pairs("next to", [left], []) == []
