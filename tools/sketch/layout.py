"""Where the sketch world puts things: one square pixel box per object instance.

:func:`solve_layout` places every instance of every entity of a scene graph so that each relation
holds under GenEval's position rule (:func:`strokegraph.geometry.relation_holds`, on boxes
normalised by the canvas size, as the critic sees them) for every pair of instances.

Method:

1. **Relations.** "A left of B" orders A before B on the x axis, "A above B" on the y axis (y points
   down). "A next to B" puts them in neighbouring cells: ordered like "left of" (or, where that would
   close a cycle, like "right of", "above", "below"), and judged by distance instead. It takes its
   side after the other relations, on a side of both that nothing holds yet where there is one:
   "A next to B and C" gives B-A-C in a line, or C below A when something is already left of A.
   Beside an entity of several instances that has a "next to" partner on an axis, only another
   "next to" partner holds a side of that axis, so its partners stay in one line with it (a grid
   cannot be next to things on two axes: its far corner is too far). A relation that would close a
   cycle on its axis (or names one entity twice) is dropped; :func:`acyclic_relations` lists the
   ones kept, in the scene's order. "in front of" and "behind" are not placed (a flat sketch has
   no depth), and entities of count 0 get no boxes.
2. **Ranks.** Entities related on one axis are pulled onto one line of the other axis when nothing
   orders them there (A left of B puts A and B in one row), so a relation is not also a diagonal.
   The x rank of an entity is then its longest path over the left/right constraints, its y rank
   the same over above/below; an entity with a "next to" partner after it (and none before it)
   moves up to just before what follows it, so no rank is left empty between partners, and one
   that shares a rank with an entity between two "next to" partners moves up as far as what
   follows it allows, off their line. Each group of related entities that holds a "next to" gets
   ranks of its own, beside or below the rest, so no entity of another group comes between
   partners.
3. **Cells.** The canvas, less a margin, splits into columns x rows by rank, each column and row
   as wide as its entities' instance counts need: about sqrt(count) icons each way, but one icon
   along an axis on which the entity lies between "next to" partners (its instances then form a
   line across it). Entities with no relation take the empty cells first. Entities sharing a cell
   split it along x, by the same measure (along y when their relations are mostly above/below, so
   each stays in line with what it is above or below; along the other axis when one of them lies
   between "next to" partners on the split axis), in scene order, except that one with a "next to"
   partner before it comes first and one with a partner after it last.
4. **Instances.** The instances of an entity sit in a small grid (1x3, 2x2, 4x1, ...) in its
   cell, spaced at :data:`PITCH` times the icon side, the side as large as the cell allows (at most
   :data:`MAX_SIDE` of the canvas). Because every pair of instances counts, a wide grid can spoil
   a relation; so per entity the grid shape, a shrink factor (not below :data:`MIN_SIDE`) and
   whether the grid is pushed to the side of its cell away from its partners are searched
   (coordinate descent): first the largest common scale at which every relation holds with
   :data:`RELATION_MARGIN` to spare, then each entity grown back as far as it stays valid; where no
   common scale works, each entity may then take any scale (small icons beside a large one).
5. **Jitter.** Each instance moves by up to :data:`JITTER` of its side, seeded and inside its cell;
   if that costs any relation its margin, the layout is returned without jitter.

Scenes that no such grid satisfies (two relations between one pair of many-instance entities, or
crossing chains such as A left of B, A above C, C above B) get the placement with the fewest
failing pairs. Measured on 1,000 random planner-like scenes per line below (1-5 entities, counts
1-4, each entity after the first related to a random earlier one, in a random direction; drawn by
``random.Random(0)``, jitter seed the scene's index; a scene fails when a relation of
:func:`acyclic_relations` fails :func:`~strokegraph.geometry.failing_pairs` at the critic's
cut-off on the 512 px layout):

- GenEval's four predicates: none fail; with relations between arbitrary pairs, 6.9%.
- "next to" as one of five equally likely predicates: 1.6% fail one (0.0% with one instance per
  entity); with a quarter of those relations left out, so that some entities stand alone, 0.5%
  (0.0%). What still fails gives an entity of 3-4 instances a "next to" and a relation that pulls
  its grid elsewhere.
- "A next to B and C", counts 1-3 each, alone or with one more entity (1-3 instances) left of,
  right of, above or below any of them or standing alone (1,080 scenes): none fail. "A next to B,
  C and D" likewise with one A (1,404 scenes): none fail. With two or three As, 2,778 of 2,808
  fail: each A must be within a side of some B, some C and some D, which a grid of As with three
  sides taken cannot be.

Icons are 48-170 px on a 512 px canvas unless a scene holds more than about a dozen instances;
sizes scale with the canvas.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable, Sequence
from functools import cache, lru_cache, partial

from strokegraph.geometry import failing_pairs
from strokegraph.schema import POSITION_PREDICATES, Relation, SceneGraph

__all__ = [
    "JITTER",
    "MAX_SIDE",
    "MIN_SIDE",
    "PITCH",
    "RELATION_MARGIN",
    "PixelBox",
    "acyclic_relations",
    "solve_layout",
]

#: A square pixel box ``(x0, y0, x1, y1)`` with ``x1 - x0 == y1 - y0``.
PixelBox = tuple[int, int, int, int]

#: How far past GenEval's 0.5 cut-off the solver keeps each relation, so the critic's tighter
#: silhouette boxes and the jitter cannot tip it.
RELATION_MARGIN = 0.08
#: Spacing of an entity's instances, as a multiple of the icon side.
PITCH = 1.2
#: Largest icon side as a share of the canvas's shorter side (170 px on 512).
MAX_SIDE = 170 / 512
#: Smallest icon side the search shrinks to, as a share of the canvas's shorter side (48 px on 512);
#: only a cell too small for it gives smaller icons.
MIN_SIDE = 48 / 512
#: Largest seeded shift of an instance, as a share of its side.
JITTER = 0.06

_CANVAS_MARGIN = 0.04
_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
_AXIS_OF: dict[str, tuple[int, bool]] = {
    # predicate -> (axis, subject comes first on that axis)
    "left of": (0, True),
    "right of": (0, False),
    "above": (1, True),
    "below": (1, False),
}


# ---------------------------------------------------------------------------------------------
# Relations and ranks
# ---------------------------------------------------------------------------------------------


def _reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for nxt in edges.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


#: A placement: the relation, and the order it puts its entities in, ``(axis, first, second)``.
_Placed = tuple[Relation, int, str, str]


def _placements(scene: SceneGraph) -> tuple[_Placed, ...]:
    """The relations the layout honours with the order each imposes; see :func:`acyclic_relations`."""
    edges: tuple[dict[str, set[str]], dict[str, set[str]]] = ({}, {})
    # Per axis, the entities with something placed after / before them, and those with a
    # "next to" partner there.
    after: tuple[set[str], set[str]] = (set(), set())
    before: tuple[set[str], set[str]] = (set(), set())
    near_after: tuple[set[str], set[str]] = (set(), set())
    near_before: tuple[set[str], set[str]] = (set(), set())
    several = {e.id: e.count > 1 for e in scene.entities}

    def taken(axis: int, first: str, second: str) -> bool:
        """Whether ``first`` before ``second`` on ``axis`` takes a side that something holds already."""
        # A grid of instances cannot be next to things on two axes (its far corner is too far), so
        # beside a grid that has a "next to" partner on an axis only another "next to" partner holds
        # a side there: a relation that only orders (X left of A) holds beyond the partner too.
        grid_in_line = any(several[i] and (i in near_after[axis] or i in near_before[axis]) for i in (first, second))
        if grid_in_line:
            return first in near_after[axis] or second in near_before[axis]
        return first in after[axis] or second in before[axis]

    kept: list[_Placed] = []
    # "next to" may take any side, so it chooses after the relations that may not.
    rank = {rel: k for k, rel in enumerate(scene.relations)}
    for rel in sorted(scene.relations, key=lambda r: (r.predicate == "next to", rank[r])):
        s, o = rel.subject, rel.object
        if rel.predicate == "next to":
            options = [(0, s, o), (0, o, s), (1, s, o), (1, o, s)]
            # Best at the ends of a line: "A next to B and C" puts C on A's free side, not beside B.
            free = [option for option in options if not taken(*option)]
            options = free + options
        elif rel.predicate in POSITION_PREDICATES:
            axis, subject_first = _AXIS_OF[rel.predicate]
            options = [(axis, s, o) if subject_first else (axis, o, s)]
        else:
            continue
        for axis, first, second in options:
            if first != second and not _reaches(edges[axis], second, first):
                edges[axis].setdefault(first, set()).add(second)
                after[axis].add(first)
                before[axis].add(second)
                if rel.predicate == "next to":
                    near_after[axis].add(first)
                    near_before[axis].add(second)
                kept.append((rel, axis, first, second))
                break
    return tuple(sorted(kept, key=lambda p: rank[p[0]]))


def acyclic_relations(scene: SceneGraph) -> tuple[Relation, ...]:
    """The relations the layout honours: GenEval's four and "next to", but those that close a cycle.

    Relations are taken in the scene's order, so of "A left of B" and a later "B left of A" the
    later is dropped. A relation of an entity to itself is dropped too.
    """
    return tuple(p[0] for p in _placements(scene))


def _ranks(
    ids: Sequence[str],
    before: Iterable[tuple[str, str]],
    together: Iterable[tuple[str, str]],
    near: Iterable[tuple[str, str]],
) -> dict[str, int]:
    """Rank of each id: every ``before`` pair in increasing rank, ``together`` pairs sharing a rank
    when nothing orders them.

    Ranks are longest-path ranks, except that an id with a ``near`` pair after it (and none before
    it) moves up to just before the nearest of what follows it, so a "next to" partner ordered
    after it is one rank away whenever the other constraints allow; and an id in no ``near`` pair
    that shares a rank with one between two ``near`` partners moves up as far as what follows it
    allows.
    """
    before = list(before)
    parent = {i: i for i in ids}

    def find(i: str) -> str:
        while parent[i] != i:
            i = parent[i]
        return i

    def group_edges() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for a, b in before:
            out.setdefault(find(a), set()).add(find(b))
        return out

    for a, b in together:
        ga, gb = find(a), find(b)
        if ga == gb:
            continue
        edges = group_edges()
        # Merging two groups neither of which reaches the other cannot create a cycle.
        if not (_reaches(edges, ga, gb) or _reaches(edges, gb, ga)):
            parent[gb] = ga

    edges = group_edges()
    preds: dict[str, set[str]] = {}
    for a, outs in edges.items():
        for b in outs:
            preds.setdefault(b, set()).add(a)

    @cache
    def rank(group: str) -> int:
        return max((rank(p) + 1 for p in preds.get(group, ())), default=0)

    ranked = {g: rank(g) for g in dict.fromkeys(find(i) for i in ids)}
    near_after = {find(a) for a, _ in near}
    near_before = {find(b) for _, b in near}
    # Longest paths put every id as early as it can go, which can leave a rank between "next to"
    # partners. The highest ranks are pulled first, so each id sees where what follows it has gone.
    for g in sorted(ranked, key=ranked.__getitem__, reverse=True):
        if g in near_after and g not in near_before:
            ranked[g] = min(ranked[b] for b in edges[g]) - 1
    # What shares a rank with an id between two "next to" partners would stand between it and one
    # of them, or off their line: it moves up as far as what follows it allows.
    between = near_after & near_before
    last = max(ranked.values())
    for g in sorted(ranked, key=ranked.__getitem__, reverse=True):
        if g not in near_after | near_before and any(ranked[b] == ranked[g] for b in between):
            ranked[g] = min((ranked[b] - 1 for b in edges.get(g, ())), default=last)
    return {i: ranked[find(i)] for i in ids}


# ---------------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------------

_Cell = tuple[float, float, float, float]
_Shape = tuple[int, int]  # (grid rows, grid columns)
_Choice = tuple[_Shape, float, float]  # an entity's grid shape, scale and push strength


def _shapes(count: int) -> list[_Shape]:
    """Grid shapes that hold ``count`` instances with no empty row."""
    out = []
    for rows in range(1, count + 1):
        cols = math.ceil(count / rows)
        if (rows - 1) * cols < count and (rows, cols) not in out:
            out.append((rows, cols))
    return out


def _side(cell: _Cell, shape: _Shape, cap: float) -> float:
    rows, cols = shape
    return min((cell[2] - cell[0]) / (cols * PITCH), (cell[3] - cell[1]) / (rows * PITCH), cap)


def _place(cell: _Cell, count: int, shape: _Shape, side: int, push: tuple[float, float]) -> list[PixelBox]:
    """``count`` boxes of ``side`` px in a grid of ``shape`` inside ``cell``; a short last row is centred.

    ``push`` (-1..1 per axis) moves the grid from the cell's centre towards its edges.
    """
    rows, cols = shape
    pitch = PITCH * side
    width, height = (cols - 1) * pitch + side, (rows - 1) * pitch + side
    cx = (cell[0] + cell[2]) / 2 + push[0] * max(0.0, cell[2] - cell[0] - width) / 2
    cy = (cell[1] + cell[3]) / 2 + push[1] * max(0.0, cell[3] - cell[1] - height) / 2
    top = cy - height / 2
    boxes = []
    for i in range(count):
        r, c = divmod(i, cols)
        in_row = min(cols, count - r * cols)
        left = cx - ((in_row - 1) * pitch + side) / 2
        x0, y0 = round(left + c * pitch), round(top + r * pitch)
        boxes.append((x0, y0, x0 + side, y0 + side))
    return boxes


def _edges(weights: Sequence[float], start: float, end: float) -> list[float]:
    """Split ``start..end`` into parts proportional to ``weights``; the ``len + 1`` boundaries."""
    total, edges = sum(weights), [start]
    for w in weights:
        edges.append(edges[-1] + (end - start) * w / total)
    return edges


def _failures(
    boxes: dict[str, list[PixelBox]], relations: Sequence[Relation], margin: float, width: int, height: int
) -> int:
    """Failing pairs of instances (:func:`~strokegraph.geometry.failing_pairs` with ``margin``),
    judged as the critic judges."""
    # The critic sees boxes normalised per axis, which on a canvas that is not square changes the
    # direction of an offset: normalise the same way.
    unit = {i: [(b[0] / width, b[1] / height, b[2] / width, b[3] / height) for b in bs] for i, bs in boxes.items()}
    return sum(len(failing_pairs(rel.predicate, unit[rel.subject], unit[rel.object], margin)) for rel in relations)


def _stack_apart(ids: Sequence[str], placed: Sequence[_Placed], x_rank: dict[str, int], y_rank: dict[str, int]) -> None:
    """Move each group of related entities that holds a "next to" onto ranks of its own, in place.

    Each group's ranks start at 0, so unmoved, two groups share cells, and an entity of one can come
    between two "next to" partners of the other. Groups of other relations keep their ranks (an
    entity in between spoils none of them); each group with a "next to" goes beside or below what
    comes before it, whichever keeps the grid closer to square.
    """
    group = {i: i for i in ids}

    def find(i: str) -> str:
        while group[i] != i:
            i = group[i]
        return i

    for _, _, a, b in placed:
        group[find(b)] = find(a)
    members: dict[str, list[str]] = {}
    for _, _, a, b in placed:
        for i in (a, b):
            if i not in members.setdefault(find(i), []):
                members[find(i)].append(i)
    near = {find(p[2]) for p in placed if p[0].predicate == "next to"}
    fixed = [i for g, part in members.items() if g not in near for i in part]
    n_cols = max((x_rank[i] + 1 for i in fixed), default=0)
    n_rows = max((y_rank[i] + 1 for i in fixed), default=0)
    for part in (part for g, part in members.items() if g in near):
        x0, y0 = min(x_rank[i] for i in part), min(y_rank[i] for i in part)
        cols = max(x_rank[i] for i in part) - x0 + 1
        rows = max(y_rank[i] for i in part) - y0 + 1
        beside = (n_cols + cols, max(n_rows, rows))
        below = (max(n_cols, cols), n_rows + rows)
        # Ties go below.
        dx, dy = (n_cols, 0) if max(beside) < max(below) else (0, n_rows)
        for i in part:
            x_rank[i] += dx - x0
            y_rank[i] += dy - y0
        n_cols, n_rows = max(n_cols, dx + cols), max(n_rows, dy + rows)


@lru_cache(maxsize=256)
def _solve(
    width: int, height: int, counts: tuple[tuple[str, int], ...], placed: tuple[_Placed, ...]
) -> tuple[tuple[str, tuple[PixelBox, ...], _Cell], ...]:
    """The unjittered layout: per entity its boxes and its cell."""
    ids = [i for i, _ in counts]
    count_of = dict(counts)
    relations = [p[0] for p in placed]
    ordered = [p[1:] for p in placed]
    on_axis = [[(a, b) for axis, a, b in ordered if axis == k] for k in (0, 1)]
    # x ranks keep y-related pairs in one column; y ranks keep x-related pairs in one row.
    near = [[(a, b) for (rel, axis, a, b) in placed if axis == k and rel.predicate == "next to"] for k in (0, 1)]
    x_rank = _ranks(ids, on_axis[0], on_axis[1], near[0])
    y_rank = _ranks(ids, on_axis[1], on_axis[0], near[1])
    _stack_apart(ids, placed, x_rank, y_rank)
    related = {i for r in relations for i in (r.subject, r.object)}

    margin = _CANVAS_MARGIN * min(width, height)
    n_cols, n_rows = max(x_rank.values()) + 1, max(y_rank.values()) + 1
    sharing: dict[tuple[int, int], list[str]] = {}
    for i in ids:
        if i in related:
            sharing.setdefault((x_rank[i], y_rank[i]), []).append(i)
    # Entities with no relation fill the empty cells first, then share the emptiest one.
    empty = [(c, r) for r in range(n_rows) for c in range(n_cols) if (c, r) not in sharing]
    for i in ids:
        if i not in related:
            cell = empty.pop(0) if empty else min(sharing, key=lambda k: (sum(count_of[j] for j in sharing[k]), k))
            sharing.setdefault(cell, []).append(i)
    # Entities sharing a cell sit side by side along x, or stacked along y when their relations are
    # mostly vertical (so each stays in line with what it is above or below).
    on_axis_count = {i: [0, 0] for i in ids}
    for axis, first, second in ordered:
        on_axis_count[first][axis] += 1
        on_axis_count[second][axis] += 1
    split = {
        cell: int(sum(on_axis_count[i][1] for i in members) > sum(on_axis_count[i][0] for i in members))
        for cell, members in sharing.items()
    }
    # Per entity and axis, the sides its "next to" partners lie on: -1 before it, 1 after, 0 level.
    partners: dict[str, list[str]] = {i: [] for i in ids}
    for rel, _, first, second in placed:
        if rel.predicate == "next to":
            partners[first].append(second)
            partners[second].append(first)
    sides = {
        i: [{(rank[p] > rank[i]) - (rank[p] < rank[i]) for p in partners[i]} for rank in (x_rank, y_rank)] for i in ids
    }
    between = {i: [{-1, 1} <= on_axis_sides for on_axis_sides in sides[i]] for i in ids}
    for cell, members in sharing.items():
        # A member between partners along the split axis needs both edges of its cell, which a
        # neighbour would take from it: split the other way, unless a member needs that too.
        if len(members) > 1:
            both = [any(between[i][axis] for i in members) for axis in (0, 1)]
            if both[split[cell]] and not both[1 - split[cell]]:
                split[cell] = 1 - split[cell]
        # Along the split, members with a partner before them come first and those with a partner
        # after them last, so nothing sharing the cell comes between a member and its partner.
        members.sort(key=lambda i: (1 in sides[i][split[cell]]) - (-1 in sides[i][split[cell]]))
    # Columns and rows get room in proportion to what they hold: an entity needs about
    # sqrt(count) icon sides each way. One between partners along one axis only is near both only
    # as a line across that axis: one icon along it, count icons across.
    need = {i: (math.sqrt(count_of[i]), math.sqrt(count_of[i])) for i in ids}
    for i in ids:
        if between[i][0] != between[i][1]:
            need[i] = (1.0, float(count_of[i])) if between[i][0] else (float(count_of[i]), 1.0)
    col_need, row_need = [0.0] * n_cols, [0.0] * n_rows
    for (col, row), members in sharing.items():
        stacked = split[(col, row)] == 1
        x_need = [need[i][0] for i in members]
        y_need = [need[i][1] for i in members]
        col_need[col] = max(col_need[col], max(x_need) if stacked else sum(x_need))
        row_need[row] = max(row_need[row], sum(y_need) if stacked else max(y_need))
    col_edge = _edges(col_need, margin, width - margin)
    row_edge = _edges(row_need, margin, height - margin)
    cells: dict[str, _Cell] = {}
    for (col, row), members in sharing.items():
        lo = [col_edge[col], row_edge[row]]
        hi = [col_edge[col + 1], row_edge[row + 1]]
        axis = split[(col, row)]
        unit = (hi[axis] - lo[axis]) / sum(need[i][axis] for i in members)
        for i in members:
            hi[axis] = lo[axis] + unit * need[i][axis]
            cells[i] = (lo[0], lo[1], hi[0], hi[1])
            lo[axis] = hi[axis]

    cap, floor = MAX_SIDE * min(width, height), MIN_SIDE * min(width, height)
    # Pushing an entity's grid to the side of its cell that its relations point to moves it away
    # from the entities it is related to, which keeps wide grids within a relation's cone.
    toward = {i: [0, 0] for i in ids}
    for rel, axis, first, second in placed:
        # "next to" wants the opposite: the two grids pushed towards each other.
        sign = -1 if rel.predicate == "next to" else 1
        toward[first][axis] -= sign
        toward[second][axis] += sign
    push = {i: (float((x > 0) - (x < 0)), float((y > 0) - (y < 0))) for i, (x, y) in toward.items()}
    shapes = {i: _shapes(count_of[i]) for i in ids}
    # Per entity: (grid shape, scale, push strength). Start from the shape with the largest icons.
    choice = {i: (max(shapes[i], key=lambda s: _side(cells[i], s, cap)), 1.0, 0.0) for i in ids}

    def layout() -> dict[str, list[PixelBox]]:
        out = {}
        for i, (shape, scale, strength) in choice.items():
            full = _side(cells[i], shape, cap)
            side = int(max(scale * full, min(full, floor)))
            out[i] = _place(cells[i], count_of[i], shape, side, (strength * push[i][0], strength * push[i][1]))
        return out

    def score() -> tuple[int, float, float]:
        boxes = layout()
        sides = [b[0][2] - b[0][0] for b in boxes.values()]
        return (-_failures(boxes, relations, RELATION_MARGIN, width, height), min(sides), sum(sides))

    def options(i: str, scales: Iterable[float]) -> list[_Choice]:
        return [(s, t, p) for s in shapes[i] for t in scales for p in (0.0, 1.0)]

    def descend(options_of: Callable[[str], list[_Choice]]) -> tuple[int, float, float]:
        """Coordinate descent: each entity in turn takes its best option, until nothing changes."""
        best = score()
        for _ in range(4):
            changed = False
            for i in ids:
                for option in options_of(i):
                    kept = choice[i]
                    choice[i] = option
                    if (s := score()) > best:
                        best, changed = s, True
                    else:
                        choice[i] = kept
            if not changed:
                break
        return best

    # The largest common scale at which some grid shapes and pushes satisfy every relation ...
    best_found: tuple[tuple[int, float, float], dict[str, _Choice]] | None = None
    for common in _SCALES:
        choice = {i: (shape, common, strength) for i, (shape, _, strength) in choice.items()}
        found = descend(partial(options, scales=(common,)))
        if best_found is None or found > best_found[0]:
            best_found = (found, dict(choice))
        if found[0] == 0:
            break
    assert best_found is not None  # _SCALES is not empty
    choice = best_found[1]
    # ... then each entity grows back as far as it stays valid.
    grown = descend(lambda i: options(i, [t for t in _SCALES if t >= choice[i][1]]))
    if grown[0] < 0:
        # No common scale works when a relation needs sizes apart: a subject whose instances must
        # all be "next to" one large object shrinks while the object stays large.
        descend(partial(options, scales=_SCALES))
    boxes = layout()
    return tuple((i, tuple(boxes[i]), cells[i]) for i in ids)


def _jittered(
    solved: tuple[tuple[str, tuple[PixelBox, ...], _Cell], ...],
    relations: Sequence[Relation],
    seed: int,
    width: int,
    height: int,
) -> dict[str, list[PixelBox]]:
    key = hashlib.sha256(f"strokegraph.layout\x1f{seed}".encode()).digest()
    rng = random.Random(int.from_bytes(key[:8], "big"))
    out: dict[str, list[PixelBox]] = {}
    for entity_id, boxes, cell in solved:
        moved = []
        for x0, y0, x1, y1 in boxes:
            side = x1 - x0
            reach = JITTER * side
            dx = round(rng.uniform(-reach, reach))
            dy = round(rng.uniform(-reach, reach))
            # Stay inside the cell, so jitter never brings two entities together.
            dx = min(max(dx, math.ceil(cell[0]) - x0), math.floor(cell[2]) - x1)
            dy = min(max(dy, math.ceil(cell[1]) - y0), math.floor(cell[3]) - y1)
            moved.append((x0 + dx, y0 + dy, x1 + dx, y1 + dy))
        out[entity_id] = moved
    plain = {i: list(b) for i, b, _ in solved}
    half = RELATION_MARGIN / 2
    if _failures(out, relations, half, width, height) > _failures(plain, relations, half, width, height):
        return plain
    return out


def solve_layout(scene: SceneGraph, width: int, height: int, seed: int) -> dict[str, list[PixelBox]]:
    """One square pixel box per instance of every entity, keyed by entity id (none for count 0).

    Deterministic in its inputs; ``seed`` only moves the jitter. Every relation of
    :func:`acyclic_relations` holds under GenEval's rule for every pair of instances
    whenever a grid layout can make it hold (see the module docstring).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"canvas size must be positive, got width={width!r}, height={height!r}")
    placed = _placements(scene)
    counts = tuple((e.id, e.count) for e in scene.entities if e.count > 0)
    solved = _solve(width, height, counts, placed)
    boxes = _jittered(solved, [p[0] for p in placed], seed, width, height)
    return {e.id: boxes.get(e.id, []) for e in scene.entities}
