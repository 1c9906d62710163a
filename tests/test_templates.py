"""Both HTML pages (a run's report.html, a benchmark's results.html) come from one templating path:
Jinja2 templates shipped as package data, autoescaped, model text cleaned before escaping."""

from __future__ import annotations

import fnmatch
import tomllib
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

from strokegraph.app.report import write_report
from strokegraph.bench import run_bench
from strokegraph.graph.state import RunState
from strokegraph.schema import Event, Plan, PlanStep
from strokegraph.tools.sketch.drafter import SketchDrafter

ROOT = Path(__file__).resolve().parents[1]
# Markup, a terminal escape (retitles the window) and a bidi override, as a model reply can carry them.
HOSTILE = "<script>document.title='PWNED'</script>\x1b]0;owned\x07 gnissim\u202e"


class _Elements(HTMLParser):
    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text = ""
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text += data


def _assert_text_not_markup(page: str) -> None:
    parsed = _Elements(page)
    assert "script" not in parsed.tags
    assert "<script>document.title='PWNED'</script> gnissim" in parsed.text  # shown, as text
    assert not any(c in page for c in "\x1b\x07\u202e") and "owned" not in page
    # The policy is the page's first element after <html> and <head>, and allows no script.
    assert parsed.tags[:3] == ["html", "head", "meta"] and "script-src" not in page


def test_model_text_is_text_in_the_report(tmp_path):
    plan = Plan(steps=(PlanStep(instruction=HOSTILE, description="d", entity_ids=()),))
    state = RunState(prompt="a red cat", plan=plan, step=0, trajectory=[Event(stage="draft", step=0)])
    page = write_report(tmp_path, state, passed=False).read_text(encoding="utf-8")
    _assert_text_not_markup(page)


class _Broken:
    """Draws like the sketch world, but fails on a clock with an error message a model could have written."""

    def __init__(self) -> None:
        self.sketch = SketchDrafter()

    def draft(self, request):
        if any(e.noun == "clock" for e in request.scene.entities):
            raise RuntimeError(HOSTILE)
        return self.sketch.draft(request)


def test_model_text_is_text_in_the_bench_results(tmp_path):
    run_bench("geneval", out=tmp_path, limit=1, drafter=_Broken())
    page = (tmp_path / "results.html").read_text(encoding="utf-8")
    assert "<h2>Failed images</h2>" in page
    _assert_text_not_markup(page)


def test_the_templates_are_package_data():
    templates = resources.files("strokegraph.app").joinpath("templates")
    names = {"_page.html.j2", "report.html.j2", "report.css", "results.html.j2", "results.css"}
    assert names <= {t.name for t in templates.iterdir()}
    # Every file of the folder is matched by pyproject's package-data, so a wheel carries it too.
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for path in (ROOT / "app" / "templates").iterdir():
        assert any(fnmatch.fnmatch(path.name, p) for p in patterns["strokegraph.app.templates"]), path.name
