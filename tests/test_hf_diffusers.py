"""The diffusers drafter and refiner on a tiny random Stable Diffusion pipeline, saved and reloaded.

The pipeline (``tiny_sd.py``) is built from configs, written with ``save_pretrained`` and loaded
back by the backends through ``registry.build("...", "diffusers:<dir>")`` with the hub offline, so
every test runs the real loading path: ``AutoPipelineForText2Image.from_pretrained`` and
``AutoPipelineFor{Image2Image,Inpainting}.from_pipe``. It draws noise; the tests check what the
backends promise (sizes, step counts, seeds, masks, shared weights, errors), not what it draws.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from tiny_sd import SIZE, save_tiny_sd

from strokegraph import registry
from strokegraph.agents.drafter import Drafter, DraftRequest
from strokegraph.agents.refiner import Refiner, RefineRequest, region_mask
from strokegraph.app.runner import generate
from strokegraph.errors import RunError, UsageError
from strokegraph.graph import Budget
from strokegraph.schema import Critique, Entity, Plan, PlanStep, Relation, SceneGraph, Violation
from strokegraph.tools import hf_diffusers

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

pytestmark = pytest.mark.filterwarnings(
    # diffusers' Euler scheduler builds a numpy array from a tensor the numpy-2 way it warns about.
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

SCENE = SceneGraph(
    prompt="a red cup left of a dog",
    entities=(Entity(id="e0", noun="dog"), Entity(id="e1", noun="cup", colour="red")),
    relations=(Relation(subject="e1", predicate="left of", object="e0"),),
)
PLAN = Plan(
    steps=(
        PlanStep(instruction="Draw a dog.", description="A dog.", entity_ids=("e0",)),
        PlanStep(
            instruction="Add a red cup left of the dog.",
            description="A dog and a red cup. The red cup is to the left of the dog.",
            entity_ids=("e1",),
        ),
    )
)
BOX = (0.5, 0.25, 0.875, 0.75)
COLOUR = Violation(
    kind="attribute", entity_ids=("e1",), expected="red", observed="blue", box=BOX, message="the cup is blue"
)
MISPLACED = Violation(
    kind="relation",
    entity_ids=("e1", "e0"),
    relation=SCENE.relations[0],
    expected="cup left of dog",
    observed="cup right of dog",
    box=BOX,
    message="the cup is right of the dog",
)
# Euler runs exactly ``steps`` steps (``steps * strength`` from an image); PNDM, the tiny
# pipeline's own scheduler, runs one more from scratch.
EULER = {"steps": 4, "scheduler": "EulerDiscreteScheduler"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        import huggingface_hub.constants

        # The constant is read when huggingface_hub is imported, maybe before this module was.
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield save_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))
    hf_diffusers.clear_cache()


@pytest.fixture(scope="module")
def drafter(tiny_dir):
    return registry.build("drafter", f"diffusers:{tiny_dir}", strength=0.5, **EULER)


@pytest.fixture(scope="module")
def refiner(tiny_dir):
    return registry.build("refiner", f"diffusers:{tiny_dir}", strength=0.5, regen_strength=0.75, **EULER)


def _draft(drafter, step=0, image=None, seed=0):
    return drafter.draft(DraftRequest(scene=SCENE, plan=PLAN, step=step, image=image, seed=seed))


def _refine(refiner, image, *violations, seed=0, rnd=1):
    critique = Critique(violations=violations)
    request = RefineRequest(scene=SCENE, plan=PLAN, step=1, round=rnd, image=image, critique=critique, seed=seed)
    return refiner.refine(request)


def _canvas(size=(SIZE, SIZE)):
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------
# Drafter
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_first_step_is_text_to_image_and_later_steps_image_to_image(drafter):
    first = _draft(drafter)
    assert isinstance(first.image, Image.Image) and first.image.mode == "RGB"
    assert first.image.size == (SIZE, SIZE)  # the model's own size: sample_size 32 x vae scale 2
    assert first.sampling_steps == 4

    second = _draft(drafter, step=1, image=first.image)
    assert second.image.size == (SIZE, SIZE)
    assert second.sampling_steps == 2  # steps 4 x strength 0.5
    assert second.image.tobytes() != first.image.tobytes()


def test_width_and_height_set_the_first_draft_size(tiny_dir):
    small = registry.build("drafter", f"diffusers:{tiny_dir}", steps=2, width=48, height=32)
    assert _draft(small).image.size == (48, 32)


@pytest.mark.slow
def test_same_seed_gives_identical_pixels(drafter):
    a, b = _draft(drafter, seed=7), _draft(drafter, seed=7)
    assert a.image.tobytes() == b.image.tobytes()
    assert _draft(drafter, seed=8).image.tobytes() != a.image.tobytes()
    later_a = _draft(drafter, step=1, image=a.image, seed=7)
    assert later_a.image.tobytes() == _draft(drafter, step=1, image=a.image, seed=7).image.tobytes()


def test_drafter_and_refiner_of_one_model_share_weights(tiny_dir, drafter, refiner):
    assert isinstance(drafter, Drafter) and isinstance(refiner, Refiner)
    assert drafter.model is refiner.model
    unet = drafter.model.base.unet
    assert drafter.text2image.unet is unet and drafter.image2image.unet is unet
    assert refiner.inpaint.unet is unet and refiner.image2image.vae is drafter.text2image.vae
    # Another dtype is another set of weights, and deriving pipelines from it casts nothing back.
    bf16 = registry.build("drafter", f"diffusers:{tiny_dir}", steps=2, dtype="bfloat16")
    assert bf16.model is not drafter.model
    assert bf16.model.pipeline("inpaint").unet.dtype == torch.bfloat16
    assert unet.dtype == torch.float32


def test_clear_cache_makes_the_next_build_load_again(tiny_dir, drafter):
    hf_diffusers.clear_cache()
    again = registry.build("drafter", f"diffusers:{tiny_dir}", steps=2)
    assert again.model is not drafter.model
    assert registry.build("refiner", f"diffusers:{tiny_dir}", steps=2).model is again.model


# ---------------------------------------------------------------------------------------------
# Refiner
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(SIZE, SIZE), (60, 44)])  # 60 x 44 is no multiple of 8: resized both ways
def test_inpainting_keeps_every_pixel_outside_the_mask(refiner, size):
    original = _canvas(size)
    result = _refine(refiner, original, COLOUR)
    assert result.refinement.operation == "inpaint"
    assert result.refinement.region == BOX
    assert result.refinement.violations == (COLOUR,)
    assert result.refinement.text == "Redraw the cup in red."
    assert result.sampling_steps == 2  # steps 4 x strength 0.5
    assert result.image.size == size

    keep = np.asarray(region_mask(size, BOX, grow=0.05, feather=8)) == 0
    before, after = np.asarray(original), np.asarray(result.image)
    assert keep.any() and (after[keep] == before[keep]).all()
    assert (after[~keep] != before[~keep]).any()


@pytest.mark.parametrize("violations", [(MISPLACED,), (COLOUR, MISPLACED), (COLOUR.model_copy(update={"box": None}),)])
def test_a_wrong_relation_or_no_box_regenerates_the_whole_image(refiner, violations):
    original = _canvas()
    result = _refine(refiner, original, *violations)
    assert result.refinement.operation == "regenerate"
    assert result.refinement.region is None
    assert result.sampling_steps == 3  # steps 4 x regen_strength 0.75
    keep = np.asarray(region_mask(original.size, BOX, grow=0.05, feather=8)) == 0
    assert (np.asarray(result.image)[keep] != np.asarray(original)[keep]).any()


def test_refinement_is_reproducible_per_seed_and_round(refiner):
    original = _canvas()
    a = _refine(refiner, original, COLOUR, seed=3)
    assert a.image.tobytes() == _refine(refiner, original, COLOUR, seed=3).image.tobytes()
    assert a.image.tobytes() != _refine(refiner, original, COLOUR, seed=3, rnd=2).image.tobytes()


# ---------------------------------------------------------------------------------------------
# Settings, devices and errors
# ---------------------------------------------------------------------------------------------


def test_a_scheduler_by_name_replaces_the_models_own(drafter, tiny_dir):
    assert type(drafter.model.base.scheduler).__name__ == "PNDMScheduler"
    assert {type(p.scheduler).__name__ for p in (drafter.text2image, drafter.image2image)} == {"EulerDiscreteScheduler"}
    # One backend's scheduler is its own: a refiner built with none keeps the model's.
    plain = registry.build("refiner", f"diffusers:{tiny_dir}", steps=2)
    assert type(plain.inpaint.scheduler).__name__ == "PNDMScheduler"


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"scheduler": "EulerDiscreteSchedular"}, "did you mean 'EulerDiscreteScheduler'"),
        ({"scheduler": "nonsense"}, "such as DPMSolverMultistepScheduler"),
        ({"scheduler": "FlowMatchEulerDiscreteScheduler"}, "does not fit"),
        ({"steps": 0}, "steps must be"),
        ({"strength": 0.0}, "strength must be in"),
        ({"width": 50}, "width must be a positive multiple of 8"),
        ({"dtype": "float64"}, "unknown dtype 'float64'"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"stepz": 2}, "unknown setting"),
    ],
)
def test_bad_settings_are_usage_errors_naming_the_setting(tiny_dir, settings, needle):
    with pytest.raises(UsageError, match=needle):
        registry.build("drafter", f"diffusers:{tiny_dir}", **settings)


def test_a_model_that_cannot_be_loaded_is_a_one_line_usage_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(UsageError, match="no such directory") as info:
        registry.build("drafter", f"diffusers:{missing}")
    assert repr(str(missing)) in str(info.value)

    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="model_index.json") as info:
        registry.build("refiner", f"diffusers:{tmp_path / 'empty'}")
    assert "\n" not in str(info.value) and "cannot load diffusers model" in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="CPU-only machine")
def test_devices_and_dtypes_on_a_cpu_only_machine(drafter):
    assert hf_diffusers.resolve_device("auto") == "cpu"
    assert hf_diffusers.resolve_dtype("auto", "cpu") is torch.float32
    assert hf_diffusers.resolve_dtype("auto", "cuda") is torch.float16
    assert hf_diffusers.resolve_dtype("bfloat16", "cuda") is torch.bfloat16
    assert drafter.model.device == "cpu" and drafter.model.base.unet.dtype == torch.float32
    with pytest.raises(UsageError, match="not available"):
        hf_diffusers.resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="CPU-only machine")
def test_cpu_offload_without_an_accelerator_is_ignored_with_a_warning(tiny_dir):
    with pytest.warns(UserWarning, match="cpu_offload ignored"):
        offloaded = registry.build("drafter", f"diffusers:{tiny_dir}", steps=2, cpu_offload=True)
    assert offloaded.model.cpu_offload is False
    assert _draft(offloaded).image.size == (SIZE, SIZE)


def _out_of_memory(drafter) -> RunError:
    """The error a first draft raises when the accelerator runs out of memory in the UNet."""

    def oom(module, args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    hook = drafter.model.base.unet.register_forward_pre_hook(oom)
    try:
        with pytest.raises(RunError) as info:
            _draft(drafter, step=0)
    finally:
        hook.remove()
    return info.value


def test_running_out_of_memory_is_a_run_error_naming_what_to_lower(drafter):
    error = _out_of_memory(drafter)
    message = str(error)
    assert "out of memory" in message and "width/height" in message
    assert "cpu_offload" in message and "float16" in message
    assert error.node == "drafter" and error.step == 0


def test_other_failures_are_not_reported_as_memory_errors(drafter):
    def broken(module, args):
        raise RuntimeError("shapes do not match")

    hook = drafter.model.base.unet.register_forward_pre_hook(broken)
    try:
        with pytest.raises(RuntimeError, match="shapes do not match") as info:
            _draft(drafter)
    finally:
        hook.remove()
    assert not isinstance(info.value, RunError)


# ---------------------------------------------------------------------------------------------
# The whole loop
# ---------------------------------------------------------------------------------------------


def test_the_loop_runs_on_the_tiny_model_and_counts_its_sampling_steps(tiny_dir, tmp_path):
    events = []
    result = generate(
        "a red cup to the left of a blue dog",
        out=tmp_path / "run",
        drafter=f"diffusers:{tiny_dir}",
        # The pixel critic, given as an object so that the pairing check (it reads only sketch-world
        # icons) leaves it be: it finds nothing in noise, so the loop spends every refine round.
        critic=registry.build("critic", "builtin:pixels"),
        refiner=f"diffusers:{tiny_dir}",
        settings={"drafter": {"steps": 2}, "refiner": {"steps": 2}},
        budget=Budget(rounds_per_step=1, max_rounds=2),
        on_progress=events.append,
    )
    # Noise fails the pixel critic, so the loop spends its refine rounds and stops on purpose.
    assert not result.passed and result.rounds == 2
    stages = [e.stage for e in result.trajectory]
    assert stages.count("draft") == 2 and stages.count("refine") == 2
    sampled = [e.sampling_steps for e in result.trajectory if e.stage in ("draft", "refine")]
    assert all(n > 0 for n in sampled)
    assert result.sampling_steps == sum(sampled)

    # One progress event per denoising step reached the caller, counting up to each run's total.
    progress = [e for e in events if e.get("kind") == "progress"]
    assert len(progress) == result.sampling_steps
    assert {e["stage"] for e in progress} == {"draft", "refine"}
    assert all(1 <= e["step"] <= e["total"] for e in progress)

    for name in ("final.png", "trajectory.json", "report.html"):
        assert (result.run_dir / name).is_file()
    with Image.open(result.final_image) as final:
        assert final.size == (SIZE, SIZE)
    saved = json.loads((result.run_dir / "trajectory.json").read_text())
    assert saved["sampling_steps"] == result.sampling_steps


def test_running_out_of_memory_names_clear_cache_only_when_other_models_are_loaded(tiny_dir):
    def message(drafter) -> str:
        return str(_out_of_memory(drafter))

    registry.clear_cache()
    alone = registry.build("drafter", f"diffusers:{tiny_dir}", steps=2)
    assert "clear_cache" not in message(alone)
    kept = registry.build("drafter", f"diffusers:{tiny_dir}", steps=2, dtype="bfloat16")  # a second model
    assert "free the 1 other model(s) this process keeps loaded: strokegraph.registry.clear_cache()" in message(alone)
    del kept
