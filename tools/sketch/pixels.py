"""``builtin:pixels``: find sketch-world icons from the pixels alone.

The detector never sees the drafter's layout. It reads what a person would: flat areas of palette
colour, and the glyph of holes cut into each one (see :mod:`strokegraph.tools.sketch.codebook`).

Method:

1. **Classify** every pixel to the nearest palette colour or the background grey, through a lookup
   table over RGB quantised to 5 bits per channel. Pixels farther than :data:`MAX_COLOUR_DISTANCE`
   from every reference (JPEG blends at edges) stay unlabelled. No smoothing: per-pixel noise of
   sigma 6 is far below the palette's spacing, and a median filter would erase the 4 px glyph
   cells of small icons.
2. **Label** 4-connected regions of each colour: run-length encode the rows, link runs of the same
   colour that overlap a run of the row above, and join the links with a union-find.
3. **Read the glyph** of each region. Within its bounding box a pixel is *hole-ish* when it is
   nearer the background grey than the region's colour (this puts a hole's edge halfway through
   the JPEG blend around it). The holes are the areas the region encloses (with the blends along
   its own edge counted as wall); the hole-ish pixels in them span the glyph, since every outer
   row and column of a code holds a hole. When that span is not square, an outer row or column
   lost its holes to a neighbour's halo, so both ways of squaring it are tried. A cell is a hole
   when most of its middle quarter is hole-ish; a grid with more than one half-and-half cell is
   misplaced and rejected, and a pattern within :data:`MAX_CODE_DISTANCE` of a code is decoded.
4. **Report** a :class:`~strokegraph.schema.Detection` per region with a readable glyph whose code
   names a noun: the requested nouns (:func:`~strokegraph.tools.sketch.codebook.codes_for`) or any
   fixed codebook noun, so unrequested objects still show up as extras. Colour is the nearest
   palette name to the region's median RGB; the box is the region's (a partly covered icon has
   the box of what is visible, as with a segmentation mask); score is 1.0 for an exact code and
   0.75 for a one-cell correction.

**Fragments.** A region with no core (no pixel whose four neighbours are in it too: JPEG slivers)
is ignored. A region without a readable glyph is dropped as a fragment when its core is under
:data:`FRAGMENT_SHARE` of the image (400 px on 512 x 512): bits of an icon cut off by an icon drawn
over it, or an icon too small to read. A larger unreadable region (a glyph covered up, a code no
noun owns) is reported as :data:`UNKNOWN_NOUN` with score 0.5, since something was drawn there.

**Limits** (measured on 512 px canvases, JPEG quality 85 plus noise of sigma 6): icons of 36 px
and up read without error, 30-36 px about 1% misread or missed; an icon drawn over another must
leave 3 px between its halo and the lower icon's glyph (with no gap, ~2% of such scenes lose the
lower icon, now and then to a wrong noun).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from strokegraph.schema import COLOURS, Colour, Detection
from strokegraph.tools.sketch.codebook import BACKGROUND, PALETTE, codes_for, decode, fixed_nouns

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["FRAGMENT_SHARE", "MAX_CODE_DISTANCE", "MAX_COLOUR_DISTANCE", "UNKNOWN_NOUN", "PixelDetector"]

#: Noun of a sizeable palette-coloured region whose glyph cannot be read or names no known noun.
UNKNOWN_NOUN = "unknown object"
#: RGB distance beyond which a pixel is left unlabelled (the closest two references are ~95 apart).
MAX_COLOUR_DISTANCE = 48.0
#: Unreadable regions whose core is under this share of the image are fragments, not objects:
#: 400 px on a 512 x 512 canvas, where a 48 px icon's core is over 800 px and the pieces that
#: overlapping icons cut off measured under 200 px.
FRAGMENT_SHARE = 0.0015
#: Largest Hamming distance between a read pattern and the code it is taken for (codes differ in
#: three cells or more, so one misread cell is still decoded right).
MAX_CODE_DISTANCE = 1

# Pixel classes: 0-9 the palette in COLOURS order, 10 the background grey, 255 unlabelled.
_UNLABELLED = 255
_GREY = np.asarray(BACKGROUND, dtype=np.int32)
_REFS = np.array([PALETTE[c] for c in COLOURS] + [BACKGROUND], dtype=np.float64)


@cache
def _lut() -> np.ndarray:
    """Class of every RGB cell at 5 bits per channel (32**3 entries, ``r << 10 | g << 5 | b``)."""
    levels = np.arange(32, dtype=np.float32) * 8 + 3.5
    per_channel = (levels[:, None, None] - _REFS.T[None].astype(np.float32)) ** 2  # (32, 3, refs)
    d2 = per_channel[:, None, None, 0] + per_channel[None, :, None, 1] + per_channel[None, None, :, 2]
    d2 = d2.reshape(-1, len(_REFS))
    cls = d2.argmin(axis=1).astype(np.uint8)
    cls[d2.min(axis=1) > MAX_COLOUR_DISTANCE**2] = _UNLABELLED
    return cls


def _classify(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel class of an ``HxWx3`` uint8 array: 0-9 palette (COLOURS order), 10 grey, 255 none."""
    q = rgb >> 3
    idx = (q[..., 0].astype(np.int32) << 10) | (q[..., 1].astype(np.int32) << 5) | q[..., 2]
    return _lut()[idx]


def _label(classes: np.ndarray, foreground: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected regions of equal class, for classes where ``foreground[class]`` is True.

    Returns an int32 label image (-1 outside the foreground, else 0..n-1 in raster order of each
    region's first pixel) and n.
    """
    h, w = classes.shape
    flat = classes.reshape(-1)
    is_start = np.ones((h, w), dtype=bool)
    is_start[:, 1:] = classes[:, 1:] != classes[:, :-1]
    starts = np.flatnonzero(is_start)
    ends = np.append(starts[1:], flat.size)
    run_cls = flat[starts]
    keep_run = foreground[run_cls]

    # Runs overlapping a run of the row below: shift the lower run up a row and find the runs of
    # the upper row that contain its first and last pixel (rows are covered by runs end to end).
    lower = np.flatnonzero(keep_run & (starts >= w))
    first = np.searchsorted(starts, starts[lower] - w, side="right") - 1
    last = np.searchsorted(starts, ends[lower] - w, side="left") - 1
    counts = last - first + 1
    below = np.repeat(lower, counts)
    above = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    same = run_cls[below] == run_cls[above]
    below, above = below[same], above[same]

    parent = np.arange(starts.size)
    _union(parent, below, above)
    roots = parent[np.flatnonzero(keep_run)]
    _, region = np.unique(roots, return_inverse=True)
    run_label = np.full(starts.size, -1, dtype=np.int32)
    run_label[keep_run] = region
    labels = np.repeat(run_label, ends - starts).reshape(h, w)
    return labels, int(region.max(initial=-1)) + 1


def _union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Union-find over run pairs; leaves ``parent`` fully compressed (every run points at a root)."""
    p = parent.tolist()

    def find(x: int) -> int:
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = find(x), find(y)
        if rx != ry:
            if rx < ry:
                p[ry] = rx
            else:
                p[rx] = ry
    parent[:] = [find(x) for x in range(len(p))]


def _read_glyph(wall: np.ndarray, holeish: np.ndarray) -> tuple[int, int] | None:
    """(code, distance) of the glyph in a region's bounding-box crop, or None.

    ``wall`` marks the region and the edge blends on its side; holes are the areas it encloses.
    ``holeish`` marks pixels nearer the background grey than the region's colour, which puts a
    hole's edge halfway through the JPEG blend around it, where the cell edge really is.
    """
    labels, n = _label((~wall).view(np.uint8), np.array([False, True]))
    if n == 0:
        return None
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    enclosed = np.ones(n + 1, dtype=bool)  # index -1 (the region itself) maps to the last entry
    enclosed[border] = False
    enclosed[-1] = False
    ys, xs = np.nonzero(enclosed[labels] & holeish)
    if ys.size == 0:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0)
    if side < 8:  # cells under 2 px cannot be told apart from JPEG noise
        return None
    candidates = [(y0, x0)]
    if abs((y1 - y0) - (x1 - x0)) * 8 > side:  # off by more than half a cell: a lost outer row/col
        if y1 - y0 < side:
            candidates.append((y1 - side, x0))
        else:
            candidates.append((y0, x1 - side))
    best: tuple[int, int, int] | None = None
    for gy, gx in candidates:
        share = _sample(holeish, gy, gx, side)
        if share is None:
            continue
        # A cell whose middle is half hole, half not means the grid is misplaced (or the icon is
        # too small to read); more than one such cell is not trusted even if the pattern decodes.
        unsure = int(((share > 0.25) & (share < 0.75)).sum())
        code, distance = decode((share > 0.5).tolist())
        if unsure <= 1 and distance <= MAX_CODE_DISTANCE and (best is None or (distance, unsure) < best[1:]):
            best = (code, distance, unsure)
    return None if best is None else best[:2]


def _sample(holeish: np.ndarray, gy: int, gx: int, side: int) -> np.ndarray | None:
    """Share of hole pixels in the middle quarter of each cell of the 4x4 grid at (gy, gx)."""
    h, w = holeish.shape
    cell = side / 4
    share = np.empty((4, 4))
    for r in range(4):
        for c in range(4):
            ya, yb = int(gy + (r + 0.25) * cell + 0.5), int(gy + (r + 0.75) * cell + 0.5)
            xa, xb = int(gx + (c + 0.25) * cell + 0.5), int(gx + (c + 0.75) * cell + 0.5)
            yb, xb = max(yb, ya + 1), max(xb, xa + 1)
            if ya < 0 or xa < 0 or yb > h or xb > w:
                return None
            share[r, c] = holeish[ya:yb, xa:xb].mean()
    return share


@dataclass(frozen=True)
class _Regions:
    """The labelled colour regions of one image."""

    rgb: np.ndarray
    classes: np.ndarray
    labels: np.ndarray
    pixels: list[np.ndarray]
    """Flat pixel indices of each region."""
    core_area: np.ndarray

    @classmethod
    def of(cls, rgb: np.ndarray) -> _Regions:
        classes = _classify(rgb)
        foreground = np.zeros(256, dtype=bool)
        foreground[: len(COLOURS)] = True
        labels, n = _label(classes, foreground)
        flat = labels.reshape(-1)
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(n + 1))
        core_area = np.bincount(flat[_core(labels).reshape(-1)], minlength=n)
        pixels = [order[bounds[i] : bounds[i + 1]] for i in range(n)]
        return cls(rgb, classes, labels, pixels, core_area)

    def bbox(self, i: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of region ``i`` in pixels, ends exclusive."""
        ys, xs = np.divmod(self.pixels[i], self.labels.shape[1])
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1

    def glyph(self, i: int) -> tuple[int, int] | None:
        """(code, Hamming distance) of the glyph of region ``i``, or None when there is none."""
        x0, y0, x1, y1 = self.bbox(i)
        crop = self.rgb[y0:y1, x0:x1].astype(np.int32)
        own = np.asarray(PALETTE[COLOURS[self.classes.reshape(-1)[self.pixels[i][0]]]], dtype=np.int32)
        holeish = ((crop - _GREY) ** 2).sum(axis=-1) < ((crop - own) ** 2).sum(axis=-1)
        # The blends along the region's edge count as wall, so a thin wall between a hole and a
        # neighbour's halo still closes the hole; blends further out (a neighbour's edge across a
        # thin halo) and other regions do not, so nothing outside the region looks enclosed.
        labels = self.labels[y0:y1, x0:x1]
        region = labels == i
        edge = region.copy()
        edge[1:] |= region[:-1]
        edge[:-1] |= region[1:]
        edge[:, 1:] |= region[:, :-1]
        edge[:, :-1] |= region[:, 1:]
        solid = np.append(self.core_area > 0, False)  # indexed by label; -1 (no region) -> False
        wall = region | (edge & ~holeish & ~solid[labels])
        return _read_glyph(wall, holeish)

    def colour(self, i: int) -> Colour:
        median = np.median(self.rgb.reshape(-1, 3)[self.pixels[i]], axis=0)
        return COLOURS[int(((_REFS[: len(COLOURS)] - median) ** 2).sum(axis=1).argmin())]


class PixelDetector:
    """Detector ``builtin:pixels``: reads icons, their glyph codes and colours from an image."""

    def detect(self, image: Image.Image, nouns: tuple[str, ...]) -> list[Detection]:
        regions = _Regions.of(np.asarray(image.convert("RGB")))
        h, w = regions.labels.shape
        noun_of = {code: noun for noun, code in codes_for(fixed_nouns()).items()}
        noun_of.update({code: noun for noun, code in codes_for(nouns).items()})
        detections: list[Detection] = []
        for i, core_area in enumerate(regions.core_area.tolist()):
            if core_area == 0:
                continue
            glyph = regions.glyph(i)
            noun = None if glyph is None else noun_of.get(glyph[0])
            if noun is None and core_area < FRAGMENT_SHARE * h * w:
                continue
            x0, y0, x1, y1 = regions.bbox(i)
            detections.append(
                Detection(
                    noun=noun or UNKNOWN_NOUN,
                    box=(x0 / w, y0 / h, x1 / w, y1 / h),
                    score=0.5 if glyph is None or noun is None else 1.0 - 0.25 * glyph[1],
                    colour=regions.colour(i),
                )
            )
        return detections


def _core(labels: np.ndarray) -> np.ndarray:
    """Pixels whose four neighbours carry the same label (the region minus a 1 px rim)."""
    core = labels >= 0
    core[1:] &= labels[1:] == labels[:-1]
    core[:-1] &= labels[:-1] == labels[1:]
    core[:, 1:] &= labels[:, 1:] == labels[:, :-1]
    core[:, :-1] &= labels[:, :-1] == labels[:, 1:]
    core[0] = core[-1] = False
    core[:, 0] = core[:, -1] = False
    return core
