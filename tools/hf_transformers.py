"""transformers backends: a local chat LLM plans, a local VLM or zero-shot detector critiques.

Ids (see :mod:`strokegraph.registry`): ``transformers:<dir or hub id>`` (planner, a chat LLM),
``transformers-vlm:<...>`` (critic, an image-text-to-text model such as Qwen2.5-VL) and
``transformers-detect:<...>`` (critic, OWLv2, OWL-ViT or Grounding DINO queried with the scene's
nouns; their detections are judged by GenEval's rules in :func:`strokegraph.agents.critic.judge`).

Models load when the backend is built, so a bad id fails before the run starts, with a one-line
:class:`~strokegraph.errors.UsageError`. ``torch`` and ``transformers`` are imported only then.
A model is loaded once per (kind, directory or hub id, device, dtype) and kept across runs: later
builds, and runs at once, share its weights and take turns to call it. The process keeps the few
models used last, and any a backend still uses; :func:`strokegraph.registry.clear_cache` forgets them.
Generation is greedy unless ``temperature`` is above 0, so a run is repeatable.

Detections get a colour from the pixels of their box (:func:`region_colour`), named among GenEval's
ten by :func:`colour_name`: a model that knows nouns but not colours still lets the critic judge
"a red cup".
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from strokegraph import usage
from strokegraph._text import article
from strokegraph.agents.critic import ChatCritic, DetectorCritic
from strokegraph.agents.planner import ChatPlanner
from strokegraph.errors import UsageError
from strokegraph.schema import COLOURS, Colour, Detection
from strokegraph.tools import _cache, _hub
from strokegraph.tools._torch_device import DType, resolve_device
from strokegraph.tools._torch_device import resolve_dtype as _resolve_dtype

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from pydantic import BaseModel

__all__ = [
    "DType",
    "TransformersChat",
    "TransformersVLMChat",
    "ZeroShotDetector",
    "colour_name",
    "detect_critic",
    "noun_of_phrase",
    "planner",
    "region_colour",
    "resolve_device",
    "resolve_dtype",
    "vlm_critic",
]

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Device, dtype and loading
# ---------------------------------------------------------------------------------------------


def resolve_dtype(dtype: DType, device: str) -> torch.dtype:
    """``"auto"``: bfloat16 on CUDA where supported, else float16 there; float32 on CPU and MPS."""
    return _resolve_dtype(dtype, device, cuda_auto="bfloat16")


# A hub id: "name" or "owner/name" of letters, digits, '-', '_' and '.'.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def _source(model_id: str) -> str:
    """The directory (resolved) or hub id ``model_id`` names; a :class:`UsageError` if it names neither."""
    path = os.path.expanduser(model_id)
    if os.path.isdir(path):
        return os.path.realpath(path)
    if not _HUB_ID.match(model_id):
        raise UsageError(f"model {model_id!r}: no such directory, and not a hub id such as 'owner/name'")
    return model_id


def _load(what: str, model_id: str, source: str, loader: Callable[..., T]) -> T:
    """``loader(source, **options)``, with any failure turned into a one-line :class:`UsageError` naming ``model_id``.

    A hub id is loaded from the cache alone (``local_files_only=True`` in ``options``) when the Hub
    cannot be reached now (:mod:`strokegraph.tools._hub`), and the error then says why.
    """
    offline = None if os.path.isdir(source) else _hub.unreachable(source)
    try:
        return loader(source, **({"local_files_only": True} if offline else {}))
    except Exception as exc:  # noqa: BLE001 - whatever stops a model loading is reported in one line
        why = _one_line(exc).rstrip(".") + _hub.offline_note(offline) if offline else _one_line(exc)
        raise UsageError(f"cannot load {what} {model_id!r}: {why}") from exc


class _Weights:
    """A loaded model and its tokenizer or processor, shared by every backend built on them.

    ``lock`` is held for each call: a fast tokenizer can raise "Already borrowed" when two threads
    use it at once (transformers#47085), and calls sharing an accelerator gain little from overlapping.
    """

    def __init__(self, model: Any, preprocessor: Any) -> None:
        self.model = model
        self.preprocessor = preprocessor
        self.lock = threading.Lock()


def _shared(kind: str, model_id: str, device: str, dtype: torch.dtype, load: Callable[[str], _Weights]) -> _Weights:
    """The weights ``load(source)`` gives for ``model_id``, loaded now or the ones loaded before alike."""
    source = _source(model_id)
    return _cache.MODELS.get(("transformers", kind, source, device, str(dtype)), lambda: load(source))


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _check_generation(max_new_tokens: int, temperature: float) -> None:
    if max_new_tokens < 1:
        raise UsageError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0:
        raise UsageError(f"temperature must be 0 (greedy) or more, got {temperature}")


def _generate(model, inputs, tokenizer, *, max_new_tokens: int, temperature: float) -> str:
    """Generate from ``inputs`` (one sequence), record the tokens, and decode only the new ones."""
    import torch

    if temperature > 0:
        sampling: dict[str, Any] = {"do_sample": True, "temperature": temperature}
    else:
        # None clears sampling settings a checkpoint's generation config may carry, which greedy
        # decoding would ignore with a warning on every call.
        sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompt_tokens = int(inputs["input_ids"].shape[1])
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=pad, **sampling)
    new = out[0, prompt_tokens:]
    usage.record(prompt_tokens=prompt_tokens, completion_tokens=int(new.shape[0]))
    return tokenizer.decode(new, skip_special_tokens=True).strip()


# ---------------------------------------------------------------------------------------------
# Chat models
# ---------------------------------------------------------------------------------------------


class _LocalChat:
    """What the local chat models share: generation settings, checked, and a model with a chat
    template, loaded once per process (see :func:`_shared`)."""

    model: Any
    _weights: _Weights

    def __init__(self, model_id: str, device: str, dtype: DType, max_new_tokens: int, temperature: float) -> None:
        _check_generation(max_new_tokens, temperature)
        self.model_id = model_id
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    def _load_weights(
        self,
        kind: str,
        what: str,
        auto_model: Any,
        preprocessor: str,
        load_preprocessor: Callable[..., Any],
        instruct: str,
    ) -> _Weights:
        """The weights of ``auto_model`` (a transformers ``AutoModelFor...``), named ``what`` in errors,
        and the ``preprocessor`` (tokenizer or processor) ``load_preprocessor`` gives, which must have
        a chat template: without one the error asks for a chat (instruct) ``instruct``."""
        model_id = self.model_id

        def load(source: str) -> _Weights:
            pre = _load(preprocessor, model_id, source, load_preprocessor)
            if not getattr(pre, "chat_template", None):
                raise UsageError(f"{preprocessor} {model_id!r} has no chat template; use a chat (instruct) {instruct}")
            model = _load(
                what,
                model_id,
                source,
                lambda p, **kw: auto_model.from_pretrained(p, dtype=self.dtype, **kw).to(self.device).eval(),
            )
            return _Weights(model, pre)

        return _shared(kind, model_id, self.device, self.dtype, load)

    def _complete(self, chat: list[dict], tokenizer: Any, **move: Any) -> str:
        """Generate the answer to ``chat`` (messages in the preprocessor's chat template format); the
        inputs go to the device with ``.to(device, **move)``."""
        with self._weights.lock:
            inputs = self._weights.preprocessor.apply_chat_template(
                chat, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
            ).to(self.device, **move)
            return _generate(
                self.model, inputs, tokenizer, max_new_tokens=self.max_new_tokens, temperature=self.temperature
            )


class TransformersChat(_LocalChat):
    """A :class:`~strokegraph.agents.chat.ChatModel` over a local chat LLM (text only).

    Loads ``AutoTokenizer`` and ``AutoModelForCausalLM`` from ``model_id`` (a directory or a hub id)
    and fails with a :class:`UsageError` if they do not load or the tokenizer has no chat template.
    """

    def __init__(
        self,
        model_id: str,
        *,
        device: str = "auto",
        dtype: DType = "auto",
        max_new_tokens: int = 1024,
        temperature: float = 0.0,
    ) -> None:
        super().__init__(model_id, device, dtype, max_new_tokens, temperature)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._weights = self._load_weights(
            "causal-lm", "chat model", AutoModelForCausalLM, "tokenizer", AutoTokenizer.from_pretrained, "model"
        )
        self.tokenizer = self._weights.preprocessor
        self.model = self._weights.model

    def complete(self, messages: list[dict], *, schema: type[BaseModel] | None = None) -> str:
        # Text-only chat templates (Llama, Qwen) expect each message's content as one string.
        chat = [{"role": m["role"], "content": self._text(m["content"])} for m in messages]
        return self._complete(chat, self.tokenizer)

    def _text(self, content: str | list[dict]) -> str:
        if isinstance(content, str):
            return content
        kinds = {p["type"] for p in content} - {"text"}
        if kinds:
            raise UsageError(
                f"chat model {self.model_id!r} reads text only, but a message holds {', '.join(sorted(kinds))} "
                "parts; use a transformers-vlm:<model> backend for images"
            )
        return "\n".join(p["text"] for p in content)


class TransformersVLMChat(_LocalChat):
    """A :class:`~strokegraph.agents.chat.ChatModel` over a local image-text-to-text model (a VLM).

    Loads ``AutoProcessor`` and ``AutoModelForImageTextToText``; images travel inside the message
    content as ``{"type": "image", "image": PIL}``. ``max_pixels`` shrinks larger images (keeping
    their aspect) before the processor sees them, which caps the image tokens of models that tile
    by resolution (Qwen2.5-VL: one token per 28 x 28 pixels).
    """

    def __init__(
        self,
        model_id: str,
        *,
        device: str = "auto",
        dtype: DType = "auto",
        max_new_tokens: int = 1024,
        temperature: float = 0.0,
        max_pixels: int | None = None,
    ) -> None:
        if max_pixels is not None and max_pixels < 28 * 28:
            raise UsageError(f"max_pixels must be at least {28 * 28} (or None for no cap), got {max_pixels}")
        super().__init__(model_id, device, dtype, max_new_tokens, temperature)
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.max_pixels = max_pixels
        self._weights = self._load_weights(
            "image-text-to-text",
            "vision-language model",
            AutoModelForImageTextToText,
            "processor",
            AutoProcessor.from_pretrained,
            "VLM",
        )
        self.processor = self._weights.preprocessor
        self.model = self._weights.model

    def complete(self, messages: list[dict], *, schema: type[BaseModel] | None = None) -> str:
        chat = [{"role": m["role"], "content": self._content(m["content"])} for m in messages]
        # dtype casts the pixel values only, not the token ids.
        return self._complete(chat, self.processor.tokenizer, dtype=self.dtype)

    def _content(self, content: str | list[dict]) -> list[dict]:
        if isinstance(content, str):
            return [{"type": "text", "text": content}]
        return [{"type": "image", "image": self._fit(p["image"])} if p["type"] == "image" else p for p in content]

    def _fit(self, image: Image.Image) -> Image.Image:
        from PIL import Image

        image = image.convert("RGB")
        if self.max_pixels is None or image.width * image.height <= self.max_pixels:
            return image
        scale = (self.max_pixels / (image.width * image.height)) ** 0.5
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        return image.resize(size, resample=Image.Resampling.BICUBIC)


# ---------------------------------------------------------------------------------------------
# Colour names from pixels
# ---------------------------------------------------------------------------------------------

# Hue bands (degrees, upper bounds) of the saturated colours; red wraps around 0.
_HUES: tuple[tuple[float, Colour], ...] = (
    (15, "red"),
    (42, "orange"),
    (70, "yellow"),
    (170, "green"),
    (250, "blue"),
    (290, "purple"),
    (340, "pink"),
    (360, "red"),
)


def _pixel_colours(rgb: np.ndarray) -> np.ndarray:
    """Index into ``COLOURS`` of every pixel of an ``(N, 3)`` RGB array, by rules in HSV space.

    Dark is black, unsaturated is white or black by lightness (GenEval has no grey), dark or
    muted orange-to-yellow hues are brown (tan too), light, weakly saturated reds are pink, and
    dark magenta is purple.
    """
    x = rgb.reshape(-1, 3).astype(np.float64) / 255.0
    v = x.max(axis=1)
    c = v - x.min(axis=1)
    s = np.where(v > 0, c / np.maximum(v, 1e-9), 0.0)
    r, g, b = x.T
    safe = np.maximum(c, 1e-9)
    h = (
        np.select(
            [v == r, v == g],
            [((g - b) / safe) % 6, (b - r) / safe + 2],
            (r - g) / safe + 4,
        )
        * 60.0
    )
    index = {name: i for i, name in enumerate(COLOURS)}
    bounds = np.array([upper for upper, _ in _HUES])
    names = np.array([index[name] for _, name in _HUES])
    out = names[np.searchsorted(bounds, h, side="right").clip(max=len(bounds) - 1)]
    dark_brown = (h >= 5) & (h < 70) & (v < 0.67) & ~((h < 12) & (s > 0.75))  # not a deep red
    brown = dark_brown | (h >= 15) & (h < 50) & (s < 0.5) & (v < 0.9)
    pink = ((h >= 340) | (h < 15)) & (s < 0.5) & (v > 0.7)
    purple = (h >= 290) & (h < 335) & (v < 0.6)
    out = np.where(brown, index["brown"], out)
    out = np.where(pink, index["pink"], out)
    out = np.where(purple, index["purple"], out)
    grey = (s < 0.22) | (c < 0.12)
    out = np.where(grey, np.where(v >= 0.5, index["white"], index["black"]), out)
    out = np.where(v < 0.2, index["black"], out)
    return out


def colour_name(pixels: np.ndarray) -> Colour:
    """The GenEval colour name most of ``pixels`` (any ``(..., 3)`` uint8 RGB array) have."""
    votes = np.bincount(_pixel_colours(np.asarray(pixels)), minlength=len(COLOURS))
    return COLOURS[int(votes.argmax())]  # type: ignore[return-value]


def region_colour(rgb: np.ndarray, box: tuple[int, int, int, int]) -> Colour | None:
    """The colour of the object in pixel box ``(x0, y0, x1, y1)`` of an ``(H, W, 3)`` image.

    Reads the box's inner part (a tenth off each side, where the object is most likely), and leaves
    out pixels close to the background, taken as the median colour of a ring around the box, unless
    that leaves under a tenth of them (the object then has the background's colour). None for an
    empty box.
    """
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    dx, dy = (x1 - x0) // 10, (y1 - y0) // 10
    inner = rgb[y0 + dy : y1 - dy, x0 + dx : x1 - dx].reshape(-1, 3).astype(np.int32)
    ring = max(2, (x1 - x0 + y1 - y0) // 20)
    outer = np.zeros((h, w), dtype=bool)
    outer[max(y0 - ring, 0) : y1 + ring, max(x0 - ring, 0) : x1 + ring] = True
    outer[y0:y1, x0:x1] = False
    if outer.any():
        background = np.median(rgb[outer].reshape(-1, 3), axis=0)
        keep = ((inner - background) ** 2).sum(axis=1) > 40**2
        if keep.sum() >= inner.shape[0] / 10:
            inner = inner[keep]
    return colour_name(inner)


# ---------------------------------------------------------------------------------------------
# Zero-shot detection
# ---------------------------------------------------------------------------------------------

#: Model types :class:`ZeroShotDetector` reads.
_DETECTORS = ("owlv2", "owlvit", "grounding-dino")


class ZeroShotDetector:
    """A :class:`~strokegraph.agents.critic.Detector` over OWLv2, OWL-ViT or Grounding DINO, queried by noun.

    OWL gets one query per noun, "a photo of a {noun}", and every predicted box keeps its best
    query. Grounding DINO gets one text, "cat. wine glass.", and names each box by the words of the
    text it aligns with (those scoring above ``text_threshold``); :func:`noun_of_phrase` maps that
    phrase back to a noun, and a box whose phrase matches none is dropped.

    Then, for every model: boxes scoring at most ``threshold`` are dropped, and per noun a box
    overlapping a better one by more than ``nms_iou`` (intersection over union) is dropped too, since
    OWL predicts one box per image patch and neighbouring patches see the same object. Boxes are
    normalised to the image and clipped (OWLv2 pads the image to a square, so boxes can reach into
    the padding); each detection's colour is read from its pixels by :func:`region_colour`.
    """

    def __init__(
        self,
        model_id: str,
        *,
        threshold: float = 0.1,
        text_threshold: float = 0.25,
        nms_iou: float = 0.3,
        device: str = "auto",
        dtype: DType = "auto",
    ) -> None:
        if threshold < 0:
            raise UsageError(f"threshold must be 0 or more, got {threshold}")
        if text_threshold < 0:
            raise UsageError(f"text_threshold must be 0 or more, got {text_threshold}")
        if not 0.0 < nms_iou <= 1.0:
            raise UsageError(f"nms_iou must be in (0, 1], got {nms_iou}")
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.model_id = model_id
        self.threshold = threshold
        self.text_threshold = text_threshold
        self.nms_iou = nms_iou
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)

        def load(source: str) -> _Weights:
            processor = _load("processor", model_id, source, AutoProcessor.from_pretrained)
            model = _load(
                "detector",
                model_id,
                source,
                lambda p, **kw: (
                    AutoModelForZeroShotObjectDetection.from_pretrained(p, dtype=self.dtype, **kw)
                    .to(self.device)
                    .eval()
                ),
            )
            kind = model.config.model_type
            if kind not in _DETECTORS:
                raise UsageError(
                    f"detector {model_id!r} is a {kind!r} model; supported: {', '.join(map(repr, _DETECTORS))}"
                )
            return _Weights(model, processor)

        self._weights = _shared("zero-shot-object-detection", model_id, self.device, self.dtype, load)
        self.processor = self._weights.preprocessor
        self.model = self._weights.model
        self.model_type = self.model.config.model_type

    def detect(self, image: Image.Image, nouns: tuple[str, ...]) -> list[Detection]:
        nouns = tuple(dict.fromkeys(nouns))
        if not nouns:
            return []
        image = image.convert("RGB")
        w, h = image.size
        with self._weights.lock:
            if self.model_type == "grounding-dino":
                scores, labels, boxes = self._grounding_dino(image, nouns)
            else:
                scores, labels, boxes = self._owl(image, nouns)
        scores, boxes = scores.float(), boxes.float()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        rgb = np.asarray(image)
        detections = []
        for i in _nms(boxes, scores, labels, self.nms_iou):
            x0, y0, x1, y1 = boxes[i].tolist()
            if x1 - x0 < 1 or y1 - y0 < 1:  # wholly in the padding, or degenerate
                continue
            colour = region_colour(rgb, (round(x0), round(y0), round(x1), round(y1)))
            detections.append(
                Detection(
                    noun=nouns[int(labels[i])],
                    box=(x0 / w, y0 / h, x1 / w, y1 / h),
                    score=min(max(float(scores[i]), 0.0), 1.0),
                    colour=colour,
                )
            )
        return detections

    def _owl(self, image: Image.Image, nouns: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores, noun indices and pixel boxes (on the CPU, unclipped) of OWL's detections above the threshold."""
        import torch

        w, h = image.size
        queries = [f"a photo of {article(noun)} {noun}" for noun in nouns]
        # Truncated: OWL's text tower takes 16 tokens, and a long noun must not stop the run.
        inputs = self.processor(text=[queries], images=image, truncation=True, return_tensors="pt")
        inputs = inputs.to(self.device, dtype=self.dtype)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        # Boxes come relative to the model's input: for OWLv2 that is the image padded at the
        # bottom and right to a square of side max(w, h).
        side = max(w, h)
        target = (side, side) if self.model_type == "owlv2" else (h, w)
        (result,) = self.processor.post_process_grounded_object_detection(
            outputs, threshold=self.threshold, target_sizes=[target]
        )
        return result["scores"].cpu(), result["labels"].cpu(), result["boxes"].cpu()

    def _grounding_dino(
        self, image: Image.Image, nouns: tuple[str, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`_owl`, for Grounding DINO's detections whose phrase names a noun."""
        import torch

        w, h = image.size
        # Grounding DINO's text format: lower-case phrases, each ending with a full stop.
        text = " ".join(f"{noun.lower()}." for noun in nouns)
        inputs = self.processor(text=text, images=image, truncation=True, return_tensors="pt")
        inputs = inputs.to(self.device, dtype=self.dtype)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        (result,) = self.processor.post_process_grounded_object_detection(
            outputs,
            input_ids=inputs["input_ids"],
            threshold=self.threshold,
            text_threshold=self.text_threshold,
            target_sizes=[(h, w)],
        )
        index = {noun: i for i, noun in enumerate(nouns)}
        named = [noun_of_phrase(phrase, nouns) for phrase in result["text_labels"]]
        keep = torch.tensor([noun is not None for noun in named], dtype=torch.bool)
        labels = torch.tensor([index[noun] for noun in named if noun is not None], dtype=torch.long)
        return result["scores"].cpu()[keep], labels, result["boxes"].cpu()[keep]


# BERT's special tokens ("[SEP]") that Grounding DINO's decoded phrases can hold.
_SPECIAL_TOKEN = re.compile(r"\[[A-Z]+\]")
_WORD = re.compile(r"[a-z0-9]+")


def noun_of_phrase(phrase: str, nouns: tuple[str, ...]) -> str | None:
    """The noun among ``nouns`` that a detector's phrase label names, or None if it names none.

    A phrase may hold part of a noun ("teddy" for "teddy bear") or run several together ("wine
    glass" where "glass" was asked for, "cat. dog" when a box aligns with both). The noun sharing
    the most words with the phrase wins; a tie goes to the noun more fully covered ("glass" over
    "wine glass" for the phrase "glass"), then to the noun asked for first.
    """
    words = set(_WORD.findall(_SPECIAL_TOKEN.sub(" ", phrase).lower()))
    best, best_key = None, (0, 0.0)
    for noun in nouns:
        noun_words = _WORD.findall(noun.lower())
        shared = sum(word in words for word in noun_words)
        key = (shared, shared / max(len(noun_words), 1))
        if key > best_key:
            best, best_key = noun, key
    return best


def _nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float) -> list[int]:
    """Indices kept by per-label greedy non-maximum suppression, best score first."""
    import torch

    order = torch.argsort(scores, descending=True, stable=True).tolist()
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    kept: list[int] = []
    for i in order:
        for j in kept:
            if labels[i] != labels[j]:
                continue
            lt = torch.maximum(boxes[i, :2], boxes[j, :2])
            rb = torch.minimum(boxes[i, 2:], boxes[j, 2:])
            inter = (rb - lt).clamp(min=0).prod()
            if inter / (area[i] + area[j] - inter).clamp(min=1e-9) > iou:
                break
        else:
            kept.append(i)
    return kept


# ---------------------------------------------------------------------------------------------
# Factories (looked up by the registry)
# ---------------------------------------------------------------------------------------------


def planner(
    model: str, *, device: str = "auto", dtype: DType = "auto", max_new_tokens: int = 1024, preparse: bool = False
) -> ChatPlanner:
    """``transformers:<model>``: the planner on a local chat LLM."""
    chat = TransformersChat(model, device=device, dtype=dtype, max_new_tokens=max_new_tokens)
    return ChatPlanner(chat, preparse=preparse)


def vlm_critic(
    model: str,
    *,
    device: str = "auto",
    dtype: DType = "auto",
    max_new_tokens: int = 1024,
    max_pixels: int | None = None,
) -> ChatCritic:
    """``transformers-vlm:<model>``: the critic on a local vision-language model."""
    chat = TransformersVLMChat(model, device=device, dtype=dtype, max_new_tokens=max_new_tokens, max_pixels=max_pixels)
    return ChatCritic(chat)


def detect_critic(
    model: str,
    *,
    device: str = "auto",
    dtype: DType = "auto",
    threshold: float = 0.1,
    text_threshold: float = 0.25,
    nms_iou: float = 0.3,
) -> DetectorCritic:
    """``transformers-detect:<model>``: GenEval's rules over an OWLv2, OWL-ViT or Grounding DINO detector.

    ``text_threshold`` is read by Grounding DINO only: how well a word of the query must align with
    a box to be part of its phrase label.
    """
    detector = ZeroShotDetector(
        model, threshold=threshold, text_threshold=text_threshold, nms_iou=nms_iou, device=device, dtype=dtype
    )
    return DetectorCritic(detector)
