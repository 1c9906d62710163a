"""The drafter role: render one plan step on top of the current image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from strokegraph.schema import Plan, SceneGraph

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["DraftRequest", "DraftResult", "Drafter"]


@dataclass(frozen=True)
class DraftRequest:
    scene: SceneGraph
    plan: Plan
    step: int
    image: Image.Image | None
    """The current canvas; ``None`` before the first step."""
    seed: int


@dataclass(frozen=True)
class DraftResult:
    image: Image.Image
    sampling_steps: int = 0
    """Denoising steps that really ran (the sketch world counts one per render)."""


@runtime_checkable
class Drafter(Protocol):
    """Draws one plan step. A drafter that can wait without a thread may also offer ``async def
    adraft(request) -> DraftResult`` (see :class:`~strokegraph.agents.planner.Planner`'s ``aplan``)."""

    def draft(self, request: DraftRequest) -> DraftResult: ...
