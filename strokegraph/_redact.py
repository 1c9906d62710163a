"""Credentials kept out of what strokegraph prints and stores: one home for every URL form.

A URL reaches messages, ``run.json`` and ``trajectory.json`` from settings (``base_url``), flags
(``--checkpoint postgres://...``) and the errors of libraries that echo it. :func:`redact_url`
masks the credentials of every URL in a text; :data:`SECRET_NAME` says which setting and query
parameter names hold one. :func:`check_base_url` refuses a ``base_url`` that is not one, naming it masked.
"""

from __future__ import annotations

import re
import urllib.parse

from strokegraph.errors import UsageError

__all__ = ["SECRET_NAME", "check_base_url", "redact_url"]

#: Names of settings and URL query parameters that hold credentials (``api_key``, ``password``,
#: ``X-Amz-Signature``...). ``token(?!s)`` keeps counts such as ``max_new_tokens``, which are settings.
SECRET_NAME = re.compile(r"key|secret|pass|pwd|token(?!s)|credential|auth|sig", re.IGNORECASE)

# ``user:password@`` after a scheme, up to the *last* ``@`` before the path: a raw ``@`` inside a
# password (``postgres://u:p@ss@host``) is still part of it.
_USERINFO = re.compile(r"(?<=://)[^\s/?#]*@")

# A query parameter and its value, up to the next parameter, fragment or blank; the quote and colon
# that close a URL in a message (``'...?password=pw': refused``) are left in place.
_PARAM = re.compile(r"(?<=[?&])([^=&#\s]*)=([^&#\s]*?)(?=['\"]?:?(?:[&#\s]|$))")


def _mask_param(match: re.Match[str]) -> str:
    name = match.group(1)
    return f"{name}=***" if SECRET_NAME.search(name) else match.group(0)


def redact_url(text: object) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    ``http://user:pass@host/v1`` becomes ``http://***@host/v1``, ``postgres://h/db?password=pw``
    becomes ``postgres://h/db?password=***``; text without credentials is returned as it is.
    """
    return _PARAM.sub(_mask_param, _USERINFO.sub("***@", str(text)))


def check_base_url(url: object) -> None:
    """An http(s) URL with a host, or a one-line :class:`UsageError` naming it (credentials masked);
    the clients that take one would raise deep inside, at the first request."""
    try:
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        ok = parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)
        if ok and parts is not None:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise UsageError(f"base_url {redact_url(url)[:200]!r} is not a URL: {exc}") from None
    if not ok:
        raise UsageError(f"base_url {redact_url(url)[:200]!r} is not an http:// or https:// URL with a host")
