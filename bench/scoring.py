"""GenEval's scorer: detections to a correct / incorrect verdict per image, by GenEval's rules.

The rules are those of GenEval's ``evaluation/evaluate_images.py`` and ``summary_scores.py`` (see
``bench/data/geneval/SOURCE.md``), applied to the detections of any
:class:`~strokegraph.agents.critic.Detector` instead of Mask2Former's:

- per class, detections scoring above :data:`THRESHOLD` (:data:`COUNTING_THRESHOLD` for the
  ``counting`` tag) are kept, best first, at most :data:`MAX_OBJECTS`;
- an include clause ``{class, count}`` takes the top ``count`` detections of its class and fails
  when there are fewer; with ``color``, fewer than ``count`` of them may not have another colour
  (the detector names each detection's colour, where GenEval asks CLIP); with
  ``position: [relation, i]``, every one of them must stand in that relation to every detection
  that include clause ``i`` took, by :func:`~strokegraph.geometry.observed_relations`;
- an exclude clause ``{class, count}`` fails when ``count`` or more detections of its class are kept;
- a tag's score is the share of its images that pass every clause; the overall score is the
  unweighted mean of the tag scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strokegraph.agents.critic import DetectorCritic
from strokegraph.errors import UsageError
from strokegraph.geometry import observed_relations
from strokegraph.schema import COLOURS, POSITION_PREDICATES, Box, Detection, SceneGraph

if TYPE_CHECKING:
    from PIL import Image

    from strokegraph.agents.critic import Detector

__all__ = [
    "COUNTING_THRESHOLD",
    "MAX_OBJECTS",
    "THRESHOLD",
    "ImageScore",
    "Judge",
    "check_judge",
    "clauses_for",
    "evaluate",
    "inexpressible",
    "keep_detections",
    "load_judge",
    "summarize",
]

#: Detection score a detection must exceed to count, for every tag but ``counting``.
THRESHOLD = 0.3
#: Detection score a detection must exceed to count, for the ``counting`` tag.
COUNTING_THRESHOLD = 0.9
#: Detections kept per class, best first.
MAX_OBJECTS = 16


@dataclass(frozen=True)
class ImageScore:
    """GenEval's verdict on one image."""

    correct: bool
    reasons: tuple[str, ...]
    """Why it is not correct, one line per failed clause, worded as GenEval words them."""
    detected: dict[str, list[Detection]]
    """The detections kept per class (threshold and cap applied), best first."""


def keep_detections(detections: Iterable[Detection], tag: str) -> dict[str, list[Detection]]:
    """Per class, the detections scoring above the tag's threshold, best first, at most :data:`MAX_OBJECTS`."""
    threshold = COUNTING_THRESHOLD if tag == "counting" else THRESHOLD
    by_class: dict[str, list[Detection]] = {}
    for d in detections:
        by_class.setdefault(d.noun, []).append(d)
    kept = {}
    for noun, found in by_class.items():
        best = sorted((d for d in found if d.score > threshold), key=lambda d: -d.score)[:MAX_OBJECTS]
        if best:
            kept[noun] = best
    return kept


def _scaled(box: Box, size: tuple[int, int] | None) -> Box:
    if size is None:
        return box
    w, h = size
    return (box[0] * w, box[1] * h, box[2] * w, box[3] * h)


def evaluate(
    metadata: Mapping[str, Any], detections: Sequence[Detection], *, size: tuple[int, int] | None = None
) -> ImageScore:
    """Judge one image's ``detections`` against GenEval ``metadata`` (its ``tag``, ``include``, ``exclude``).

    ``size`` is the image's (width, height): boxes are scaled to pixels before the position rule, as
    GenEval's are (the rule's 1e-3 cut-off is in box units). None judges the boxes as they are.
    """
    objects = keep_detections(detections, metadata["tag"])
    reasons: list[str] = []
    matched_groups: list[list[Detection] | None] = []
    for req in metadata.get("include", []):
        cls, count = req["class"], req["count"]
        found = objects.get(cls, [])[:count]
        matched = True
        if len(found) < count:
            matched = False
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colours = [d.colour for d in found]
                if colours.count(req["color"]) < count:
                    matched = False
                    others = ", ".join(f"{colours.count(c)} {c}" for c in COLOURS if c in colours)
                    reasons.append(
                        f"expected {req['color']} {cls}>={count}, found {colours.count(req['color'])} "
                        f"{req['color']}; and {others}"
                    )
            if "position" in req and matched:
                relation, target = req["position"]
                targets = matched_groups[target]
                if targets is None:
                    matched = False
                    reasons.append(f"no target for {cls} to be {relation}")
                else:
                    for a in found:
                        for b in targets:
                            held = observed_relations(_scaled(a.box, size), _scaled(b.box, size))
                            if relation not in held:
                                matched = False
                                seen = " and ".join(p for p in POSITION_PREDICATES if p in held) or "no relation to the"
                                reasons.append(f"expected {cls} {relation} target, found {seen} target")
                                break
                        if not matched:
                            break
        matched_groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        cls = req["class"]
        if len(objects.get(cls, [])) >= req["count"]:
            reasons.append(f"expected {cls}<{req['count']}, found {len(objects[cls])}")
    return ImageScore(correct=not reasons, reasons=tuple(reasons), detected=objects)


def summarize(outcomes: Iterable[tuple[str, bool]]) -> tuple[dict[str, float], float | None]:
    """Per tag, the share of correct images (tags in order of first appearance), and their unweighted mean.

    ``outcomes`` holds ``(tag, correct)`` per image. The overall score is None when there is no image.
    """
    tally: dict[str, list[int]] = {}
    for tag, correct in outcomes:
        counts = tally.setdefault(tag, [0, 0])
        counts[0] += bool(correct)
        counts[1] += 1
    scores = {tag: right / total for tag, (right, total) in tally.items()}
    return scores, (sum(scores.values()) / len(scores) if scores else None)


def inexpressible(scene: SceneGraph) -> tuple[str, ...]:
    """What GenEval's clauses cannot express of ``scene``, in words: its free-text constraints and
    relations other than GenEval's four (``'the cat next to the dog'``). Attributes other than colour
    are not expressible either; they are left to the caller (see :meth:`SceneGraph.unjudged`)."""
    out = list(scene.constraints)
    for rel in scene.relations:
        if rel.predicate not in POSITION_PREDICATES:
            out.append(f"the {scene.entity(rel.subject).noun} {rel.predicate} the {scene.entity(rel.object).noun}")
    return tuple(dict.fromkeys(out))


def clauses_for(scene: SceneGraph, tag: str) -> dict[str, Any]:
    """GenEval metadata for a scene graph, so that any prompt the rules planner parses can be scored.

    One include clause per entity of count >= 1 (its noun as the class, its count, its colour if it
    has one); then, per relation, one more for the subject, with ``position: [predicate, the object's
    clause]``. An entity of count 0 is an exclude clause ``{class, count: 1}``, as in GenEval. For the
    ``counting`` tag, as in GenEval's counting prompts, one exclude clause per other entity with
    ``count + 1``. GenEval's clauses name classes, so two entities of one noun cannot be told apart,
    and they have no "next to", "in front of" or "behind": each is a :class:`UsageError`
    (:func:`inexpressible` lists the latter beforehand). The entities' other attributes are not
    expressible and not judged.
    """
    nouns = [e.noun for e in scene.entities]
    repeated = sorted({n for n in nouns if nouns.count(n) > 1})
    if repeated:
        raise UsageError(f"GenEval's clauses cannot tell apart two entities of one noun: {', '.join(repeated)}")
    other = [r.predicate for r in scene.relations if r.predicate not in POSITION_PREDICATES]
    if other:
        raise UsageError(f"GenEval's clauses have no {', '.join(map(repr, dict.fromkeys(other)))} relation")
    present = [e for e in scene.entities if e.count > 0]
    index = {e.id: i for i, e in enumerate(present)}
    include: list[dict[str, Any]] = []
    for e in present:
        clause: dict[str, Any] = {"class": e.noun, "count": e.count}
        if e.colour is not None:
            clause["color"] = e.colour
        include.append(clause)
    for rel in scene.relations:
        subject = scene.entity(rel.subject)
        include.append({"class": subject.noun, "count": subject.count, "position": [rel.predicate, index[rel.object]]})
    metadata: dict[str, Any] = {"tag": tag, "include": include}
    exclude = [{"class": e.noun, "count": 1} for e in scene.entities if e.count == 0]
    if tag == "counting":
        exclude += [{"class": e.noun, "count": e.count + 1} for e in present]
    if exclude:
        metadata["exclude"] = exclude
    metadata["prompt"] = scene.prompt
    return metadata


class Judge:
    """Scores images by GenEval's rules with a :class:`~strokegraph.agents.critic.Detector`."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    def score(self, image: Image.Image, metadata: Mapping[str, Any]) -> ImageScore:
        """Detect the classes the clauses name and judge them (boxes in pixels, as GenEval's)."""
        clauses = [*metadata.get("include", []), *metadata.get("exclude", [])]
        nouns = tuple(dict.fromkeys(c["class"] for c in clauses))
        return evaluate(metadata, self.detector.detect(image, nouns), size=image.size)


def load_judge(judge_id: str, settings: Mapping[str, Any] | None = None) -> Judge:
    """The judge for a critic id whose backend is a :class:`~strokegraph.agents.critic.DetectorCritic`.

    Only the critic's detector is used. Any other critic (a VLM, a chat model) is a :class:`UsageError`.
    """
    from strokegraph import registry

    check_judge(judge_id, settings)
    critic = registry.build("critic", judge_id, **(settings or {}))
    if not isinstance(critic, DetectorCritic):
        raise UsageError(_not_a_detector(judge_id))
    return Judge(critic.detector)


def check_judge(judge_id: str, settings: Mapping[str, Any] | None = None, drafter_id: str | None = None) -> None:
    """What can be checked of a judge id before anything loads; raises :class:`UsageError`.

    With ``drafter_id``, the judge must also read the kind of image that drafter draws (the sketch
    world's pixel detector cannot judge a diffusion model's photographs).
    """
    from strokegraph import registry

    # A critic that answers in words (a VLM, a chat model) has no detector to lend.
    judge = registry.capabilities("critic", judge_id)
    if not judge.detector:
        raise UsageError(_not_a_detector(judge_id))
    draws = registry.capabilities("drafter", drafter_id).draws if drafter_id else None
    if draws is not None and judge.reads is not None and draws not in judge.reads:
        raise UsageError(
            f"judge {judge_id!r} cannot read the {draws} images the drafter {drafter_id!r} draws; name a detector "
            "that can, e.g. --judge transformers-detect:google/owlv2-base-patch16-ensemble"
        )
    registry.check("critic", judge_id, dict(settings or {}))


def _not_a_detector(judge_id: str) -> str:
    return (
        f"judge {judge_id!r} is not a detector critic; use one that detects objects, "
        "e.g. 'builtin:pixels' or 'transformers-detect:<model>'"
    )
