"""When the judge is the loop's own critic, it takes the critic's final detections instead of detecting again."""

from __future__ import annotations

import json

import pytest

from strokegraph.agents.critic import DetectorCritic
from strokegraph.bench import MODES, run_bench
from strokegraph.tools.sketch.pixels import PixelDetector


@pytest.fixture
def detections(monkeypatch):
    """How many times any pixel detector was asked to detect."""
    count = [0]
    real = PixelDetector.detect

    def counting(self, image, nouns):
        count[0] += 1
        return real(self, image, nouns)

    monkeypatch.setattr(PixelDetector, "detect", counting)
    return count


def _records(out) -> dict[tuple[str, str], dict]:
    return {
        (mode, path.parent.name): json.loads(path.read_text())
        for mode in MODES
        for path in (out / mode).glob("*/*/record.json")
    }


def test_a_self_judged_benchmark_detects_each_final_image_once(tmp_path, detections):
    out = tmp_path / "self"
    result = run_bench("geneval", out=out, limit=1, keep_runs=True)
    assert result.summary["self_judged"] is True
    critiques = sum(
        e["stage"] == "critique"
        for path in out.glob("*/*/*/trajectory.json")
        for e in json.loads(path.read_text())["events"]
    )
    assert critiques > 12  # the loop refined somewhere, so this is more than one critique per image
    assert detections[0] == critiques  # the judge asked the detector nothing more


@pytest.mark.slow
def test_reused_detections_judge_exactly_as_a_fresh_detection_does(tmp_path):
    run_bench("geneval", out=tmp_path / "self", limit=2)
    # The same detector as an object of its own: not self-judged, so the judge detects again.
    run_bench("geneval", out=tmp_path / "fresh", limit=2, critic=DetectorCritic(PixelDetector()))
    reused, fresh = _records(tmp_path / "self"), _records(tmp_path / "fresh")
    assert reused.keys() == fresh.keys() and len(reused) == 24
    for key, record in reused.items():
        other = fresh[key]
        assert (record["correct"], record["reasons"], record["detected"]) == (
            other["correct"],
            other["reasons"],
            other["detected"],
        ), key
    assert any(not r["correct"] for r in reused.values())  # the comparison covers failed clauses too
