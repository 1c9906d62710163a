"""The planner role: prompt -> scene graph -> ordered plan of ``<ins>``/``<des>`` steps."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from strokegraph.schema import Plan, PlanStep, SceneGraph

__all__ = ["Planner", "single_pass_plan"]


@runtime_checkable
class Planner(Protocol):
    """Turns a prompt into its scene graph and an incremental plan.

    Raises :class:`strokegraph.errors.UsageError` when the prompt names nothing that can be drawn.
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
