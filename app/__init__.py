"""Applications built on the loop: turning finished runs into interleaved training data.

:mod:`strokegraph.app.runs` reads run directories (untrusted); :mod:`strokegraph.app.rows` turns
one run into rows of the three kinds; :mod:`strokegraph.app.formats` renders a row as BAGEL,
OBELICS or TRL expects it; :mod:`strokegraph.app.export` writes the sharded dataset and
:mod:`strokegraph.app.datacard` its card; :mod:`strokegraph.app.data` draws runs for a prompt set
and exports them.
"""

from strokegraph.app.export import FORMATS, KINDS, ExportResult, export_runs

__all__ = ["FORMATS", "KINDS", "ExportResult", "export_runs"]
