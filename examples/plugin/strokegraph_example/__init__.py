"""An example strokegraph plugin: the planner ``example:one-step``.

It reads the prompt with strokegraph's rules planner and puts every object into one plan step, so
the drafter draws the whole scene at once and the loop only refines. The package registers it in
its ``pyproject.toml``::

    [project.entry-points."strokegraph.backends"]
    example = "strokegraph_example:register_backends"
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["OneStepPlanner", "register_backends"]


class OneStepPlanner:
    """A planner (one method, ``plan``): the rules planner's scene, drawn in a single step."""

    def __init__(self, *, anchor_first: bool = False) -> None:
        from strokegraph import registry

        self.rules = registry.build("planner", "builtin:rules")
        self.anchor_first = anchor_first

    def plan(self, prompt: str):
        from strokegraph.agents.planner import single_pass_plan

        scene, plan = self.rules.plan(prompt)
        return scene, plan if self.anchor_first else single_pass_plan(scene)


def one_step(model: str, *, anchor_first: bool = False) -> OneStepPlanner:
    """The factory strokegraph calls for ``example:<model>`` with the id's settings as keywords."""
    return OneStepPlanner(anchor_first=anchor_first)


def register_backends(register: Callable[..., None]) -> None:
    """The hook strokegraph calls once: one ``register`` call per backend."""
    register("planner", "example", one_step, models=("one-step",), offline=True)
