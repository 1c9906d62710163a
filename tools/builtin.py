"""Factories for the built-in offline backends (the sketch world), looked up by the registry.

``fault_scale`` multiplies the sketch world's default fault rates (drafter) and failure rate
(refiner): 0 draws exactly, 1 (the default) keeps the documented rates.
"""

from __future__ import annotations

__all__ = ["critic", "drafter", "planner", "refiner"]


def planner(model: str):
    from strokegraph.grammar import RulesPlanner

    return RulesPlanner()


def drafter(model: str, *, fault_scale: float = 1.0, size: int = 512):
    from strokegraph.tools.sketch.drafter import SketchDrafter, SketchFaults

    return SketchDrafter(faults=SketchFaults.scaled(fault_scale), size=size)


def critic(model: str):
    from strokegraph.agents.critic import DetectorCritic

    if model == "truth":
        from strokegraph.tools.sketch.truth import TruthDetector

        return DetectorCritic(TruthDetector())
    from strokegraph.tools.sketch.pixels import PixelDetector

    return DetectorCritic(PixelDetector())


def refiner(model: str, *, fault_scale: float = 1.0, size: int = 512):
    from strokegraph.tools.sketch.drafter import SketchRefiner

    return SketchRefiner(failure_rate=min(1.0, 0.2 * fault_scale), size=size)
