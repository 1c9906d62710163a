"""strokegraph's own backends, registered through the same hook as any installed plugin's.

:func:`register_backends` is what a package names in the ``strokegraph.backends`` entry-point
group (see :func:`strokegraph.registry.register`); the registry loads this module first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["register_backends"]

_DIFFUSERS: dict[str, Any] = {"extra": "diffusers", "requires": ("torch", "diffusers", "transformers")}
_TRANSFORMERS: dict[str, Any] = {"extra": "transformers", "requires": ("torch", "transformers")}
_OPENAI: dict[str, Any] = {"extra": "openai", "requires": ("openai",)}
# The provider package a langchain: id needs depends on the id (langchain:anthropic:... needs
# langchain-anthropic): check_model names it, with the pip line, before anything is built.
_LANGCHAIN: dict[str, Any] = {
    "extra": "langchain",
    "requires": ("langchain",),
    "check_model": "strokegraph.tools.langchain:check_model",
}
_NATURAL: dict[str, Any] = {"draws": "natural"}
# A VLM or chat model reads any picture; so does an open-vocabulary detector, which finds drawn
# objects as well as photographed ones. The sketch world's pixel reader knows only its own icons.
_READS_ANY: dict[str, Any] = {"reads": ("sketch", "natural")}


def register_backends(register: Callable[..., None]) -> None:
    """Register the offline sketch world and the diffusers, transformers, OpenAI and LangChain backends."""
    builtin, hf, tr, oa, lc = (
        "strokegraph.tools.builtin",
        "strokegraph.tools.hf_diffusers",
        "strokegraph.tools.hf_transformers",
        "strokegraph.tools.openai_api",
        "strokegraph.tools.langchain",
    )
    register("planner", "builtin", f"{builtin}:planner", models=("rules",), offline=True)
    register("drafter", "builtin", f"{builtin}:drafter", models=("sketch",), offline=True, draws="sketch")
    # builtin:truth judges a benchmark from what the sketch world really drew (never a loop's critic).
    register(
        "critic",
        "builtin",
        f"{builtin}:critic",
        models=("pixels", "truth"),
        offline=True,
        reads=("sketch",),
        detector=True,
    )
    register("refiner", "builtin", f"{builtin}:refiner", models=("sketch",), offline=True, draws="sketch")
    register("drafter", "diffusers", f"{hf}:drafter", **_DIFFUSERS, **_NATURAL)
    register("refiner", "diffusers", f"{hf}:refiner", **_DIFFUSERS, **_NATURAL)
    register("planner", "transformers", f"{tr}:planner", **_TRANSFORMERS)
    register("critic", "transformers-vlm", f"{tr}:vlm_critic", **_TRANSFORMERS, **_READS_ANY)
    register("critic", "transformers-detect", f"{tr}:detect_critic", **_TRANSFORMERS, **_READS_ANY, detector=True)
    register("planner", "openai", f"{oa}:planner", **_OPENAI)
    register("critic", "openai", f"{oa}:critic", **_OPENAI, **_READS_ANY)
    register("drafter", "openai", f"{oa}:drafter", **_OPENAI, **_NATURAL)
    register("refiner", "openai", f"{oa}:refiner", **_OPENAI, **_NATURAL)
    register("planner", "langchain", f"{lc}:planner", **_LANGCHAIN)
    register("critic", "langchain", f"{lc}:critic", **_LANGCHAIN, **_READS_ANY)
