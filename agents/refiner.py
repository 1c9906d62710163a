"""The refiner role: turn a critique into a ``<refine>`` correction and redraw."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from strokegraph.schema import Critique, Plan, Refinement, SceneGraph

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["RefineRequest", "RefineResult", "Refiner"]


@dataclass(frozen=True)
class RefineRequest:
    scene: SceneGraph
    plan: Plan
    step: int
    round: int
    """1 for the first refinement of a step."""
    image: Image.Image
    critique: Critique
    seed: int


@dataclass(frozen=True)
class RefineResult:
    image: Image.Image
    refinement: Refinement
    sampling_steps: int = 0


@runtime_checkable
class Refiner(Protocol):
    def refine(self, request: RefineRequest) -> RefineResult: ...
