"""GenEval's scoring rules, clause by clause, on hand-built detections."""

from __future__ import annotations

import pytest
from PIL import Image

from strokegraph.bench.scoring import (
    COUNTING_THRESHOLD,
    MAX_OBJECTS,
    THRESHOLD,
    clauses_for,
    evaluate,
    inexpressible,
    keep_detections,
    load_judge,
    summarize,
)
from strokegraph.errors import UsageError
from strokegraph.grammar import parse
from strokegraph.schema import Detection, Entity, SceneGraph
from strokegraph.tools.sketch.pixels import PixelDetector


def det(noun, box=(0.4, 0.4, 0.6, 0.6), score=1.0, colour=None) -> Detection:
    return Detection(noun=noun, box=box, score=score, colour=colour)


def row(noun, n, score=1.0, colour=None) -> list[Detection]:
    """``n`` detections of ``noun`` side by side."""
    return [det(noun, (0.05 * i, 0.1, 0.05 * i + 0.04, 0.2), score, colour) for i in range(n)]


COUNTING = {
    "tag": "counting",
    "include": [{"class": "clock", "count": 2}],
    "exclude": [{"class": "clock", "count": 3}],
}


def test_include_passes_with_enough_detections_and_fails_with_too_few():
    meta = {"tag": "single_object", "include": [{"class": "cow", "count": 1}]}
    assert evaluate(meta, [det("cow")]).correct
    two = {"tag": "two_object", "include": [{"class": "cow", "count": 1}, {"class": "cup", "count": 1}]}
    score = evaluate(two, [det("cow"), det("dog")])
    assert not score.correct
    assert score.reasons == ("expected cup>=1, found 0",)


def test_include_alone_allows_more_than_asked():
    meta = {"tag": "two_object", "include": [{"class": "cow", "count": 1}]}
    assert evaluate(meta, row("cow", 3)).correct


def test_counting_needs_exactly_n_through_its_exclude_clause():
    assert evaluate(COUNTING, row("clock", 2)).correct
    too_many = evaluate(COUNTING, row("clock", 3))
    assert not too_many.correct and too_many.reasons == ("expected clock<3, found 3",)
    assert evaluate(COUNTING, row("clock", 1)).reasons == ("expected clock>=2, found 1",)


def test_threshold_is_strict_and_higher_for_counting():
    assert (THRESHOLD, COUNTING_THRESHOLD) == (0.3, 0.9)
    meta = {"tag": "single_object", "include": [{"class": "cow", "count": 1}]}
    assert evaluate(meta, [det("cow", score=0.31)]).correct
    assert not evaluate(meta, [det("cow", score=0.3)]).correct
    # A 0.8 detection counts for every tag but counting.
    assert not evaluate({**meta, "tag": "counting"}, [det("cow", score=0.8)]).correct
    assert evaluate({**meta, "tag": "counting"}, [det("cow", score=0.91)]).correct
    # So a weak third clock does not trip the counting exclude clause.
    assert evaluate(COUNTING, [*row("clock", 2), det("clock", score=0.8)]).correct


def test_colour_is_read_on_the_top_count_detections_only():
    meta = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "pink"}]}
    best_is_blue = [det("car", score=0.95, colour="blue"), det("car", score=0.6, colour="pink")]
    score = evaluate(meta, best_is_blue)
    assert not score.correct
    assert score.reasons == ("expected pink car>=1, found 0 pink; and 1 blue",)
    best_is_pink = [det("car", score=0.6, colour="blue"), det("car", score=0.95, colour="pink")]
    assert evaluate(meta, best_is_pink).correct


def test_colour_counts_every_selected_detection():
    meta = {"tag": "color_attr", "include": [{"class": "apple", "count": 2, "color": "red"}]}
    assert evaluate(meta, row("apple", 2, colour="red")).correct
    mixed = [*row("apple", 1, colour="red"), det("apple", score=0.9, colour="green")]
    assert not evaluate(meta, mixed).correct
    # A detector that names no colour never matches one.
    assert not evaluate(meta, row("apple", 2)).correct


B = (0.4, 0.4, 0.6, 0.6)
SIDES = {
    "left of": (0.0, 0.4, 0.2, 0.6),
    "right of": (0.8, 0.4, 1.0, 0.6),
    "above": (0.4, 0.0, 0.6, 0.2),
    "below": (0.4, 0.8, 0.6, 1.0),
}


def position(relation: str) -> dict:
    return {
        "tag": "position",
        "include": [{"class": "cup", "count": 1}, {"class": "dog", "count": 1, "position": [relation, 0]}],
    }


@pytest.mark.parametrize("relation", list(SIDES))
def test_position_holds_only_for_the_side_the_subject_is_on(relation):
    for side, box in SIDES.items():
        score = evaluate(position(relation), [det("cup", B), det("dog", box)])
        assert score.correct == (side == relation), (relation, side, score.reasons)


def test_position_with_no_relation_fails():
    # Centres 0.03 apart, boxes 0.2 wide: the 0.1 x size-sum margin (0.04) swallows the offset.
    score = evaluate(position("left of"), [det("cup", B), det("dog", (0.37, 0.4, 0.57, 0.6))])
    assert not score.correct
    assert score.reasons == ("expected dog left of target, found no relation to the target",)


def test_position_needs_a_diagonal_to_lean_past_half():
    # Offset (-0.1, -0.1), less 0.04 each: (-0.06, -0.06) / 0.141 = -0.42 each, short of -0.5.
    diagonal = (0.3, 0.3, 0.5, 0.5)
    assert not evaluate(position("left of"), [det("cup", B), det("dog", diagonal)]).correct
    assert not evaluate(position("above"), [det("cup", B), det("dog", diagonal)]).correct


def test_position_reads_the_top_detections_of_both_sides():
    meta = position("left of")
    wrong_best = [det("cup", B), det("dog", SIDES["right of"], score=0.9), det("dog", SIDES["left of"], score=0.5)]
    assert not evaluate(meta, wrong_best).correct
    right_best = [det("cup", B), det("dog", SIDES["right of"], score=0.5), det("dog", SIDES["left of"], score=0.9)]
    assert evaluate(meta, right_best).correct


def test_position_without_its_target_fails():
    score = evaluate(position("left of"), [det("dog", SIDES["left of"])])
    assert score.reasons == ("expected cup>=1, found 0", "no target for dog to be left of")


def test_position_is_judged_on_pixel_boxes_when_the_size_is_given():
    # On a 1000 x 100 image the dog is 100 px right and 20 px below the cup: "right of" in pixels,
    # though in normalised units (0.1 right, 0.2 down) it would read as "below".
    found = [det("cup", (0.0, 0.0, 0.01, 0.1)), det("dog", (0.1, 0.2, 0.11, 0.3))]
    assert evaluate(position("right of"), found, size=(1000, 100)).correct
    assert not evaluate(position("below"), found, size=(1000, 100)).correct
    assert evaluate(position("below"), found).correct


def test_at_most_sixteen_detections_per_class_are_kept():
    assert MAX_OBJECTS == 16
    many = row("clock", 20)
    kept = keep_detections(many, "two_object")
    assert len(kept["clock"]) == 16
    assert not evaluate({"tag": "two_object", "include": [{"class": "clock", "count": 17}]}, many).correct
    # The cap hides the surplus from an exclude clause too, as in GenEval.
    exclude = {
        "tag": "counting",
        "include": [{"class": "clock", "count": 1}],
        "exclude": [{"class": "clock", "count": 17}],
    }
    assert evaluate(exclude, many).correct


def test_kept_detections_are_best_first():
    found = [det("cow", score=s) for s in (0.4, 0.95, 0.7, 0.2)]
    assert [d.score for d in keep_detections(found, "single_object")["cow"]] == [0.95, 0.7, 0.4]


def test_overall_is_the_mean_of_the_tag_means():
    outcomes = [("single_object", True), ("counting", True), ("counting", False), ("counting", False)]
    outcomes += [("counting", False)]
    scores, overall = summarize(outcomes)
    assert scores == {"single_object": 1.0, "counting": 0.25}
    assert overall == pytest.approx(0.625)  # not 2 / 5, the share of all images
    assert summarize([]) == ({}, None)


def test_clauses_for_a_parsed_scene_judge_like_genevals_own():
    meta = clauses_for(parse("two red apples to the left of a blue cup"), "position")
    assert meta["include"] == [
        {"class": "apple", "count": 2, "color": "red"},
        {"class": "cup", "count": 1, "color": "blue"},
        {"class": "apple", "count": 2, "position": ["left of", 1]},
    ]
    assert "exclude" not in meta
    cup = det("cup", B, colour="blue")
    left = [det("apple", (0.0, 0.1, 0.1, 0.2), colour="red"), det("apple", (0.0, 0.7, 0.1, 0.8), colour="red")]
    assert evaluate(meta, [cup, *left]).correct
    one_right = [left[0], det("apple", (0.9, 0.7, 1.0, 0.8), colour="red")]
    assert not evaluate(meta, [cup, *one_right]).correct


def test_clauses_for_counting_exclude_one_more_than_asked():
    meta = clauses_for(parse("three bags and one pen"), "counting")
    assert meta["exclude"] == [{"class": "bag", "count": 4}, {"class": "pen", "count": 2}]


def test_clauses_cannot_tell_two_entities_of_one_noun_apart():
    scene = SceneGraph(
        prompt="a red apple and a green apple",
        entities=(Entity(id="e0", noun="apple", colour="red"), Entity(id="e1", noun="apple", colour="green")),
    )
    with pytest.raises(UsageError, match="apple"):
        clauses_for(scene, "color")


def test_judge_uses_the_critic_detector_and_pixel_boxes():
    judge = load_judge("builtin:pixels")
    assert isinstance(judge.detector, PixelDetector)
    blank = Image.new("RGB", (64, 64), (153, 153, 153))
    score = judge.score(blank, {"tag": "single_object", "include": [{"class": "cow", "count": 1}]})
    assert not score.correct and score.detected == {}


@pytest.mark.parametrize("judge_id", ["transformers-vlm:any/model", "openai:gpt-4.1-mini"])
def test_a_critic_without_a_detector_cannot_judge(judge_id):
    with pytest.raises(UsageError, match="not a detector critic"):
        load_judge(judge_id)


def test_an_unknown_judge_id_is_a_usage_error():
    with pytest.raises(UsageError, match="did you mean 'builtin:pixels'"):
        load_judge("builtin:pixel")


def test_an_absent_entity_is_an_exclude_clause_as_in_geneval():
    meta = clauses_for(parse("a street with no cars"), "two_object")
    assert meta["include"] == [{"class": "street", "count": 1}]
    assert meta["exclude"] == [{"class": "car", "count": 1}]
    assert evaluate(meta, [det("street")]).correct
    assert evaluate(meta, [det("street"), det("car")]).reasons == ("expected car<1, found 1",)
    counting = clauses_for(parse("three bags and no pens"), "counting")
    assert counting["exclude"] == [{"class": "pen", "count": 1}, {"class": "bag", "count": 4}]


@pytest.mark.parametrize(
    ("prompt", "said"),
    [
        ("a cat next to a dog", ("the cat next to the dog",)),
        ("a dog in front of a house, at night", ("at night", "the dog in front of the house")),
    ],
)
def test_relations_geneval_has_no_clause_for_are_inexpressible(prompt, said):
    scene = parse(prompt)
    assert inexpressible(scene) == said
    with pytest.raises(UsageError, match="GenEval's clauses have no"):
        clauses_for(scene, "position")
    assert inexpressible(parse("a cat left of a small dog")) == ()
