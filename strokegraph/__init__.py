"""strokegraph: process-driven image generation as a LangGraph loop of plan, draft, critique, refine."""

__version__ = "0.1.0"
