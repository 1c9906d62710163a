"""Graph state (serialisable data only) and run context (the backends, built once per run)."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field

from strokegraph import schema
from strokegraph.schema import Critique, Event, ImageRef, Plan, SceneGraph

if TYPE_CHECKING:
    from strokegraph.agents.critic import Critic
    from strokegraph.agents.drafter import Drafter
    from strokegraph.agents.planner import Planner
    from strokegraph.agents.refiner import Refiner

__all__ = ["Budget", "RunContext", "RunState", "checkpoint_serializer"]


class Budget(BaseModel):
    """How much refinement a run may spend. The loop stops on purpose when any limit is reached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds_per_step: int = Field(default=3, ge=0, description="Refine rounds allowed per plan step.")
    max_rounds: int = Field(default=12, ge=0, description="Refine rounds allowed over the whole run.")
    max_sampling_steps: int | None = Field(
        default=None, ge=1, description="Stop refining once drafts and refinements used this many sampling steps."
    )


class RunState(BaseModel):
    """Everything a run knows between nodes. Images are :class:`ImageRef` files, never pixels."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    single_pass: bool = False
    budget: Budget = Budget()
    scene: SceneGraph | None = None
    plan: Plan | None = None
    step: int = Field(default=-1, description="Plan step being drawn or refined; -1 before the first draft.")
    round: int = Field(default=0, description="Refine rounds spent on the current step.")
    rounds_total: int = 0
    sampling_steps: int = 0
    image: ImageRef | None = None
    critique: Critique | None = None
    trajectory: Annotated[list[Event], operator.add] = Field(default_factory=list)
    stopped: bool = Field(default=False, description="A person reviewing the run stopped it (``--review``).")
    reviews: Annotated[list[dict], operator.add] = Field(
        default_factory=list, description="Each review decision: what was asked (kind, step, round) and the answer."
    )

    def budget_left(self) -> bool:
        """Whether another refine round may run now."""
        b = self.budget
        return (
            not self.single_pass
            and self.round < b.rounds_per_step
            and self.rounds_total < b.max_rounds
            and (b.max_sampling_steps is None or self.sampling_steps < b.max_sampling_steps)
        )


@dataclass
class RunContext:
    """Per-run dependencies, passed as LangGraph runtime context (never checkpointed)."""

    planner: Planner
    drafter: Drafter
    critic: Critic
    refiner: Refiner
    run_dir: Path
    seed: int = 0
    ids: dict[str, str] = field(default_factory=dict)
    """The backend id of each role, recorded in the trajectory."""


def checkpoint_serializer():
    """A checkpoint serializer that loads strokegraph's own state types without warnings."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    types = [
        RunState,
        Budget,
        *(getattr(schema, name) for name in schema.__all__ if isinstance(getattr(schema, name), type)),
    ]
    return JsonPlusSerializer(allowed_msgpack_modules=[t for t in types if issubclass(t, BaseModel)])
