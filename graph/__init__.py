"""The LangGraph loop: state, nodes and wiring."""

from strokegraph.graph.builder import after_critic, build_graph, recursion_limit
from strokegraph.graph.state import Budget, CheckpointError, RunContext, RunState, checkpoint_serializer

__all__ = [
    "Budget",
    "CheckpointError",
    "RunContext",
    "RunState",
    "after_critic",
    "build_graph",
    "checkpoint_serializer",
    "recursion_limit",
]
