"""The only place the model runs: RGB tensors in, upscaled RGB tensors out.

Front ends (video transcode, image command, eval, VapourSynth, benchmark) all call `Engine`;
it knows nothing of files, colour or progress.

Precision: "fp32", "fp16" (CUDA: weights and activations in half) or "bf16" (autocast; on CPUs
with native bf16 it is ~3x faster than fp32 and stays within +-1 of it on 8-bit output).
`half=True` means the fast low precision of the device: fp16 on CUDA, bf16 on CPU.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .devices import resolve_device
from .models import DEFAULT_MODEL, ModelDescriptor, load_model

PRECISIONS = ("fp32", "fp16", "bf16")


def native_bf16_cpu() -> bool:
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe and probe())


def choose_precision(device: torch.device, half: bool | None, precision: str | None) -> str:
    if precision is not None:
        if precision not in PRECISIONS:
            from .errors import RlfnError

            raise RlfnError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
        return precision
    if half is False:
        return "fp32"
    if device.type == "cuda":
        return "fp16"
    # CPU: bf16 when asked, or by default where the CPU computes it natively.
    return "bf16" if half or native_bf16_cpu() else "fp32"


class Engine:
    def __init__(self, model: ModelDescriptor, *, device: str | torch.device = "auto", half: bool | None = None,
                 precision: str | None = None):
        self.device = resolve_device(device)
        self.precision = choose_precision(self.device, half, precision)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32  # dtype of weights and input
        model = model.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        self.model = model.to(memory_format=torch.channels_last)

    @classmethod
    def from_options(
        cls,
        *,
        scale: int | None = 4,
        model: str | None = DEFAULT_MODEL,
        weights: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        half: bool | None = None,
        precision: str | None = None,
    ) -> "Engine":
        return cls(load_model(scale=scale, model=model, weights=weights), device=device, half=half,
                   precision=precision)

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def name(self) -> str:
        return self.model.name

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) or (3, H, W) float RGB in [0, 1] -> float32, `scale`x larger, on `self.device`."""
        single = rgb.dim() == 3
        x = rgb.unsqueeze(0) if single else rgb
        x = x.to(device=self.device, dtype=self.dtype, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with self._autocast():
            y = self.model(x)
        y = y.float().contiguous()
        return y[0] if single else y
