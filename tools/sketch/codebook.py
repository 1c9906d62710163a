"""The sketch world's visual language: palette, icons and the glyph code that names each noun.

Every object instance is drawn as a flat **silhouette** in its colour, surrounded by a thin halo of
background grey (so touching or overlapping instances stay separate), with a **glyph** cut into its
middle: a 4x4 grid of cells, each either a hole (background grey) or solid. The glyph's pattern is
the noun's code; its outer rows and columns each hold at least one hole, so a reader can find the
grid from the holes alone, and any two codes differ in at least three cells, so one misread cell is
still decoded correctly.

Code numbers are fixed: GenEval's 80 object names in their class order get codes 0-79, the basic
shapes (circle, square, triangle, star, ...) the next ones; any other noun gets a deterministic code
from a hash of its name among the rest (:func:`codes_for`). The silhouette is only for people: the
critic reads the glyph and the colour, never the outline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import cache
from importlib import resources
from math import cos, pi, sin

from PIL import ImageDraw

from strokegraph.vocab import SHAPES, known_nouns

__all__ = [
    "BACKGROUND",
    "GLYPH_SIZE",
    "PALETTE",
    "SHAPES",
    "all_codes",
    "code_bits",
    "codes_for",
    "decode",
    "draw_icon",
    "fixed_nouns",
    "silhouette_for",
]

#: Canvas background, GenEval's neutral #999999 (not one of the ten colour names).
BACKGROUND: tuple[int, int, int] = (153, 153, 153)

#: The ten GenEval colour names and the flat RGB the sketch world paints them with.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "orange": (255, 140, 0),
    "yellow": (250, 222, 30),
    "green": (34, 160, 60),
    "blue": (31, 90, 220),
    "purple": (128, 50, 170),
    "pink": (250, 140, 200),
    "brown": (120, 70, 30),
    "black": (20, 20, 20),
    "white": (250, 250, 250),
}


#: Glyph side as a fraction of the icon's side, and the glyph centre per silhouette (fractions).
#: At 0.36 a 48 px icon has 4.3 px cells, which survive JPEG's halved colour resolution; at 0.30
#: orange and yellow icons under ~45 px (colours that differ from the grey mostly in hue) misread.
#: The triangle's glyph sits low, where the triangle is widest.
GLYPH_SIZE = 0.36
_GLYPH_CENTRE: dict[str, tuple[float, float]] = {"triangle": (0.5, 0.74), "star": (0.5, 0.54), "heart": (0.5, 0.45)}
# Silhouettes used for nouns that are not shapes, picked by code. Every silhouette (the star and
# the cross fattened for it) keeps at least 6% of its side solid around the glyph.
_GENERIC = ("rounded", "circle", "hexagon", "octagon", "square", "pentagon", "oval", "diamond")
_SILHOUETTE_OF_SHAPE = {"rectangle": "wide", "oval": "oval"}


@cache
def fixed_nouns() -> tuple[str, ...]:
    """GenEval's 80 class names (codes 0-79) followed by the basic shapes (codes 80-90)."""
    return known_nouns()


#: The shipped table of :func:`all_codes`, one code a line in hex; see :func:`_table_text`.
_TABLE = "glyph_codes.txt"
_N_CODES = 512


@cache
def all_codes() -> tuple[int, ...]:
    """The first 512 usable 16-bit glyph patterns, in code order (greedy, min Hamming distance 3).

    Read from the table shipped with the package: choosing them (:func:`_choose_codes`) takes a
    quarter of a second, which every command that draws or reads a sketch would pay. A test checks
    that the table holds exactly what :func:`_choose_codes` picks.
    """
    text = resources.files("strokegraph.tools.sketch").joinpath(_TABLE).read_text(encoding="ascii")
    codes = tuple(int(line, 16) for line in text.splitlines() if line and not line.startswith("#"))
    if len(codes) != _N_CODES or not all(0 <= c < 1 << 16 for c in codes):
        raise RuntimeError(f"the sketch world's {_TABLE} is damaged; reinstall strokegraph")
    return codes


def _choose_codes() -> tuple[int, ...]:
    """What :func:`all_codes` holds: the 16-bit patterns taken greedily in numeric order."""
    chosen: list[int] = []
    for bits in range(1 << 16):
        if len(chosen) == _N_CODES:
            break
        if not _full_frame(bits):
            continue
        # At most 10 holes keeps the glyph mostly solid, so its colour stays easy to read.
        if not 4 <= bits.bit_count() <= 10:
            continue
        if all((bits ^ c).bit_count() >= 3 for c in chosen):
            chosen.append(bits)
    return tuple(chosen)


def _table_text() -> str:
    """The text of the shipped table. Regenerate it with
    ``python -c "from strokegraph.tools.sketch.codebook import _table_text as t; print(t(), end='')"
    > tools/sketch/glyph_codes.txt``.
    """
    head = (
        "# The sketch world's glyph codes (strokegraph.tools.sketch.codebook.all_codes): code i is line i\n"
        "# (comments skipped), a 16-bit hole pattern in hex. Written by _table_text(); a test checks it\n"
        "# equals what _choose_codes() picks.\n"
    )
    return head + "".join(f"{c:04x}\n" for c in _choose_codes())


def _full_frame(bits: int) -> bool:
    rows = [(bits >> (4 * r)) & 0xF for r in range(4)]
    cols = [sum(((bits >> (4 * r + c)) & 1) << r for r in range(4)) for c in range(4)]
    return bool(rows[0] and rows[3] and cols[0] and cols[3])


def code_bits(code: int) -> list[list[bool]]:
    """The 4x4 hole pattern of ``code``: ``grid[row][col]`` is True for a hole."""
    bits = all_codes()[code]
    return [[bool((bits >> (4 * r + c)) & 1) for c in range(4)] for r in range(4)]


def decode(grid: list[list[bool]]) -> tuple[int, int]:
    """The code nearest to a read 4x4 pattern and its Hamming distance to it."""
    bits = sum(1 << (4 * r + c) for r in range(4) for c in range(4) if grid[r][c])
    best = min(range(len(all_codes())), key=lambda i: (all_codes()[i] ^ bits).bit_count())
    return best, (all_codes()[best] ^ bits).bit_count()


def codes_for(nouns: Iterable[str]) -> dict[str, int]:
    """The code of each noun. Fixed nouns keep their code; others hash into the free codes.

    Drafter and critic both call this with all of the scene graph's nouns, so they always agree.
    The result does not depend on the nouns' order, and two unknown nouns of one call never share
    a code: on a clash the alphabetically later noun takes the next free code.
    """
    fixed = {n: i for i, n in enumerate(fixed_nouns())}
    wanted = set(nouns)
    unknown = sorted(wanted - fixed.keys())
    first, n_free = len(fixed), len(all_codes()) - len(fixed)
    if len(unknown) > n_free:
        raise ValueError(f"nouns holds {len(unknown)} nouns outside the codebook; at most {n_free} fit")
    out = {n: fixed[n] for n in wanted if n in fixed}
    taken: set[int] = set()
    for noun in unknown:
        start = int.from_bytes(hashlib.sha256(noun.encode()).digest()[:4], "big")
        code = next(c for k in range(n_free) if (c := first + (start + k) % n_free) not in taken)
        out[noun] = code
        taken.add(code)
    return out


def silhouette_for(noun: str, code: int) -> str:
    if noun in SHAPES:
        return _SILHOUETTE_OF_SHAPE.get(noun, noun)
    return _GENERIC[code % len(_GENERIC)]


def _outline(kind: str, x0: float, y0: float, s: float) -> list[tuple[float, float]] | None:
    """Polygon of a silhouette in the square ``(x0, y0, s)``; None for the ellipse-like kinds."""

    def ring(n: int, r: float, rot: float, cx: float = 0.5, cy: float = 0.5) -> list[tuple[float, float]]:
        return [
            (x0 + s * (cx + r * cos(rot + 2 * pi * k / n)), y0 + s * (cy + r * sin(rot + 2 * pi * k / n)))
            for k in range(n)
        ]

    if kind == "triangle":
        return [(x0 + s * 0.5, y0), (x0 + s, y0 + s), (x0, y0 + s)]
    if kind == "diamond":
        return ring(4, 0.5, -pi / 2)
    if kind == "hexagon":
        return ring(6, 0.5, 0)
    if kind == "octagon":
        return ring(8, 0.52, pi / 8)
    if kind == "pentagon":
        return ring(5, 0.52, -pi / 2, cy=0.54)
    if kind == "star":
        outer = ring(5, 0.52, -pi / 2, cy=0.54)
        inner = ring(5, 0.33, -pi / 2 + pi / 5, cy=0.54)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    if kind == "cross":
        a, b = 0.26, 0.74
        pts = [(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b), (0, a), (a, a)]
        return [(x0 + s * px, y0 + s * py) for px, py in pts]
    return None


def _fill_silhouette(draw: ImageDraw.ImageDraw, kind: str, box: tuple[float, float, float, float], fill) -> None:
    x0, y0, x1, y1 = box
    s = x1 - x0
    if kind == "circle":
        draw.ellipse(box, fill=fill)
    elif kind == "oval":
        draw.ellipse((x0, y0 + 0.12 * s, x1, y1 - 0.12 * s), fill=fill)
    elif kind == "wide":
        draw.rectangle((x0, y0 + 0.18 * s, x1, y1 - 0.18 * s), fill=fill)
    elif kind == "square":
        draw.rectangle(box, fill=fill)
    elif kind == "rounded":
        draw.rounded_rectangle(box, radius=0.22 * s, fill=fill)
    elif kind == "heart":
        r = 0.27 * s
        draw.ellipse((x0 + 0.0 * s, y0 + 0.05 * s, x0 + 2 * r, y0 + 0.05 * s + 2 * r), fill=fill)
        draw.ellipse((x1 - 2 * r, y0 + 0.05 * s, x1, y0 + 0.05 * s + 2 * r), fill=fill)
        draw.polygon([(x0 + 0.02 * s, y0 + 0.4 * s), (x1 - 0.02 * s, y0 + 0.4 * s), (x0 + 0.5 * s, y1)], fill=fill)
    else:
        outline = _outline(kind, x0, y0, s)
        if outline is None:
            raise ValueError(f"unknown silhouette {kind!r}")
        draw.polygon(outline, fill=fill)


def glyph_box(kind: str, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Where the glyph of an icon of silhouette ``kind`` in ``box`` sits."""
    x0, y0, x1, _ = box
    s = x1 - x0
    cx, cy = _GLYPH_CENTRE.get(kind, (0.5, 0.5))
    g = GLYPH_SIZE * s
    return (x0 + cx * s - g / 2, y0 + cy * s - g / 2, x0 + cx * s + g / 2, y0 + cy * s + g / 2)


def halo_width(size: float) -> int:
    return max(3, round(size / 28))


def draw_icon(
    draw: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    noun: str,
    colour: str,
    code: int,
) -> None:
    """Draw one instance of ``noun`` in ``colour`` into the square ``box`` (pixels).

    ``code`` comes from :func:`codes_for`. The halo is painted first in background grey, so
    whatever lies under the icon's edge is cut away and instances never merge.
    """
    x0, y0, x1, y1 = box
    if abs((x1 - x0) - (y1 - y0)) > 1:
        raise ValueError(f"icon box must be square, got {box!r}")
    kind = silhouette_for(noun, code)
    h = halo_width(x1 - x0)
    _fill_silhouette(draw, kind, (x0 - h, y0 - h, x1 + h, y1 + h), BACKGROUND)
    _fill_silhouette(draw, kind, box, PALETTE[colour])
    gx0, gy0, gx1, _ = glyph_box(kind, box)
    cell = (gx1 - gx0) / 4
    for r, row in enumerate(code_bits(code)):
        for c, hole in enumerate(row):
            if hole:
                draw.rectangle(
                    (gx0 + c * cell, gy0 + r * cell, gx0 + (c + 1) * cell - 1, gy0 + (r + 1) * cell - 1),
                    fill=BACKGROUND,
                )


def render_codebook(nouns: Iterable[str] | None = None, *, cell: int = 112, columns: int = 10):
    """A sheet with one labelled icon per noun (default: every fixed noun), for people to read."""
    from PIL import Image, ImageFont

    nouns = list(known_nouns() if nouns is None else nouns)
    codes = codes_for(nouns)
    rows = -(-len(nouns) // columns)
    sheet = Image.new("RGB", (columns * cell, rows * cell), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(10, cell // 9))
    colours = list(PALETTE)
    side = round(cell * 0.62)
    for i, noun in enumerate(nouns):
        x, y = (i % columns) * cell, (i // columns) * cell
        x0, y0 = x + (cell - side) // 2, y + cell // 14
        draw_icon(draw, (x0, y0, x0 + side, y0 + side), noun, colours[codes[noun] % len(colours)], codes[noun])
        label = f"{codes[noun]} {noun}"
        width = draw.textlength(label, font=font)
        draw.text((x + (cell - width) / 2, y0 + side + cell // 16), label, fill=(0, 0, 0), font=font)
    return sheet
