"""The data that flows through a strokegraph run.

Everything here is plain, serialisable pydantic data: it lives in the LangGraph state, goes through
every checkpointer, and is written to ``trajectory.json``. Images are never held in memory here;
an :class:`ImageRef` points at a file inside the run directory.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from strokegraph.errors import RunError

__all__ = [
    "COLOURS",
    "JUDGED_PREDICATES",
    "MAX_COUNT",
    "POSITION_PREDICATES",
    "PREDICATES",
    "PREDICATE_PHRASES",
    "Box",
    "Colour",
    "Critique",
    "Detection",
    "Entity",
    "Event",
    "ImageRef",
    "Plan",
    "PlanStep",
    "Predicate",
    "Refinement",
    "Relation",
    "SceneGraph",
    "Stage",
    "Usage",
    "Violation",
    "ViolationKind",
    "read_plain",
    "write_new",
]

Colour = Literal["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
#: GenEval's ten colour names, in its order.
COLOURS: tuple[Colour, ...] = get_args(Colour)

Predicate = Literal["left of", "right of", "above", "below", "next to", "in front of", "behind"]
PREDICATES: tuple[Predicate, ...] = get_args(Predicate)
#: GenEval's four position predicates, judged by its position rule.
POSITION_PREDICATES: tuple[Predicate, ...] = PREDICATES[:4]
#: The predicates the built-in and detector critics judge: GenEval's four and "next to" (by distance).
#: "in front of" and "behind" need depth, which a 2-D box does not give; they stay unjudged.
JUDGED_PREDICATES: tuple[Predicate, ...] = (*POSITION_PREDICATES, "next to")

#: How each predicate reads in a sentence: "the cup is {phrase} the plate".
PREDICATE_PHRASES: dict[str, str] = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
    "next to": "next to",
    "in front of": "in front of",
    "behind": "behind",
}

#: The most instances one entity may ask for: far beyond any benchmark's counts (GenEval's go to
#: four), and small enough that laying them out stays quick whatever a prompt says.
MAX_COUNT = 64

#: A normalised box ``(x0, y0, x1, y1)`` with 0 <= x0 < x1 <= 1, y pointing down.
Box = tuple[float, float, float, float]


def inside_image(box: tuple[float, ...] | list[float]) -> bool:
    """Whether ``box`` is a :data:`Box` inside the image: four numbers, 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1."""
    return len(box) == 4 and all(0.0 <= c <= 1.0 for c in box) and box[0] < box[2] and box[1] < box[3]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Scene graph and plan
# ---------------------------------------------------------------------------------------------


class Entity(_Model):
    """One kind of object in the scene: ``count`` instances of ``noun``; ``count`` 0 means none may be seen."""

    id: str = Field(description="Stable id, e.g. 'e0'.")
    noun: str = Field(description="Singular noun, lower case, e.g. 'wine glass'.")
    count: int = Field(
        default=1,
        ge=0,
        le=MAX_COUNT,
        description="How many to draw; 0: none may appear (GenEval's exclude clause, 'no cars').",
    )
    colour: Colour | None = None
    attributes: tuple[str, ...] = Field(default=(), description="Other adjectives the parser kept, e.g. ('wooden',).")

    def phrase(self) -> str:
        """A noun phrase such as ``'two red apples'``, ``'a blue cup'`` or ``'no cars'``."""
        from strokegraph._text import noun_phrase

        adjectives = (*self.attributes, self.colour) if self.colour else self.attributes
        return noun_phrase(self.noun, self.count, adjectives)


class Relation(_Model):
    """``subject`` is ``predicate`` ``object`` (entity ids), e.g. e1 'left of' e0."""

    subject: str
    predicate: Predicate
    object: str


class SceneGraph(_Model):
    """What the prompt asks for, structured. ``constraints`` holds what could not be structured.

    An entity of count 0 must be absent; no relation may name one (the relation would mean nothing).
    """

    prompt: str
    entities: tuple[Entity, ...]
    relations: tuple[Relation, ...] = ()
    constraints: tuple[str, ...] = Field(
        default=(), description="Free-text parts of the prompt no rule could structure; kept, shown, not judged."
    )

    @model_validator(mode="after")
    def _check_ids(self) -> SceneGraph:
        ids = [e.id for e in self.entities]
        known = set(ids)
        if len(known) != len(ids):
            raise ValueError(f"duplicate entity ids in {ids!r}")
        for rel in self.relations:
            for end in (rel.subject, rel.object):
                if end not in known:
                    raise ValueError(f"relation {rel!r} names unknown entity {end!r}")
        absent = {e.id for e in self.entities if e.count == 0}
        for rel in self.relations:
            if {rel.subject, rel.object} & absent:
                raise ValueError(f"relation {rel!r} names an entity of count 0, which must not be drawn at all")
        return self

    def unjudged(self) -> tuple[str, ...]:
        """Every part of the prompt that the built-in and detector critics do not judge, in words.

        In this order, without repeats: the free-text constraints as written; each relation whose
        predicate is not in :data:`JUDGED_PREDICATES`, e.g. ``'the dog in front of the house'``;
        each non-colour attribute with its noun, e.g. ``'small boat'``. Empty when a passing
        critique of those critics means the image shows everything the prompt asks for.
        """
        from strokegraph._text import pluralize

        def words(e: Entity) -> str:
            return e.noun if e.count == 1 else pluralize(e.noun)

        by_id = {e.id: e for e in self.entities}
        out = list(self.constraints)
        out += [
            f"the {words(by_id[r.subject])} {r.predicate} the {words(by_id[r.object])}"
            for r in self.relations
            if r.predicate not in JUDGED_PREDICATES
        ]
        out += [f"{a} {words(e)}" for e in self.entities for a in e.attributes]
        return tuple(dict.fromkeys(out))

    def entity(self, entity_id: str) -> Entity:
        for e in self.entities:
            if e.id == entity_id:
                return e
        raise KeyError(entity_id)


class PlanStep(_Model):
    """One step of the process: ``<ins>`` what to add, ``<des>`` the whole scene afterwards."""

    instruction: str = Field(description="<ins>: what to add or change in this step.")
    description: str = Field(description="<des>: the whole scene as it should look after this step.")
    entity_ids: tuple[str, ...] = Field(description="Entities this step introduces or changes.")


class Plan(_Model):
    steps: tuple[PlanStep, ...] = Field(min_length=1)

    def introduced_until(self, step: int) -> frozenset[str]:
        """Entity ids introduced by steps ``0..step`` (inclusive)."""
        return frozenset(eid for s in self.steps[: step + 1] for eid in s.entity_ids)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


_IMAGE_PATH = re.compile(r"images/[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.png")


class ImageRef(_Model):
    """An image file inside the run directory. State holds these, never pixels.

    A reference may come from a checkpoint or ``trajectory.json`` that someone else wrote, so it is
    untrusted: ``path`` must name a PNG directly under ``images/``, and reading it refuses symlinks
    and files whose sha256 differs from the one recorded.
    """

    path: str = Field(description="Path relative to the run directory: 'images/<name>.png'.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    width: int = Field(gt=0, le=1 << 16)
    height: int = Field(gt=0, le=1 << 16)

    @field_validator("path")
    @classmethod
    def _contained(cls, path: str) -> str:
        if not _IMAGE_PATH.fullmatch(path) or ".." in path:
            raise ValueError(f"image path {path!r} is not a PNG directly under images/ of the run directory")
        return path

    @classmethod
    def save(cls, image, run_dir: Path, name: str) -> ImageRef:
        """Write ``image`` (a PIL image) as PNG to ``run_dir/images/name`` and return its reference.

        An existing file or symlink of that name is replaced, never written through.
        """
        cls._contained(f"images/{name}")
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        ref = cls(
            path=f"images/{name}", sha256=hashlib.sha256(data).hexdigest(), width=image.width, height=image.height
        )
        ref._write(run_dir, data)
        return ref

    def restore(self, run_dir: Path, data: bytes) -> None:
        """Write ``data`` as this image's file in ``run_dir`` (an image fetched from an artifact store).

        Raises :class:`RunError` unless ``data`` has the recorded sha256; the file is written as
        :meth:`save` writes it, never through a symlink.
        """
        if len(data) > _MAX_IMAGE_BYTES or hashlib.sha256(data).hexdigest() != self.sha256:
            raise RunError(f"image {self.path!r} from the store differs from the one recorded (sha256 mismatch)")
        self._write(run_dir, data)

    def _write(self, run_dir: Path, data: bytes) -> None:
        self._contained(self.path)
        target = Path(run_dir) / self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.parent.is_symlink():
            raise RunError(f"{str(target.parent)!r} is a symlink; refusing to write images through it")
        write_new(target, data)

    def read_bytes(self, run_dir: Path) -> bytes:
        """The file's bytes, once they are shown to be this image.

        Raises :class:`RunError` when the file is missing, is a symlink (or lies under one), or its
        sha256 differs from the recorded one.
        """
        # Validated again: a reference built without validation (model_construct) is still untrusted.
        self._contained(self.path)
        run_dir = Path(run_dir)
        target = run_dir / self.path
        if target.is_symlink() or target.parent.is_symlink():
            raise RunError(f"image {self.path!r} is a symlink; a run directory's images must be plain files")
        try:
            data = read_plain(target, _MAX_IMAGE_BYTES)  # O_NOFOLLOW closes the gap after the check above
        except OSError as exc:
            raise RunError(f"cannot read image {self.path!r}: {exc.strerror or exc}") from None
        if len(data) > _MAX_IMAGE_BYTES or hashlib.sha256(data).hexdigest() != self.sha256:
            raise RunError(f"image {self.path!r} changed on disk since it was written (sha256 mismatch)")
        return data

    def open(self, run_dir: Path):
        """Load the image as an RGB PIL image, after :meth:`read_bytes` has checked it."""
        from PIL import Image

        with Image.open(io.BytesIO(self.read_bytes(run_dir))) as im:
            if im.size != (self.width, self.height):
                size = f"{im.width}x{im.height}, not the recorded {self.width}x{self.height}"
                raise RunError(f"image {self.path!r} is {size}")
            return im.convert("RGB")


#: A run's images are PNGs of at most 65536 px a side; anything near this size is not one of ours.
_MAX_IMAGE_BYTES = 256 << 20


def read_plain(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, opened without following a symlink.

    Raises :class:`OSError` when it cannot be opened, is a link, a device, a FIFO or a folder, or
    holds more than ``limit`` bytes; only what ``fstat`` promised (plus one byte, to see growth) is
    read, since a read of n bytes reserves n bytes first.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        data = f.read(min(info.st_size, limit) + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return data


def write_new(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file and an atomic rename.

    The rename replaces whatever ``target`` was (a file or a symlink planted there) instead of
    writing through it, and a crash never leaves a half-written file under the final name.
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# Critique and refinement
# ---------------------------------------------------------------------------------------------


class Detection(_Model):
    """One object instance found in an image."""

    noun: str
    box: Box
    score: float = Field(ge=0.0, le=1.0)
    colour: Colour | None = None


ViolationKind = Literal["missing", "extra", "count", "attribute", "relation"]


class Violation(_Model):
    kind: ViolationKind
    entity_ids: tuple[str, ...] = Field(default=(), description="Entities concerned (subject first).")
    relation: Relation | None = None
    expected: str
    observed: str
    box: Box | None = Field(default=None, description="Where the problem is, when known (normalised).")
    message: str


class Critique(_Model):
    """What the critic found when it compared an image with the plan and the prompt."""

    violations: tuple[Violation, ...] = ()
    detections: tuple[Detection, ...] = ()
    judged_entity_ids: tuple[str, ...] = Field(
        default=(), description="Entities in scope at this step; later ones are 'not drawn yet', not violations."
    )
    unjudged: tuple[str, ...] = Field(default=(), description="Constraints this critic cannot judge.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return not self.violations

    @model_validator(mode="before")
    @classmethod
    def _accept_passed(cls, data):
        # ``passed`` is derived from ``violations``; a dump carries it, so accept it back on load.
        if isinstance(data, dict) and "passed" in data:
            data = {k: v for k, v in data.items() if k != "passed"}
        return data


RefineOp = Literal["regenerate", "inpaint"]


class Refinement(_Model):
    """A correction: ``<refine>`` text, how to apply it, and where."""

    text: str = Field(description="<refine>: the correction, in words.")
    operation: RefineOp
    region: Box | None = Field(default=None, description="Area to redraw for 'inpaint' (normalised).")
    violations: tuple[Violation, ...] = ()


# ---------------------------------------------------------------------------------------------
# Trajectory
# ---------------------------------------------------------------------------------------------

Stage = Literal["plan", "draft", "critique", "refine", "error"]


class Usage(_Model):
    """What the backend calls of one node cost, as far as the backends report it."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    cost_usd: float | None = Field(default=None, description="Estimate, when prices are configured.")


class Event(_Model):
    """One entry of the append-only trajectory."""

    stage: Stage
    step: int = Field(description="Plan step index (0-based); -1 for planning.")
    round: int = Field(default=0, description="Refine round within the step; 0 is the draft.")
    text: str = ""
    image: ImageRef | None = None
    duration_s: float = 0.0
    sampling_steps: int = 0
    backend: str = ""
    critique: Critique | None = None
    refinement: Refinement | None = None
    usage: Usage | None = None
