"""Turning the user's `--device` string into a torch.device, with errors a user can act on."""

from __future__ import annotations

import torch

from .errors import RlfnError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """`auto` (CUDA when torch sees a GPU, else CPU), `cpu`, `cuda` or `cuda:N`."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise RlfnError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RlfnError(f"device {spec!r} requested but torch sees no CUDA GPU; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RlfnError(f"device {spec!r} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    elif dev.type != "cpu":
        raise RlfnError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return dev
