"""The critic role: compare an image with the scene graph and list the prompt violations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from strokegraph.schema import Critique, Detection, SceneGraph

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["CritiqueRequest", "Critic", "Detector"]


@dataclass(frozen=True)
class CritiqueRequest:
    scene: SceneGraph
    scope: frozenset[str]
    """Entity ids drawn so far: only these (and relations among them) can be violated yet."""
    image: Image.Image


@runtime_checkable
class Critic(Protocol):
    def critique(self, request: CritiqueRequest) -> Critique: ...


@runtime_checkable
class Detector(Protocol):
    """Finds object instances; :class:`DetectorCritic` turns them into violations by GenEval's rules."""

    def detect(self, image: Image.Image, nouns: tuple[str, ...]) -> list[Detection]: ...
