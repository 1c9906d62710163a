"""The sketch world's truth sidecars and the ``builtin:truth`` judge."""

from __future__ import annotations

import json

import pytest

from strokegraph.agents.critic import CritiqueRequest
from strokegraph.app.runner import generate
from strokegraph.bench import run_bench
from strokegraph.errors import RunError
from strokegraph.schema import Critique, ImageRef
from strokegraph.tools.sketch.truth import read_truth, record_truth, truth_path

# fault_scale 5 caps each rate: a colour leak is certain for the red cup, a flip is very likely.
LEAKY = {"drafter": {"fault_scale": 5.0}, "refiner": {"fault_scale": 0.0}}


def _drawn(result):
    return [e for e in result.trajectory if e.stage in ("draft", "refine")]


def test_a_faulted_draft_records_its_fault_and_what_it_drew(tmp_path):
    result = generate("a red cup", out=tmp_path / "r", settings=LEAKY, single_pass=True)
    truths = record_truth(result.run_dir)
    draft = _drawn(result)[0]
    truth = read_truth(result.run_dir, draft.image)
    assert truth == truths[draft.image.path]
    # With colour leaks certain, missing and count faults also run at 0.6 and 0.75 each: whichever fired is listed.
    kinds = {f.kind for f in truth.faults}
    assert kinds and kinds <= {"missing", "count", "colour_leak"}
    if "missing" not in kinds:
        assert "colour_leak" in kinds
        assert truth.instances and all(i.colour != "red" for i in truth.instances)
    else:
        assert truth.instances == ()
    assert truth.exact


def test_a_clean_draft_records_the_scene_exactly(tmp_path):
    result = generate("two blue cups left of a dog", out=tmp_path / "r", settings={"drafter": {"fault_scale": 0.0}})
    record_truth(result.run_dir)
    truth = read_truth(result.run_dir, _drawn(result)[-1].image)
    assert truth.faults == () and truth.exact
    assert sorted((i.noun, i.colour) for i in truth.instances) == [("cup", "blue"), ("cup", "blue"), ("dog", "brown")]


def test_a_sidecar_of_another_image_is_refused(tmp_path):
    result = generate("a red cup left of a blue book", out=tmp_path / "r", seed=3)
    record_truth(result.run_dir)
    first, second = (e.image for e in _drawn(result)[:2])
    truth_path(result.run_dir, second).write_bytes(truth_path(result.run_dir, first).read_bytes())
    with pytest.raises(RunError, match="another image"):
        read_truth(result.run_dir, second)
    truth_path(result.run_dir, first).write_text("{not json")
    with pytest.raises(RunError, match="damaged"):
        read_truth(result.run_dir, first)
    assert read_truth(result.run_dir, ImageRef(path="images/none.png", sha256="0" * 64, width=1, height=1)) is None


def test_a_run_that_the_settings_did_not_draw_is_not_given_a_truth(tmp_path):
    result = generate("a red cup", out=tmp_path / "r", settings=LEAKY, single_pass=True)
    record = json.loads((result.run_dir / "run.json").read_text())
    record["settings"] = {}  # the default fault rates draw another image
    (result.run_dir / "run.json").write_text(json.dumps(record))
    with pytest.raises(RunError, match="other pixels"):
        record_truth(result.run_dir)
    assert not list(result.run_dir.glob("images/*.truth.json"))


class _AlwaysPasses:
    """A deliberately wrong critic: every image passes."""

    def critique(self, request: CritiqueRequest) -> Critique:
        return Critique(judged_entity_ids=tuple(sorted(request.scope)))


def test_the_truth_judge_disagrees_with_a_wrong_critic(tmp_path):
    result = run_bench(
        "geneval",
        out=tmp_path / "b",
        limit=2,
        critic=_AlwaysPasses(),
        settings={"drafter": {"fault_scale": 3.0}},
        judge="builtin:truth",
    )
    loop = result.summary["modes"]["loop"]
    assert loop["critic_passed"] == 1.0  # the critic passed every final image ...
    assert loop["overall"] < 1.0  # ... and the truth says some are wrong
    truth = loop["critic_vs_truth"]
    assert truth["images"] == loop["images"] and truth["truly_clean"] < truth["critic_passed"]
    assert truth["pass_precision"] < 1.0
    assert "critic vs truth" in (tmp_path / "b" / "results.md").read_text()


def test_the_truth_judge_is_no_loop_critic(tmp_path):
    with pytest.raises(RunError, match="cannot critique inside a run"):
        generate("a red cup", out=tmp_path / "r", critic="builtin:truth")
