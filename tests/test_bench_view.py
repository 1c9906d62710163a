"""results.html's bench view: per-tag charts of single pass against the loop, and the prompts where they differ.

A small GenEval bench with the offline backends is drawn once; each test reads its page, or a copy of the
folder with records edited as an untrusted folder may be (a loss, hostile text).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from strokegraph.app.pages import bench_page
from strokegraph.bench import MODES, run_bench
from strokegraph.errors import UsageError

BAR_W = 380  # the longest bar, in px (bench/harness.py)


class Page(HTMLParser):
    """The page's bars (``rect`` with data-*), and its text outside tags, by section (h2/h3 heading)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.bars: list[dict[str, str]] = []
        self.sections: dict[str, str] = {}
        self._heading: str | None = None
        self._section = ""
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "rect" and any(k == "data-row" for k, _ in attrs):
            self.bars.append({k: v or "" for k, v in attrs})
        if tag in ("h2", "h3"):
            self._heading = ""

    def handle_endtag(self, tag):
        if tag in ("h2", "h3") and self._heading is not None:
            self._section, self._heading = self._heading, None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data
        else:
            self.sections[self._section] = self.sections.get(self._section, "") + data


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("view") / "bench"
    run_bench("geneval", out=out, limit=3)
    return out


def records(out: Path) -> dict[tuple[str, int], dict[str, dict]]:
    """Each prompt's image-0 record per mode."""
    found: dict[tuple[str, int], dict[str, dict]] = {}
    for mode in MODES:
        for path in (out / mode).glob("*/*-0/record.json"):
            r = json.loads(path.read_text())
            found.setdefault((r["tag"], r["index"]), {})[mode] = r
    return found


def edit(out: Path, mode: str, tag: str, index: int, **changes) -> None:
    path = out / mode / tag / f"{index}-0" / "record.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def section(page: Page, start: str) -> str:
    (text,) = [t for heading, t in page.sections.items() if heading.startswith(start)]
    return text


def test_the_bars_are_the_figures_of_results_json(bench):
    summary = json.loads((bench / "results.json").read_text())
    html = (bench / "results.html").read_text()
    assert bench_page(bench) == html  # the UI's page is the one bench wrote
    bars = {(b["data-row"], b["data-mode"]): b for b in Page(html).bars}
    for mode in MODES:
        m = summary["modes"][mode]
        expected = {tag: m["tags"][tag]["score"] for tag in summary["tags"]} | {"overall": m["overall"]}
        for row, score in expected.items():
            bar = bars[(row, mode)]
            assert float(bar["data-value"]) == score
            assert float(bar["width"]) == pytest.approx(BAR_W * score, abs=0.01)
        for row, key in [
            ("sampling steps / image", "sampling_steps_per_image"),
            ("seconds / image", "wall_s_per_image"),
        ]:
            assert float(bars[(row, mode)]["data-value"]) == m[key]
        # The sketch world calls no API: no token or cost bar, rather than a bar of 0.
        assert m["cost_usd_per_image"] is None and ("cost USD / image", mode) not in bars
    # Rows of other units are each drawn to their own scale: the larger mode's bar is full length.
    steps = {mode: float(bars[("sampling steps / image", mode)]["width"]) for mode in MODES}
    assert max(steps.values()) == BAR_W and steps["single_pass"] < steps["loop"]
    # Single pass is below the loop where the loop wins a prompt.
    assert float(bars[("position", "single_pass")]["width"]) < float(bars[("position", "loop")]["width"])


def test_the_prompts_where_the_modes_differ_are_listed_and_no_other(bench):
    page = Page((bench / "results.html").read_text())
    wins, losses = section(page, "The loop's wins"), section(page, "The loop's losses")
    differ = agree = 0
    for by_mode in records(bench).values():
        prompt = by_mode["loop"]["prompt"]
        if by_mode["loop"]["correct"] != by_mode["single_pass"]["correct"]:
            assert prompt in (wins if by_mode["loop"]["correct"] else losses), prompt
            differ += 1
        else:
            assert prompt not in wins and prompt not in losses, prompt
            agree += 1
    assert differ >= 1 and agree >= 1
    assert "None." in losses  # the sketch world's loop loses nothing here


def test_a_loss_is_listed_with_both_images(bench, tmp_path):
    out = tmp_path / "bench"
    shutil.copytree(bench, out)
    edit(out, "loop", "single_object", 0, correct=False, reasons=["expected bench>=1, found 0"])
    html = bench_page(out)
    losses = section(Page(html), "The loop's losses")
    assert "a photo of a bench" in losses and "expected bench>=1, found 0" in losses
    row = html[html.index("a photo of a bench") :].split("</tr>")[0]
    kept = [p.read_bytes() for p in (out / m / "single_object" / "0-0" / "final.png" for m in MODES)]
    assert re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', row) == [
        base64.b64encode(k).decode() for k in kept
    ]


def test_text_from_records_is_escaped(bench, tmp_path):
    out = tmp_path / "bench"
    shutil.copytree(bench, out)
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    edit(out, "loop", "colors", 259, correct=False, prompt=f"a photo {hostile}", reasons=[f"found {hostile}"])
    html = bench_page(out)
    assert "<script" not in html and "<img src=x" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2  # the prompt and the reason
    assert f"a photo {hostile}" in section(Page(html), "The loop's losses")


def test_the_policy_keeps_its_form(bench):
    html = (bench / "results.html").read_text()
    (policy,) = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html)
    policy = policy.replace("&#39;", "'")
    match = re.fullmatch(
        r"default-src 'none'; img-src data:; style-src 'sha256-([A-Za-z0-9+/=]+)'; base-uri 'none'; "
        r"form-action 'none'",
        policy,
    )
    assert match is not None
    (css,) = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert match[1] == base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert (
        "<script" not in html
        and " style=" not in html
        and "http"
        not in html.replace('http-equiv="Content-Security-Policy"', "").replace("http://www.w3.org/2000/svg", "")
    )


def test_a_folder_that_is_not_a_bench_is_a_usage_error(bench, tmp_path):
    with pytest.raises(UsageError, match="holds no results.json"):
        bench_page(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(UsageError, match="is not a strokegraph bench summary"):
        bench_page(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"tags": ["colors"]}))
    with pytest.raises(UsageError, match="is not a strokegraph bench summary") as caught:
        bench_page(tmp_path)
    assert "\n" not in str(caught.value)
