"""The benchmark harness on a few prompts: outputs, both modes, resuming, judging, T2I-CompBench's filter."""

from __future__ import annotations

import json

import pytest

from strokegraph.agents.critic import DetectorCritic
from strokegraph.app.cli import main
from strokegraph.bench import COMPBENCH_CATEGORIES, MODES, executor, geneval_prompts, run_bench, t2i_compbench_prompts
from strokegraph.errors import UsageError
from strokegraph.tools.sketch.pixels import PixelDetector

TAGS = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]


@pytest.fixture
def calls(monkeypatch):
    """Every prompt that the harness hands to ``generate``, with its seed and mode.

    Patched where the executor looks ``generate`` up when it draws in this process, so every image the
    harness draws is seen.
    """
    seen = []
    real = executor.generate

    def counting(prompt, **kwargs):
        seen.append((prompt, kwargs["seed"], kwargs["single_pass"]))
        return real(prompt, **kwargs)

    monkeypatch.setattr(executor, "generate", counting)
    return seen


def test_limit_takes_the_first_prompts_of_each_tag():
    prompts = geneval_prompts(limit=2)
    assert [p.tag for p in prompts] == [t for t in TAGS for _ in range(2)]
    assert len(geneval_prompts()) == 553
    assert all(p.metadata["prompt"] == p.prompt for p in prompts)


def test_geneval_writes_both_modes_and_every_file(tmp_path, calls):
    out = tmp_path / "bench"
    result = run_bench("geneval", out=out, limit=1)
    assert result.generated == len(calls) == 12 and result.resumed == 0
    assert sorted(single for _, _, single in calls) == [False] * 6 + [True] * 6

    summary = json.loads((out / "results.json").read_text())
    assert summary == result.summary
    assert summary["tags"] == TAGS and summary["self_judged"] is True
    for mode in MODES:
        m = summary["modes"][mode]
        assert list(m["tags"]) == TAGS and m["images"] == 6
        assert m["overall"] == pytest.approx(sum(t["score"] for t in m["tags"].values()) / 6)
        assert m["tokens_per_image"] is None and m["cost_usd"] is None  # the sketch world calls no API
        assert m["peak_rss_mib"] > 0
    assert summary["modes"]["single_pass"]["rounds_per_image"] == 0

    table = (out / "results.md").read_text()
    assert "| single pass |" in table and "| loop |" in table and "(self-judged)" in table
    page = (out / "results.html").read_text()
    # The one prompt the modes differ on (the loop wins color_attr), with its kept images; per-tag charts.
    assert "wins (1)</h3>" in page and "losses (0)</h3>" in page
    assert page.count("data:image/png;base64,") == 2
    assert page.count('data-mode="loop"') == len(TAGS) + 1 + 3  # scores and overall; steps, rounds, seconds

    record = json.loads((out / "loop" / "position" / "353-0" / "record.json").read_text())
    assert record["prompt"] == "a photo of a dog right of a teddy bear" and record["seed"] == 0
    assert set(record["detected"]) <= {"dog", "teddy bear"}
    # Runs are cleared down to their record and, for samples, the final image.
    assert sorted(p.name for p in (out / "loop" / "position" / "353-0").iterdir()) == ["final.png", "record.json"]


@pytest.mark.slow
def test_rerun_skips_images_already_done(tmp_path, calls):
    out = tmp_path / "bench"
    run_bench("geneval", out=out, limit=1, images_per_prompt=2, seed=5)
    assert len(calls) == 24
    assert {seed for _, seed, _ in calls} == {5, 6}
    first = json.loads((out / "results.json").read_text())

    calls.clear()
    again = run_bench("geneval", out=out, limit=1, images_per_prompt=2, seed=5)
    assert calls == [] and again.resumed == 24
    assert again.summary["modes"] == first["modes"]

    # A lost record, and a run interrupted before its record was written, are drawn again.
    (out / "loop" / "counting" / "179-1" / "record.json").unlink()
    (out / "single_pass" / "colors" / "259-0" / "record.json").unlink()
    calls.clear()
    run_bench("geneval", out=out, limit=1, images_per_prompt=2, seed=5)
    assert sorted(calls) == [("a photo of a blue fire hydrant", 5, True), ("a photo of two clocks", 6, False)]

    # A larger limit draws only the new prompts.
    calls.clear()
    run_bench("geneval", out=out, limit=2, images_per_prompt=2, seed=5)
    assert len(calls) == 24


def test_other_settings_refuse_to_resume(tmp_path):
    out = tmp_path / "bench"
    run_bench("geneval", out=out, limit=1)
    with pytest.raises(UsageError, match="other seed"):
        run_bench("geneval", out=out, limit=1, seed=1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a benchmark directory"):
        run_bench("geneval", out=tmp_path / "other", limit=1)


def test_a_judge_other_than_the_critic_is_not_self_judged(tmp_path):
    # The loop's critic is an object of its own, so its id is not the judge's.
    result = run_bench("geneval", out=tmp_path / "bench", limit=1, critic=DetectorCritic(PixelDetector()))
    assert result.summary["self_judged"] is False
    assert result.summary["backends"]["critic"] == "custom:DetectorCritic"
    assert "self-judged" not in (tmp_path / "bench" / "results.md").read_text()


def test_keep_runs_keeps_every_file(tmp_path):
    run_bench("geneval", out=tmp_path / "bench", limit=1, keep_runs=True)
    run_dir = tmp_path / "bench" / "loop" / "two_object" / "80-0"
    assert {"trajectory.json", "report.html", "final.png", "record.json"} <= {p.name for p in run_dir.iterdir()}


def test_t2i_compbench_judges_what_the_rules_can_express():
    judged, skipped = t2i_compbench_prompts(limit=10)
    by_category = {
        c: ([p for p in judged if p.tag == c], [s for s in skipped if s.tag == c]) for c in COMPBENCH_CATEGORIES
    }
    for category, (yes, no) in by_category.items():
        assert len(yes) + len(no) == 10, category
    # "a giraffe next to a lamp": a loose link, kept as free text, so there is nothing to judge it by.
    first_spatial = by_category["spatial"][1][0]
    assert (first_spatial.index, first_spatial.reason) == (0, "free text")
    # Shapes are not colours: no shape prompt is judged.
    assert by_category["shape"][0] == []
    assert {s.reason for s in by_category["shape"][1]} <= {"other attribute", "free text"}
    # Colour prompts carry their colours; numeracy prompts are judged as GenEval's counting prompts.
    assert all(any("color" in c for c in p.metadata["include"]) for p in by_category["color"][0])
    two_boys = by_category["numeracy"][0][0]
    assert two_boys.prompt == "two boys"
    assert two_boys.metadata["tag"] == "counting"
    assert two_boys.metadata["include"] == [{"class": "boy", "count": 2}]
    assert two_boys.metadata["exclude"] == [{"class": "boy", "count": 3}]


def test_t2i_compbench_report_counts_judged_and_skipped(tmp_path, calls):
    out = tmp_path / "bench"
    result = run_bench("t2i-compbench", out=out, limit=2)
    judged, skipped = t2i_compbench_prompts(limit=2)
    counts = result.summary["prompts"]
    for category in COMPBENCH_CATEGORIES:
        assert counts[category]["judged"] == sum(p.tag == category for p in judged)
        assert counts[category]["skipped"] == sum(s.tag == category for s in skipped)
        assert counts[category]["judged"] + counts[category]["skipped"] == 2
    assert len(calls) == 2 * len(judged)  # skipped prompts are never drawn
    assert result.summary["modes"]["loop"]["tags"].get("shape") is None
    table = (out / "results.md").read_text()
    assert "| category | judged | skipped | why skipped |" in table and "| shape | 0 | 2 |" in table


def test_cli_bench_prints_the_table(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "geneval", "--limit", "1", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| loop |" in captured.out and "12 image(s) drawn, 0 resumed" in captured.out
    assert "12/12 images (loop)" in captured.err
    assert main(["bench", "geneval", "--limit", "1", "--out", str(out), "-q"]) == 0
    captured = capsys.readouterr()
    assert "0 image(s) drawn, 12 resumed" in captured.out and captured.err == ""


def test_cli_bench_rejects_a_judge_without_a_detector(tmp_path, capsys):
    code = main(["bench", "geneval", "--judge", "transformers-vlm:x", "--out", str(tmp_path / "b")])
    assert code == 2
    assert "not a detector critic" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_an_edited_record_is_drawn_again_and_never_trusted(tmp_path, calls):
    out = tmp_path / "bench"
    run_bench("geneval", out=out, limit=1)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\nNOT-YOURS")
    record_path = next(out.glob("loop/single_object/*/record.json"))
    record = json.loads(record_path.read_text())
    record.update(image=str(secret), seed="<script>alert(1)</script>", prompt="<img src=x onerror=alert(1)>")
    record_path.write_text(json.dumps(record))
    calls.clear()
    again = run_bench("geneval", out=out, limit=1)
    assert again.generated == len(calls) == 1 and again.resumed == 11  # only the edited one, drawn again
    page = (out / "results.html").read_text()
    assert "NOT-YOURS" not in page and "<script>" not in page and "onerror" not in page
    assert page.index("Content-Security-Policy") < page.index("<body>")
