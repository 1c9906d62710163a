"""What the browser UI reads from a run's progress: each finished stage with its trajectory event."""

from __future__ import annotations

from strokegraph.app.runner import generate, resume

PROMPT = "two red apples to the left of a blue cup"


def test_each_end_carries_the_trajectory_event_of_its_stage(tmp_path):
    events: list[dict] = []
    result = generate(PROMPT, out=tmp_path / "run", on_progress=events.append)
    ends = [e for e in events if e["kind"] == "end"]
    assert [e["event"] for e in ends] == [t.model_dump(mode="json") for t in result.trajectory]
    draft = next(e for e in ends if e["stage"] == "draft")
    assert draft["event"]["image"]["path"] == draft["message"]


def test_a_resumed_review_reports_only_the_stages_it_ran(tmp_path):
    waiting = generate(PROMPT, out=tmp_path / "run", review=True)
    events: list[dict] = []
    result = resume(waiting.run_dir, answer={"action": "accept"}, on_progress=events.append)
    ends = [e for e in events if e["kind"] == "end"]
    ran = result.trajectory[len(waiting.trajectory) :]
    assert [e["event"] for e in ends] == [t.model_dump(mode="json") for t in ran]
