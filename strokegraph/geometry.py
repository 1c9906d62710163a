"""Box geometry by GenEval's rules: the position rule, "next to", and relations between groups of boxes.

Small pure functions shared by every detector-backed critic, the benchmark scorer and the sketch
world's layout: :func:`observed_relations` / :func:`relation_holds` (the position rule, both built
on :func:`position_offset`; "next to" by :func:`box_gap`) and :func:`failing_pairs` (a relation
between groups of instances). Boxes are ``(x0, y0, x1, y1)`` with y pointing down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from strokegraph.errors import UsageError
from strokegraph.schema import JUDGED_PREDICATES, Box

__all__ = [
    "NEXT_TO_GAP",
    "POSITION_THRESHOLD",
    "box_gap",
    "failing_pairs",
    "observed_relations",
    "position_offset",
    "relation_holds",
]

#: GenEval's share of the two objects' sizes taken off their centre offset, per axis.
POSITION_THRESHOLD = 0.1
#: Per predicate, the axis of the revised offset it reads and the sign that offset must have.
_DIRECTIONS: dict[str, tuple[int, int]] = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}


def position_offset(box_a: Box, box_b: Box) -> tuple[float, float] | None:
    """GenEval's revised offset ``(dx, dy)`` of A from B, over the length of the full offset; None: no relation.

    Per axis the centre offset A - B shrinks by ``0.1 * (size A + size B)`` (not past zero); if
    nothing is left (under 1e-3 on both axes) there is no relation, otherwise each shrunk offset is
    divided by the length of the full offset (y pointing down). Being a ratio, the result does not
    depend on the boxes' unit; only the 1e-3 cut-off does, and it can change an answer only for
    boxes that together span under a hundredth of the unit. The critic's boxes are normalised per
    axis, so on a canvas that is not square, pixel boxes must be normalised to be judged alike.
    """
    offset = ((box_a[0] + box_a[2] - box_b[0] - box_b[2]) / 2, (box_a[1] + box_a[3] - box_b[1] - box_b[3]) / 2)
    sizes = (box_a[2] - box_a[0] + box_b[2] - box_b[0], box_a[3] - box_a[1] + box_b[3] - box_b[1])
    revised = [math.copysign(max(abs(o) - POSITION_THRESHOLD * s, 0.0), o) for o, s in zip(offset, sizes, strict=True)]
    if all(abs(r) < 1e-3 for r in revised):
        return None
    norm = math.hypot(*offset)
    return revised[0] / norm, revised[1] / norm


def observed_relations(box_a: Box, box_b: Box) -> set[str]:
    """Which of ``POSITION_PREDICATES`` hold for A relative to B, by GenEval's rule (empty: no relation).

    From :func:`position_offset`: "left of" when dx < -0.5, "right of" when dx > 0.5, "above" when
    dy < -0.5, "below" when dy > 0.5.
    """
    d = position_offset(box_a, box_b)
    if d is None:
        return set()
    return {p for p, (axis, sign) in _DIRECTIONS.items() if sign * d[axis] > 0.5}


#: "A next to B" holds when the gap between the two boxes is at most this many times their mean side.
NEXT_TO_GAP = 1.0


def _side(box: Box) -> float:
    return (box[2] - box[0] + box[3] - box[1]) / 2


def box_gap(box_a: Box, box_b: Box) -> float:
    """The shortest distance between the two boxes (0 when they touch or overlap)."""
    dx = max(box_a[0] - box_b[2], box_b[0] - box_a[2], 0.0)
    dy = max(box_a[1] - box_b[3], box_b[1] - box_a[3], 0.0)
    return math.hypot(dx, dy)


def relation_holds(box_a: Box, box_b: Box, predicate: str, margin: float = 0.0) -> bool:
    """Whether A is ``predicate`` B: GenEval's rule (see :func:`observed_relations`) for its four
    predicates; for "next to", a :func:`box_gap` of at most :data:`NEXT_TO_GAP` times the boxes' mean side.

    ``margin`` asks for that much to spare past the rule's cut-off (past 0.5, or that share of the
    gap allowed): code that places boxes keeps some, so that boxes measured slightly differently
    still show the relation. "in front of" and "behind" need depth, which boxes do not give: a
    :class:`UsageError`, like any other predicate.
    """
    if predicate == "next to":
        return box_gap(box_a, box_b) <= NEXT_TO_GAP * (1 - margin) * (_side(box_a) + _side(box_b)) / 2
    if predicate not in _DIRECTIONS:
        judged = ", ".join(map(repr, JUDGED_PREDICATES))
        raise UsageError(f"predicate {predicate!r} cannot be judged from boxes; expected one of {judged}")
    d = position_offset(box_a, box_b)
    if d is None:
        return False
    axis, sign = _DIRECTIONS[predicate]
    return sign * d[axis] > 0.5 + margin


def failing_pairs(
    predicate: str, subjects: Sequence[Box], objects: Sequence[Box], margin: float = 0.0
) -> list[tuple[int, int]]:
    """Where "subjects ``predicate`` objects" fails, as (subject index, object index) pairs.

    GenEval's four predicates must hold for every pair of instances. "next to" asks each subject
    instance to be next to some object instance; one that is next to none fails with the nearest.
    With no subjects or no objects nothing fails (what is missing is judged apart).
    """
    if predicate != "next to":
        return [
            (i, j)
            for i, a in enumerate(subjects)
            for j, b in enumerate(objects)
            if not relation_holds(a, b, predicate, margin)
        ]
    out = []
    for i, a in enumerate(subjects):
        if objects and not any(relation_holds(a, b, predicate, margin) for b in objects):
            gaps = [box_gap(a, b) for b in objects]
            out.append((i, min(range(len(gaps)), key=gaps.__getitem__)))
    return out
