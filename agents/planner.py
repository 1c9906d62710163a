"""The planner role: prompt -> scene graph -> ordered plan of ``<ins>``/``<des>`` steps."""

from __future__ import annotations

import json
from typing import Protocol, runtime_checkable

from strokegraph import prompts
from strokegraph._drive import drive
from strokegraph.agents.chat import ChatModel, PlannerReply, ask, text_part
from strokegraph.errors import UsageError
from strokegraph.schema import COLOURS, PREDICATES, Plan, PlanStep, SceneGraph

__all__ = ["ChatPlanner", "Planner", "single_pass_plan"]


@runtime_checkable
class Planner(Protocol):
    """Turns a prompt into its scene graph and an incremental plan.

    Raises :class:`strokegraph.errors.UsageError` when the prompt names nothing that can be drawn.

    A planner that can wait without a thread (on a server) may also offer
    ``async def aplan(prompt) -> tuple[SceneGraph, Plan]``, the same answer awaited; the loop run by
    :func:`~strokegraph.agenerate` awaits it, and runs ``plan`` in a worker thread for planners
    without one. Cancelling the awaiting task must end the call.
    """

    def plan(self, prompt: str) -> tuple[SceneGraph, Plan]: ...


def single_pass_plan(scene: SceneGraph) -> Plan:
    """One step that holds the whole prompt: plain text-to-image, for comparison with the loop."""
    return Plan(
        steps=(
            PlanStep(
                instruction=scene.prompt,
                description=scene.prompt,
                entity_ids=tuple(e.id for e in scene.entities),
            ),
        )
    )


class ChatPlanner:
    """The planner role on any :class:`~strokegraph.agents.chat.ChatModel`.

    The model gets the ``planner`` prompt template and must answer with the scene graph and plan as
    JSON (re-asked once when it does not). With ``preparse=True`` the rules planner reads the prompt
    first and the model only corrects its reading: fewer tokens, fewer errors.
    """

    def __init__(self, model: ChatModel, *, preparse: bool = False) -> None:
        self.model = model
        self.preparse = preparse

    def plan(self, prompt: str) -> tuple[SceneGraph, Plan]:
        return drive(self._plan(prompt, asynchronous=False))

    async def aplan(self, prompt: str) -> tuple[SceneGraph, Plan]:
        """:meth:`plan`, awaiting the model's ``acomplete`` when it has one (else ``complete`` in a thread)."""
        return await self._plan(prompt, asynchronous=True)

    async def _plan(self, prompt: str, *, asynchronous: bool) -> tuple[SceneGraph, Plan]:
        if not prompt.strip():
            raise UsageError("prompt is empty; say what to draw")
        draft = "none"
        if self.preparse:
            from strokegraph.grammar import RulesPlanner

            try:
                scene, plan = RulesPlanner().plan(prompt)
                draft = json.dumps({"scene": scene.model_dump(exclude={"prompt"}), "plan": plan.model_dump()})
            except UsageError:
                pass  # the model reads the prompt on its own
        text = prompts.render(
            "planner", prompt=prompt, colours=", ".join(COLOURS), predicates=", ".join(PREDICATES), draft=draft
        )
        messages = [{"role": "user", "content": [text_part(text)]}]
        _, (scene, plan) = await ask(
            self.model,
            messages,
            PlannerReply,
            node="planner",
            check=lambda r: r.to_domain(prompt),
            asynchronous=asynchronous,
        )
        if not any(e.count for e in scene.entities):
            raise UsageError(f"prompt names no object to draw: {prompt!r}")
        return scene, plan
