"""The Python API end to end on the offline backends: the loop converges, and failures lose nothing."""

from __future__ import annotations

import json

import pytest
from conftest import FailingDrafter
from PIL import Image

from strokegraph.app.runner import generate
from strokegraph.bench import geneval_prompts
from strokegraph.errors import RunError, UsageError
from strokegraph.graph import Budget


def _geneval(tag: str, n: int) -> list[str]:
    prompts = [p.prompt for p in geneval_prompts() if p.tag == tag]
    return [prompts[i * len(prompts) // n] for i in range(n)]


# 40 prompts spread evenly over GenEval's two-object, position and colour-attribution tags.
LOOP_PROMPTS = _geneval("two_object", 13) + _geneval("position", 14) + _geneval("color_attr", 13)


@pytest.mark.slow
def test_the_loop_repairs_the_drafters_mistakes(tmp_path):
    passed, repaired = 0, 0
    for i, prompt in enumerate(LOOP_PROMPTS):
        result = generate(prompt, out=tmp_path / str(i))
        passed += result.passed
        first = next(e.critique for e in result.trajectory if e.stage == "critique")
        repaired += result.passed and result.rounds > 0
        assert result.final_image.is_file()
        assert first is not None
    # The default fault rates leave the loop work to do, and it gets the prompts right.
    assert repaired >= 10
    assert passed >= 0.95 * len(LOOP_PROMPTS)


@pytest.mark.slow
def test_single_pass_fails_more_often_than_the_loop(tmp_path):
    single = sum(generate(p, out=tmp_path / f"s{i}", single_pass=True).passed for i, p in enumerate(LOOP_PROMPTS))
    loop = sum(generate(p, out=tmp_path / f"l{i}").passed for i, p in enumerate(LOOP_PROMPTS))
    assert single < loop


def test_same_seed_same_images(tmp_path):
    a = generate("three purple stars above a green circle", out=tmp_path / "a", seed=5)
    b = generate("three purple stars above a green circle", out=tmp_path / "b", seed=5)
    assert a.final_image.read_bytes() == b.final_image.read_bytes()
    assert [e.image.sha256 for e in a.trajectory if e.image] == [e.image.sha256 for e in b.trajectory if e.image]


def test_not_drawn_yet_is_not_a_violation(tmp_path):
    result = generate("a dog right of a teddy bear", out=tmp_path / "r", settings={"drafter": {"fault_scale": 0}})
    first = next(e for e in result.trajectory if e.stage == "critique")
    # Step 1 draws the teddy bear only; the dog is judged from step 2 on.
    assert first.step == 0 and first.critique.passed
    assert [result.scene.entity(i).noun for i in first.critique.judged_entity_ids] == ["teddy bear"]


def test_a_failing_backend_keeps_what_was_made(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(RunError, match=r"MemoryError: out of memory \(node 'drafter', step 1\)"):
        generate("a dog right of a teddy bear", out=out, drafter=FailingDrafter())
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["error"].startswith("RunError")
    assert [e["stage"] for e in doc["events"]][:3] == ["plan", "draft", "critique"]
    assert doc["events"][1]["backend"] == "custom:FailingDrafter"
    with Image.open(out / "final.png") as im:
        assert im.size == (512, 512)
    assert (out / "images" / "step01-draft.png").is_file()
    assert "Step 1 of 2" in (out / "report.html").read_text()


def test_an_unplannable_prompt_leaves_no_run_behind(tmp_path):
    with pytest.raises(UsageError, match="names no object"):
        generate("red and blue", out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_budget_is_respected(tmp_path):
    result = generate(
        "a dog right of a teddy bear",
        out=tmp_path / "r",
        settings={"drafter": {"fault_scale": 3.33}, "refiner": {"fault_scale": 5}},
        budget=Budget(rounds_per_step=1, max_rounds=1),
    )
    assert result.rounds <= 1
    assert sum(e.stage == "refine" for e in result.trajectory) == result.rounds


def test_progress_events_frame_every_stage_and_count_violations(tmp_path):
    events = []
    result = generate("a dog right of a teddy bear", out=tmp_path / "r", seed=2, on_progress=events.append)
    ends = [e for e in events if e["kind"] == "end"]
    assert [e["stage"] for e in ends] == [e.stage for e in result.trajectory]
    assert sum(e["kind"] == "start" for e in events) == len(ends)
    critiques = [e for e in ends if e["stage"] == "critique"]
    assert [c["violations"] for c in critiques] == [
        len(e.critique.violations) for e in result.trajectory if e.stage == "critique"
    ]
