"""More everyday prompts for the rules planner: pairs, numbers in words, vague counts, sides of the
picture, "on" a wall, "without any", verbs with a bare object and motion across things.

Each case gives the prompt, its entities as ``(noun, count, colour, *attributes)`` in id order, its
relations as ``(subject index, predicate, object index)`` and ``SceneGraph.unjudged()``: what a
careful reader expects, so that a run exits 0 only when everything asked for was judged.
"""

from __future__ import annotations

import pytest

from strokegraph.app.cli import EXIT_UNJUDGED, EXIT_USAGE, main
from strokegraph.errors import UsageError
from strokegraph.grammar import RulesPlanner
from strokegraph.schema import MAX_COUNT, SceneGraph

PAIRS = [
    ("a pair of scissors", [("scissors", 1, None)], [], []),
    ("a pair of jeans on a chair", [("jeans", 1, None), ("chair", 1, None)], [(0, "above", 1)], []),
    ("draw a pair of blue jeans", [("jeans", 1, "blue")], [], []),
    ("a pair of sunglasses next to a cup", [("sunglasses", 1, None), ("cup", 1, None)], [(0, "next to", 1)], []),
    ("a pair of glasses on a book", [("glasses", 1, None), ("book", 1, None)], [(0, "above", 1)], []),
    ("a pair of skis and a snowboard", [("skis", 1, None), ("snowboard", 1, None)], [], []),
    ("a pair of scissors to the left of a cup", [("scissors", 1, None), ("cup", 1, None)], [(0, "left of", 1)], []),
    # A pair of things that come in twos is two of them.
    ("a pair of red socks", [("sock", 2, "red")], [], []),
    ("two pairs of shoes", [("shoe", 4, None)], [], []),
    ("a single pair of gloves", [("glove", 2, None)], [], []),
    ("three pairs of socks", [("sock", 6, None)], [], []),
    # Counted glasses are drinking glasses.
    ("two glasses of water", [("glass", 2, None)], [], ["two glasses of water"]),
    (
        "a girl holding a pair of scissors",
        [("girl", 1, None), ("scissors", 1, None)],
        [],
        ["a girl holding a pair of scissors"],
    ),
]

NUMBERS = [
    ("twenty-three balloons", [("balloon", 23, None)], [], []),
    ("forty two red balloons", [("balloon", 42, "red")], [], []),
    ("thirteen ducks", [("duck", 13, None)], [], []),
    ("fifteen apples on a plate", [("apple", 15, None), ("plate", 1, None)], [(0, "above", 1)], []),
    ("half a dozen eggs", [("egg", 6, None)], [], []),
    ("two dozen roses", [("rose", 24, None)], [], []),
    ("sixty-four stars", [("star", 64, None)], [], []),
    ("twenty cats and a dog", [("cat", 20, None), ("dog", 1, None)], [], []),
    ("a dozen eggs in a bowl", [("egg", 12, None), ("bowl", 1, None)], [], ["a dozen eggs in a bowl"]),
    ("thirty-one candles on a cake", [("candle", 31, None), ("cake", 1, None)], [(0, "above", 1)], []),
    ("forty-five balloons above a house", [("balloon", 45, None), ("house", 1, None)], [(0, "above", 1)], []),
    ("seven dwarfs and a princess", [("dwarf", 7, None), ("princess", 1, None)], [], []),
    ("twelve eggs in a carton", [("egg", 12, None)], [], ["in a carton"]),
    ("eleven players on a field", [("player", 11, None)], [], ["eleven players on a field"]),
]

VAGUE = [
    ("one or two cats", [("cat", 1, None)], [], ["one or two cats"]),
    ("two or three dogs in a park", [("dog", 2, None)], [], ["two or three dogs", "in a park"]),
    ("2-3 apples", [("apple", 2, None)], [], ["2-3 apples"]),
    ("3 to 5 birds", [("bird", 3, None)], [], ["3 to 5 birds"]),
    ("dozens of balloons", [("balloon", 24, None)], [], ["dozens of balloons"]),
    ("a cat and one or two kittens", [("cat", 1, None), ("kitten", 1, None)], [], ["one or two kittens"]),
    (
        "one or two red apples next to a cup",
        [("apple", 1, "red"), ("cup", 1, None)],
        [(0, "next to", 1)],
        ["one or two red apples"],
    ),
    ("one or two birds in the sky", [("bird", 1, None)], [], ["one or two birds", "in the sky"]),
    (
        "a girl with one or two cats",
        [("girl", 1, None), ("cat", 1, None)],
        [],
        ["one or two cats", "a girl with one or two cats"],
    ),
]

SIDES = [
    ("a cat on the left and a dog on the right", [("cat", 1, None), ("dog", 1, None)], [(0, "left of", 1)], []),
    ("a dog on the right and a cat on the left", [("dog", 1, None), ("cat", 1, None)], [(1, "left of", 0)], []),
    (
        "a photo of a cat on the left and a dog on the right",
        [("cat", 1, None), ("dog", 1, None)],
        [(0, "left of", 1)],
        [],
    ),
    (
        "a tree on the left side of the picture and a house on the right side of the picture",
        [("tree", 1, None), ("house", 1, None)],
        [(0, "left of", 1)],
        [],
    ),
    ("a balloon at the top and a dog at the bottom", [("balloon", 1, None), ("dog", 1, None)], [(0, "above", 1)], []),
    (
        "a red apple to the left and a green apple to the right",
        [("apple", 1, "red"), ("apple", 1, "green")],
        [(0, "left of", 1)],
        [],
    ),
    ("on the left, a cat; on the right, a dog", [("cat", 1, None), ("dog", 1, None)], [(0, "left of", 1)], []),
    (
        "a moon at the top of the image and a boat at the bottom of the image",
        [("moon", 1, None), ("boat", 1, None)],
        [(0, "above", 1)],
        [],
    ),
    (
        "three birds at the top and a cat at the bottom",
        [("bird", 3, None), ("cat", 1, None)],
        [(0, "above", 1)],
        [],
    ),
    (
        "a cup in the middle, a fork on the left and a knife on the right",
        [("cup", 1, None), ("fork", 1, None), ("knife", 1, None)],
        [(1, "left of", 0), (1, "left of", 2), (0, "left of", 2)],
        [],
    ),
    (
        "a cat and a dog on the left and a bird on the right",
        [("cat", 1, None), ("dog", 1, None), ("bird", 1, None)],
        [(0, "left of", 2), (1, "left of", 2)],
        [],
    ),
    ("a car on the left. a truck on the right.", [("car", 1, None), ("truck", 1, None)], [(0, "left of", 1)], []),
    (
        "a sun in the top right corner and a tree in the bottom left corner",
        [("sun", 1, None), ("tree", 1, None)],
        [(1, "left of", 0), (0, "above", 1)],
        [],
    ),
    (
        "a vase in the center of the image and two candles on the left",
        [("vase", 1, None), ("candle", 2, None)],
        [(1, "left of", 0)],
        [],
    ),
    (
        "a bear on the right side and a tree on the left side",
        [("bear", 1, None), ("tree", 1, None)],
        [(1, "left of", 0)],
        [],
    ),
    (
        "three cats on the left and two dogs on the right",
        [("cat", 3, None), ("dog", 2, None)],
        [(0, "left of", 1)],
        [],
    ),
    (
        "a red car on the left, a blue car on the right",
        [("car", 1, "red"), ("car", 1, "blue")],
        [(0, "left of", 1)],
        [],
    ),
    (
        "a man in a red shirt on the left and a woman in a blue dress on the right",
        [("man", 1, None), ("woman", 1, None)],
        [(0, "left of", 1)],
        ["in a red shirt", "in a blue dress"],
    ),
    (
        "a vase of flowers on the left and a lamp on the right",
        [("vase", 1, None), ("lamp", 1, None)],
        [(0, "left of", 1)],
        ["a vase of flowers"],
    ),
    (
        "a cat in a box, a dog on the right and a bird on the left",
        [("cat", 1, None), ("dog", 1, None), ("bird", 1, None)],
        [(2, "left of", 1)],
        ["in a box"],
    ),
    (
        "a girl reading a book on the left and a boy on the right",
        [("girl", 1, None), ("book", 1, None), ("boy", 1, None)],
        [(0, "left of", 2)],
        ["a girl reading a book"],
    ),
    # A side with nothing across from it says nothing that can be judged.
    ("a cat on the left", [("cat", 1, None)], [], ["a cat on the left"]),
    ("a sun in the top left corner", [("sun", 1, None)], [], ["a sun in the top left corner"]),
    ("a dog on the far right", [("dog", 1, None)], [], ["a dog on the far right"]),
    ("a cat in the middle", [("cat", 1, None)], [], ["a cat in the middle"]),
    ("a cat in the center of the picture", [("cat", 1, None)], [], ["a cat in the center of the picture"]),
    ("a cat at the bottom of the picture", [("cat", 1, None)], [], ["a cat at the bottom of the picture"]),
    # Beside another noun these are relations, as before.
    ("a cat on the left of a dog", [("cat", 1, None), ("dog", 1, None)], [(0, "left of", 1)], []),
    ("a house at the top of a hill", [("house", 1, None), ("hill", 1, None)], [(0, "above", 1)], []),
]

CONTACT = [
    ("a clock on the wall", [("clock", 1, None)], [], ["a clock on the wall"]),
    ("a magnet on the fridge", [("magnet", 1, None)], [], ["a magnet on the fridge"]),
    (
        "a clock on the refrigerator",
        [("clock", 1, None), ("refrigerator", 1, None)],
        [],
        ["a clock on the refrigerator"],
    ),
    (
        "a painting on the wall above a sofa",
        [("painting", 1, None), ("sofa", 1, None)],
        [(0, "above", 1)],
        ["a painting on the wall"],
    ),
    ("a dog lying on the grass", [("dog", 1, None)], [], ["a dog lying on the grass"]),
    ("a cat sitting on the floor", [("cat", 1, None)], [], ["a cat sitting on the floor"]),
    ("a bird on a tree", [("bird", 1, None)], [], ["a bird on a tree"]),
    ("a poster on the door", [("poster", 1, None)], [], ["a poster on the door"]),
    ("a boat on the water", [("boat", 1, None)], [], ["a boat on the water"]),
    ("a clock hanging on the wall", [("clock", 1, None)], [], ["a clock hanging on the wall"]),
    (
        "a cup on the table and a clock on the wall",
        [("cup", 1, None), ("table", 1, None), ("clock", 1, None)],
        [(0, "above", 1)],
        ["a clock on the wall"],
    ),
    (
        "a teddy bear on the bed and a clock on the wall",
        [("teddy bear", 1, None), ("bed", 1, None), ("clock", 1, None)],
        [(0, "above", 1)],
        ["a clock on the wall"],
    ),
    (
        "a dog sleeping on the floor next to a couch",
        [("dog", 1, None), ("couch", 1, None)],
        [(0, "next to", 1)],
        ["a dog sleeping on the floor"],
    ),
    # What "on" rests on top of is still "above".
    ("a cat on a bed", [("cat", 1, None), ("bed", 1, None)], [(0, "above", 1)], []),
    ("a vase on a dining table", [("vase", 1, None), ("dining table", 1, None)], [(0, "above", 1)], []),
]

WITHOUT: list[tuple] = [
    ("a sandwich without any cheese", [("sandwich", 1, None), ("cheese", 0, None)], [], []),
    ("a sandwich without cheese", [("sandwich", 1, None), ("cheese", 0, None)], [], []),
    ("a pizza without any olives", [("pizza", 1, None), ("olive", 0, None)], [], []),
    ("a room without any windows", [("room", 1, None), ("window", 0, None)], [], []),
    ("a bowl of soup without a spoon", [("bowl", 1, None), ("spoon", 0, None)], [], ["a bowl of soup"]),
    ("a cake with no candles", [("cake", 1, None), ("candle", 0, None)], [], []),
    ("a street without any cars", [("street", 1, None), ("car", 0, None)], [], []),
    ("a dog without a leash", [("dog", 1, None), ("leash", 0, None)], [], []),
    ("a photo of a bowl without any fruit", [("bowl", 1, None), ("fruit", 0, None)], [], []),
    ("a kitchen table without any plates", [("table", 1, None, "kitchen"), ("plate", 0, None)], [], ["kitchen table"]),
]

VERBS: list[tuple] = [
    ("a chef cooking pasta", [("chef", 1, None), ("pasta", 1, None)], [], ["a chef cooking pasta"]),
    ("a woman drinking coffee", [("woman", 1, None), ("coffee", 1, None)], [], ["a woman drinking coffee"]),
    ("a girl reading books", [("girl", 1, None), ("book", 2, None)], [], ["a girl reading books"]),
    ("a man eating pizza", [("man", 1, None), ("pizza", 1, None)], [], ["a man eating pizza"]),
    # A game is not a thing to draw.
    ("a boy playing football", [("boy", 1, None)], [], ["a boy playing football"]),
    ("a person playing tennis", [("person", 1, None)], [], ["a person playing tennis"]),
    ("a woman wearing glasses", [("woman", 1, None), ("glasses", 1, None)], [], ["a woman wearing glasses"]),
    ("a cat chasing mice", [("cat", 1, None), ("mouse", 2, None)], [], ["a cat chasing mice"]),
    (
        "a chef cooking pasta in a kitchen",
        [("chef", 1, None), ("pasta", 1, None)],
        [],
        ["in a kitchen", "a chef cooking pasta"],
    ),
    (
        "a boy eating an apple and a girl drinking milk",
        [("boy", 1, None), ("apple", 1, None), ("girl", 1, None), ("milk", 1, None)],
        [],
        ["a boy eating an apple", "a girl drinking milk"],
    ),
    # A verb that takes no object: the word after it is not a noun.
    ("a dog running fast", [("dog", 1, None)], [], ["running fast"]),
]

MOTION: list[tuple] = [
    ("a dog running across the snow", [("dog", 1, None)], [], ["running across the snow"]),
    ("a man walking down the street", [("man", 1, None)], [], ["walking down the street"]),
    (
        "a cat walking across a dining table",
        [("cat", 1, None), ("dining table", 1, None)],
        [],
        ["a cat walking across a dining table"],
    ),
    ("a horse galloping across a field", [("horse", 1, None)], [], ["galloping across a field"]),
    ("a bird flying past the moon", [("bird", 1, None)], [], ["flying past the moon"]),
    ("a boat sailing across the lake", [("boat", 1, None)], [], ["sailing across the lake"]),
    ("a man skiing down a mountain", [("man", 1, None)], [], ["skiing down a mountain"]),
    ("a bicycle leaning against the wall", [("bicycle", 1, None)], [], ["leaning against the wall"]),
    ("a cat looking out the window", [("cat", 1, None)], [], ["looking out the window"]),
]

CASES = PAIRS + NUMBERS + VAGUE + SIDES + CONTACT + WITHOUT + VERBS + MOTION

#: Prompts refused in one line, with what the line says.
REFUSED = [
    ("a hundred stars in the sky", "100 stars; the most one object may have is 64"),
    ("sixty-five cats", "65 cats; the most one object may have is 64"),
    ("one hundred balloons", "100 balloons;"),
    ("a thousand lanterns", "1000 lanterns;"),
    ("a hundred and fifty sheep", "150 sheep;"),
    ("seventy two dogs", "72 dogs;"),
    ("two hundred ants", "200 ants;"),
    ("hundreds of birds", "'hundreds of birds'; the most one object may have is 64"),
    ("countless stars", "'countless stars';"),
]


def _read(scene: SceneGraph) -> tuple[list, list, list]:
    entities = [(e.noun, e.count, e.colour, *e.attributes) for e in scene.entities]
    relations = [(int(r.subject[1:]), r.predicate, int(r.object[1:])) for r in scene.relations]
    return entities, relations, list(scene.unjudged())


def test_there_are_a_hundred_more_cases():
    assert len(CASES) + len(REFUSED) >= 100
    assert len({p for p, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize(("prompt", "entities", "relations", "unjudged"), CASES, ids=[c[0] for c in CASES])
def test_everyday_prompts(prompt, entities, relations, unjudged):
    scene, plan = RulesPlanner().plan(prompt)
    assert _read(scene) == (entities, relations, unjudged)
    planned = [eid for step in plan.steps for eid in step.entity_ids]
    assert sorted(planned) == sorted(e.id for e in scene.entities)


@pytest.mark.parametrize(("prompt", "message"), REFUSED, ids=[p for p, _ in REFUSED])
def test_more_than_the_most_of_one_object_is_refused_in_one_line(prompt, message):
    with pytest.raises(UsageError) as info:
        RulesPlanner().plan(prompt)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(MAX_COUNT) in str(info.value)


@pytest.mark.parametrize(
    ("prompt", "code"),
    [
        ("a cat on the left and a dog on the right", 0),
        ("a pair of scissors", 0),
        ("a sandwich without any cheese", 0),
        ("one or two cats", EXIT_UNJUDGED),
        ("a clock on the wall", EXIT_UNJUDGED),
        ("a chef cooking pasta", EXIT_UNJUDGED),
        ("a hundred stars in the sky", EXIT_USAGE),
    ],
)
def test_generate_exits_0_only_when_everything_was_judged(prompt, code, tmp_path):
    assert main(["generate", prompt, "--out", str(tmp_path / "run"), "--faults", "0", "-q"]) == code
