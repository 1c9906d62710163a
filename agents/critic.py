"""The critic role: compare an image with the scene graph and list the prompt violations.

GenEval's judging rules, on the box geometry of :mod:`strokegraph.geometry`: :func:`assign_detections`
(which detection is which entity) and :func:`judge` (detections to violations), shared by every
detector-backed critic. :class:`DetectorCritic` puts a :class:`Detector` in front of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from strokegraph import prompts
from strokegraph._drive import drive
from strokegraph._text import article, noun_phrase, number_word, pluralize
from strokegraph.agents.chat import ChatModel, CriticReply, ask, image_part, text_part
from strokegraph.errors import UsageError
from strokegraph.geometry import failing_pairs, observed_relations
from strokegraph.schema import (
    COLOURS,
    JUDGED_PREDICATES,
    POSITION_PREDICATES,
    Box,
    Critique,
    Detection,
    Entity,
    Relation,
    SceneGraph,
    Violation,
)

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "CritiqueRequest",
    "Critic",
    "Detector",
    "ChatCritic",
    "DetectorCritic",
    "assign_detections",
    "judge",
]


@dataclass(frozen=True)
class CritiqueRequest:
    scene: SceneGraph
    scope: frozenset[str]
    """Entity ids drawn so far: only these (and relations among them) can be violated yet."""
    image: Image.Image
    instruction: str = ""
    """The current plan step's ``<ins>``, for critics that read text."""
    description: str = ""
    """The current plan step's ``<des>``: the whole scene as it should look now."""
    requests: tuple[Violation, ...] = ()
    """Violations a person added in review, still open. A critic that judges them sets
    ``judges_requests = True`` and lists each one still unmet among its violations; for any other
    critic the loop lists them as not judged."""


@runtime_checkable
class Critic(Protocol):
    """Judges an image. A critic that can judge a person's free-text requests
    (:attr:`CritiqueRequest.requests`) also has ``judges_requests = True``.

    A critic that can wait without a thread may also offer ``async def acritique(request) ->
    Critique``, as planners may offer ``aplan`` (see :class:`~strokegraph.agents.planner.Planner`).
    """

    def critique(self, request: CritiqueRequest) -> Critique: ...


@runtime_checkable
class Detector(Protocol):
    """Finds object instances; :class:`DetectorCritic` turns them into violations by GenEval's rules."""

    def detect(self, image: Image.Image, nouns: tuple[str, ...]) -> list[Detection]: ...


# ---------------------------------------------------------------------------------------------
# Detections to entities
# ---------------------------------------------------------------------------------------------


def _detection_key(d: Detection) -> tuple:
    return (d.noun, -d.score, d.box, d.colour or "")


def assign_detections(
    scene: SceneGraph, scope: frozenset[str], detections: Iterable[Detection]
) -> tuple[dict[str, list[Detection]], list[Detection]]:
    """Share detections out among the scene's entities by noun; return them and the extras.

    The result maps every entity id (in scope or not) to its detections; extras are detections
    whose noun no entity of the scene has. Among entities sharing a noun, in this order: in-scope
    entities take detections of their colour, uncoloured in-scope ones take any; entities not in
    scope yet take theirs (a premature drawing is not wrong yet); in-scope coloured entities take
    wrong-coloured ones; later entities take what is left up to their counts. Anything still left
    is a surplus of an in-scope entity (of the same colour if one has it), or, with none in
    scope, belongs to the later ones. Deterministic, whatever the order of ``detections``.
    """
    by_noun: dict[str, list[Detection]] = {}
    extras: list[Detection] = []
    nouns = {e.noun for e in scene.entities}
    for d in sorted(detections, key=_detection_key):
        (by_noun.setdefault(d.noun, []) if d.noun in nouns else extras).append(d)

    got: dict[str, list[Detection]] = {e.id: [] for e in scene.entities}
    for noun, pool in by_noun.items():
        group = [e for e in scene.entities if e.noun == noun]
        now = [e for e in group if e.id in scope]
        later = [e for e in group if e.id not in scope]

        def take(entities: list[Entity], same_colour: bool, pool: list[Detection] = pool) -> None:
            for e in entities:
                for d in list(pool):
                    if len(got[e.id]) >= e.count:
                        break
                    if not same_colour or (e.colour is not None and d.colour == e.colour):
                        got[e.id].append(d)
                        pool.remove(d)

        take(now, same_colour=True)
        take([e for e in now if e.colour is None], same_colour=False)
        take(later, same_colour=True)
        take([e for e in now if e.colour is not None], same_colour=False)
        take(later, same_colour=False)
        for d in pool:
            owners = now or later
            owner = next((e for e in owners if e.colour is not None and e.colour == d.colour), None)
            owner = owner or next((e for e in owners if e.colour is None), owners[0])
            got[owner.id].append(d)
    return got, extras


# ---------------------------------------------------------------------------------------------
# Detections to violations
# ---------------------------------------------------------------------------------------------


def _union(boxes: Iterable[Box]) -> Box | None:
    boxes = list(boxes)
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _the(entity: Entity) -> str:
    """``'the apple'`` / ``'the apples'``."""
    return f"the {entity.noun if entity.count == 1 else pluralize(entity.noun)}"


def _colour_words(colours: Iterable[str | None]) -> str:
    found = set(colours)
    return " and ".join(c for c in COLOURS if c in found)


def _entity_violations(e: Entity, found: Sequence[Detection]) -> list[Violation]:
    if e.count == 0:  # must be absent: anything seen of it is extra
        if not found:
            return []
        seen = noun_phrase(e.noun, len(found))
        return [
            Violation(
                kind="extra",
                entity_ids=(e.id,),
                expected="none",
                observed=seen,
                box=_union(d.box for d in found),
                message=f"expected {e.phrase()}, found {seen}",
            )
        ]
    if not found:
        return [
            Violation(
                kind="missing",
                entity_ids=(e.id,),
                expected=e.phrase(),
                observed="none",
                message=f"expected {e.phrase()}, found none",
            )
        ]
    out = []
    if len(found) != e.count:
        which = "too few" if len(found) < e.count else "too many"
        out.append(
            Violation(
                kind="count",
                entity_ids=(e.id,),
                expected=str(e.count),
                observed=str(len(found)),
                box=_union(d.box for d in found),
                message=f"expected {e.phrase()}, found {number_word(len(found))} ({which})",
            )
        )
    if e.colour is not None and (wrong := [d for d in found if d.colour is not None and d.colour != e.colour]):
        observed = _colour_words(d.colour for d in wrong)
        out.append(
            Violation(
                kind="attribute",
                entity_ids=(e.id,),
                expected=e.colour,
                observed=observed,
                box=_union(d.box for d in wrong),
                message=f"expected {e.phrase()}, found {noun_phrase(e.noun, len(wrong), [observed])}",
            )
        )
    return out


def _relation_violation(rel: Relation, scene: SceneGraph, got: dict[str, list[Detection]]) -> Violation | None:
    if rel.predicate not in JUDGED_PREDICATES:
        return None  # listed in Critique.unjudged instead
    subjects, objects = got[rel.subject], got[rel.object]
    failing = [
        (subjects[i], objects[j])
        for i, j in failing_pairs(rel.predicate, [d.box for d in subjects], [d.box for d in objects])
    ]
    if not failing:
        return None
    s_entity, o_entity = scene.entity(rel.subject), scene.entity(rel.object)
    first_s, first_o = failing[0]
    # Name the one failing pair when either side has several instances.
    pair = tuple(f"{'the' if e.count == 1 else article(e.noun)} {e.noun}" for e in (s_entity, o_entity))
    if rel.predicate == "next to":
        observed = "not next to"
        found = f"{pair[0]} far from {pair[1]}"
    else:
        held = observed_relations(first_s.box, first_o.box)
        observed = " and ".join(p for p in POSITION_PREDICATES if p in held) or "no clear relation"
        found = f"{pair[0]} {observed} {pair[1]}" if held else f"no clear relation between {pair[0]} and {pair[1]}"
    failing_subjects = list(dict.fromkeys(s for s, _ in failing))
    return Violation(
        kind="relation",
        entity_ids=(rel.subject, rel.object),
        relation=rel,
        expected=rel.predicate,
        observed=observed,
        box=_union(d.box for d in failing_subjects),
        message=f"expected {_the(s_entity)} {rel.predicate} {_the(o_entity)}, found {found}",
    )


def _extra_violation(d: Detection) -> Violation:
    observed = noun_phrase(d.noun, 1, [d.colour] if d.colour else [])
    return Violation(
        kind="extra",
        expected="none",
        observed=observed,
        box=d.box,
        message=f"found {observed} that the prompt does not ask for",
    )


def judge(scene: SceneGraph, scope: frozenset[str], detections: Sequence[Detection]) -> Critique:
    """The violations of ``scene`` that ``detections`` show, judging only the entities in ``scope``.

    Entities not in scope are "not drawn yet", not wrong: they are not judged, nor relations that
    involve them, and detections of their nouns are never extras. An entity of count 0 found at all
    is an "extra" violation. Relations whose predicate is not in ``JUDGED_PREDICATES`` are not judged;
    ``unjudged`` is :meth:`SceneGraph.unjudged`. Violations come in a fixed
    order: per in-scope entity in scene order missing / count / attribute, then relations in scene
    order, then extras.
    """
    unknown = sorted(set(scope) - {e.id for e in scene.entities})
    if unknown:
        raise UsageError(f"scope names entities the scene does not have: {', '.join(map(repr, unknown))}")
    got, extras = assign_detections(scene, scope, detections)
    violations: list[Violation] = []
    for e in scene.entities:
        if e.id in scope:
            violations += _entity_violations(e, got[e.id])
    for rel in scene.relations:
        if rel.subject in scope and rel.object in scope:
            v = _relation_violation(rel, scene, got)
            if v is not None:
                violations.append(v)
    violations += [_extra_violation(d) for d in extras]
    return Critique(
        violations=tuple(violations),
        detections=tuple(detections),
        judged_entity_ids=tuple(sorted(scope)),
        unjudged=scene.unjudged(),
    )


class DetectorCritic:
    """A :class:`Critic` that detects the scene's nouns and judges them by GenEval's rules."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    def critique(self, request: CritiqueRequest) -> Critique:
        # All of the scene's nouns, not only those in scope: the detector needs them all to name
        # what it sees, and unknown nouns' glyph codes depend on the whole set.
        nouns = tuple(dict.fromkeys(e.noun for e in request.scene.entities))
        detections = self.detector.detect(request.image, nouns)
        return judge(request.scene, request.scope, detections)


class ChatCritic:
    """The critic role on a vision :class:`~strokegraph.agents.chat.ChatModel` (a VLM or a hosted model).

    The model sees the image and the ``critic`` prompt template and must answer with the violation
    JSON (:class:`~strokegraph.agents.chat.CriticReply`); an invalid answer is re-asked once, then
    the run stops with a :class:`~strokegraph.errors.RunError`.
    """

    judges_requests = True
    """The model reads the person's requests from its prompt and reports each one still unmet."""

    def __init__(self, model: ChatModel) -> None:
        self.model = model

    def critique(self, request: CritiqueRequest) -> Critique:
        return drive(self._critique(request, asynchronous=False))

    async def acritique(self, request: CritiqueRequest) -> Critique:
        """:meth:`critique`, awaiting the model's ``acomplete`` when it has one (else ``complete`` in a thread)."""
        return await self._critique(request, asynchronous=True)

    async def _critique(self, request: CritiqueRequest, *, asynchronous: bool) -> Critique:
        scene = request.scene
        requests = "\n".join(f"- {v.kind}: {v.message}" for v in request.requests) or "(none)"
        text = prompts.render(
            "critic",
            requests=requests,
            prompt=scene.prompt,
            scene_json=scene.model_dump_json(exclude={"prompt"}),
            scope=", ".join(sorted(request.scope)),
            instruction=request.instruction or "(none)",
            description=request.description or scene.prompt,
            colours=", ".join(COLOURS),
        )
        messages = [{"role": "user", "content": [image_part(request.image), text_part(text)]}]
        _, critique = await ask(
            self.model,
            messages,
            CriticReply,
            node="critic",
            check=lambda r: r.to_domain(scene, request.scope),
            asynchronous=asynchronous,
        )
        return critique
