"""strokegraph reaches openai, httpx2 and httpcore2 through their public APIs only.

Their private names (a leading underscore) change without notice: a release that renamed httpx2's
``_pool`` would have turned off every limit strokegraph puts on a hostile server. The check reads
strokegraph's source (every module of the installed package) and flags, on those libraries:

- imports of a private module or name (``from openai._base_client import ...``);
- private attributes reached through the library's modules (``httpx2._config.DEFAULT_LIMITS``);
- a private name of theirs on any object but ``self`` (``pool._network_backend``), also as a string
  given to ``getattr``, ``setattr``, ``hasattr`` or ``delattr``; names strokegraph defines itself (as
  a function, a class, or on ``self``) are left out, since the check cannot know whose object it is;
- in a subclass of one of their classes, any private name that class knows, read, set or
  overridden through ``self`` (``self._transport``, ``def _sleep_for_retry``).

A check that finds nothing proves nothing by itself, so it is also run on code written the way the
transport was before (it must find each use).

The transport that replaced those uses builds its own connection pools, so it also does what
httpx2 did for its own: take proxies from the environment.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import json
import re
import sys
import threading
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from strokegraph.testing.openai_server import chat_reply
from strokegraph.tools import openai_api

LIBRARIES = ("openai", "httpx2", "httpcore2", "httpx", "httpcore")
PACKAGES = ("strokegraph", "strokegraph.agents", "strokegraph.graph", "strokegraph.tools", "strokegraph.bench")
_PRIVATE = re.compile(r"^_[A-Za-z]\w*$")
_NAMED_IN_SOURCE = re.compile(rb"(?:\.|\bdef\s+|\bclass\s+)(_[A-Za-z]\w*)")
_ATTR_FUNCTIONS = ("getattr", "setattr", "hasattr", "delattr")


def _private(name: str) -> bool:
    return bool(_PRIVATE.match(name)) and not name.endswith("__")


def _installed(library: str) -> Path | None:
    try:
        module = importlib.import_module(library)
    except ImportError:
        return None
    return Path(inspect.getfile(module)).parent


@cache
def library_private_names() -> frozenset[str]:
    """Every private name the libraries define or reach as an attribute anywhere in their source."""
    names: set[str] = set()
    for library in LIBRARIES:
        root = _installed(library)
        if root is not None:
            for path in root.rglob("*.py"):
                names.update(n.decode() for n in _NAMED_IN_SOURCE.findall(path.read_bytes()))
    return frozenset(n for n in names if _private(n))


def package_files() -> list[Path]:
    files: set[Path] = set()
    for package in PACKAGES:
        for folder in importlib.import_module(package).__path__:
            files.update(Path(folder).rglob("*.py"))
    return sorted(files)


def _own_names(paths: list[Path]) -> frozenset[str]:
    """The private names strokegraph's own code defines: functions, classes, attributes set on ``self``."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _on_self(node.value):
                names.add(node.attr)
    return frozenset(n for n in names if _private(n))


def _on_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _resolve(dotted: str) -> object | None:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part, None)
        return obj
    return None


def _private_names_of(cls: type) -> set[str]:
    """The private names a library class and its library bases know: members, and what their modules reach."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] not in LIBRARIES:
            continue
        names.update(n for n in vars(klass) if _private(n))
        # The module's whole source, not the class's: httpx2 and openai re-export some classes
        # under aliases that inspect cannot find the definition of.
        source = Path(inspect.getfile(sys.modules[klass.__module__])).read_bytes()
        names.update(n.decode() for n in _NAMED_IN_SOURCE.findall(source) if _private(n.decode()))
    return names


class _Checker(ast.NodeVisitor):
    def __init__(self, where: str, own: frozenset[str]) -> None:
        self.where = where
        self.own = own
        self.aliases: dict[str, str] = {}  # local name -> dotted name in a library
        self.library_bases: list[set[str]] = []  # private names known to the bases of enclosing classes
        self.found: list[str] = []

    def flag(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.where}:{getattr(node, 'lineno', '?')}: {what}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] in LIBRARIES:
                if any(_private(p) for p in parts):
                    self.flag(node, f"imports the private module {alias.name}")
                self.aliases[alias.asname or parts[0]] = alias.name if alias.asname else parts[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        parts = module.split(".")
        if node.level or parts[0] not in LIBRARIES:
            return
        if any(_private(p) for p in parts):
            self.flag(node, f"imports from the private module {module}")
        for alias in node.names:
            if _private(alias.name):
                self.flag(node, f"imports the private name {module}.{alias.name}")
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"

    def _dotted(self, node: ast.expr) -> str | None:
        """``node`` as a dotted name inside a library, if it is one (``httpx2.Client``)."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            outer = self._dotted(node.value)
            return f"{outer}.{node.attr}" if outer else None
        return None

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        known: set[str] = set()
        for base in node.bases:
            dotted = self._dotted(base)
            cls = _resolve(dotted) if dotted else None
            if isinstance(cls, type):
                known |= _private_names_of(cls)
        if known:
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name in known:
                    self.flag(item, f"class {node.name} overrides the private {item.name} of its library base")
        self.library_bases.append(known)
        self.generic_visit(node)
        self.library_bases.pop()

    def _check_name(self, node: ast.AST, owner: ast.expr | None, name: str) -> None:
        if not _private(name):
            return
        on_self = owner is not None and _on_self(owner)
        known = set().union(*self.library_bases) if self.library_bases else set()
        if on_self and name in known:
            self.flag(node, f"uses the private {name} of a library base class through self")
        elif not on_self and name in library_private_names() and name not in self.own:
            self.flag(node, f"uses {name}, a private name of openai/httpx2/httpcore2")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = self._dotted(node.value)
        if dotted is not None and _private(node.attr):
            self.flag(node, f"reaches the private {dotted}.{node.attr}")
        else:
            self._check_name(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (
            isinstance(node.func, ast.Name)
            and node.func.id in _ATTR_FUNCTIONS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            self._check_name(node, node.args[0], node.args[1].value)
        self.generic_visit(node)


def private_uses(source: str, where: str, own: frozenset[str] = frozenset()) -> list[str]:
    """What in ``source`` reaches a private name of openai, httpx2 or httpcore2 (one line each)."""
    checker = _Checker(where, own)
    checker.visit(ast.parse(source))
    return checker.found


def test_strokegraph_uses_no_private_name_of_openai_httpx2_or_httpcore2():
    files = package_files()
    assert any(p.name == "_openai_transport.py" for p in files)  # the package is what is scanned
    own = _own_names(files)
    found = [f for path in files for f in private_uses(path.read_text(encoding="utf-8"), path.name, own)]
    assert found == []


# The transport as it was: each marked line must be found.
OLD_STYLE = """
import httpcore2
import httpx2
from openai import DefaultHttpxClient, OpenAI
from openai._base_client import SyncAPIClient                          # 1: private module
from httpx2 import _config                                             # 2: private name


class BoundedClient(DefaultHttpxClient):
    def __init__(self):
        super().__init__()
        transports = [self._transport, *self._mounts.values()]         # 3, 4: httpx2.Client's own
        for transport in transports:
            pool = getattr(transport, "_pool", None)                    # 5: as a string
            backend = getattr(pool, "_network_backend", None)           # 6
            pool._network_backend = backend                             # 7: on another object
        limits = httpx2._config.DEFAULT_LIMITS                          # 8: through the module


class CancellableOpenAI(OpenAI):
    def _sleep_for_retry(self, *, retries_taken, max_retries, options, response):   # 9: override
        self._calculate_retry_timeout(max_retries - retries_taken, options, None)    # 10
"""


def test_the_check_finds_each_private_use_in_the_old_transport():
    found = private_uses(OLD_STYLE, "old")
    lines = sorted({int(f.split(":")[1]) for f in found})
    marked = [i for i, line in enumerate(OLD_STYLE.splitlines(), 1) if re.search(r"# \d", line)]
    assert lines == marked, "\n".join(found)
    assert len(found) >= 10, "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import httpx2\nclient = httpx2.Client(transport=httpx2.HTTPTransport())\n",
        "import httpcore2\nclass S(httpcore2.NetworkStream):\n    def __init__(self, inner):\n"
        "        self.inner = inner\n",
        "class Mine:\n    def __init__(self):\n        self._pool = []\n    def size(self):\n"
        "        return len(self._pool)\n",
    ],
)
def test_the_check_leaves_public_use_and_our_own_private_names_alone(source):
    assert private_uses(source, "ok") == []


# ---------------------------------------------------------------------------------------------
# Proxies: the transport builds its own connection pools, so it reads the environment itself
# ---------------------------------------------------------------------------------------------


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself with a chat reply, and records its target."""

    targets: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
        self.targets.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(chat_reply("a reply from the proxy").body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch):
    _Proxy.targets = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield _Proxy.targets
    server.shutdown()
    server.server_close()


@pytest.mark.usefixtures("no_ambient_openai_env")
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_requests_go_through_the_proxy_of_the_environment_except_where_no_proxy_says(proxy, server, asynchronous):
    def complete(chat) -> str:
        messages = [{"role": "user", "content": "hi"}]
        return asyncio.run(chat.acomplete(messages)) if asynchronous else chat.complete(messages)

    # The first host does not resolve: only the proxy can answer for it.
    chat = openai_api.planner("m", base_url="http://api.example.invalid/v1", api_key="sk-proxy-test").model
    assert complete(chat) == "a reply from the proxy"
    assert proxy == ["http://api.example.invalid/v1/chat/completions"]

    server.script("chat/completions", chat_reply("a reply from the server"))
    chat = openai_api.planner("m", base_url=server.url, api_key="sk-proxy-test").model
    assert complete(chat) == "a reply from the server"
    assert len(proxy) == 1 and len(server.sent("chat/completions")) == 1
