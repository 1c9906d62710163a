"""What backends share across runs in one process: loaded models, and API clients.

Building a backend is cheap; what it loads is not (weights take seconds to minutes, an OpenAI
client tens of milliseconds of CPU for its TLS context). A :class:`Shared` keeps such objects by a
key that names everything that makes them differ, so that a server, a benchmark or a review loop
building the same backend again gets the same weights or client instead of loading anew.

Only objects that hold no run's state are kept here: weights with their tokenizer, a diffusers
model's modules, a thread-safe HTTP client. The backends wrapping them, which hold per-run settings
and pipelines with per-call state, are built anew by every :func:`strokegraph.registry.build`.

:func:`clear` (also :func:`strokegraph.registry.clear_cache`) forgets everything; backends already
built keep what they hold.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["CLIENTS", "MODELS", "Shared", "clear"]

T = TypeVar("T")


class Shared:
    """Objects made once per key: the ``size`` most recently used, and any other still referenced.

    The recent ones are held here (a least-recently-used list); the rest only weakly, so an object a
    live backend still uses is shared rather than made a second time (two copies of the same weights
    would take twice the memory), and is freed with its last backend. Thread-safe: concurrent
    :meth:`get` calls for one key make the object once, the others wait for it, while other keys are
    made in parallel. Values must be weak-referenceable (instances of ordinary classes are).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._recent: OrderedDict[Hashable, Any] = OrderedDict()
        self._live: weakref.WeakValueDictionary[Hashable, Any] = weakref.WeakValueDictionary()
        self._making: dict[Hashable, threading.Event] = {}

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The object for ``key``, made by ``make()`` unless it is held already.

        Whatever ``make`` raises propagates and nothing is kept; a caller waiting on the same key
        then tries ``make`` itself.
        """
        while True:
            with self._lock:
                value = self._recent.get(key)
                if value is None:
                    value = self._live.get(key)
                if value is not None:
                    self._keep(key, value)
                    return value
                pending = self._making.get(key)
                if pending is None:
                    done = self._making[key] = threading.Event()
                    break
            pending.wait()
        try:
            value = make()
            with self._lock:
                self._live[key] = value
                self._keep(key, value)
            return value
        finally:
            with self._lock:
                self._making.pop(key, None)
            done.set()

    def _keep(self, key: Hashable, value: Any) -> None:
        """Mark ``key`` most recently used; the least recent beyond ``size`` are held only weakly."""
        self._recent[key] = value
        self._recent.move_to_end(key)
        while len(self._recent) > self.size:
            self._recent.popitem(last=False)

    def keys(self) -> list[Hashable]:
        """The keys of every object held now, strongly or weakly (for inspection and tests)."""
        with self._lock:
            return list(dict.fromkeys([*self._recent, *self._live.keys()]))

    def clear(self) -> None:
        """Forget every object: the next :meth:`get` of any key makes it anew."""
        with self._lock:
            self._recent.clear()
            self._live.clear()


#: Loaded models (diffusers and transformers alike). Four: a run has four roles, so any one
#: configuration of local models stays loaded between its runs, even with a model per role.
MODELS = Shared(4)
#: OpenAI clients, one per endpoint, key and limits. Each holds a connection pool and no run's state.
CLIENTS = Shared(16)


def clear() -> None:
    """Forget every shared model and client; the next build loads or makes them anew."""
    MODELS.clear()
    CLIENTS.clear()
