"""Whether the Hugging Face Hub can be reached, asked once before a model is loaded by its hub id.

With no network, transformers and diffusers try every file of a model five times with back-off
before they fall back on the cache or give up: minutes, and a page of warnings, per model, even
for a model that is in the cache. One quick request first decides: the Hub answers, and the model
loads as usual (downloading what it lacks); it does not, and the model loads from the cache alone
(``local_files_only``), at once, or fails in one line that says why nothing was downloaded.

The request goes where the libraries would send theirs (``HF_ENDPOINT``, default huggingface.co),
with the same token. With ``HF_HUB_OFFLINE=1`` nothing is asked: the libraries read only the cache.
"""

from __future__ import annotations

import threading
import time

__all__ = ["forget", "offline_note", "unreachable"]

#: How long the request may take: a slower Hub counts as out of reach for this load.
PROBE_TIMEOUT_S = 10.0
#: How long one answer stands for every model on that endpoint (a run loads several at once).
_REMEMBER_S = 60.0

_lock = threading.Lock()
_answers: dict[str, tuple[float, str | None]] = {}


def unreachable(model_id: str) -> str | None:
    """Why the Hub that serves ``model_id`` cannot be reached now, in a few words; None when it can.

    Also None with ``HF_HUB_OFFLINE`` set, where the libraries read only the cache on their own. A
    connection or timeout error, or a 5xx answer, is out of reach; any other answer (the model's
    info, or 401/404 for a gated or missing model) is the Hub answering, and the load reports it.
    """
    from huggingface_hub import constants, model_info
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return None
    endpoint = constants.ENDPOINT
    with _lock:
        answer = _answers.get(endpoint)
    if answer is not None and time.monotonic() - answer[0] < _REMEMBER_S:
        return answer[1]
    reason: str | None
    try:
        model_info(model_id, timeout=PROBE_TIMEOUT_S)
        reason = None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        reason = f"it answered {status}" if status is None or status >= 500 else None
    except Exception as exc:  # noqa: BLE001 - the HTTP library's own errors (connection, DNS, timeout)
        lines = str(exc).strip().splitlines()
        reason = (lines[0] if lines else type(exc).__name__)[:200]
    with _lock:
        _answers[endpoint] = (time.monotonic(), reason)
    return reason


def offline_note(reason: str) -> str:
    """What a failed load's message adds when :func:`unreachable` gave ``reason`` and the load read only the cache."""
    from huggingface_hub import constants

    return f"; {constants.ENDPOINT} cannot be reached ({reason}), so only the local cache was read"


def forget() -> None:
    """Ask the Hub again at the next load (tests; a process that knows its network changed)."""
    with _lock:
        _answers.clear()
