"""Wiring: planner -> drafter -> critic -> (refiner -> critic)* -> next step's drafter ... -> END."""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph

from strokegraph.graph import nodes
from strokegraph.graph.policies import retry_policy
from strokegraph.graph.state import RunContext, RunState

__all__ = ["after_critic", "after_review_plan", "build_graph", "recursion_limit"]


def after_critic(state: RunState) -> Literal["refiner", "drafter", "__end__"]:
    """Refine while violations remain and budget is left; then the next step, or the end."""
    # "__end__" is langgraph's END, spelled out: langgraph types END as a plain str, not as this Literal.
    if state.stopped:
        return "__end__"
    assert state.critique is not None and state.plan is not None  # this edge follows the critic
    if not state.critique.passed and state.budget_left():
        return "refiner"
    if state.step + 1 < len(state.plan.steps):
        return "drafter"
    return "__end__"


def after_review_plan(state: RunState) -> Literal["drafter", "__end__"]:
    """Draw the (possibly edited) plan, unless the person stopped the run."""
    return "__end__" if state.stopped else "drafter"  # langgraph's END, as in after_critic


def build_graph(checkpointer=None, *, review: bool = False, asynchronous: bool = False):
    """The compiled strokegraph loop. Run it with ``context=RunContext(...)``.

    With ``asynchronous``, the role nodes are the coroutines (``nodes.aplanner`` ...) that await a
    backend's async method, for ``ainvoke``/``astream``; without, the nodes block in their backend
    calls, and LangGraph runs them in the event loop's default executor under ``astream``.

    With ``review``, a person reviews the plan (``review_plan`` after the planner) and every critique
    (``review_critique`` after the critic) through LangGraph interrupts; that needs a checkpointer.
    The review nodes call no backend, so re-running one on resume costs nothing.
    """
    builder = StateGraph(RunState, context_schema=RunContext)
    for role in ("planner", "drafter", "critic", "refiner"):
        node = getattr(nodes, f"a{role}" if asynchronous else role)
        builder.add_node(role, node, retry_policy=retry_policy(role))
    builder.add_edge(START, "planner")
    builder.add_edge("drafter", "critic")
    if review:
        builder.add_node("review_plan", nodes.review_plan)
        builder.add_node("review_critique", nodes.review_critique)
        builder.add_edge("planner", "review_plan")
        builder.add_conditional_edges("review_plan", after_review_plan, ["drafter", END])
        builder.add_edge("critic", "review_critique")
        builder.add_conditional_edges("review_critique", after_critic, ["refiner", "drafter", END])
    else:
        builder.add_edge("planner", "drafter")
        builder.add_conditional_edges("critic", after_critic, ["refiner", "drafter", END])
    builder.add_edge("refiner", "critic")
    return builder.compile(checkpointer=checkpointer, name="strokegraph")


def recursion_limit(max_rounds: int, max_steps: int = 64, *, review: bool = False) -> int:
    """A backstop above the longest run the budget allows (for plans up to ``max_steps`` steps).

    The budget in state is what ends the loop; this only stops a runaway graph.
    """
    limit = 1 + 2 * max_steps + 2 * max_rounds + 8
    # A review node after the planner and after every critique.
    return limit + 1 + max_steps + max_rounds if review else limit
