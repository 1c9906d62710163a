"""Chat models behind the text roles: one small interface, JSON replies checked by pydantic.

A :class:`ChatModel` turns a list of chat messages into reply text. Messages are plain dicts in the
common chat shape, ``{"role": "user", "content": [...]}``, whose content parts are
``{"type": "text", "text": str}`` or ``{"type": "image", "image": PIL.Image}``; each backend converts
them to what its library wants (a data URL for OpenAI, the PIL image for transformers).

The reply models below are what an LLM is asked to return. They are deliberately plainer than the
domain models in :mod:`strokegraph.schema` (lists instead of tuples, every field required, nullable
where optional) so that strict JSON-schema modes accept them; ``to_domain`` converts and checks.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from strokegraph._drive import drive, either
from strokegraph.errors import RunError
from strokegraph.schema import (
    Colour,
    Critique,
    Detection,
    Entity,
    Plan,
    PlanStep,
    Predicate,
    Relation,
    SceneGraph,
    Violation,
    ViolationKind,
)

__all__ = [
    "AsyncChatModel",
    "ChatModel",
    "CriticReply",
    "PlannerReply",
    "ask",
    "ask_json",
    "image_part",
    "text_part",
]

Message = dict[str, Any]
M = TypeVar("M", bound=BaseModel)


@runtime_checkable
class ChatModel(Protocol):
    """Reply text for ``messages``. ``schema``, when given, is the pydantic model the reply must
    match; backends that support structured output pass it on, the others may ignore it."""

    def complete(self, messages: list[Message], *, schema: type[BaseModel] | None = None) -> str: ...


@runtime_checkable
class AsyncChatModel(Protocol):
    """What a :class:`ChatModel` may offer besides ``complete``: the same reply, awaited.

    The async roles (:meth:`ChatPlanner.aplan <strokegraph.agents.planner.ChatPlanner.aplan>`,
    ``ChatCritic.acritique``) await it when the model has it, and otherwise run ``complete`` in a
    worker thread. Cancelling the awaiting task must end the call (an HTTP request is abandoned).
    """

    async def acomplete(self, messages: list[Message], *, schema: type[BaseModel] | None = None) -> str: ...


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def image_part(image) -> dict:
    return {"type": "image", "image": image}


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReplyEntity(_Reply):
    id: str
    noun: str
    count: int
    colour: Colour | None
    attributes: list[str]


class ReplyRelation(_Reply):
    subject: str
    predicate: Predicate
    object: str


class ReplyScene(_Reply):
    entities: list[ReplyEntity]
    relations: list[ReplyRelation]
    constraints: list[str]


class ReplyStep(_Reply):
    instruction: str
    description: str
    entity_ids: list[str]


class ReplyPlan(_Reply):
    steps: list[ReplyStep]


class PlannerReply(_Reply):
    scene: ReplyScene
    plan: ReplyPlan

    def to_domain(self, prompt: str) -> tuple[SceneGraph, Plan]:
        """The scene graph and plan; raises ``ValueError`` if they do not fit together."""
        scene = SceneGraph(
            prompt=prompt,
            entities=tuple(
                Entity(
                    id=e.id, noun=e.noun.strip().lower(), count=e.count, colour=e.colour, attributes=tuple(e.attributes)
                )
                for e in self.scene.entities
            ),
            relations=tuple(Relation(**r.model_dump()) for r in self.scene.relations),
            constraints=tuple(self.scene.constraints),
        )
        plan = Plan(
            steps=tuple(
                PlanStep(instruction=s.instruction, description=s.description, entity_ids=tuple(s.entity_ids))
                for s in self.plan.steps
            )
        )
        ids = [e.id for e in scene.entities]
        planned = [i for s in plan.steps for i in s.entity_ids]
        if sorted(planned) != sorted(ids):
            raise ValueError(f"the plan must introduce every entity exactly once: entities {ids}, planned {planned}")
        return scene, plan


class ReplyViolation(_Reply):
    kind: ViolationKind
    entity_ids: list[str]
    relation: ReplyRelation | None
    expected: str
    observed: str
    box: list[float] | None
    message: str


class ReplyDetection(_Reply):
    noun: str
    box: list[float]
    score: float
    colour: Colour | None


class CriticReply(_Reply):
    violations: list[ReplyViolation]
    detections: list[ReplyDetection]

    def to_domain(self, scene: SceneGraph, scope: frozenset[str]) -> Critique:
        """A critique of the judged entities; raises ``ValueError`` for ids or boxes that make no sense."""
        known = {e.id for e in scene.entities}
        violations = []
        for v in self.violations:
            unknown = set(v.entity_ids) - known
            if unknown:
                raise ValueError(f"violation names unknown entity ids {sorted(unknown)}; known: {sorted(known)}")
            violations.append(
                Violation(
                    kind=v.kind,
                    entity_ids=tuple(v.entity_ids),
                    relation=Relation(**v.relation.model_dump()) if v.relation else None,
                    expected=v.expected,
                    observed=v.observed,
                    box=_box(v.box) if v.box else None,
                    message=v.message,
                )
            )
        detections = tuple(
            Detection(noun=d.noun, box=_box(d.box), score=min(max(d.score, 0.0), 1.0), colour=d.colour)
            for d in self.detections
        )
        # The model is asked about the structured scene only; what that cannot say stays unjudged.
        return Critique(
            violations=tuple(violations),
            detections=detections,
            judged_entity_ids=tuple(sorted(scope)),
            unjudged=scene.unjudged(),
        )


def _box(values: list[float]) -> tuple[float, float, float, float]:
    if len(values) != 4:
        raise ValueError(f"a box has 4 numbers [x0, y0, x1, y1], got {values!r}")
    x0, y0, x1, y1 = (min(max(float(v), 0.0), 1.0) for v in values)
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"box {values!r} is empty; expected 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    return (x0, y0, x1, y1)


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _json_text(text: str) -> str:
    """The JSON in a reply: the whole reply, a fenced block, or the outermost ``{...}``."""
    text = text.strip()
    if m := _FENCE.match(text):
        return m.group(1)
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def ask_json(
    model: ChatModel,
    messages: list[Message],
    reply: type[M],
    *,
    node: str,
    check=None,
) -> tuple[M, Any]:
    """Ask ``model`` for a ``reply``-shaped JSON answer; re-ask once with the error, then give up.

    ``check(parsed)`` may convert the reply further and raise ``ValueError`` when it does not fit
    (unknown ids, an empty box); that counts as invalid output too. Returns the parsed reply and
    ``check``'s result. Raises :class:`RunError` naming ``node`` after the second invalid answer.
    """
    return drive(ask(model, messages, reply, node=node, check=check, asynchronous=False))


async def ask(
    model: ChatModel, messages: list[Message], reply: type[M], *, node: str, check=None, asynchronous: bool
) -> tuple[M, Any]:
    """:func:`ask_json` as a coroutine. With ``asynchronous``, it awaits the model's ``acomplete``
    (see :class:`AsyncChatModel`) when it has one, else runs its ``complete`` in a worker thread;
    without, it calls ``complete`` and never suspends, which is how :func:`ask_json` drives it.
    Roles written once for both (``ChatPlanner._plan``) await it with their own flag.
    """
    messages = list(messages)
    error = ""
    for attempt in (1, 2):
        text = await either(model, "complete", messages, schema=reply, asynchronous=asynchronous)
        try:
            parsed = reply.model_validate(json.loads(_json_text(text)))
            return parsed, (check(parsed) if check else None)
        except (json.JSONDecodeError, ValidationError, ValueError) as exc:
            error = _one_line(exc)
            if attempt == 1:
                messages += [
                    {"role": "assistant", "content": [text_part(text)]},
                    {
                        "role": "user",
                        "content": [
                            text_part(
                                f"That answer was not valid: {error}. Answer again with JSON only, "
                                "matching the requested format exactly."
                            )
                        ],
                    },
                ]
    raise RunError(f"invalid {reply.__name__} after one re-ask: {error}", node=node)


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{exc.error_count()} error(s), first at {where or 'top level'}: {first['msg']}"
    return " ".join(str(exc).split())[:300]
