"""The ``builtin:rules`` planner: GenEval's 553 prompts, paraphrases, free text, plans and bad prompts."""

from __future__ import annotations

import re

import pytest

from strokegraph.agents.planner import Planner
from strokegraph.bench import geneval_prompts
from strokegraph.errors import UsageError
from strokegraph.grammar import RulesPlanner, parse, plan_scene
from strokegraph.schema import Entity, Relation, SceneGraph


def _geneval() -> list[dict]:
    return [p.metadata for p in geneval_prompts()]


GENEVAL = _geneval()


def _structure(scene: SceneGraph) -> tuple[list[tuple], list[tuple]]:
    entities = [(e.id, e.noun, e.count, e.colour) for e in scene.entities]
    relations = [(r.subject, r.predicate, r.object) for r in scene.relations]
    return entities, relations


def _geneval_mismatch(meta: dict) -> str | None:
    """What differs between ``parse(prompt)`` and GenEval's include clauses, or None."""
    prompt = meta["prompt"]
    include = meta["include"]
    scene = parse(prompt)
    # Ids follow the order of first mention in the prompt.
    starts: dict[int, int] = {}
    for i, c in enumerate(include):
        if (found := re.search(rf"\b{c['class']}", prompt)) is None:
            return f"{c['class']!r} of the include clauses is not in the prompt"
        starts[i] = found.start()
    mention_order = sorted(range(len(include)), key=starts.__getitem__)
    id_of = {i: f"e{rank}" for rank, i in enumerate(mention_order)}
    want_entities = sorted((id_of[i], c["class"], c["count"], c.get("color")) for i, c in enumerate(include))
    want_relations = sorted(
        (id_of[i], c["position"][0], id_of[c["position"][1]]) for i, c in enumerate(include) if "position" in c
    )
    got_entities, got_relations = _structure(scene)
    got = (sorted(got_entities), sorted(got_relations), scene.constraints, [e.attributes for e in scene.entities])
    want = (want_entities, want_relations, (), [()] * len(include))
    return None if got == want else f"{prompt!r}: got {got}, want {want}"


def test_geneval_has_553_prompts_with_distinct_classes():
    assert len(GENEVAL) == 553
    assert all(len({c["class"] for c in m["include"]}) == len(m["include"]) for m in GENEVAL)


def test_every_geneval_prompt_parses_to_its_metadata():
    mismatches = [m for m in map(_geneval_mismatch, GENEVAL) if m]
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches)


# (prompt, entities as (noun, count, colour) in id order, relations as (subject index, predicate, object index))
PARAPHRASES = [
    ("Two RED apples, to the left of a blue cup!", [("apple", 2, "red"), ("cup", 1, "blue")], [(0, "left of", 1)]),
    ("a cat on the left of a dog", [("cat", 1, None), ("dog", 1, None)], [(0, "left of", 1)]),
    ("a cat left of a dog", [("cat", 1, None), ("dog", 1, None)], [(0, "left of", 1)]),
    ("a cat on the right side of a dog", [("cat", 1, None), ("dog", 1, None)], [(0, "right of", 1)]),
    ("a cat to the right of a dog", [("cat", 1, None), ("dog", 1, None)], [(0, "right of", 1)]),
    ("a bird over a car", [("bird", 1, None), ("car", 1, None)], [(0, "above", 1)]),
    ("a cat on top of a bed", [("cat", 1, None), ("bed", 1, None)], [(0, "above", 1)]),
    ("a cup on a dining table", [("cup", 1, None), ("dining table", 1, None)], [(0, "above", 1)]),
    ("a dog under a table", [("dog", 1, None), ("table", 1, None)], [(0, "below", 1)]),
    ("a dog beneath an umbrella", [("dog", 1, None), ("umbrella", 1, None)], [(0, "below", 1)]),
    ("a cat underneath a chair", [("cat", 1, None), ("chair", 1, None)], [(0, "below", 1)]),
    ("an image of 3 cats", [("cat", 3, None)], []),
    ("a picture of twelve donuts", [("donut", 12, None)], []),
    ("draw a pair of skis", [("skis", 1, None)], []),  # one pair, as the detector boxes skis
    ("generate the orange", [("orange", 1, None)], []),
    ("an orange orange and a red orange", [("orange", 1, "orange"), ("orange", 1, "red")], []),
    ("a green skis", [("skis", 1, "green")], []),
    ("a cat, a dog and two birds", [("cat", 1, None), ("dog", 1, None), ("bird", 2, None)], []),
    ("a red dragon", [("dragon", 1, "red")], []),
    ("three purple stars and two boxes", [("star", 3, "purple"), ("box", 2, None)], []),
    ("two knives and two wine glasses", [("knife", 2, None), ("wine glass", 2, None)], []),
    ("four people and a brown teddy bear", [("person", 4, None), ("teddy bear", 1, "brown")], []),
    (
        "a black computer keyboard below a white tv remote",
        [("computer keyboard", 1, "black"), ("tv remote", 1, "white")],
        [(0, "below", 1)],
    ),
    (
        "a cat left of a dog above a bird",
        [("cat", 1, None), ("dog", 1, None), ("bird", 1, None)],
        [(0, "left of", 1), (1, "above", 2)],
    ),
    (
        "a cat and a dog left of a bird",
        [("cat", 1, None), ("dog", 1, None), ("bird", 1, None)],
        [(0, "left of", 2), (1, "left of", 2)],
    ),
    (
        "a cat left of a dog and a bird",
        [("cat", 1, None), ("dog", 1, None), ("bird", 1, None)],
        [(0, "left of", 1), (0, "left of", 2)],
    ),
    (
        "a cat left of a dog and a bird above a cup",
        [("cat", 1, None), ("dog", 1, None), ("bird", 1, None), ("cup", 1, None)],
        [(0, "left of", 1), (2, "above", 3)],
    ),
    ("a red apple. the apple is left of a cup", [("apple", 1, "red"), ("cup", 1, None)], [(0, "left of", 1)]),
    (
        "a red apple and a green apple; the green apple is above the red apple",
        [("apple", 1, "red"), ("apple", 1, "green")],
        [(1, "above", 0)],
    ),
    (
        "Please draw two cats. They are below a hair drier.",
        [("cat", 2, None), ("hair drier", 1, None)],
        [(0, "below", 1)],
    ),
    ("a cup; an apple to the left of it", [("cup", 1, None), ("apple", 1, None)], [(1, "left of", 0)]),
]


@pytest.mark.parametrize(("prompt", "entities", "relations"), PARAPHRASES, ids=[p[0] for p in PARAPHRASES])
def test_paraphrases(prompt, entities, relations):
    scene = parse(prompt)
    want_entities = [(f"e{i}", *e) for i, e in enumerate(entities)]
    want_relations = [(f"e{s}", p, f"e{o}") for s, p, o in relations]
    assert _structure(scene) == (want_entities, want_relations)
    assert scene.prompt == prompt


def test_other_adjectives_become_attributes():
    (boat,) = parse("a small wooden blue boat").entities
    assert boat == Entity(id="e0", noun="boat", colour="blue", attributes=("small", "wooden"))
    assert boat.phrase() == "a small wooden blue boat"


@pytest.mark.parametrize(
    ("prompt", "nouns", "constraints"),
    [
        ("a red dragon in the style of van gogh", ["dragon"], ["in the style of van gogh"]),
        ("a cat at sunset, a dog", ["cat", "dog"], ["at sunset"]),
        ("a dog running in the park", ["dog"], ["running in the park"]),
        ("a knife with a wooden handle", ["knife"], ["with a wooden handle"]),
        ("a black and white cat", ["cat"], ["a black"]),
        ("left of a dog", ["dog"], ["left of a dog"]),
        ("A Cat sleeping on a mat", ["cat", "mat"], ["A Cat sleeping"]),
    ],
)
def test_unstructured_text_is_kept_as_constraints(prompt, nouns, constraints):
    scene = parse(prompt)
    assert [e.noun for e in scene.entities] == nouns
    assert list(scene.constraints) == constraints
    assert all(c in prompt for c in scene.constraints)


@pytest.mark.parametrize("prompt", ["", "   ", "!!!", "red and blue", "two", "a photo of", "it"])
def test_prompts_naming_nothing_to_draw_are_usage_errors(prompt):
    with pytest.raises(UsageError) as info:
        RulesPlanner().plan(prompt)
    message = str(info.value)
    assert "\n" not in message
    assert ("empty" in message) if not prompt.strip() else (repr(prompt) in message)


def test_rules_planner_is_a_planner():
    assert isinstance(RulesPlanner(), Planner)


def test_plan_texts_for_a_relation():
    scene, plan = RulesPlanner().plan("Two RED apples, to the left of a blue cup!")
    assert [(s.entity_ids, s.instruction, s.description) for s in plan.steps] == [
        (("e1",), "Draw a blue cup.", "A blue cup."),
        (
            ("e0",),
            "Add two red apples to the left of the blue cup.",
            "A blue cup and two red apples. The red apples are to the left of the blue cup.",
        ),
    ]
    assert plan == plan_scene(parse(scene.prompt))


def _all_scenes() -> list[SceneGraph]:
    return [parse(m["prompt"]) for m in GENEVAL] + [parse(p[0]) for p in PARAPHRASES]


def test_plans_have_one_step_per_entity_with_anchors_first():
    for scene in _all_scenes():
        plan = plan_scene(scene)
        step_of = {eid: i for i, step in enumerate(plan.steps) for eid in step.entity_ids}
        assert [len(s.entity_ids) for s in plan.steps] == [1] * len(scene.entities), scene.prompt
        assert sorted(step_of) == sorted(e.id for e in scene.entities), scene.prompt
        for rel in scene.relations:
            assert step_of[rel.object] < step_of[rel.subject], (scene.prompt, rel)


def test_descriptions_cover_everything_drawn_so_far():
    for scene in _all_scenes():
        plan = plan_scene(scene)
        for i, step in enumerate(plan.steps):
            drawn = plan.introduced_until(i)
            text = step.description.lower()
            assert all(scene.entity(eid).phrase() in text for eid in drawn), (scene.prompt, i)
            among = [r for r in scene.relations if r.subject in drawn and r.object in drawn]
            assert text.count(" is ") + text.count(" are ") == len(among), (scene.prompt, i)


def test_ties_keep_mention_order_and_cycles_do_not_crash():
    scene = parse("a cat left of a dog. the dog is left of the cat. a bird")
    assert scene.relations == (
        Relation(subject="e0", predicate="left of", object="e1"),
        Relation(subject="e1", predicate="left of", object="e0"),
    )
    plan = plan_scene(scene)
    # The bird depends on nothing, so it goes first; the cycle is broken in mention order.
    assert [s.entity_ids for s in plan.steps] == [("e2",), ("e0",), ("e1",)]
    assert plan.steps[2].instruction == "Add a dog to the left of the cat."
    assert [s.entity_ids for s in plan_scene(parse("a cat, a dog and a bird")).steps] == [("e0",), ("e1",), ("e2",)]


def test_plan_scene_rejects_a_scene_without_entities():
    with pytest.raises(UsageError):
        plan_scene(SceneGraph(prompt="nothing", entities=()))
