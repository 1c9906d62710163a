"""Loaded models are kept across builds: the same id and model settings load nothing the second time.

Every ``from_pretrained`` that loads weights, a tokenizer or a processor (diffusers' pipelines and
models, transformers' models, tokenizers and processors) is counted by wrapping the library's own
classmethod, which still loads. The models are the tiny ones of ``tiny_sd.py`` and ``tiny_hf.py``,
built from configs and saved to temporary directories, with the hub offline.
"""

from __future__ import annotations

import gc
import shutil
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator

import pytest
from tiny_sd import save_tiny_sd

from strokegraph import registry
from strokegraph.app.runner import generate
from strokegraph.errors import UsageError
from strokegraph.graph import Budget
from strokegraph.tools import _cache

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def _loaders() -> dict[str, type]:
    from transformers import PreTrainedModel, ProcessorMixin
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    return {
        "pipeline": diffusers.DiffusionPipeline,
        "diffusers model": diffusers.ModelMixin,
        "transformers model": PreTrainedModel,
        "tokenizer": PreTrainedTokenizerBase,
        "processor": ProcessorMixin,
    }


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def loads(monkeypatch) -> Iterator[Counter]:
    """How many times each kind of ``from_pretrained`` ran since the test began (with an empty cache)."""
    counts: Counter = Counter()

    def counting(name: str, real):
        def from_pretrained(cls, *args, **kwargs):
            counts[name] += 1
            return real(cls, *args, **kwargs)

        return classmethod(from_pretrained)

    for name, cls in _loaders().items():
        monkeypatch.setattr(cls, "from_pretrained", counting(name, cls.__dict__["from_pretrained"].__func__))
    registry.clear_cache()
    yield counts
    registry.clear_cache()


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return save_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


def _unreferenced(obj) -> weakref.ref:
    """A weak reference to ``obj``; the caller then drops its own (so only a cache can keep it)."""
    ref = weakref.ref(obj)
    gc.collect()
    return ref


# ---------------------------------------------------------------------------------------------
# diffusers
# ---------------------------------------------------------------------------------------------


def test_a_diffusers_model_outlives_its_backend_and_the_next_build_loads_nothing(sd_dir, loads):
    first = registry.build("drafter", f"diffusers:{sd_dir}", steps=2)
    assert loads["pipeline"] == 1
    loaded = sum(loads.values())
    model = weakref.ref(first.model)
    del first  # no backend holds the model now, as between two requests to a server
    gc.collect()

    # Settings of the backend, not of the model, and the other role of the same id: nothing loads.
    drafter = registry.build("drafter", f"diffusers:{sd_dir}", steps=4, strength=0.5)
    refiner = registry.build("refiner", f"diffusers:{sd_dir}", steps=3)
    assert sum(loads.values()) == loaded
    assert drafter.model is model() and refiner.model is drafter.model

    # What holds per-call state is each backend's own: its pipelines and their schedulers.
    other = registry.build("drafter", f"diffusers:{sd_dir}", steps=4, strength=0.5)
    assert other is not drafter and other.model is drafter.model
    assert other.text2image is not drafter.text2image and other.image2image is not drafter.image2image
    assert other.text2image.scheduler is not drafter.text2image.scheduler
    assert other.text2image.unet is drafter.text2image.unet


def test_diffusers_settings_that_change_the_model_load_it_anew(sd_dir, tmp_path, loads):
    fp32 = registry.build("drafter", f"diffusers:{sd_dir}", steps=2)
    bf16 = registry.build("drafter", f"diffusers:{sd_dir}", steps=2, dtype="bfloat16")
    assert loads["pipeline"] == 2 and bf16.model is not fp32.model
    assert bf16.model.base.unet.dtype == torch.bfloat16 and fp32.model.base.unet.dtype == torch.float32

    # Another directory is another model, even with the same files; the same one by another path is not.
    copy = shutil.copytree(sd_dir, tmp_path / "copy")
    assert registry.build("drafter", f"diffusers:{copy}", steps=2).model is not fp32.model
    assert loads["pipeline"] == 3
    relative = tmp_path / "copy" / ".." / "copy"
    registry.build("drafter", f"diffusers:{relative}", steps=2)
    assert loads["pipeline"] == 3


def test_clear_cache_makes_the_next_build_load_again(sd_dir, loads):
    kept = registry.build("drafter", f"diffusers:{sd_dir}", steps=2)
    registry.clear_cache()
    again = registry.build("drafter", f"diffusers:{sd_dir}", steps=2)
    assert loads["pipeline"] == 2 and again.model is not kept.model  # the old backend keeps its own


def test_two_runs_on_one_diffusers_model_load_it_once(sd_dir, tmp_path, loads):
    ids = {"drafter": f"diffusers:{sd_dir}", "refiner": f"diffusers:{sd_dir}"}
    settings = {"drafter": {"steps": 2}, "refiner": {"steps": 2}}
    for run in ("first", "second"):
        result = generate(
            "a red cup to the left of a blue dog",
            out=tmp_path / run,
            **ids,
            critic=registry.build("critic", "builtin:pixels"),  # an object: the pairing check leaves it be
            settings=settings,
            budget=Budget(rounds_per_step=1, max_rounds=1),
        )
        assert result.rounds == 1  # noise fails the pixel critic: one refine, on the same weights
    assert loads["pipeline"] == 1


def test_builds_at_once_load_one_model_once(sd_dir, loads):
    start = threading.Barrier(6)
    built: list = []

    def build():
        start.wait()
        built.append(registry.build("drafter", f"diffusers:{sd_dir}", steps=2))

    threads = [threading.Thread(target=build) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(built) == 6 and loads["pipeline"] == 1
    assert len({id(b.model) for b in built}) == 1


# ---------------------------------------------------------------------------------------------
# transformers
# ---------------------------------------------------------------------------------------------


def test_a_transformers_model_outlives_its_backend_and_the_next_build_loads_nothing(chat_dir, loads):
    first = registry.build("planner", f"transformers:{chat_dir}", max_new_tokens=4)
    assert loads["transformers model"] == 1 and loads["tokenizer"] == 1
    loaded = sum(loads.values())
    model = weakref.ref(first.model.model)
    del first
    gc.collect()

    planner = registry.build("planner", f"transformers:{chat_dir}", max_new_tokens=8, preparse=True)
    other = registry.build("planner", f"transformers:{chat_dir}", max_new_tokens=2)
    assert sum(loads.values()) == loaded
    assert planner.model.model is model() and other.model.tokenizer is planner.model.tokenizer
    # The backends, with their own settings, are not shared.
    assert other.model is not planner.model
    assert (other.model.max_new_tokens, planner.model.max_new_tokens) == (2, 8)


def test_transformers_settings_that_change_the_model_load_it_anew(chat_dir, owl_dir, loads):
    fp32 = registry.build("planner", f"transformers:{chat_dir}")
    bf16 = registry.build("planner", f"transformers:{chat_dir}", dtype="bfloat16")
    assert loads["transformers model"] == 2 and bf16.model.model is not fp32.model.model
    assert bf16.model.model.dtype == torch.bfloat16

    # The same id for another role is another kind of model.
    with pytest.raises(UsageError):
        registry.build("critic", f"transformers-detect:{chat_dir}")
    detector = registry.build("critic", f"transformers-detect:{owl_dir}", threshold=0.2)
    loaded = sum(loads.values())
    stricter = registry.build("critic", f"transformers-detect:{owl_dir}", threshold=0.5)
    assert sum(loads.values()) == loaded
    assert stricter.detector.model is detector.detector.model and stricter.detector.threshold == 0.5


def test_a_failed_load_is_not_kept(tmp_path, chat_dir, loads):
    broken = shutil.copytree(chat_dir, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not weights")
    for _ in range(2):
        with pytest.raises(UsageError, match="cannot load chat model"):
            registry.build("planner", f"transformers:{broken}")
    assert loads["transformers model"] == 2  # tried again, not answered from a cache


# ---------------------------------------------------------------------------------------------
# The cache itself
# ---------------------------------------------------------------------------------------------


class Thing:
    pass


def test_the_cache_keeps_the_most_recent_and_whatever_is_still_in_use():
    shared = _cache.Shared(2)
    made = Counter()

    def make(key):
        made[key] += 1
        return Thing()

    held = shared.get("a", lambda: make("a"))  # still in use when it falls out of the recent two
    b = _unreferenced(shared.get("b", lambda: make("b")))
    c = _unreferenced(shared.get("c", lambda: make("c")))
    d = _unreferenced(shared.get("d", lambda: make("d")))
    assert b() is None  # neither recent nor in use: freed
    assert c() is not None and d() is not None
    assert shared.get("a", lambda: make("a")) is held
    assert shared.get("b", lambda: make("b")) is not None
    assert made == {"a": 1, "b": 2, "c": 1, "d": 1}


def test_threads_asking_for_one_key_at_once_make_it_once():
    shared = _cache.Shared(2)
    start = threading.Barrier(8)
    made, got = [], []

    def make():
        made.append(1)
        time.sleep(0.3)  # the others ask meanwhile: without waiting for this one, each would make its own
        return Thing()

    def ask():
        start.wait()
        got.append(shared.get("k", make))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(made) == 1 and len(got) == 8 and len({id(g) for g in got}) == 1


def test_a_failed_make_keeps_nothing_and_the_next_caller_makes_it():
    shared = _cache.Shared(2)

    def fail():
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        shared.get("k", fail)
    thing = Thing()
    assert shared.get("k", lambda: thing) is thing
    assert shared.keys() == ["k"]
