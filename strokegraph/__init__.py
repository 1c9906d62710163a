"""strokegraph: process-driven image generation as a LangGraph loop of plan, draft, critique, refine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Budget", "Result", "agenerate", "generate"]

if TYPE_CHECKING:
    from strokegraph.app.runner import Result, agenerate, generate
    from strokegraph.graph import Budget


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import strokegraph` (and the CLI's start) stays fast.
    if name in ("generate", "agenerate", "Result"):
        from strokegraph.app import runner as run

        return getattr(run, name)
    if name == "Budget":
        from strokegraph.graph import Budget

        return Budget
    raise AttributeError(f"module 'strokegraph' has no attribute {name!r}")
