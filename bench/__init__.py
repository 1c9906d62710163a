"""Benchmarks over the loop: GenEval and T2I-CompBench prompts, drawn and judged by GenEval's rules.

:mod:`strokegraph.bench.harness` plans the prompts' images in both modes and writes the results;
:mod:`strokegraph.bench.executor` draws and judges them, in this process or on Ray actors;
:mod:`strokegraph.bench.scoring` is GenEval's scorer; ``data/`` holds the benchmarks' prompt files
with their licences.
"""

from strokegraph.bench.harness import (
    BENCHMARKS,
    COMPBENCH_CATEGORIES,
    MODES,
    SAMPLES,
    BenchPrompt,
    BenchResult,
    SkippedPrompt,
    format_table,
    geneval_prompts,
    run_bench,
    t2i_compbench_prompts,
)

__all__ = [
    "BENCHMARKS",
    "COMPBENCH_CATEGORIES",
    "MODES",
    "SAMPLES",
    "BenchPrompt",
    "BenchResult",
    "SkippedPrompt",
    "format_table",
    "geneval_prompts",
    "run_bench",
    "t2i_compbench_prompts",
]
