"""Every built-in backend passes strokegraph.testing.conformance, the checks a backend author runs."""

from __future__ import annotations

import pytest

from strokegraph import registry
from strokegraph.errors import RunError, UsageError
from strokegraph.testing import conformance
from strokegraph.testing.openai_server import FakeOpenAI, any_prompt_replies

EULER = {"steps": 2, "scheduler": "EulerDiscreteScheduler"}
SMALL = {"drafter": {"width": 64, "height": 64}, "refiner": {}}  # the refiner draws at its canvas's size


def _cases():
    # The offline defaults, one per role: a new role's default is checked as soon as it exists.
    for role, backend_id in registry.DEFAULT_IDS.items():
        for name in conformance.checks(role):
            yield pytest.param(role, name, backend_id, id=f"{backend_id}-{role}-{name}")


@pytest.mark.parametrize(("role", "name", "backend_id"), list(_cases()))
def test_the_offline_backends_conform(role, name, backend_id):
    conformance.run_check(role, name, registry.build(role, backend_id))


@pytest.fixture(scope="module")
def loopback():
    with FakeOpenAI(fallback=any_prompt_replies()) as fake:
        yield fake


@pytest.mark.parametrize("role", ["planner", "drafter", "critic", "refiner"])
def test_the_openai_backends_conform_against_a_loopback_server(role, loopback, no_ambient_openai_env):
    pytest.importorskip("openai")
    backend = registry.build(role, "openai:model", base_url=loopback.url, api_key="sk-test", max_retries=0)
    conformance.check(role, backend)


@pytest.mark.slow
# diffusers' Euler scheduler builds a numpy array from a tensor the numpy-2 way it warns about.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@pytest.mark.parametrize("role", ["drafter", "refiner"])
def test_the_diffusers_backends_conform(role, sd_dir):
    conformance.check(role, registry.build(role, f"diffusers:{sd_dir}", **EULER, **SMALL[role]))


@pytest.mark.slow
def test_the_detector_critics_conform(owl_dir, dino_dir):
    conformance.check("critic", registry.build("critic", f"transformers-detect:{owl_dir}"))
    conformance.check("critic", registry.build("critic", f"transformers-detect:{dino_dir}"))


@pytest.mark.slow
def test_the_local_chat_backends_keep_the_error_contract(chat_dir, vlm_dir):
    # Random weights cannot answer in the reply schema: their calls must fail as RunErrors, as the
    # protocol allows, and pass every check that does not need a valid answer.
    planner = registry.build("planner", f"transformers:{chat_dir}", max_new_tokens=4)
    conformance.check("planner", planner, require_success=False)
    with pytest.raises(conformance.ConformanceError, match="the call failed: RunError"):
        conformance.check("planner", planner)
    critic = registry.build("critic", f"transformers-vlm:{vlm_dir}", max_new_tokens=4)
    conformance.check("critic", critic, require_success=False)


class Leaky:
    """A drafter that breaks the protocol three ways."""

    def __init__(self, mode):
        self.mode = mode

    def draft(self, request):
        from strokegraph import progress

        if self.mode == "raises":
            raise KeyError("model answered nonsense")
        if self.mode == "swallows":
            try:
                progress.emit({"kind": "progress", "stage": "draft", "step": 1, "total": 2})
            except KeyboardInterrupt:
                raise RunError("cancelled") from None
        return registry.build("drafter", "builtin:sketch").draft(request) if self.mode != "size" else _tiny()


def _tiny():
    from PIL import Image

    from strokegraph.agents.drafter import DraftResult

    return DraftResult(Image.new("RGB", (7, 7)))


@pytest.mark.parametrize(
    ("mode", "check", "why"),
    [
        ("raises", "first-step", "raised KeyError"),
        ("size", "later-step", "keeps the canvas size"),
        ("swallows", "interrupt", "a Ctrl-C during the call became RunError"),
    ],
)
def test_the_checks_catch_a_backend_that_breaks_the_protocol(mode, check, why):
    with pytest.raises(conformance.ConformanceError, match=why):
        conformance.run_check("drafter", check, Leaky(mode))


def test_every_role_registers_its_checks_and_an_unknown_role_is_refused():
    assert all(conformance.checks(role) for role in registry.ROLES)
    with pytest.raises(UsageError, match="unknown role 'painter'"):
        conformance.checks("painter")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="cannot register checks for unknown role 'painter'"):
        conformance.register_checks("painter", "paint", {}, lambda: None)  # type: ignore[arg-type]
    with pytest.raises(conformance.ConformanceError, match="a critic has a method 'critique'; Leaky has none"):
        conformance.run_check("critic", "judges", Leaky("raises"))


class LeakyAsync:
    """A drafter whose sync method conforms and whose async twin breaks the protocol."""

    def __init__(self, mode):
        self.mode = mode
        self.sketch = registry.build("drafter", "builtin:sketch")

    def draft(self, request):
        return self.sketch.draft(request)

    async def adraft(self, request):
        import asyncio

        if self.mode == "raises":
            raise KeyError("model answered nonsense")
        if self.mode == "size":
            return _tiny()
        try:
            await asyncio.Event().wait()  # a model that never answers
        except asyncio.CancelledError:
            if self.mode == "swallows-cancel":
                return self.sketch.draft(request)
            raise RunError("cancelled") from None


class NotAsync(LeakyAsync):
    def adraft(self, request):  # the loop would await what this returns
        return self.sketch.draft(request)


@pytest.mark.parametrize(
    ("backend", "check", "why"),
    [
        (LeakyAsync("raises"), "first-step", r"raised KeyError .*\(awaiting adraft, as agenerate does\)"),
        (LeakyAsync("size"), "later-step", r"keeps the canvas size \(awaiting adraft"),
        (LeakyAsync("swallows-cancel"), "cancel", "returned a result after its task was cancelled"),
        (LeakyAsync("cancel-as-error"), "cancel", "a cancel became RunError"),
        (NotAsync("raises"), "first-step", "adraft must be async def"),
    ],
    ids=["raises", "size", "swallows-cancel", "cancel-as-error", "not-async"],
)
def test_the_checks_hold_an_async_method_to_the_same_protocol(backend, check, why):
    # The sync method alone passes: only the async twin, which agenerate awaits, is at fault.
    if check != "cancel" and not isinstance(backend, NotAsync):
        conformance.run_check("drafter", check, registry.build("drafter", "builtin:sketch"))
    with pytest.raises(conformance.ConformanceError, match=why):
        conformance.run_check("drafter", check, backend)


def test_every_role_has_a_cancel_check_that_a_sync_only_backend_passes():
    for role in registry.ROLES:
        assert conformance.checks(role)[-1] == "cancel"
        conformance.run_check(role, "cancel", registry.build(role, registry.DEFAULT_IDS[role]))
