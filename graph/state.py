"""Graph state (serialisable data only) and run context (the backends, built once per run)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import ormsgpack
from langgraph.checkpoint.serde.jsonplus import EXT_PYDANTIC_V1, EXT_PYDANTIC_V2, JsonPlusSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from strokegraph import schema
from strokegraph.artifacts import ArtifactStore, image_key
from strokegraph.errors import UsageError
from strokegraph.schema import Critique, Event, ImageRef, Plan, SceneGraph, Violation

if TYPE_CHECKING:
    from PIL import Image

    from strokegraph.registry import Backends, Role

__all__ = ["Budget", "CheckpointError", "ImageCache", "RunContext", "RunState", "checkpoint_serializer"]


class Budget(BaseModel):
    """How much refinement a run may spend. The loop stops on purpose when any limit is reached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds_per_step: int = Field(default=3, ge=0, description="Refine rounds allowed per plan step.")
    max_rounds: int = Field(default=12, ge=0, description="Refine rounds allowed over the whole run.")
    max_sampling_steps: int | None = Field(
        default=None, ge=1, description="Stop refining once drafts and refinements used this many sampling steps."
    )


class RunState(BaseModel):
    """Everything a run knows between nodes. Images are :class:`ImageRef` files, never pixels."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    single_pass: bool = False
    budget: Budget = Budget()
    scene: SceneGraph | None = None
    plan: Plan | None = None
    step: int = Field(default=-1, description="Plan step being drawn or refined; -1 before the first draft.")
    round: int = Field(default=0, description="Refine rounds spent on the current step.")
    rounds_total: int = 0
    sampling_steps: int = 0
    image: ImageRef | None = None
    critique: Critique | None = None
    trajectory: Annotated[list[Event], operator.add] = Field(default_factory=list)
    stopped: bool = Field(default=False, description="A person reviewing the run stopped it (``--review``).")
    reviews: Annotated[list[dict], operator.add] = Field(
        default_factory=list, description="Each review decision: what was asked (kind, step, round) and the answer."
    )
    requests: tuple[Violation, ...] = Field(
        default=(),
        description="Violations a person added in review: each stays open for every critique after it; one the "
        "critic cannot judge is listed among the critique's unjudged parts, never dropped.",
    )

    def budget_left(self) -> bool:
        """Whether another refine round may run now."""
        b = self.budget
        return (
            not self.single_pass
            and self.round < b.rounds_per_step
            and self.rounds_total < b.max_rounds
            and (b.max_sampling_steps is None or self.sampling_steps < b.max_sampling_steps)
        )


class ImageCache:
    """The last image a run wrote or read, kept decoded so that the next node need not read it back.

    A hit needs the same path and sha256 as an image that passed through :meth:`save` or
    :meth:`open` here, so that it was written by this process or read and checked by
    :meth:`ImageRef.open <strokegraph.schema.ImageRef.open>` (containment, no symlink, sha256): a
    reference from a checkpoint is never trusted without that check. Each hit returns a copy, so a
    backend that draws on the image it is given cannot change what the next node sees.
    """

    def __init__(self, store: ArtifactStore | None = None, thread_id: str = "") -> None:
        # One (key, image) tuple, replaced in one assignment: a context shared by two threads
        # can at worst miss, never pair one image's key with another's pixels.
        self._last: tuple[tuple[str, str], Image.Image] | None = None
        self.store = store
        self.thread_id = thread_id

    def save(self, image: Image.Image, run_dir: Path, name: str) -> ImageRef:
        """:meth:`ImageRef.save <strokegraph.schema.ImageRef.save>`, keeping the image as RGB.

        With a store the image is in the store too before this returns, so before the node's
        checkpoint names it: a run resumed elsewhere finds every image its checkpoints name.
        """
        ref = ImageRef.save(image, run_dir, name)
        if self.store is not None:
            self.store.put(image_key(self.thread_id, ref.path), ref.read_bytes(run_dir))
        # PNG is lossless, so these are the pixels ImageRef.open would read back.
        self._last = ((ref.path, ref.sha256), image.convert("RGB"))
        return ref

    def open(self, ref: ImageRef, run_dir: Path) -> Image.Image:
        """The image ``ref`` names as RGB: from memory on a hit, else by ``ref.open(run_dir)`` after
        :meth:`fetch`."""
        last = self._last
        if last is not None and last[0] == (ref.path, ref.sha256):
            return last[1].copy()
        self.fetch(ref, run_dir)
        image = ref.open(run_dir)
        self._last = ((ref.path, ref.sha256), image.copy())
        return image

    def fetch(self, ref: ImageRef, run_dir: Path) -> None:
        """Copy the image ``ref`` names from the store into ``run_dir`` when it is not there (a run
        resumed on another machine); the store hands back only bytes of the recorded sha256.

        Without a store, or with the file already there, this does nothing: a file that is there but
        differs stays an error of :meth:`ImageRef.read_bytes`, never silently replaced.
        """
        target = Path(run_dir) / ref.path
        if self.store is None or target.exists() or target.is_symlink():
            return
        ref.restore(run_dir, self.store.get(image_key(self.thread_id, ref.path), ref.sha256))


@dataclass
class RunContext:
    """Per-run dependencies, passed as LangGraph runtime context (never checkpointed)."""

    backends: Backends
    """Each role's backend (:func:`strokegraph.registry.build_backends` builds them from ids)."""
    run_dir: Path
    seed: int = 0
    ids: dict[Role, str] = field(default_factory=dict)
    """The backend id of each role, recorded in the trajectory."""
    on_progress: Callable[[dict[str, Any]], None] | None = None
    """Called with each progress event (:class:`strokegraph.graph.nodes.Progress`, and backends'
    ``progress`` events) in the thread that runs the node, besides LangGraph's ``custom`` stream."""
    store: ArtifactStore | None = None
    """Where the run's images go besides ``run_dir`` (:mod:`strokegraph.artifacts`); None: nowhere else."""
    thread_id: str = ""
    """The run's thread; with a store, it names the run's folder there."""
    images: ImageCache = field(init=False, repr=False, compare=False)
    """The run's images: the last one decoded, and the store (see :class:`ImageCache`); each context starts empty."""

    def __post_init__(self) -> None:
        self.images = ImageCache(self.store, self.thread_id)


class CheckpointError(UsageError):
    """A checkpoint that does not hold valid strokegraph state: corrupt, or written by someone else."""


def checkpoint_serializer() -> JsonPlusSerializer:
    """A checkpoint serializer for strokegraph's state that loads only what validates.

    It writes as LangGraph's ``JsonPlusSerializer`` does. On load, every pydantic model must be one
    of strokegraph's state types and pass its validation; anything else raises
    :class:`CheckpointError`, where LangGraph would fall back to ``model_construct`` (an unvalidated
    object) or to the raw data. Our models' validators are what keeps a checkpoint's image paths
    inside the run directory, so a tampered checkpoint must not get around them.
    """
    types = [
        RunState,
        Budget,
        *(getattr(schema, name) for name in schema.__all__ if isinstance(getattr(schema, name), type)),
    ]
    return _StrictSerializer([t for t in types if issubclass(t, BaseModel)])


# Types besides strokegraph's own that a checkpoint may hold: LangGraph's, and plain data.
_PLAIN_DATA = {"datetime", "uuid", "pathlib", "decimal", "collections"}
_PLAIN_BUILTINS = {"set", "frozenset", "bytearray"}


def _revivable(module: object, name: object) -> bool:
    if not (isinstance(module, str) and isinstance(name, str)):
        return False
    if module == "builtins":
        return name in _PLAIN_BUILTINS
    return module.startswith("langgraph.") or module in _PLAIN_DATA


class _StrictSerializer(JsonPlusSerializer):
    def __init__(self, models: list[type[BaseModel]]) -> None:
        super().__init__(allowed_msgpack_modules=models)
        self._models = {(m.__module__, m.__name__): m for m in models}

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind, payload = data
        if kind in ("null", "bytes", "bytearray"):
            return super().loads_typed(data)
        if kind != "msgpack":  # we write nothing else; "json" and "pickle" revive objects by other rules
            raise CheckpointError(f"corrupt checkpoint: it holds a value of type {str(kind)[:40]!r}, not msgpack")
        problems: list[str] = []
        try:
            return ormsgpack.unpackb(payload, ext_hook=self._strict_hook(problems), option=ormsgpack.OPT_NON_STR_KEYS)
        except (ValueError, TypeError) as exc:  # ormsgpack turns an exception in ext_hook into a ValueError
            raise CheckpointError(f"corrupt checkpoint: {problems[0] if problems else str(exc)[:200]}") from None

    def _strict_hook(self, problems: list[str]) -> Callable[[int, bytes], Any]:
        lenient = self._unpack_ext_hook

        def fail(problem: str) -> NoReturn:
            problems.append(problem)
            raise ValueError(problem)

        def hook(code: int, blob: bytes) -> Any:
            inner = ormsgpack.unpackb(blob, ext_hook=hook, option=ormsgpack.OPT_NON_STR_KEYS)
            if code not in (EXT_PYDANTIC_V1, EXT_PYDANTIC_V2):
                # Any model nested in it went through this hook just now, strictly. What is left is
                # rebuilt by LangGraph only when it is plain data or LangGraph's own (a review's
                # Interrupt): for any other type LangGraph would log "Blocked deserialization" and
                # hand back the raw argument, which could pass as a string field's value.
                if not (isinstance(inner, list | tuple) and len(inner) >= 2 and _revivable(inner[0], inner[1])):
                    where = f"{str(inner[0])[:80]}.{str(inner[1])[:80]}" if isinstance(inner, list | tuple) else "?"
                    fail(f"it holds a {where}, which is not a strokegraph state type")
                return lenient(code, blob)
            if not (isinstance(inner, list | tuple) and len(inner) >= 3):
                fail("it holds a malformed pydantic model")
            module, name, fields = inner[0], inner[1], inner[2]
            cls = self._models.get((module, name)) if code == EXT_PYDANTIC_V2 else None
            if cls is None:
                fail(f"it holds a {str(module)[:80]}.{str(name)[:80]}, which is not a strokegraph state type")
            try:
                return cls.model_validate(fields)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(map(str, first["loc"]))[:200] or "top level"
                problem = f"{exc.error_count()} problem(s), first at {where}: {first['msg'][:200]}"
                fail(f"its {name} fails validation ({problem})")

        return hook
