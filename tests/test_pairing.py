"""Roles that fit: what each backend declares, and runs whose roles cannot work together refused up front."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from strokegraph import registry
from strokegraph.app.cli import EXIT_USAGE, main
from strokegraph.app.runner import generate, resume
from strokegraph.errors import UsageError
from strokegraph.registry import Capabilities

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red cup to the left of a blue dog"
DIFFUSERS = "diffusers:stabilityai/sdxl-turbo"
OWL = "transformers-detect:google/owlv2-base-patch16-ensemble"


@pytest.fixture
def nothing_loads(monkeypatch):
    """Building any backend fails the test: a refusal must come before anything loads."""

    def build(role, backend_id, **settings):
        raise AssertionError(f"{role} {backend_id!r} was built")

    monkeypatch.setattr(registry, "build", build)


def test_each_entry_declares_what_it_can_do():
    pixels = registry.capabilities("critic", "builtin:pixels")
    assert pixels == Capabilities(offline=True, reads=frozenset({"sketch"}), detector=True)
    assert registry.capabilities("drafter", "builtin:sketch").draws == "sketch"
    assert registry.capabilities("refiner", DIFFUSERS) == Capabilities(offline=False, draws="natural")
    assert registry.capabilities("drafter", "openai:gpt-image-1").draws == "natural"
    assert registry.capabilities("critic", OWL).reads == {"sketch", "natural"}
    assert registry.capabilities("critic", OWL).detector
    assert not registry.capabilities("critic", "openai:gpt-4.1-mini").detector
    assert not registry.capabilities("critic", "transformers-vlm:x").detector
    assert registry.capabilities("planner", "builtin:rules").offline
    assert registry.capabilities("planner", "transformers:x").offline is False
    # A backend object declares nothing, and a bad id is refused as everywhere else.
    assert registry.capabilities("critic", "custom:MyCritic") == Capabilities(
        declared=False, offline=None, draws=None, reads=None, detector=None
    )
    with pytest.raises(UsageError, match="did you mean 'builtin:pixels'"):
        registry.capabilities("critic", "builtin:pixel")


def test_every_registered_backend_declares_its_image_kinds():
    for role in registry.ROLES:
        for known in registry.known_ids(role):
            caps = registry.capabilities(role, known.replace("<model>", "m"))
            assert (caps.draws is not None) == (role in ("drafter", "refiner")), known
            assert bool(caps.reads) == (role == "critic"), known


def test_the_pixel_critic_after_a_diffusers_drafter_is_refused_in_one_line_before_anything_loads(
    tmp_path, capsys, nothing_loads
):
    out = tmp_path / "run"
    # Today's code drew for six rounds and found nothing (exit 3); or died in the sketch refiner.
    assert main(["generate", PROMPT, "--drafter", DIFFUSERS, "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("strokegraph: error: the critic 'builtin:pixels' reads only sketch-world icons")
    assert f"the drafter {DIFFUSERS!r} draws natural images" in line
    assert f"--critic {OWL}" in line and f"--refiner {DIFFUSERS}" in line and "--preset sdxl-turbo-owlv2" in line
    assert not out.exists()


def test_a_sketch_refiner_after_a_diffusers_drafter_is_refused(tmp_path, nothing_loads):
    with pytest.raises(UsageError) as info:
        generate(PROMPT, out=tmp_path / "run", drafter=DIFFUSERS, critic=OWL)
    message = str(info.value)
    assert "the refiner 'builtin:sketch' draws sketch-world icons" in message
    assert f"use a refiner that draws them too (--refiner {DIFFUSERS})" in message
    assert "critic" not in message.partition(", but")[0]  # the detector reads natural images: no complaint


def test_an_image_api_drafter_with_the_pixel_critic_names_the_openai_preset(nothing_loads):
    with pytest.raises(UsageError, match=r"--critic .*--refiner openai:gpt-image-1\), or --preset openai$"):
        registry.backend_ids({"drafter": "openai:gpt-image-1"})


def test_a_natural_image_refiner_after_the_sketch_drafter_is_refused(nothing_loads):
    with pytest.raises(UsageError, match=r"the refiner 'diffusers:x' draws natural images, .*--refiner builtin:sketch"):
        registry.backend_ids({"refiner": "diffusers:x"})


def test_roles_that_fit_are_accepted(nothing_loads):
    fits = [
        {},  # the sketch world throughout
        {"drafter": DIFFUSERS, "refiner": DIFFUSERS, "critic": OWL},
        {"drafter": "openai:gpt-image-1", "refiner": "openai:gpt-image-1", "critic": "openai:gpt-4.1-mini"},
        {"critic": OWL},  # a detector reads sketch-world icons too
        {"critic": "transformers-vlm:x"},
    ]
    for chosen in fits:
        registry.backend_ids(chosen)


def test_a_backend_object_declares_nothing_and_is_not_refused(nothing_loads):
    class MyCritic:
        def critique(self, request): ...

    ids = registry.backend_ids({"drafter": DIFFUSERS, "refiner": DIFFUSERS, "critic": MyCritic()})
    assert ids["critic"] == "custom:MyCritic"


def test_resume_with_a_drafter_that_does_not_fit_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    generate(PROMPT, out=out, settings={"drafter": {"fault_scale": 0}})
    code = main(["resume", str(out), "--drafter", "openai:gpt-image-1", "-q"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "the refiner 'builtin:sketch' draws sketch-world icons" in err and "--preset openai" in err
    with pytest.raises(UsageError, match="reads only sketch-world icons"):
        resume(out, drafter=DIFFUSERS, refiner=DIFFUSERS)


def test_bench_refuses_roles_that_do_not_fit_before_drawing(tmp_path, capsys, nothing_loads):
    args = ["bench", "geneval", "--limit", "1", "--drafter", DIFFUSERS, "--refiner", DIFFUSERS]
    assert main([*args, "--out", str(tmp_path / "b"), "-q"]) == EXIT_USAGE
    assert "reads only sketch-world icons" in capsys.readouterr().err


def test_no_module_decides_by_an_id_prefix():
    """Capabilities are asked of the registry, never read off ``builtin:`` or ``custom:`` prefixes."""
    offenders = []
    for folder in ("strokegraph", "graph", "bench", "agents", "tools"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "startswith":
                    text = ast.unparse(node.args[0]) if node.args else ""
                    if "builtin:" in text or "custom:" in text:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


@pytest.mark.usefixtures("nothing_loads")
def test_bench_judges_a_natural_image_drafter_with_a_detector_that_reads_it(tmp_path, capsys):
    # The pixel judge cannot read a diffusion model's images: named, it is refused before anything
    # loads; left to its default, the judge is the detector critic (or the bench says what to name).
    roles = ["--drafter", DIFFUSERS, "--refiner", DIFFUSERS, "--critic", OWL, "--limit", "1", "-q"]
    out = ["--out", str(tmp_path / "b")]
    assert main(["bench", "geneval", *roles, *out, "--judge", "builtin:pixels"]) == EXIT_USAGE
    assert "cannot read the natural images" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="was built"):  # past every check, the judge included
        main(["bench", "geneval", *roles, *out])
