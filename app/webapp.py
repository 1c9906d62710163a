"""The HTTP routes that ``langgraph.json``'s ``http.app`` adds to LangGraph's server: a run's images.

``GET /strokegraph/images/<run>/final.png`` and ``GET /strokegraph/images/<run>/images/<name>.png``
serve the PNGs of a run of the server graph (``app/server.py``), where ``<run>`` is the run
directory under ``$STROKEGRAPH_SERVER_ROOT`` (``<thread>/<timestamp>-<slug>`` or
``<timestamp>-<slug>``): the paths the graph returns as ``final_image_url`` and ``image_urls``.

The path comes from the client, so it is hostile: it must match a strict pattern of plain names, each
folder below the root is opened without following symlinks (nothing a run directory holds can lead
outside the root), only a regular file that starts as a PNG is sent, and anything else is a bare
404 that says nothing of what exists. Files are read in a worker thread, off the server's event loop.
Needs ``starlette`` (``pip install 'strokegraph[server]'``; LangGraph's server brings it too).

The route checks no credentials itself: ``langgraph.json`` sets ``http.enable_custom_route_auth``, so
the server's own authentication (``auth`` in ``langgraph.json``), when it has one, guards it as it
guards the API.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from strokegraph.app.server import IMAGE_ROUTE, server_root
from strokegraph.artifacts import MAX_BYTES

__all__ = ["app"]

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
# An optional thread folder, the run folder, then final.png or images/<name>.png: nothing else.
_PATH = re.compile(rf"(?:{_NAME}/)?{_NAME}/(?:final\.png|images/{_NAME}\.png)")
_PNG = b"\x89PNG\r\n\x1a\n"
_NOFOLLOW = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# Browsers must take the bytes as the PNG they claim to be, never sniff them into a page.
_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def read_image(root: Path, path: str) -> bytes | None:
    """The PNG at ``path`` (``<run>/final.png`` or ``<run>/images/<name>.png``) under ``root``, else None.

    None when ``path`` does not match that shape, when a folder or the file under ``root`` is a
    symlink or missing, or when the file is not a regular PNG file of at most ``MAX_BYTES``.
    """
    if not _PATH.fullmatch(path) or ".." in path:
        return None
    *folders, name = path.split("/")
    fds: list[int] = []
    try:
        # The operator's root may itself be a link; below it, each folder is opened relative to the
        # one above with O_NOFOLLOW, so no link planted in a run directory (or swapped in while this
        # runs) can lead the read outside the root.
        fds.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY))
        for folder in folders:
            fds.append(os.open(folder, _NOFOLLOW | os.O_DIRECTORY, dir_fd=fds[-1]))
        fd = os.open(name, _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), dir_fd=fds[-1])
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
                return None
            data = f.read(MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        for d in fds:
            os.close(d)
    return data if len(data) <= MAX_BYTES and data.startswith(_PNG) else None


async def _image(request: Request) -> Response:
    data = await run_in_threadpool(read_image, server_root(), request.path_params["path"])
    if data is None:
        return Response(status_code=404, headers=_HEADERS)
    return Response(data, media_type="image/png", headers=_HEADERS)


app = Starlette(routes=[Route(IMAGE_ROUTE + "/{path:path}", _image, methods=["GET"])])
