"""transformers backends on tiny random models, loaded offline through the registry.

Random weights generate garbage, so these tests check the plumbing: the chat template reaches the
model, generation runs and is recorded, an unparseable reply is re-asked once and then stops the
run, detections come back normalised, coloured and judged by GenEval's rules, and Grounding
DINO's phrase labels map back to the nouns asked for. Colour naming and that mapping are pure and
tested directly.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageColor, ImageDraw

pytest.importorskip("torch")
pytest.importorskip("transformers")


from strokegraph import registry, usage  # noqa: E402
from strokegraph.agents.critic import ChatCritic, CritiqueRequest, DetectorCritic, judge  # noqa: E402
from strokegraph.agents.planner import ChatPlanner  # noqa: E402
from strokegraph.app.runner import generate  # noqa: E402
from strokegraph.errors import RunError, UsageError  # noqa: E402
from strokegraph.graph import Budget  # noqa: E402
from strokegraph.schema import COLOURS, Detection, Entity, SceneGraph  # noqa: E402
from strokegraph.tools.hf_transformers import (  # noqa: E402
    TransformersChat,
    ZeroShotDetector,
    colour_name,
    noun_of_phrase,
    region_colour,
    resolve_device,
    resolve_dtype,
)
from strokegraph.tools.sketch.codebook import BACKGROUND, PALETTE  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No hub access: the env var for anything that reads it now, the constant for what read it at import."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def spy(model, method: str, monkeypatch) -> list[dict]:
    """Record the inputs of every call of ``model.<method>`` (``generate``, ``forward``), which still runs."""
    calls: list[dict] = []
    real = getattr(model, method)

    def recorded(**inputs):
        calls.append(inputs)
        return real(**inputs)

    monkeypatch.setattr(model, method, recorded)
    return calls


def user(*parts) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


def text(t: str) -> dict:
    return {"type": "text", "text": t}


def canvas(size=(96, 64), colour=BACKGROUND) -> Image.Image:
    return Image.new("RGB", size, colour)


CAT_SCENE = SceneGraph(prompt="a red cat", entities=(Entity(id="e0", noun="cat", colour="red"),))

# ---------------------------------------------------------------------------------------------
# Colour names from pixels
# ---------------------------------------------------------------------------------------------

SHADES = {
    "red": ["red", "crimson", "darkred", "firebrick", "tomato"],
    "orange": ["orange", "darkorange", "coral", "#e67e22", "chocolate"],
    "yellow": ["yellow", "gold", "khaki", "#f1c40f"],
    "green": ["green", "lime", "forestgreen", "olivedrab", "seagreen"],
    "blue": ["blue", "navy", "royalblue", "dodgerblue", "skyblue"],
    "purple": ["purple", "indigo", "darkviolet", "blueviolet", "mediumpurple"],
    "pink": ["pink", "hotpink", "deeppink", "lightpink", "magenta", "plum"],
    "brown": ["saddlebrown", "sienna", "#654321", "tan", "#8c564b"],
    "black": ["black", "#202020", "dimgray", "#333333"],
    "white": ["white", "whitesmoke", "lightgray", "silver", "beige"],
}


@pytest.mark.parametrize("name", COLOURS)
def test_colour_name_names_every_geneval_colour_under_noise(name):
    rng = np.random.default_rng(COLOURS.index(name))
    for shade in SHADES[name]:
        rgb = np.array(ImageColor.getrgb(shade), dtype=np.float64)
        patch = np.clip(rgb + rng.normal(0, 8, (24, 24, 3)), 0, 255).astype(np.uint8)
        assert colour_name(patch) == name, shade


def test_colour_name_agrees_with_the_sketch_palette():
    for name, rgb in PALETTE.items():
        assert colour_name(np.array([rgb], dtype=np.uint8)) == name


def test_colour_name_takes_the_majority():
    patch = np.zeros((10, 10, 3), dtype=np.uint8)
    patch[:, :7] = PALETTE["green"]
    patch[:, 7:] = PALETTE["yellow"]
    assert colour_name(patch) == "green"


def test_region_colour_ignores_the_background_around_the_object():
    image = canvas((100, 100))
    ImageDraw.Draw(image).ellipse((20, 30, 60, 70), fill=PALETTE["blue"])  # corners of its box are grey
    rgb = np.asarray(image)
    assert region_colour(rgb, (20, 30, 61, 71)) == "blue"
    # A loose box, mostly background: the object still wins.
    ImageDraw.Draw(image).rectangle((0, 0, 99, 99), fill=(240, 240, 240))
    ImageDraw.Draw(image).rectangle((45, 45, 55, 55), fill=PALETTE["red"])
    assert region_colour(np.asarray(image), (30, 30, 70, 70)) == "red"


def test_region_colour_of_an_object_the_colour_of_its_surroundings():
    rgb = np.asarray(canvas((50, 50), PALETTE["orange"]))
    assert region_colour(rgb, (10, 10, 40, 40)) == "orange"  # nothing differs from the ring: keep all
    assert region_colour(rgb, (0, 0, 50, 50)) == "orange"  # no ring at all


def test_region_colour_of_an_empty_box_is_none():
    rgb = np.asarray(canvas((20, 20)))
    assert region_colour(rgb, (30, 30, 40, 40)) is None
    assert region_colour(rgb, (5, 5, 5, 9)) is None


# ---------------------------------------------------------------------------------------------
# Settings and loading errors
# ---------------------------------------------------------------------------------------------


def test_auto_dtype_follows_the_device():
    import torch

    if not torch.cuda.is_available() and resolve_device("auto") == "cpu":
        assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_dtype("auto", "cuda") in (torch.bfloat16, torch.float16)


def test_bad_device_and_dtype_are_usage_errors(chat_dir):
    import torch

    with pytest.raises(UsageError, match="dtype 'fp8'"):
        registry.build("planner", f"transformers:{chat_dir}", dtype="fp8")
    with pytest.raises(UsageError, match="device 'tpu'"):
        registry.build("planner", f"transformers:{chat_dir}", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="not available"):
            registry.build("planner", f"transformers:{chat_dir}", device="cuda")


@pytest.mark.parametrize(
    ("role", "provider"),
    [("planner", "transformers"), ("critic", "transformers-vlm"), ("critic", "transformers-detect")],
)
def test_a_missing_model_directory_is_a_one_line_usage_error(tmp_path, role, provider):
    missing = tmp_path / "no-such-model"
    with pytest.raises(UsageError) as info:
        registry.build(role, f"{provider}:{missing}")
    message = str(info.value)
    assert "\n" not in message and str(missing) in message and "no such directory" in message


def test_a_hub_id_that_is_not_cached_fails_offline_in_one_line():
    with pytest.raises(UsageError) as info:
        registry.build("planner", "transformers:strokegraph-tests/no-such-model")
    message = str(info.value)
    assert "\n" not in message and "cannot load" in message and "'strokegraph-tests/no-such-model'" in message


def test_a_model_of_the_wrong_kind_is_a_usage_error(chat_dir, vlm_dir):
    with pytest.raises(UsageError, match="cannot load detector") as info:
        registry.build("critic", f"transformers-detect:{chat_dir}")
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="cannot load chat model"):
        registry.build("planner", f"transformers:{vlm_dir}")


def test_unknown_settings_are_rejected_by_name():
    with pytest.raises(UsageError, match="'temperature'"):
        registry.check("critic", "transformers-detect:x", {"temperature": 0.5})
    with pytest.raises(UsageError, match="max_new_tokens must be at least 1"):
        registry.build("planner", "transformers:x", max_new_tokens=0)
    with pytest.raises(UsageError, match="text_threshold must be 0 or more"):
        registry.build("critic", "transformers-detect:x", text_threshold=-0.1)


# ---------------------------------------------------------------------------------------------
# Chat LLM (planner)
# ---------------------------------------------------------------------------------------------


def test_planner_applies_the_chat_template_records_usage_and_reasks_once(chat_dir, monkeypatch):
    planner = registry.build("planner", f"transformers:{chat_dir}", max_new_tokens=6)
    assert isinstance(planner, ChatPlanner) and isinstance(planner.model, TransformersChat)
    assert not planner.preparse and planner.model.max_new_tokens == 6
    chat = planner.model
    calls = spy(chat.model, "generate", monkeypatch)

    with usage.collect() as collected, pytest.raises(RunError) as info:
        planner.plan("a red cat")
    assert info.value.node == "planner" and "PlannerReply" in str(info.value)
    assert len(calls) == 2

    first = chat.tokenizer.decode(calls[0]["input_ids"][0])
    assert first.startswith("<s> user :") and first.endswith("<s> assistant :")
    assert "red cat" in first  # the planner prompt, tokenised by words the tiny vocabulary knows
    second = chat.tokenizer.decode(calls[1]["input_ids"][0])
    assert second.startswith(first[: -len("<s> assistant :")]) and second.count("<s> assistant :") == 2

    total = collected.total()
    assert total.calls == 2
    assert total.prompt_tokens == sum(c["input_ids"].shape[1] for c in calls)
    assert 2 <= total.completion_tokens <= 12


def test_chat_is_greedy_and_repeatable(chat_dir, tmp_path):
    from transformers import GenerationConfig

    # A checkpoint that asks to sample by default is still decoded greedily.
    shutil.copytree(chat_dir, tmp_path / "sampling")
    GenerationConfig(do_sample=True, temperature=0.9, top_k=5).save_pretrained(tmp_path / "sampling")
    chat = TransformersChat(str(tmp_path / "sampling"), max_new_tokens=8)
    messages = user(text('answer { "scene" : null }'))
    reply = chat.complete(messages)
    assert isinstance(reply, str) and reply
    assert chat.complete(messages) == reply


def test_text_chat_rejects_images(chat_dir):
    chat = TransformersChat(str(chat_dir), max_new_tokens=2)
    with pytest.raises(UsageError, match="text only.*transformers-vlm"):
        chat.complete(user({"type": "image", "image": canvas()}, text("what is this?")))


# ---------------------------------------------------------------------------------------------
# VLM (critic)
# ---------------------------------------------------------------------------------------------


def test_vlm_sees_the_image_and_answers_text(vlm_dir, monkeypatch):
    critic = registry.build("critic", f"transformers-vlm:{vlm_dir}", max_new_tokens=4)
    assert isinstance(critic, ChatCritic)
    vlm = critic.model
    calls = spy(vlm.model, "generate", monkeypatch)
    with usage.collect() as collected:
        reply = vlm.complete(user({"type": "image", "image": canvas((80, 40))}, text("a cat ?")))
    assert isinstance(reply, str)
    (inputs,) = calls
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 32, 32)
    image_token = vlm.model.config.image_token_index
    assert int((inputs["input_ids"] == image_token).sum()) == 16  # 4 x 4 patches, CLS dropped
    assert collected.total().prompt_tokens == inputs["input_ids"].shape[1]


def test_vlm_critic_reasks_once_then_stops(vlm_dir, monkeypatch):
    critic = registry.build("critic", f"transformers-vlm:{vlm_dir}", max_new_tokens=3)
    calls = spy(critic.model.model, "generate", monkeypatch)
    request = CritiqueRequest(scene=CAT_SCENE, scope=frozenset({"e0"}), image=canvas())
    with pytest.raises(RunError) as info:
        critic.critique(request)
    assert info.value.node == "critic" and len(calls) == 2


def test_vlm_max_pixels_shrinks_large_images(vlm_dir, monkeypatch):
    critic = registry.build("critic", f"transformers-vlm:{vlm_dir}", max_new_tokens=1, max_pixels=1600)
    processor = critic.model.processor
    seen = []
    real = processor.apply_chat_template

    def spy(chat, **kwargs):
        seen.extend(p["image"].size for m in chat for p in m["content"] if p["type"] == "image")
        return real(chat, **kwargs)

    monkeypatch.setattr(processor, "apply_chat_template", spy)
    critic.model.complete(user({"type": "image", "image": canvas((400, 100))}, text("?")))
    critic.model.complete(user({"type": "image", "image": canvas((20, 10))}, text("?")))
    (w, h), small = seen
    assert w * h <= 1600 and abs(w / h - 4) < 0.2
    assert small == (20, 10)


# ---------------------------------------------------------------------------------------------
# Zero-shot detector (critic)
# ---------------------------------------------------------------------------------------------


def check_detections(detections, nouns) -> None:
    for d in detections:
        assert isinstance(d, Detection) and d.noun in nouns and d.colour in COLOURS
        x0, y0, x1, y1 = d.box
        assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
        assert 0.0 <= d.score <= 1.0


def test_detector_returns_normalised_coloured_detections(owl_dir):
    critic = registry.build("critic", f"transformers-detect:{owl_dir}", threshold=0.0)
    assert isinstance(critic, DetectorCritic) and isinstance(critic.detector, ZeroShotDetector)
    nouns = ("cat", "dog")
    # Wider than tall: OWLv2 pads to a square, and boxes reaching into the padding are clipped.
    image = canvas((96, 48), PALETTE["blue"])
    detections = critic.detector.detect(image, nouns)
    assert detections
    check_detections(detections, nouns)
    assert {d.colour for d in detections} == {"blue"}  # read from the pixels, which are all blue
    assert critic.detector.detect(image, ()) == []


def test_detector_suppresses_overlapping_boxes_per_noun(owl_dir):
    image = canvas((64, 64))
    everything = ZeroShotDetector(str(owl_dir), threshold=0.0, nms_iou=1.0).detect(image, ("cat",))
    assert len(everything) == 16  # one box per patch of the 4 x 4 grid
    kept = ZeroShotDetector(str(owl_dir), threshold=0.0, nms_iou=0.3).detect(image, ("cat",))
    assert 0 < len(kept) < len(everything)
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            assert iou(a.box, b.box) <= 0.3


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("model_dir", ["owl_dir", "dino_dir"])
def test_detector_critique_is_judged_by_the_geneval_rules(model_dir, request):
    model = request.getfixturevalue(model_dir)
    critique = CritiqueRequest(scene=CAT_SCENE, scope=frozenset({"e0"}), image=canvas())
    found = registry.build("critic", f"transformers-detect:{model}", threshold=0.0).critique(critique)
    assert found.detections
    check_detections(found.detections, ("cat",))
    assert found == judge(CAT_SCENE, critique.scope, found.detections)
    assert not any(v.kind == "missing" for v in found.violations)

    none = registry.build("critic", f"transformers-detect:{model}", threshold=1.01).critique(critique)
    assert none.detections == ()
    assert [v.kind for v in none.violations] == ["missing"] and none.violations[0].entity_ids == ("e0",)


def test_full_loop_with_the_detector_critic_finishes_within_budget(owl_dir, tmp_path):
    out = tmp_path / "run"
    result = generate(
        "a red cat to the left of a blue dog",
        out=out,
        critic=f"transformers-detect:{owl_dir}",
        settings={"critic": {"threshold": 0.3}},
        budget=Budget(rounds_per_step=1, max_rounds=2),
    )
    assert not result.passed  # a random detector does not see the sketch
    assert result.rounds <= 2 and result.critique is not None
    for name in ("final.png", "trajectory.json", "report.html", "checkpoints.journal"):
        assert (out / name).is_file(), name
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["finished"] and doc["error"] is None
    critiques = [e for e in result.trajectory if e.stage == "critique"]
    assert critiques and all(e.backend == f"transformers-detect:{owl_dir}" for e in critiques)
    check_detections([d for e in critiques for d in e.critique.detections], ("cat", "dog"))


# ---------------------------------------------------------------------------------------------
# Grounding DINO (critic)
# ---------------------------------------------------------------------------------------------


def test_grounding_dino_is_queried_with_dotted_phrases_and_answers_with_requested_nouns(dino_dir, monkeypatch):
    critic = registry.build("critic", f"transformers-detect:{dino_dir}", threshold=0.0, text_threshold=0.25)
    assert isinstance(critic, DetectorCritic) and isinstance(critic.detector, ZeroShotDetector)
    detector = critic.detector
    assert detector.model_type == "grounding-dino" and detector.text_threshold == 0.25
    calls = spy(detector.model, "forward", monkeypatch)
    nouns = ("cat", "teddy bear", "dog")
    detections = detector.detect(canvas((96, 48), PALETTE["blue"]), nouns)
    (inputs,) = calls
    query = detector.processor.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True)
    assert query == "cat. teddy bear. dog."
    assert detections
    check_detections(detections, nouns)
    assert {d.colour for d in detections} == {"blue"}
    assert detector.detect(canvas(), ()) == []


def test_grounding_dino_drops_boxes_whose_phrase_names_no_noun(dino_dir):
    # Above text_threshold no word of the query aligns with a box, so every phrase is empty.
    detector = ZeroShotDetector(str(dino_dir), threshold=0.0, text_threshold=1.01)
    assert detector.detect(canvas(), ("cat", "dog")) == []


@pytest.mark.parametrize(
    ("phrase", "nouns", "noun"),
    [
        ("cat", ("cat", "dog"), "cat"),
        ("teddy", ("cat", "teddy bear"), "teddy bear"),  # part of a noun
        ("bear", ("teddy bear", "bear"), "bear"),  # a tie goes to the noun fully covered
        ("teddy bear", ("bear", "teddy bear"), "teddy bear"),  # more shared words win
        ("wine glass", ("cup", "glass"), "glass"),  # a longer phrase than the noun asked for
        ("cat. dog. [SEP]", ("dog", "cat"), "dog"),  # merged: a full tie goes to the first noun
        ("teddy bear dog", ("dog", "teddy bear"), "teddy bear"),
        ("Wine Glass", ("wine glass",), "wine glass"),
        ("hot dog", ("hot dog", "dog"), "hot dog"),
        ("[SEP]", ("sep", "cat"), None),  # special tokens are no words
        ("", ("cat",), None),
        ("cats", ("cat",), None),  # whole words only
        ("bird", ("cat", "dog"), None),
    ],
)
def test_noun_of_phrase_maps_partial_and_merged_phrases(phrase, nouns, noun):
    assert noun_of_phrase(phrase, nouns) == noun
