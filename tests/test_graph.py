"""Routing, budgets and state round-trips of the graph, with small scripted backends."""

from __future__ import annotations

import sqlite3

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from PIL import Image

from strokegraph.agents.critic import CritiqueRequest
from strokegraph.agents.drafter import DraftRequest, DraftResult
from strokegraph.agents.refiner import RefineRequest, RefineResult
from strokegraph.graph import Budget, RunContext, RunState, after_critic, build_graph, checkpoint_serializer
from strokegraph.registry import Backends
from strokegraph.schema import Critique, Entity, Plan, PlanStep, Refinement, Relation, SceneGraph, Violation

SCENE = SceneGraph(
    prompt="an apple left of a cup",
    entities=(Entity(id="e0", noun="cup"), Entity(id="e1", noun="apple")),
    relations=(Relation(subject="e1", predicate="left of", object="e0"),),
)
PLAN = Plan(
    steps=(
        PlanStep(instruction="Draw a cup.", description="A cup.", entity_ids=("e0",)),
        PlanStep(
            instruction="Add an apple left of the cup.", description="An apple left of a cup.", entity_ids=("e1",)
        ),
    )
)
BAD = Violation(kind="missing", entity_ids=("e0",), expected="a cup", observed="none", message="no cup")


class ScriptedPlanner:
    def plan(self, prompt):
        return SCENE, PLAN


class SolidDrafter:
    def __init__(self):
        self.calls = []

    def draft(self, request: DraftRequest) -> DraftResult:
        self.calls.append(request.step)
        base = request.image or Image.new("RGB", (32, 32), (153, 153, 153))
        return DraftResult(image=base.copy(), sampling_steps=4)


class ScriptedCritic:
    """Reports one violation for the first ``failures[step]`` critiques of each step."""

    def __init__(self, failures: dict[int, int]):
        self.failures = dict(failures)
        self.scopes: list[frozenset[str]] = []

    def critique(self, request: CritiqueRequest) -> Critique:
        self.scopes.append(request.scope)
        step = 0 if request.scope == {"e0"} else 1
        if self.failures.get(step, 0) > 0:
            self.failures[step] -= 1
            return Critique(violations=(BAD,))
        return Critique()


class CountingRefiner:
    def __init__(self):
        self.rounds = []

    def refine(self, request: RefineRequest) -> RefineResult:
        self.rounds.append((request.step, request.round))
        return RefineResult(
            image=request.image.copy(),
            refinement=Refinement(text="Add the cup.", operation="inpaint", region=(0, 0, 0.5, 0.5)),
            sampling_steps=2,
        )


def run(tmp_path, failures, budget=None, single_pass=False, checkpointer=None):
    critic, refiner, drafter = ScriptedCritic(failures), CountingRefiner(), SolidDrafter()
    ctx = RunContext(
        Backends(planner=ScriptedPlanner(), drafter=drafter, critic=critic, refiner=refiner), run_dir=tmp_path
    )
    graph = build_graph(checkpointer=checkpointer)
    config = {"configurable": {"thread_id": "t"}, "recursion_limit": 100}
    state_in = RunState(prompt=SCENE.prompt, budget=budget or Budget(), single_pass=single_pass)
    out = graph.invoke(state_in, config, context=ctx)
    return RunState.model_validate(out), drafter, critic, refiner


def test_clean_run_visits_each_step_once(tmp_path):
    state, drafter, critic, refiner = run(tmp_path, {})
    assert drafter.calls == [0, 1]
    assert refiner.rounds == []
    assert [e.stage for e in state.trajectory] == ["plan", "draft", "critique", "draft", "critique"]
    assert state.critique.passed
    assert state.sampling_steps == 8
    # Step 1 judged only the cup; the last step judged the whole prompt.
    assert critic.scopes == [frozenset({"e0"}), frozenset({"e0", "e1"})]
    assert (tmp_path / "images" / "step01-draft.png").is_file()


def test_refines_until_the_critic_passes(tmp_path):
    state, _, _, refiner = run(tmp_path, {0: 2})
    assert refiner.rounds == [(0, 1), (0, 2)]
    assert state.rounds_total == 2
    assert state.critique.passed
    assert state.sampling_steps == 4 + 2 + 2 + 4


def test_rounds_per_step_budget_moves_on_with_violations(tmp_path):
    state, drafter, _, refiner = run(tmp_path, {0: 10, 1: 10}, Budget(rounds_per_step=2))
    assert refiner.rounds == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert drafter.calls == [0, 1]
    assert not state.critique.passed


def test_total_rounds_budget(tmp_path):
    _, _, _, refiner = run(tmp_path, {0: 10, 1: 10}, Budget(rounds_per_step=3, max_rounds=4))
    assert refiner.rounds == [(0, 1), (0, 2), (0, 3), (1, 1)]


def test_sampling_step_budget(tmp_path):
    # The draft spends 4 steps and each refinement 2: at 8 the loop must stop refining.
    _, _, _, refiner = run(tmp_path, {0: 10, 1: 10}, Budget(max_sampling_steps=8))
    assert refiner.rounds == [(0, 1), (0, 2)]


def test_single_pass_has_one_step_and_no_refinement(tmp_path):
    state, drafter, critic, refiner = run(tmp_path, {0: 5, 1: 5}, single_pass=True)
    assert len(state.plan.steps) == 1
    assert drafter.calls == [0]
    assert refiner.rounds == []
    assert critic.scopes == [frozenset({"e0", "e1"})]
    assert not state.critique.passed


@pytest.mark.parametrize(
    ("passed", "step", "budget_left", "expected"),
    [
        (False, 0, True, "refiner"),
        (False, 0, False, "drafter"),
        (True, 0, True, "drafter"),
        (True, 1, True, "__end__"),
        (False, 1, False, "__end__"),
    ],
)
def test_after_critic(passed, step, budget_left, expected):
    state = RunState(
        prompt="x",
        scene=SCENE,
        plan=PLAN,
        step=step,
        round=0 if budget_left else 3,
        critique=Critique() if passed else Critique(violations=(BAD,)),
    )
    assert after_critic(state) == expected


def test_state_round_trips_through_the_sqlite_checkpointer(tmp_path, caplog):
    conn = sqlite3.connect(tmp_path / "cp.sqlite", check_same_thread=False)
    saver = SqliteSaver(conn, serde=checkpoint_serializer())
    state, *_ = run(tmp_path, {0: 1}, checkpointer=saver)
    conn.close()

    # A fresh connection and saver read back exactly the state the run ended with.
    conn = sqlite3.connect(tmp_path / "cp.sqlite", check_same_thread=False)
    graph = build_graph(checkpointer=SqliteSaver(conn, serde=checkpoint_serializer()))
    snapshot = graph.get_state({"configurable": {"thread_id": "t"}})
    restored = RunState.model_validate(snapshot.values)
    assert restored == state
    assert isinstance(restored.trajectory[2].critique, Critique)
    assert restored.trajectory[2].critique.violations == (BAD,)
    assert snapshot.next == ()
    conn.close()
    # Our own types are allow-listed, so loading them is neither blocked nor warned about.
    assert "unregistered type" not in caplog.text


def test_usage_that_backends_record_lands_in_their_events(tmp_path):
    from strokegraph import usage

    class PayingCritic(ScriptedCritic):
        def critique(self, request):
            usage.record(prompt_tokens=100, completion_tokens=20, cost_usd=0.01)
            usage.record(prompt_tokens=50, completion_tokens=5)
            return super().critique(request)

    ctx = RunContext(
        Backends(planner=ScriptedPlanner(), drafter=SolidDrafter(), critic=PayingCritic({}), refiner=CountingRefiner()),
        run_dir=tmp_path,
    )
    out = build_graph().invoke(RunState(prompt="x"), {"recursion_limit": 50}, context=ctx)
    events = RunState.model_validate(out).trajectory
    critiques = [e for e in events if e.stage == "critique"]
    assert all(e.usage.calls == 2 and e.usage.prompt_tokens == 150 and e.usage.cost_usd == 0.01 for e in critiques)
    assert all(e.usage is None for e in events if e.stage != "critique")
