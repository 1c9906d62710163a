"""The browser UI's step-by-step comparison of two runs, its Bench tab, and its temporary folder,
driven through gradio_client against the app served on loopback."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the browser UI needs the ui extra (pip install 'strokegraph[ui]')")
gradio_client = pytest.importorskip("gradio_client", reason="the UI tests drive the app with gradio_client")

from strokegraph import registry  # noqa: E402
from strokegraph.app import ui  # noqa: E402
from strokegraph.app.cli import main  # noqa: E402

ROLES = tuple(registry.DEFAULT_IDS[role] for role in registry.ROLES)  # a picker per role, in order
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_dir(status: str) -> Path:
    return Path(status.split("Files in ")[1].rstrip("."))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    app = ui.launch(runs, port=_free_port(), block=False, quiet=True)
    try:
        yield gradio_client.Client(app.local_url, verbose=False), runs
    finally:
        app.close()


@pytest.fixture(scope="module")
def two_seeds(served):
    """Two runs of one prompt made in the page: seed 1 refines its second step, seed 4 refines nothing."""
    client, runs = served
    names = []
    for seed in (1, 4):
        out = client.predict(ui.DEFAULT_PROMPT, *ROLES, seed, 12, False, api_name="/run")
        names.append(_run_dir(out[0]).relative_to(runs).as_posix())
    return names


def _page(frame: str) -> str:
    """The page a frame shows: its ``srcdoc``, unescaped as the browser reads it."""
    assert "<iframe sandbox=''" in frame
    found = re.search(r'srcdoc="([^"]*)"', frame)
    assert found is not None
    return html.unescape(found.group(1))


def _rows(page: str) -> dict[str, list[str]]:
    """Each row's label and its two cells (HTML), in order."""
    rows = {}
    for label, cells in re.findall(r'<tr class="stage[^"]*"><th class="where">(.*?)</th>(.*?)</tr>', page, re.S):
        rows[html.unescape(label)] = [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", cells, re.S)]
    return rows


def test_two_seeds_align_stage_by_stage(served, two_seeds):
    client, runs = served
    page = _page(client.predict(*two_seeds, api_name="/compare"))
    assert "default-src &#39;none&#39;; img-src data:;" in page  # no script, nothing fetched, as in report.html
    rows = _rows(page)
    assert list(rows) == [
        "plan",
        "step 1 draft",
        "step 1 critique",
        "step 2 draft",
        "step 2 critique",
        "step 2 round 1 <refine>",
        "step 2 round 1 critique",
    ]
    # The same plan, other drafts: the rows differ where the seeds do, and only there.
    assert rows["plan"][0] == rows["plan"][1] and "Draw a blue cup." in rows["plan"][0]
    assert rows["step 2 draft"][0] != rows["step 2 draft"][1]
    assert all(c.count("<img") == 1 for c in rows["step 2 draft"])
    assert "relation:" in rows["step 2 critique"][0] and "No violations." in rows["step 2 critique"][1]
    # Seed 4 passed without a redraw: its cells of the refine round are empty, the other's are not.
    assert rows["step 2 round 1 <refine>"][1] == "" and "&lt;refine&gt;" in rows["step 2 round 1 <refine>"][0]
    assert rows["step 2 round 1 critique"][1] == ""
    differs = [html.unescape(x) for x in re.findall(r'<tr class="stage differs"><th class="where">(.*?)</th>', page)]
    assert differs == [label for label in rows if label not in ("plan", "step 1 critique")]
    # A header per run: prompt, backends, seed, verdict, time, cost.
    for name, seed in zip(two_seeds, (1, 4), strict=True):
        found = re.search(rf"<b>{re.escape(name)}</b><dl>(.*?)</dl>", page, re.S)
        assert found is not None
        header = found.group(1)
        assert f"<dt>seed</dt><dd>{seed}</dd>" in header and "<dd>passed</dd>" in header
        assert "drafter=builtin:sketch" in header and "<dt>cost</dt><dd>no cost</dd>" in header
        assert re.search(r"<dt>time</dt><dd>\d+\.\d s</dd>", header)


def test_model_text_is_shown_as_text(served, two_seeds):
    client, runs = served
    hostile = runs / "hostile"
    shutil.copytree(runs / two_seeds[0], hostile)
    path = hostile / "trajectory.json"
    doc = json.loads(path.read_text())
    for event in doc["events"]:
        event["text"] = event["text"] + HOSTILE if event["stage"] != "plan" else event["text"]
        for v in (event.get("critique") or {}).get("violations", []):
            v["message"] = HOSTILE
    path.write_text(json.dumps(doc))
    frame = client.predict("hostile", two_seeds[1], api_name="/compare")
    page = _page(frame)
    # As tags nowhere, neither on the app's page nor in the frame's; as text in the frame.
    for markup in (frame, page):
        assert "<script" not in markup and "<img src=x" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "relation: &lt;script&gt;" in _rows(page)["step 2 critique"][0]


def test_a_run_that_cannot_be_compared_is_one_message(served, two_seeds):
    client, runs = served
    assert "pick two different runs" in client.predict(two_seeds[0], two_seeds[0], api_name="/compare")
    assert "pick a run" in client.predict("../etc", two_seeds[0], api_name="/compare")
    broken = runs / "broken"
    shutil.copytree(runs / two_seeds[0], broken)
    (broken / "trajectory.json").write_text("{")
    out = client.predict("broken", two_seeds[0], api_name="/compare")
    assert out.startswith("<p><b>Error:</b> run &#x27;broken&#x27; cannot be compared step by step")
    assert "<iframe" not in out


@pytest.fixture(scope="module")
def benches(served):
    """A tiny GenEval bench made by ``strokegraph bench`` under --runs, and a folder whose results.json is not one."""
    client, runs = served
    assert main(["bench", "geneval", "--limit", "1", "--out", str(runs / "benches" / "geneval"), "-q"]) == 0
    (runs / "benches" / "broken").mkdir()
    (runs / "benches" / "broken" / "results.json").write_text("[not json")
    return client, runs


def test_the_bench_tab_lists_and_shows_benchmark_pages(benches):
    client, runs = benches
    listed = client.predict(api_name="/benches")
    assert [c[0] for c in listed["choices"]] == ["benches/broken", "benches/geneval"]
    frame = client.predict("benches/geneval", api_name="/bench")
    page = _page(frame)
    assert page.startswith("<!DOCTYPE html>") or page.lower().startswith("<!doctype html>")
    assert "geneval" in page.lower() and "<svg" in page and "single pass" in page.lower()
    assert "<svg" not in frame  # the page is inside the frame, escaped, not on the app's page


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("benches/broken", "is not a strokegraph bench summary"),
        ("benches", "holds no results.json"),
        ("../benches", "pick a benchmark from the list"),
        ("benches/gone", "benchmark &#x27;benches/gone&#x27; is not under --runs any more"),
    ],
)
def test_a_folder_that_is_no_benchmark_is_one_message(benches, name, expected):
    client, _ = benches
    out = client.predict(name, api_name="/bench")
    assert out.startswith("<p><b>Error:</b>") and expected in out and "<iframe" not in out
    assert "Traceback" not in out


def test_the_apps_temporary_folder_goes_when_it_ends(tmp_path):
    """The folder of pictures a page is sent (``strokegraph-ui-*``) is removed when the process ends."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    script = (
        "import sys, tempfile\n"
        "from pathlib import Path\n"
        "from strokegraph.app import ui\n"
        "app = ui.launch(sys.argv[1], port=None, block=False, quiet=True)\n"
        "print(*sorted(p.name for p in Path(tempfile.gettempdir()).glob('strokegraph-ui-*')))\n"
        "app.close()\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    made = done.stdout.splitlines()[0].split()
    assert len(made) == 1 and made[0].startswith("strokegraph-ui-")
    assert not (tmp / made[0]).exists()


def test_a_trajectory_nested_too_deeply_is_a_bad_run_not_a_broken_gallery(tmp_path):
    # json raises RecursionError, not ValueError, on a document nested past its limit: the gallery
    # catches ValueError (and OSError) per run, so the one run is listed as unreadable.
    from strokegraph.app import ui_views

    assert main(["generate", "a blue cup", "--out", str(tmp_path / "deep"), "-q"]) == 0
    (tmp_path / "deep" / "trajectory.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError, match="trajectory.json is nested too deeply to read"):
        ui_views.run_card(tmp_path, "deep")
