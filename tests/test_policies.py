"""Which failures the graph retries: only those a backend marked as transient."""

from __future__ import annotations

from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from strokegraph.errors import RunError, UsageError
from strokegraph.graph.policies import is_transient, retry_policy


def transient(message: str) -> RunError:
    # Equivalent to RunError(message, node="drafter", transient=True), written so that it also works
    # before RunError takes the keyword.
    error = RunError(message, node="drafter")
    error.transient = True
    return error


@pytest.mark.parametrize(
    "exc, expected",
    [
        (transient("openai:gpt-image-2: 429 rate limited after 2 retries"), True),
        (RunError("openai:gpt-image-2: 400 bad request", node="drafter"), False),
        (UsageError("unknown drafter id 'builtin:skecth'"), False),
        (ValueError("1 validation error for Critique"), False),
        (MemoryError(), False),
        (ConnectionError("reset by peer"), False),  # retried by the client already, and not ours
    ],
)
def test_is_transient(exc, expected):
    assert is_transient(exc) is expected


def test_a_usage_error_is_never_retried_even_if_marked():
    error = UsageError("bad prompt")
    error.transient = True
    assert not is_transient(error)


def test_retry_policy_uses_the_predicate_and_knows_the_nodes():
    policy = retry_policy("critic")
    assert policy.retry_on is is_transient
    assert policy.max_attempts == 3
    with pytest.raises(ValueError, match="'critc'"):
        retry_policy("critc")


class State(TypedDict):
    calls: int


def flaky_graph(failures: list[BaseException]):
    """One node that raises each of ``failures`` in turn, then succeeds, under the drafter's policy."""
    attempts: list[int] = []

    def node(state: State) -> dict:
        attempts.append(len(attempts) + 1)
        if failures:
            raise failures.pop(0)
        return {"calls": len(attempts)}

    builder = StateGraph(State)
    # No waiting in tests; the predicate and the attempt count are what is under test.
    policy = retry_policy("drafter")._replace(initial_interval=0.0, jitter=False)
    builder.add_node("drafter", node, retry_policy=policy)
    builder.add_edge(START, "drafter")
    builder.add_edge("drafter", END)
    return builder.compile(), attempts


def test_a_transient_failure_is_retried_until_it_succeeds():
    graph, attempts = flaky_graph([transient("timed out"), transient("503 server error")])
    assert graph.invoke({"calls": 0}) == {"calls": 3}
    assert attempts == [1, 2, 3]


def test_retries_stop_after_max_attempts():
    graph, attempts = flaky_graph([transient("timed out")] * 3)
    with pytest.raises(RunError, match="timed out"):
        graph.invoke({"calls": 0})
    assert attempts == [1, 2, 3]


@pytest.mark.parametrize(
    "error",
    [RunError("openai:gpt-4.1-mini: 400 bad request", node="drafter"), UsageError("bad id"), MemoryError()],
)
def test_a_permanent_failure_is_not_retried(error):
    graph, attempts = flaky_graph([error])
    with pytest.raises(type(error)):
        graph.invoke({"calls": 0})
    assert attempts == [1]
