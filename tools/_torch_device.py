"""Device and dtype settings shared by the torch-based backends (diffusers, transformers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from strokegraph.errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["DType", "resolve_device", "resolve_dtype"]

DType = Literal["auto", "float32", "float16", "bfloat16"]
_DTYPES: tuple[str, ...] = DType.__args__  # type: ignore[attr-defined]
_DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` becomes ``"cuda"``, else ``"mps"``, else ``"cpu"``; an explicit device must exist."""
    import torch

    kind, _, index = device.partition(":")
    if kind not in _DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise UsageError(f"unknown device {device!r}; expected one of {', '.join(_DEVICES)} or 'cuda:<index>'")
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if kind == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if (kind == "cuda" and not torch.cuda.is_available()) or (kind == "mps" and not has_mps):
        raise UsageError(f"device {device!r} is not available on this machine; use device 'auto' or 'cpu'")
    return device


def resolve_dtype(dtype: str, device: str, *, cuda_auto: Literal["float16", "bfloat16"]) -> torch.dtype:
    """The torch dtype for ``dtype``. ``"auto"`` is float32 on CPU and MPS, and ``cuda_auto`` on
    CUDA (bfloat16 falls back to float16 where the card lacks it)."""
    import torch

    if dtype not in _DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; expected one of {', '.join(_DTYPES)}")
    if dtype != "auto":
        return getattr(torch, dtype)
    if not device.startswith("cuda"):
        return torch.float32
    if cuda_auto == "bfloat16" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
