"""agenerate's executor: runs at once wait on their backends in parallel, past Python's default thread cap."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from strokegraph import agenerate
from strokegraph.agents.drafter import DraftRequest, DraftResult
from strokegraph.app.runner import IO_THREADS
from strokegraph.tools.sketch.drafter import SketchDrafter

PROMPT = "a red apple"


class WaitingDrafter:
    """Draws like the sketch world once ``barrier``'s every party is drawing too, as calls to a slow server would."""

    def __init__(self, barrier: threading.Barrier) -> None:
        self.barrier = barrier
        self.sketch = SketchDrafter()
        self.threads: set[str] = set()

    def draft(self, request: DraftRequest) -> DraftResult:
        self.threads.add(threading.current_thread().name)
        self.barrier.wait(60)  # a liveness bound: a run that never gets a thread breaks the barrier
        return self.sketch.draft(request)


def test_runs_at_once_past_pythons_default_executor_all_wait_on_their_backends_together(tmp_path):
    # Python's default executor has at most 32 threads; 40 drafters waiting on each other need 40.
    runs = 40
    assert runs <= IO_THREADS
    drafter = WaitingDrafter(threading.Barrier(runs))

    async def main():
        return await asyncio.gather(*(agenerate(PROMPT, out=tmp_path / str(i), drafter=drafter) for i in range(runs)))

    results = asyncio.run(main())
    assert len(results) == runs and all(r.final_image is not None for r in results)
    assert len(drafter.threads) == runs


def test_an_executor_the_application_set_is_kept(tmp_path):
    drafter = WaitingDrafter(threading.Barrier(1))

    async def main():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2, thread_name_prefix="application"))
        return await agenerate(PROMPT, out=tmp_path / "run", drafter=drafter)

    asyncio.run(main())
    assert drafter.threads and all(name.startswith("application") for name in drafter.threads)
