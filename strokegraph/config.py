"""``--config FILE``: a TOML file with per-role backend ids and settings, and run options.

```toml
seed = 7
max_rounds = 6

[drafter]
id = "diffusers:stabilityai/sdxl-turbo"
steps = 4
guidance = 0.0

[critic]
id = "transformers-detect:google/owlv2-base-patch16-ensemble"
```

Every key other than ``id`` in a role's table is a setting of that backend; unknown keys, at the
top level or in a role, are usage errors. Command-line flags override the file, and the file
overrides a preset (``--preset NAME``, see :mod:`strokegraph.presets`), whose files have this format.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from strokegraph.errors import UsageError
from strokegraph.registry import ROLES, Role

__all__ = ["RoleConfig", "RunConfig", "load_config", "parse_config"]


class RoleConfig(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | None = None

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class _RunOptions(BaseModel):
    """A config's run options; :data:`RunConfig` adds its table per role."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int | None = None
    max_rounds: int | None = Field(default=None, ge=0)
    rounds_per_step: int | None = Field(default=None, ge=0)
    max_sampling_steps: int | None = Field(default=None, ge=1)
    single_pass: bool | None = None

    def role(self, role: Role) -> RoleConfig:
        """``role``'s table: its id and settings (an empty table when the file names none)."""
        return cast(RoleConfig, getattr(self, role))


# A table per role of the registry (a field each, so unknown tables stay errors): a new role is one
# a config file may name without a change here. mypy cannot see fields made at runtime, so to it a
# RunConfig is its options and role().
if TYPE_CHECKING:
    RunConfig = _RunOptions
else:
    RunConfig = create_model(
        "RunConfig",
        __base__=_RunOptions,
        __module__=__name__,
        **{role: (RoleConfig, RoleConfig()) for role in ROLES},
    )
    RunConfig.__doc__ = "A config file's run options, and a table (:class:`RoleConfig`) per role."


#: A config file is a few lines; anything this large is not one (``--config /dev/zero``).
MAX_CONFIG_BYTES = 1 << 20

# Setting values are scalars or short lists of them; nesting deeper than this is not a setting.
_MAX_DEPTH = 4


def load_config(path: str | Path) -> RunConfig:
    """Read and check a config file; every problem is a one-line :class:`UsageError`."""
    path = Path(path)
    try:
        # Opening a FIFO for reading waits for a writer, so nothing but a regular file is opened:
        # O_NONBLOCK opens one at once, and fstat says what was opened before a byte is read.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UsageError(f"config {str(path)!r} is not a regular file")
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read config {str(path)!r}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(f"config {str(path)!r} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"config {str(path)!r} is not UTF-8 text (byte {exc.start + 1})") from None
    return parse_config(text, f"config {str(path)!r}")


def parse_config(text: str, source: str) -> RunConfig:
    """Check the TOML ``text`` of a config (or a preset); ``source`` names it in the one-line :class:`UsageError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"{source} nests too deeply") from None
    try:
        too_deep = _depth(data) > _MAX_DEPTH
    except RecursionError:
        too_deep = True
    if too_deep:
        raise UsageError(f"{source} nests deeper than {_MAX_DEPTH} levels; settings are plain values")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise UsageError(f"{source}: {where}: {msg}") from None


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0
