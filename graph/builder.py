"""Wiring: planner -> drafter -> critic -> (refiner -> critic)* -> next step's drafter ... -> END."""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph

from strokegraph.graph import nodes
from strokegraph.graph.policies import retry_policy
from strokegraph.graph.state import RunContext, RunState

__all__ = ["after_critic", "build_graph", "recursion_limit"]


def after_critic(state: RunState) -> Literal["refiner", "drafter", "__end__"]:
    """Refine while violations remain and budget is left; then the next step, or the end."""
    if not state.critique.passed and state.budget_left():
        return "refiner"
    if state.step + 1 < len(state.plan.steps):
        return "drafter"
    return END


def build_graph(checkpointer=None):
    """The compiled strokegraph loop. Run it with ``context=RunContext(...)``."""
    builder = StateGraph(RunState, context_schema=RunContext)
    builder.add_node("planner", nodes.planner, retry_policy=retry_policy("planner"))
    builder.add_node("drafter", nodes.drafter, retry_policy=retry_policy("drafter"))
    builder.add_node("critic", nodes.critic, retry_policy=retry_policy("critic"))
    builder.add_node("refiner", nodes.refiner, retry_policy=retry_policy("refiner"))
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "drafter")
    builder.add_edge("drafter", "critic")
    builder.add_conditional_edges("critic", after_critic, ["refiner", "drafter", END])
    builder.add_edge("refiner", "critic")
    return builder.compile(checkpointer=checkpointer, name="strokegraph")


def recursion_limit(max_rounds: int, max_steps: int = 64) -> int:
    """A backstop above the longest run the budget allows (for plans up to ``max_steps`` steps).

    The budget in state is what ends the loop; this only stops a runaway graph.
    """
    return 1 + 2 * max_steps + 2 * max_rounds + 8
