"""Benchmarks over the loop: GenEval and T2I-CompBench prompts, drawn and judged by GenEval's rules.

:mod:`strokegraph.bench.harness` plans the prompts' images in both modes and writes the results;
:mod:`strokegraph.bench.executor` draws and judges them, in this process or on Ray actors;
:mod:`strokegraph.bench.scoring` is GenEval's scorer; ``data/`` holds the benchmarks' prompt files
with their licences.
"""

# The package's public names are the harness's: its __all__ is the one list of them.
from strokegraph.bench.harness import *  # noqa: F403
from strokegraph.bench.harness import __all__ as __all__
