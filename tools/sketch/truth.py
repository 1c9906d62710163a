"""What the sketch world really drew: per image, its instances and the faults injected, as a sidecar.

The sketch drafter and refiner know every icon they paint (:meth:`SketchDrafter.draw
<strokegraph.tools.sketch.drafter.SketchDrafter.draw>`). A finished run is replayed with the
backends and settings its ``run.json`` records, the replayed images are compared pixel for pixel
with the recorded ones, and the truth of each image is written next to it as
``images/<name>.truth.json`` (:func:`record_truth`). The critic never reads these files: they are
written after the run, for judges (``builtin:truth``) and for labelling training data.

A truth is ``exact`` when drawing its instances in order on a blank canvas gives the image's
pixels. An inpainted redraw can cut an old icon at the region's edge; its truth then keeps the
icon whose box centre lies outside the region and is marked not exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from strokegraph.errors import RunError, UsageError
from strokegraph.schema import (
    Box,
    Colour,
    Critique,
    Detection,
    Event,
    ImageRef,
    Plan,
    SceneGraph,
    read_plain,
    write_new,
)

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "Drawing",
    "FaultKind",
    "InjectedFault",
    "Instance",
    "Truth",
    "TruthDetector",
    "read_truth",
    "record_truth",
    "truth_path",
]

#: The backend id whose draws can be replayed: the sketch world's drafter and refiner.
SKETCH = "builtin:sketch"
_MAX_SIDECAR = 4 << 20
_MAX_RECORD = 64 << 20


FaultKind = Literal["missing", "count", "colour_leak", "flip"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Instance(_Model):
    """One icon on the canvas: the entity it was drawn for (None for an unknown one), noun, colour, box."""

    entity_id: str | None
    noun: str
    colour: Colour
    box: Box


class InjectedFault(_Model):
    """A mistake the drafter or refiner made on purpose (see ``SketchFaults``)."""

    kind: FaultKind
    entity_id: str
    detail: str


class Drawing(BaseModel):
    """A sketch draw and its truth: the result handed to the loop, the icons painted, the faults injected.

    ``mode``: ``over`` painted on top of the given image, ``fresh`` a new canvas, ``inpaint`` only
    inside ``region`` (normalised; an empty region changed nothing).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    result: Any
    painted: tuple[Instance, ...]
    faults: tuple[InjectedFault, ...]
    mode: Literal["over", "fresh", "inpaint"]
    region: Box | None = None


class Truth(_Model):
    """The sidecar of one image: what is on it, and what was injected when it was drawn."""

    format: Literal[1] = 1
    image: str = Field(description="The image's path in the run directory, images/<name>.png.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    step: int
    round: int
    stage: Literal["draft", "refine"]
    exact: bool = Field(description="Drawing the instances in order gives the image's pixels.")
    instances: tuple[Instance, ...]
    faults: tuple[InjectedFault, ...] = Field(description="Injected by this draw (earlier ones live in its parent).")

    def detections(self) -> list[Detection]:
        """The instances as detections of score 1, as a judge takes them."""
        return [Detection(noun=i.noun, box=i.box, score=1.0, colour=i.colour) for i in self.instances]


def truth_path(run_dir: Path, ref: ImageRef) -> Path:
    """Where the truth of ``ref`` lives: ``images/<name>.truth.json`` beside the image."""
    return Path(run_dir) / (ref.path.removesuffix(".png") + ".truth.json")


def read_truth(run_dir: Path, ref: ImageRef) -> Truth | None:
    """The truth recorded for ``ref``, None when there is none; a sidecar that is damaged or names
    another image (path or sha256) is a :class:`RunError`."""
    path = truth_path(run_dir, ref)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        truth = Truth.model_validate_json(read_plain(path, _MAX_SIDECAR))
    except OSError as exc:
        raise RunError(f"cannot read the truth of {ref.path!r}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        raise RunError(f"the truth of {ref.path!r} is damaged: {exc.error_count()} problem(s)") from None
    if truth.image != ref.path or truth.sha256 != ref.sha256:
        raise RunError(f"the truth of {ref.path!r} describes another image")
    return truth


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(read_plain(path, _MAX_RECORD))
    except (OSError, ValueError, RecursionError) as exc:
        raise RunError(f"cannot read {path.name}: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(doc, dict):
        raise RunError(f"{path.name} is not a JSON object")
    return doc


def _compose(before: tuple[Instance, ...], drawing: Drawing) -> tuple[Instance, ...]:
    if drawing.mode == "over":
        return (*before, *drawing.painted)
    if drawing.mode == "fresh":
        return drawing.painted
    x0, y0, x1, y1 = drawing.region or (0.0, 0.0, 0.0, 0.0)

    def inside(i: Instance) -> bool:
        cx, cy = (i.box[0] + i.box[2]) / 2, (i.box[1] + i.box[3]) / 2
        return x0 <= cx < x1 and y0 <= cy < y1

    return (*(i for i in before if not inside(i)), *(i for i in drawing.painted if inside(i)))


def _render(instances: tuple[Instance, ...], scene: SceneGraph, size: tuple[int, int]) -> Image.Image:
    from PIL import Image, ImageDraw

    from strokegraph.tools.sketch.codebook import BACKGROUND, codes_for, draw_icon

    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    codes = codes_for(e.noun for e in scene.entities)
    w, h = size
    for i in instances:
        box = (round(i.box[0] * w), round(i.box[1] * h), round(i.box[2] * w), round(i.box[3] * h))
        draw_icon(draw, box, i.noun, i.colour, codes[i.noun])
    return image


def record_truth(run_dir: str | Path, drafter: Any = None, refiner: Any = None) -> dict[str, Truth]:
    """Replay the sketch run in ``run_dir`` and write the truth of each of its images beside it.

    ``drafter`` and ``refiner`` are the run's own sketch backends when the caller holds them (a
    benchmark builds them once, so its ``run.json`` names them ``custom:...``); otherwise they are
    built from the ids and settings in ``run.json``. Returns the truths by image path. Raises
    :class:`UsageError` when the run's drafter or refiner is not the sketch world (nothing to
    replay) and :class:`RunError` when the run directory is damaged or a replayed image differs
    from the recorded one (then nothing is written).
    """
    from strokegraph import registry
    from strokegraph.agents.drafter import DraftRequest
    from strokegraph.agents.refiner import RefineRequest
    from strokegraph.tools.sketch.drafter import SketchDrafter, SketchRefiner

    run_dir = Path(run_dir)
    record = _read_json(run_dir / "run.json")
    backends, settings = record.get("backends") or {}, record.get("settings") or {}
    if not isinstance(backends, dict) or not isinstance(settings, dict):
        raise RunError("run.json is damaged: backends and settings must be objects")
    given = isinstance(drafter, SketchDrafter) and isinstance(refiner, SketchRefiner)
    if not given and (backends.get("drafter") != SKETCH or backends.get("refiner") != SKETCH):
        raise UsageError(f"no truth to record: the run's drafter is {backends.get('drafter')!r}, not {SKETCH!r}")
    seed = record.get("seed")
    if not isinstance(seed, int):
        raise RunError("run.json is damaged: seed must be an integer")
    doc = _read_json(run_dir / "trajectory.json")
    try:
        scene = SceneGraph.model_validate(doc.get("scene"))
        plan = Plan.model_validate(doc.get("plan"))
        events = [Event.model_validate(e) for e in doc.get("events") or []]
    except ValidationError as exc:
        raise RunError(f"trajectory.json is damaged: {exc.error_count()} problem(s)") from None
    if not given:
        try:
            drafter = registry.build("drafter", SKETCH, **(settings.get("drafter") or {}))
            refiner = registry.build("refiner", SKETCH, **(settings.get("refiner") or {}))
        except (TypeError, UsageError) as exc:
            raise RunError(f"run.json is damaged: the sketch settings do not build: {exc}") from None

    truths: dict[str, Truth] = {}
    current: tuple[ImageRef, Image.Image, tuple[Instance, ...]] | None = None
    for event in events:
        if event.stage not in ("draft", "refine") or event.image is None:
            continue
        if event.stage == "draft":
            before = current[1] if current is not None and event.step > 0 else None
            drawing = drafter.draw(DraftRequest(scene=scene, plan=plan, step=event.step, image=before, seed=seed))
        else:
            if current is None or event.refinement is None:
                raise RunError(f"trajectory.json is damaged: a redraw of step {event.step} has nothing to redraw")
            request = RefineRequest(
                scene=scene,
                plan=plan,
                step=event.step,
                round=event.round,
                image=current[1],
                critique=Critique(violations=event.refinement.violations),
                seed=seed,
            )
            drawing = refiner.draw(request)
        recorded = event.image.open(run_dir)
        if drawing.result.image.convert("RGB").tobytes() != recorded.tobytes():
            raise RunError(f"replaying {event.image.path!r} gave other pixels: the run was not drawn by these settings")
        # A first draft starts from a blank canvas; every other draw works on the current image.
        underneath = current[2] if current is not None and (event.stage == "refine" or event.step > 0) else ()
        instances = _compose(underneath, drawing)
        exact = _render(instances, scene, recorded.size).tobytes() == recorded.tobytes()
        truths[event.image.path] = Truth(
            image=event.image.path,
            sha256=event.image.sha256,
            step=event.step,
            round=event.round,
            stage=event.stage,
            exact=exact,
            instances=instances,
            faults=drawing.faults,
        )
        current = (event.image, recorded, instances)
    for truth in truths.values():
        write_new(
            run_dir / (truth.image.removesuffix(".png") + ".truth.json"), truth.model_dump_json(indent=1).encode()
        )
    return truths


class TruthDetector:
    """The detector of ``builtin:truth``: the instances the sketch world recorded for an image.

    It reads sidecars, not pixels, so it judges only images it has been shown the truth of
    (:meth:`learn`); any other image is a :class:`RunError`. It is a judge, never a loop critic.
    """

    def __init__(self) -> None:
        self._known: dict[bytes, Truth] = {}

    @staticmethod
    def _key(image: Image.Image) -> bytes:
        import hashlib

        rgb = image.convert("RGB")
        return hashlib.sha256(f"{rgb.width}x{rgb.height}".encode() + rgb.tobytes()).digest()

    def learn(self, image: Image.Image, truth: Truth) -> None:
        """Remember ``truth`` as the truth of ``image`` (by its pixels); only the last few are kept."""
        if len(self._known) > 64:
            self._known.pop(next(iter(self._known)))
        self._known[self._key(image)] = truth

    def truth_of(self, image: Image.Image) -> Truth:
        truth = self._known.get(self._key(image))
        if truth is None:
            raise RunError(
                "builtin:truth judges only images whose truth the sketch world recorded "
                "(bench --judge builtin:truth); it cannot critique inside a run"
            )
        return truth

    def detect(self, image: Image.Image, nouns: tuple[str, ...]) -> list[Detection]:
        return [d for d in self.truth_of(image).detections() if d.noun in nouns]
