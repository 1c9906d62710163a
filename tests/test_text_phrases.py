"""How plans and critiques name things: pairs, substances and irregular plurals read as a person writes them."""

from __future__ import annotations

import pytest

from strokegraph import registry
from strokegraph._text import noun_phrase, singularize


@pytest.mark.parametrize(
    ("noun", "count", "adjectives", "phrase"),
    [
        ("jeans", 1, [], "a pair of jeans"),  # was "a jeans"
        ("jeans", 2, ["blue"], "two pairs of blue jeans"),
        ("scissors", 0, [], "no scissors"),
        ("pasta", 1, [], "some pasta"),  # was "a pasta"
        ("cheese", 0, [], "no cheese"),  # was "no cheeses"
        ("apple", 2, ["red"], "two red apples"),
        ("apple", 1, [], "an apple"),
        ("tomato", 3, [], "three tomatoes"),
    ],
)
def test_noun_phrases(noun, count, adjectives, phrase):
    assert noun_phrase(noun, count, adjectives) == phrase


@pytest.mark.parametrize(("plural", "singular"), [("tomatoes", "tomato"), ("potatoes", "potato"), ("shoes", "shoe")])
def test_plurals_in_oes(plural, singular):
    assert singularize(plural) == singular


def test_plans_name_pairs_and_substances_as_written():
    scene, plan = registry.build("planner", "builtin:rules").plan(
        "a chef cooking pasta next to a pair of jeans, three tomatoes and a sandwich without any cheese"
    )
    phrases = {e.phrase() for e in scene.entities}
    assert {"some pasta", "a pair of jeans", "three tomatoes", "no cheese"} <= phrases
    text = " ".join(s.description for s in plan.steps)
    assert "a jeans" not in text and "a pasta" not in text and "cheeses" not in text and "tomatoe " not in text
