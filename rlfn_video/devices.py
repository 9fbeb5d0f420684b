"""Turning the user's `--device` string into a torch.device, with errors a user can act on.

Note [indexed CUDA devices]: a bare "cuda" is torch's *current* device, but `device.index or 0`,
CuPy (`cupy.cuda.Device(None)` is its own current device, 0 in a fresh thread), NVENC's `gpu`
option and a CUDA stream's device all need a number. `resolve_device` is the one place that
turns "cuda" (and "auto" on a GPU) into `cuda:N` with N = `torch.cuda.current_device()`, so every
consumer downstream sees the same explicit index and nothing reads `None` as 0.
"""

from __future__ import annotations

import torch

from .errors import RlfnError

_FORMS = "auto, cpu, cuda or cuda:N"


def resolve_device(spec: str | torch.device | None = "auto", *, advice: str = "use --device cpu") -> torch.device:
    """`auto` (CUDA when torch sees a GPU, else CPU), `cpu`, `cuda`, `cuda:N` or a torch.device.

    CUDA devices come back with their index (see Note [indexed CUDA devices]). `advice` ends the
    message when a GPU is asked for but torch sees none (front ends name their own option)."""
    if isinstance(spec, torch.device):
        dev, label = spec, str(spec)
    else:
        label = (spec or "auto").strip().lower()
        if label == "auto":
            if not torch.cuda.is_available():
                return torch.device("cpu")
            return torch.device("cuda", torch.cuda.current_device())
        try:
            dev = torch.device(label)
        except (RuntimeError, TypeError, ValueError):
            raise RlfnError(f"unknown device {label!r}; use {_FORMS}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RlfnError(f"device {label!r} requested but torch sees no CUDA GPU; {advice}")
        if dev.index is None:
            return torch.device("cuda", torch.cuda.current_device())
        if dev.index >= torch.cuda.device_count():
            raise RlfnError(f"device {label!r} requested but only {torch.cuda.device_count()} GPU(s) are visible")
        return dev
    if dev.type != "cpu":
        raise RlfnError(f"unsupported device {label!r}; use {_FORMS}")
    return dev
