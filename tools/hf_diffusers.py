"""``diffusers:<hub id or local dir>``: the drafter and refiner on a diffusers pipeline.

**Drafting.** The first step is drawn with text-to-image from the step's ``<des>`` text (the whole
scene as it should look after the step); later steps redraw the current canvas with image-to-image
from their ``<des>`` text at ``strength``.

**Refining.** The critique becomes ``<refine>`` text (:func:`~strokegraph.agents.refiner.refine_text`),
appended to the step's ``<des>`` text. When the violations have boxes and none of them is a wrong
relation, the union of the boxes is inpainted (mask white = repaint) and composited back so that every
pixel outside the mask stays byte-identical; otherwise (nothing to point at, or something must move)
the whole image is regenerated with image-to-image at ``regen_strength``.

**Weights.** :func:`load` loads a model once per (model, device, dtype, offload) and keeps it
across runs: a drafter and a refiner of the same id share one text-to-image pipeline, and so do the
backends of later runs, or of runs at once (they take turns to sample). The image-to-image and
inpainting pipelines are made per backend from it with ``AutoPipelineFor*.from_pipe``, which shares
its modules and keeps their dtype. The process keeps the few models used last, and any a backend
still uses; :func:`clear_cache` (or :func:`strokegraph.registry.clear_cache`) forgets them, which
also makes a directory saved anew load again.

**Progress.** Inside a graph, each denoising step is reported on LangGraph's custom stream as
``{"kind": "progress", "stage": "draft" | "refine", "step": i, "total": n}`` (``i`` counts from 1);
outside a graph nothing is emitted. The steps that ran are returned as ``sampling_steps`` (an
image-to-image run does about ``steps * strength`` of them).

torch and diffusers are imported only when a backend is built.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from strokegraph import progress, usage
from strokegraph.agents.drafter import DraftRequest, DraftResult
from strokegraph.agents.refiner import (
    RefineRequest,
    RefineResult,
    composite,
    refine_text,
    region_mask,
    violation_region,
)
from strokegraph.errors import RunError, UsageError
from strokegraph.schema import Refinement
from strokegraph.tools import _cache, _hub
from strokegraph.tools._torch_device import DType, resolve_device
from strokegraph.tools._torch_device import resolve_dtype as _resolve_dtype

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "DType",
    "DiffusersDrafter",
    "DiffusersModel",
    "DiffusersRefiner",
    "clear_cache",
    "drafter",
    "load",
    "refiner",
    "resolve_device",
    "resolve_dtype",
]

Task = Literal["text2image", "image2image", "inpaint"]
_COMMON_SCHEDULERS = (
    "DPMSolverMultistepScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DDIMScheduler",
    "UniPCMultistepScheduler",
)


# ---------------------------------------------------------------------------------------------
# Device, dtype, scheduler: checked before anything loads
# ---------------------------------------------------------------------------------------------


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``"auto"`` is float16 on CUDA and float32 elsewhere; any of :data:`DType` may be asked for."""
    return _resolve_dtype(dtype, device, cuda_auto="float16")


def _scheduler_class(name: str | None) -> type | None:
    """The diffusers scheduler class called ``name``; an unknown name is a :class:`UsageError`."""
    if name is None:
        return None
    import diffusers

    cls = getattr(diffusers, name, None) if name.endswith("Scheduler") else None
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        known = [n for n in dir(diffusers) if n.endswith("Scheduler")]
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise UsageError(
            f"unknown scheduler {name!r}; {hint}use a diffusers scheduler class name such as "
            f"{', '.join(_COMMON_SCHEDULERS)}"
        )
    return cls


# Bounds of the settings, whether they come from a config file, Python or a resumed run's record.
_MAX_SIDE = 4096
_MAX_STEPS = 1000


def _check_settings(steps: int, guidance: float, **strengths: float) -> None:
    if not isinstance(steps, int) or not 1 <= steps <= _MAX_STEPS:
        raise UsageError(f"steps must be a whole number from 1 to {_MAX_STEPS}, got {steps!r}")
    if guidance < 0:
        raise UsageError(f"guidance must be >= 0, got {guidance!r}")
    for name, value in strengths.items():
        if not 0 < value <= 1:
            raise UsageError(f"{name} must be in (0, 1], got {value!r}")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


# ---------------------------------------------------------------------------------------------
# One model's weights, shared
# ---------------------------------------------------------------------------------------------


class DiffusersModel:
    """One diffusers model loaded once on one device, and the task pipelines that share its modules.

    Build it with :func:`load`, which shares it between backends. :meth:`sample` runs one pipeline
    at a time, whichever backend or thread calls it.
    """

    def __init__(self, model: str, *, device: str, dtype: torch.dtype, cpu_offload: bool) -> None:
        from diffusers import AutoPipelineForText2Image

        self.model = model
        self.device = device
        self.dtype = dtype
        self.cpu_offload = cpu_offload
        # A hub id loads from the cache alone, at once, when the Hub cannot be reached (tools/_hub.py).
        offline = None if Path(model).is_dir() else _hub.unreachable(model)
        try:
            base = AutoPipelineForText2Image.from_pretrained(model, dtype=dtype, local_files_only=offline is not None)
        except Exception as exc:  # noqa: BLE001 - diffusers fails in many ways (OSError, ValueError, ...)
            if isinstance(exc, MemoryError) or _is_oom(exc):
                raise  # the machine, not the id, is the problem
            why = _first_line(exc).rstrip(".") + _hub.offline_note(offline) if offline else _first_line(exc)
            raise UsageError(f"cannot load diffusers model {model!r}: {why}") from exc
        base.set_progress_bar_config(disable=True)
        if not cpu_offload:
            with self._oom_guard("loading"):
                base.to(device)
        self.base = base
        """The text-to-image pipeline that owns the weights."""
        self._hooked: Any = None
        # Runs at once share these modules: the offload hooks move them between devices per pipeline,
        # the tokenizer is not safe to call from two threads, and two samplings at once would only
        # split the accelerator and double the peak memory.
        self._sampling = threading.Lock()

    @property
    def key(self) -> tuple[str, str, str, str, bool]:
        """The key this model is shared under (:func:`load`)."""
        return _key(self.model, self.device, self.dtype, self.cpu_offload)

    @property
    def size_multiple(self) -> int:
        """Image sides must be a multiple of this: 8 for UNet models, 16 for transformer ones (Flux...)."""
        vae_scale = getattr(self.base, "vae_scale_factor", 8)
        if getattr(self.base, "transformer", None) is not None:
            return max(16, 2 * vae_scale)  # the latents are patchified 2 x 2
        return max(8, vae_scale)

    def default_size(self) -> tuple[int, int]:
        """``(width, height)`` the model was trained at, rounded to :attr:`size_multiple`."""
        unet = getattr(self.base, "unet", None)
        sample = unet.config.sample_size if unet is not None else getattr(self.base, "default_sample_size", None)
        if sample is None:
            raise UsageError(f"cannot tell the image size of diffusers model {self.model!r}; set width and height")
        h, w = (sample, sample) if isinstance(sample, int) else sample
        scale = getattr(self.base, "vae_scale_factor", 8)
        return self.round_size(w * scale), self.round_size(h * scale)

    def round_size(self, side: float) -> int:
        m = self.size_multiple
        return max(m, round(side / m) * m)

    def pipeline(self, task: Task, scheduler: type[Any] | None = None):
        """A new pipeline for ``task`` on the shared modules, with a scheduler of its own.

        ``scheduler`` is a scheduler class (default: the model's own); it must be one the model's
        scheduler lists as compatible.
        """
        # type[Any]: a diffusers scheduler class is SchedulerMixin and ConfigMixin (from_config) mixed,
        # and no one class names both.
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

        own = type(self.base.scheduler)
        if scheduler is not None and scheduler is not own and scheduler not in self.base.scheduler.compatibles:
            valid = sorted(c.__name__ for c in self.base.scheduler.compatibles)
            raise UsageError(
                f"scheduler {scheduler.__name__!r} does not fit diffusers model {self.model!r}; "
                f"compatible: {', '.join(valid) or own.__name__}"
            )
        auto = {
            "text2image": AutoPipelineForText2Image,
            "image2image": AutoPipelineForImage2Image,
            "inpaint": AutoPipelineForInpainting,
        }[task]
        # Each pipeline gets its own scheduler object: schedulers keep per-call state, and a
        # drafter's scheduler setting must not change the refiner's.
        sched = (scheduler or own).from_config(self.base.scheduler.config)
        try:
            # AutoPipeline's from_pipe keeps the modules' dtype; a concrete class's would cast to fp32.
            pipe = auto.from_pipe(self.base, scheduler=sched)
        except ValueError as exc:
            raise UsageError(f"diffusers model {self.model!r} has no {task} pipeline: {_first_line(exc)}") from exc
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def sample(
        self,
        pipe,
        *,
        stage: Literal["draft", "refine"],
        step: int,
        prompt: str,
        generator: torch.Generator,
        size: tuple[int, int],
        image: Image.Image | None = None,
        mask: Image.Image | None = None,
        **kwargs: Any,
    ) -> tuple[Image.Image, int]:
        """Run ``pipe`` once; returns the image (at ``size``) and how many denoising steps ran.

        ``image`` and ``mask`` are resized to the nearest size the model takes, and the result back.
        """
        from PIL import Image

        work = (self.round_size(size[0]), self.round_size(size[1]))
        call: dict[str, Any] = {"prompt": prompt, "generator": generator, "output_type": "pil", **kwargs}
        if image is not None:
            call["image"] = image.convert("RGB").resize(work, Image.Resampling.LANCZOS)
        if mask is not None:
            call["mask_image"] = mask.convert("L").resize(work, Image.Resampling.LANCZOS)
        if image is None or _accepts(pipe, "height"):
            # Pipelines that take a size default to the model's, not the input image's.
            call["width"], call["height"] = work

        ran = 0

        def on_step_end(p, i, t, callback_kwargs):
            nonlocal ran
            ran += 1
            progress.emit({"kind": "progress", "stage": stage, "step": ran, "total": getattr(p, "num_timesteps", None)})
            return callback_kwargs

        with self._sampling:
            if self.cpu_offload and self._hooked is not pipe:
                # Offload hooks belong to one pipeline object; move them to the one about to run.
                pipe.enable_model_cpu_offload(device=self.device)
                self._hooked = pipe
            with self._oom_guard(f"sampling {work[0]}x{work[1]}", node=_NODES[stage], step=step):
                out = pipe(**call, callback_on_step_end=on_step_end).images[0]
        usage.record(images=1)
        if out.size != tuple(size):
            out = out.resize(size, Image.Resampling.LANCZOS)
        return out.convert("RGB"), ran

    @contextmanager
    def _oom_guard(self, doing: str, *, node: str | None = None, step: int | None = None) -> Iterator[None]:
        """Turn running out of accelerator memory into a :class:`RunError` naming what to change."""
        try:
            yield
        except Exception as exc:
            if not _is_oom(exc):
                raise
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            # Peak memory grows with the image size and the weights, not with the number of steps.
            advice = ["lower width/height" if node != "refiner" else "lower the drafter's width/height"]
            if not self.cpu_offload:
                advice.append("set cpu_offload = true")
            if self.dtype == torch.float32:
                advice.append("set dtype = 'float16'")
            # Models of earlier builds stay loaded for the next run (tools/_cache.py): on a shared
            # accelerator they may be what took the memory.
            others = [key for key in _cache.MODELS.keys() if key != self.key]
            if others:
                advice.append(
                    f"free the {len(others)} other model(s) this process keeps loaded: "
                    "strokegraph.registry.clear_cache()"
                )
            raise RunError(
                f"{self.device} ran out of memory {doing} with diffusers model {self.model!r}; " + ", or ".join(advice),
                node=node,
                step=step,
            ) from exc


_NODES = {"draft": "drafter", "refine": "refiner"}


def load(model: str, *, device: str = "auto", dtype: str = "auto", cpu_offload: bool = False) -> DiffusersModel:
    """The :class:`DiffusersModel` for ``model``, loaded now or the one loaded before with these settings.

    ``device``: ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:<n>"`` or ``"mps"``.
    ``dtype``: ``"auto"`` (float16 on CUDA, float32 elsewhere) or a :data:`DType`.
    ``cpu_offload`` keeps each module on the CPU until it runs (needs accelerate); it needs an
    accelerator and is ignored, with a warning, on the CPU.
    """
    if model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().is_dir():
        raise UsageError(f"cannot load diffusers model {model!r}: no such directory")
    resolved = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved)
    if cpu_offload and resolved == "cpu":
        warnings.warn("cpu_offload ignored: it needs an accelerator and the device is 'cpu'", stacklevel=3)
        cpu_offload = False
    if cpu_offload and importlib.util.find_spec("accelerate") is None:
        raise UsageError("cpu_offload needs accelerate, which is not installed; run: pip install accelerate")
    path = Path(model).expanduser()
    name = str(path.resolve()) if path.is_dir() else model
    return _cache.MODELS.get(
        _key(name, resolved, torch_dtype, cpu_offload),
        lambda: DiffusersModel(name, device=resolved, dtype=torch_dtype, cpu_offload=cpu_offload),
    )


def _key(model: str, device: str, dtype: torch.dtype, cpu_offload: bool) -> tuple[str, str, str, str, bool]:
    """What a loaded model is shared under: everything that makes two loads differ."""
    return ("diffusers", model, device, str(dtype), cpu_offload)


def clear_cache() -> None:
    """Forget every shared model, diffusers and transformers alike (backends that hold one keep it)."""
    _cache.MODELS.clear()


def _generator(*keys: object) -> torch.Generator:
    """A CPU generator seeded by a SHA-256 of ``keys`` (Python's ``hash()`` changes per process)."""
    import torch

    digest = hashlib.sha256("\x1f".join(map(str, keys)).encode()).digest()
    return torch.Generator("cpu").manual_seed(int.from_bytes(digest[:8], "big") >> 1)


def _accepts(pipe, argument: str) -> bool:
    return argument in inspect.signature(pipe.__call__).parameters


def _check_negative_prompt(model: str, negative_prompt: str | None, *pipes) -> None:
    if negative_prompt is not None and not all(_accepts(p, "negative_prompt") for p in pipes):
        raise UsageError(f"diffusers model {model!r} takes no negative_prompt; leave it unset")


def _check_side(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or not 8 <= value <= _MAX_SIDE or value % 8):
        raise UsageError(f"{name} must be a positive multiple of 8 up to {_MAX_SIDE}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# The backends
# ---------------------------------------------------------------------------------------------


class _Sampler:
    """What the drafter and the refiner share: the model, and how they ask it for a sample."""

    model: DiffusersModel
    steps: int
    guidance: float
    negative_prompt: str | None

    def _pipelines(self, model: str, scheduler_cls: type | None, *kinds: Task) -> list[Any]:
        """The model's pipelines of ``kinds`` with this backend's scheduler; each must take the
        negative prompt when one is set."""
        pipes = [self.model.pipeline(kind, scheduler_cls) for kind in kinds]
        _check_negative_prompt(model, self.negative_prompt, *pipes)
        return pipes

    def _sampling(self, stage: str, step: int, prompt: str, generator: Any) -> dict[str, Any]:
        """The keywords every :meth:`DiffusersModel.sample` call of this backend takes."""
        extra = {"negative_prompt": self.negative_prompt} if self.negative_prompt else {}
        return {
            "stage": stage,
            "step": step,
            "prompt": prompt,
            "generator": generator,
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance,
            **extra,
        }


class DiffusersDrafter(_Sampler):
    """Draws plan steps with a diffusers model: text-to-image first, then image-to-image.

    ``width``/``height`` default to the model's own size; ``scheduler`` is a diffusers scheduler
    class name (default: the model's). See :func:`load` for ``device``, ``dtype`` and ``cpu_offload``.

    ``model`` is the shared :class:`DiffusersModel`; ``text2image`` and ``image2image`` are the
    pipelines the drafter runs, on the model's modules, with the drafter's own scheduler.
    """

    def __init__(
        self,
        model: str,
        *,
        steps: int = 30,
        guidance: float = 7.0,
        strength: float = 0.75,
        width: int | None = None,
        height: int | None = None,
        scheduler: str | None = None,
        negative_prompt: str | None = None,
        device: str = "auto",
        dtype: DType = "auto",
        cpu_offload: bool = False,
    ) -> None:
        _check_settings(steps, guidance, strength=strength)
        _check_side("width", width)
        _check_side("height", height)
        scheduler_cls = _scheduler_class(scheduler)
        self.model = load(model, device=device, dtype=dtype, cpu_offload=cpu_offload)
        m = self.model.size_multiple
        for name, value in (("width", width), ("height", height)):
            if value is not None and value % m:
                raise UsageError(f"{name} must be a multiple of {m} for diffusers model {model!r}, got {value}")
        default_w, default_h = self.model.default_size() if width is None or height is None else (0, 0)
        self.size = (width or default_w, height or default_h)
        self.steps, self.guidance, self.strength = steps, guidance, strength
        self.negative_prompt = negative_prompt
        self.text2image, self.image2image = self._pipelines(model, scheduler_cls, "text2image", "image2image")

    def draft(self, request: DraftRequest) -> DraftResult:
        prompt = request.plan.steps[request.step].description
        common = self._sampling("draft", request.step, prompt, _generator("draft", request.seed, request.step))
        if request.image is None:
            image, ran = self.model.sample(self.text2image, size=self.size, **common)
        else:
            image, ran = self.model.sample(
                self.image2image, size=request.image.size, image=request.image, strength=self.strength, **common
            )
        return DraftResult(image=image, sampling_steps=ran)


class DiffusersRefiner(_Sampler):
    """Corrects an image with a diffusers model: inpaints the violations' region, or regenerates.

    ``strength`` applies to inpainting, ``regen_strength`` to regenerating the whole image;
    ``grow`` and ``feather`` shape the mask (:func:`~strokegraph.agents.refiner.region_mask`).

    ``model`` is the shared :class:`DiffusersModel`; ``image2image`` and ``inpaint`` are the
    pipelines the refiner runs, on the model's modules, with the refiner's own scheduler.
    """

    def __init__(
        self,
        model: str,
        *,
        steps: int = 30,
        guidance: float = 7.0,
        strength: float = 0.9,
        regen_strength: float = 0.6,
        grow: float = 0.05,
        feather: int = 8,
        scheduler: str | None = None,
        negative_prompt: str | None = None,
        device: str = "auto",
        dtype: DType = "auto",
        cpu_offload: bool = False,
    ) -> None:
        _check_settings(steps, guidance, strength=strength, regen_strength=regen_strength)
        if grow < 0:
            raise UsageError(f"grow must be >= 0, got {grow!r}")
        if not isinstance(feather, int) or feather < 0:
            raise UsageError(f"feather must be a whole number >= 0, got {feather!r}")
        scheduler_cls = _scheduler_class(scheduler)
        self.model = load(model, device=device, dtype=dtype, cpu_offload=cpu_offload)
        self.steps, self.guidance = steps, guidance
        self.strength, self.regen_strength = strength, regen_strength
        self.grow, self.feather = grow, feather
        self.negative_prompt = negative_prompt
        self.image2image, self.inpaint = self._pipelines(model, scheduler_cls, "image2image", "inpaint")

    def refine(self, request: RefineRequest) -> RefineResult:
        violations = request.critique.violations
        text = refine_text(violations, request.scene)
        description = request.plan.steps[request.step].description
        # A wrong relation means something must move: redraw all of it, not one box.
        region = None if any(v.kind == "relation" for v in violations) else violation_region(violations)
        # The correction first: CLIP-based models keep only 77 tokens, and the scene description
        # is the part that can best lose its tail.
        prompt = f"{text} {description}".strip()
        generator = _generator("refine", request.seed, request.step, request.round)
        common = {
            **self._sampling("refine", request.step, prompt, generator),
            "size": request.image.size,
            "image": request.image,
        }
        if region is not None:
            mask = region_mask(request.image.size, region, grow=self.grow, feather=self.feather)
            edited, ran = self.model.sample(self.inpaint, mask=mask, strength=self.strength, **common)
            image = composite(request.image, edited, mask)
        else:
            image, ran = self.model.sample(self.image2image, strength=self.regen_strength, **common)
        refinement = Refinement(
            text=text,
            operation="inpaint" if region is not None else "regenerate",
            region=region,
            violations=violations,
        )
        return RefineResult(image=image, refinement=refinement, sampling_steps=ran)


# The registry's factories: ``f(model, *, settings...)``, settings keyword-only.
drafter = DiffusersDrafter
refiner = DiffusersRefiner
