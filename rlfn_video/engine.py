"""The only place the model runs: RGB tensors in, upscaled RGB tensors out.

Front ends (video transcode, image command, eval, VapourSynth, benchmark) all call `Engine`;
it knows nothing of files, colour or progress.
"""

from __future__ import annotations

import os

import torch

from .devices import resolve_device
from .models import DEFAULT_MODEL, ModelDescriptor, load_model


class Engine:
    def __init__(self, model: ModelDescriptor, *, device: str | torch.device = "auto", half: bool | None = None):
        self.device = resolve_device(device)
        if half is None:  # fp16 where it pays (CUDA); fp32 on CPU, where fp16 convs are slow
            half = self.device.type == "cuda"
        self.dtype = torch.float16 if half else torch.float32
        self.model = model.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)

    @classmethod
    def from_options(
        cls,
        *,
        scale: int | None = 4,
        model: str | None = DEFAULT_MODEL,
        weights: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        half: bool | None = None,
    ) -> "Engine":
        return cls(load_model(scale=scale, model=model, weights=weights), device=device, half=half)

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def name(self) -> str:
        return self.model.name

    @torch.inference_mode()
    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) or (3, H, W) float RGB in [0, 1] -> float32, `scale`x larger, on `self.device`."""
        single = rgb.dim() == 3
        x = rgb.unsqueeze(0) if single else rgb
        y = self.model(x.to(device=self.device, dtype=self.dtype, non_blocking=True)).float()
        return y[0] if single else y
