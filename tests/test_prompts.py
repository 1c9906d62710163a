"""Prompt templates: each declares exactly the variables it uses, and renders them."""

from __future__ import annotations

import pytest

from strokegraph import prompts
from strokegraph.errors import UsageError


@pytest.mark.parametrize("name", prompts.names())
def test_templates_render_every_declared_variable(name):
    template = prompts.load(name)
    values = {v: f"<<{v}>>" for v in template.variables}
    text = template.render(**values)
    for v in template.variables:
        assert f"<<{v}>>" in text
    assert "$" not in text


def test_formats_are_fixed_in_the_templates():
    assert "<ins>" in prompts.load("planner").text and "<des>" in prompts.load("planner").text
    critic = prompts.load("critic").text
    for kind in ("missing", "extra", "count", "attribute", "relation"):
        assert kind in critic


def test_wrong_variables_are_refused():
    with pytest.raises(UsageError, match="missing"):
        prompts.render("critic", prompt="x")
    with pytest.raises(UsageError, match="no prompt template"):
        prompts.load("nope")
