"""The HTML pages strokegraph writes (a run's ``report.html``, a benchmark's ``results.html``).

One way to build them: Jinja2 templates in ``app/templates`` (package data), rendered by one
environment with autoescape on, so a value from a run or a record is text unless it is
:class:`markupsafe.Markup` built by strokegraph itself. Before escaping, every value goes through
:func:`strokegraph._text.printable` (escape sequences, control characters and bidi controls removed:
escaping makes text inert as markup, not as text). Each page has its own stylesheet
(``<page>.css``), allowed by hash in a Content-Security-Policy that allows no script at all.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from typing import TYPE_CHECKING

from strokegraph._text import printable

if TYPE_CHECKING:
    import jinja2

__all__ = ["bench_page", "num", "render"]

# No script, no frame, no form, no remote anything: a page needs only its own stylesheet (allowed by
# hash, so an injected <style> could not apply either) and the data: PNGs it embeds.
_CSP = "default-src 'none'; img-src data:; style-src 'sha256-{}'; base-uri 'none'; form-action 'none'"


def num(value: object, spec: str) -> object:
    """``value`` formatted with ``spec`` (``"d"`` or a float spec) when it is a plain number that
    fits it; otherwise ``value`` itself, shown as text like any other value.

    A model built without validation (``model_construct``, as LangGraph's default checkpoint loader
    does when validation fails) can hold anything where a number belongs, and a page must show it
    rather than crash or put it into markup.
    """
    if type(value) is int or (type(value) is float and not spec.endswith("d")):
        return format(value, spec)
    return value


@functools.cache
def _environment() -> jinja2.Environment:
    # Imported here: the CLI's start-up does not pay for Jinja2 until a page is written.
    import jinja2
    import markupsafe

    def shown(value: object) -> object:
        return value if isinstance(value, markupsafe.Markup) else printable(value)

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("strokegraph.app", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=shown,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = num
    return env


def render(page: str, **values: object) -> str:
    """The page ``templates/<page>.html.j2`` filled with ``values``, with its stylesheet and policy."""
    import markupsafe

    env = _environment()
    assert env.loader is not None
    css, _, _ = env.loader.get_source(env, f"{page}.css")
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    template = env.get_template(f"{page}.html.j2")
    return template.render(values, css=markupsafe.Markup(css), csp=_CSP.format(digest))


def bench_page(results_dir: str | os.PathLike) -> str:
    """The ``results.html`` of the benchmark folder ``results_dir`` (``strokegraph bench --out``), made
    again from its ``results.json`` and records, for a page that shows a benchmark (the UI's bench tab).

    Raises :class:`~strokegraph.errors.UsageError` for a folder that holds no readable results.json.
    """
    # Imported here: the benchmark harness renders its page through this module.
    from strokegraph.bench.harness import results_page

    return results_page(results_dir)
