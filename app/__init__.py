"""The application around the loop: what runs it, what it leaves on disk, and what reads that back.

One module per concept: :mod:`~strokegraph.app.runner` (``generate``, ``agenerate``, ``resume``),
:mod:`~strokegraph.app.rundir` (the run directory and its lock), :mod:`~strokegraph.app.record`
(``run.json`` and the rules for trusting it), :mod:`~strokegraph.app.outputs` (``trajectory.json``,
``final.png``) and :mod:`~strokegraph.app.report` (``report.html``); the LangGraph server graph
(:mod:`~strokegraph.app.server`) and its image route (:mod:`~strokegraph.app.webapp`); the threads of a
shared database (:mod:`~strokegraph.app.threads`); the command line (:mod:`~strokegraph.app.cli`); and
training data from finished runs (:mod:`~strokegraph.app.runs` reads them, :mod:`~strokegraph.app.rows`
makes rows of three kinds, :mod:`~strokegraph.app.formats` renders them, :mod:`~strokegraph.app.export`
and :mod:`~strokegraph.app.datacard` write the dataset, :mod:`~strokegraph.app.data` draws and exports).

Nothing is imported here, so that the command line starts without loading what a command does not use.
"""
