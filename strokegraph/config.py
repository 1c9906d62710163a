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
top level or in a role, are usage errors. Command-line flags override the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from strokegraph.errors import UsageError

__all__ = ["RoleConfig", "RunConfig", "load_config"]


class RoleConfig(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | None = None

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int | None = None
    max_rounds: int | None = Field(default=None, ge=0)
    rounds_per_step: int | None = Field(default=None, ge=0)
    max_sampling_steps: int | None = Field(default=None, ge=1)
    single_pass: bool | None = None
    planner: RoleConfig = RoleConfig()
    drafter: RoleConfig = RoleConfig()
    critic: RoleConfig = RoleConfig()
    refiner: RoleConfig = RoleConfig()


def load_config(path: str | Path) -> RunConfig:
    """Read and check a config file; every problem is a one-line :class:`UsageError`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read config {str(path)!r}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config {str(path)!r} is not valid TOML: {exc}") from exc
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise UsageError(f"config {str(path)!r}: {where}: {msg}") from exc
