"""The contract between planning and judging: count 0 is judged as absent, "next to" by distance,
and whatever no critic judges is listed, the same way, in ``SceneGraph.unjudged()`` and ``Critique.unjudged``."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from pydantic import ValidationError

from strokegraph import generate
from strokegraph.agents.chat import PlannerReply
from strokegraph.agents.critic import ChatCritic, CritiqueRequest, DetectorCritic
from strokegraph.grammar import parse
from strokegraph.schema import Detection, Entity, Relation, SceneGraph
from strokegraph.tools.sketch.drafter import SketchDrafter, SketchFaults, SketchRefiner


def test_unjudged_lists_free_text_unjudged_relations_and_other_attributes_once():
    scene = SceneGraph(
        prompt="p",
        entities=(
            Entity(id="e0", noun="dog", count=2, attributes=("big",)),
            Entity(id="e1", noun="house", colour="red", attributes=("old", "big")),
            Entity(id="e2", noun="car", count=0),
        ),
        relations=(
            Relation(subject="e0", predicate="in front of", object="e1"),
            Relation(subject="e1", predicate="behind", object="e0"),
            Relation(subject="e0", predicate="next to", object="e1"),
            Relation(subject="e0", predicate="left of", object="e1"),
        ),
        constraints=("at sunset", "big dogs"),
    )
    assert scene.unjudged() == (
        "at sunset",
        "big dogs",
        "the dogs in front of the house",
        "the house behind the dogs",
        "old house",
        "big house",
    )
    assert SceneGraph(prompt="p", entities=(Entity(id="e0", noun="dog"),)).unjudged() == ()


def test_no_relation_may_name_an_absent_entity():
    with pytest.raises(ValidationError, match="count 0"):
        SceneGraph(
            prompt="p",
            entities=(Entity(id="e0", noun="car", count=0), Entity(id="e1", noun="street")),
            relations=(Relation(subject="e0", predicate="above", object="e1"),),
        )


class _Boxes:
    """A detector double that sees what it is told."""

    def __init__(self, detections):
        self.detections = detections

    def detect(self, image, nouns):
        return [d for d in self.detections if d.noun in nouns]


def _request(prompt: str) -> CritiqueRequest:
    scene = parse(prompt)
    return CritiqueRequest(scene=scene, scope=frozenset(e.id for e in scene.entities), image=Image.new("RGB", (8, 8)))


def test_detector_critic_reports_the_scenes_unjudged_parts():
    request = _request("a big dog in front of a house, at sunset")
    seen = [
        Detection(noun="dog", box=(0.1, 0.1, 0.3, 0.3), score=1.0),
        Detection(noun="house", box=(0.6, 0.1, 0.9, 0.5), score=1.0),
    ]
    critique = DetectorCritic(_Boxes(seen)).critique(request)
    assert critique.passed  # "in front of" is not judged from boxes, whatever they show
    assert critique.unjudged == request.scene.unjudged() == ("at sunset", "the dog in front of the house", "big dog")


class _Replies:
    """A chat model double that answers from a list."""

    def __init__(self, *replies: str):
        self.replies = list(replies)

    def complete(self, messages, *, schema=None):
        return self.replies.pop(0)


def test_chat_critic_reports_the_scenes_unjudged_parts():
    request = _request("an astronaut riding a horse")
    critique = ChatCritic(_Replies(json.dumps({"violations": [], "detections": []}))).critique(request)
    assert critique.unjudged == request.scene.unjudged() == ("an astronaut riding a horse",)


def _planner_reply(relations) -> PlannerReply:
    return PlannerReply.model_validate(
        {
            "scene": {
                "entities": [
                    {"id": "e0", "noun": "car", "count": 0, "colour": None, "attributes": []},
                    {"id": "e1", "noun": "cat", "count": 1, "colour": None, "attributes": []},
                    {"id": "e2", "noun": "dog", "count": 1, "colour": None, "attributes": ["small"]},
                ],
                "relations": relations,
                "constraints": [],
            },
            "plan": {
                "steps": [
                    {"instruction": "Draw a dog, with no cars.", "description": "A dog.", "entity_ids": ["e2", "e0"]},
                    {"instruction": "Add a cat.", "description": "A dog and a cat.", "entity_ids": ["e1"]},
                ]
            },
        }
    )


def test_llm_planner_replies_take_count_0_and_the_new_predicates():
    reply = _planner_reply([{"subject": "e1", "predicate": "next to", "object": "e2"}])
    scene, plan = reply.to_domain("a cat next to a small dog, no cars")
    assert [e.count for e in scene.entities] == [0, 1, 1]
    assert scene.unjudged() == ("small dog",)
    with pytest.raises(ValueError, match="count 0"):
        _planner_reply([{"subject": "e0", "predicate": "behind", "object": "e2"}]).to_domain("p")


# -- end to end, on the offline backends -------------------------------------------------------


def test_no_cars_on_the_street_ends_with_no_car(tmp_path):
    # The drafter always draws one car ("no cars" makes models draw cars); the critic must see it
    # and the refiner take it away.
    always = SketchFaults(missing=0.0, count=1.0, colour_leak=0.0, flip=0.0)
    result = generate(
        "no cars on the street",
        out=tmp_path / "run",
        drafter=SketchDrafter(always),
        refiner=SketchRefiner(failure_rate=0.0),
    )
    assert [(e.noun, e.count) for e in result.scene.entities] == [("car", 0), ("street", 1)]
    first = next(e.critique for e in result.trajectory if e.stage == "critique")
    assert any(v.kind == "extra" and v.entity_ids == ("e0",) for v in first.violations)
    assert result.passed and result.unjudged == ()
    assert [d.noun for d in result.critique.detections] == ["street"]


def test_a_cat_next_to_a_dog_is_drawn_near_and_judged_by_distance(tmp_path):
    result = generate("a cat next to a dog", out=tmp_path / "run", settings={"drafter": {"fault_scale": 0.0}})
    assert result.scene.relations == (Relation(subject="e0", predicate="next to", object="e1"),)
    assert result.passed and result.critique.unjudged == ()
    assert sorted(d.noun for d in result.critique.detections) == ["cat", "dog"]


def test_a_dog_in_front_of_a_house_draws_both_and_says_the_relation_is_unjudged(tmp_path):
    result = generate("a dog in front of a house", out=tmp_path / "run", settings={"drafter": {"fault_scale": 0.0}})
    assert result.passed
    assert sorted(d.noun for d in result.critique.detections) == ["dog", "house"]
    assert result.critique.unjudged == result.scene.unjudged() == ("the dog in front of the house",)


def test_the_report_lists_what_each_critique_did_not_judge(tmp_path):
    # The verdict line named the unjudged parts, but a critique's card said only "No violations.".
    import html

    generate("a dog in front of a house", out=tmp_path / "run", settings={"drafter": {"fault_scale": 0.0}})
    page = html.unescape((tmp_path / "run" / "report.html").read_text())
    cards = page.split("<h2>Step ")[1:]
    assert cards and "Not judged: “the dog in front of the house”" in cards[-1]  # the last step's critique
