"""The only place the model runs: RGB tensors in, upscaled RGB tensors out.

Front ends (video transcode, image command, eval, VapourSynth, benchmark) all call `Engine`;
it knows nothing of files, colour or progress.

Precision: "fp32", "fp16" (CUDA: weights and activations in half) or "bf16" (autocast; on CPUs
with native bf16 it is ~3x faster than fp32 and stays within +-1 of it on 8-bit output).
`half=True` means the fast low precision of the device: fp16 on CUDA, bf16 on CPU.

Tiling (tiling.py): `tile="auto"` (default) runs whole frames, and on CUDA switches to aligned,
overlapping tiles when the estimated activations of a frame exceed the free memory; an int
forces tiles of that many LR pixels (rounded down to the ESA stride of 6); None never tiles.
"""

from __future__ import annotations

import contextlib
import os

import torch

from . import tiling
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


_MEMORY_SHARE = 0.8  # of the free GPU memory a frame's activations may take before tiling


class Engine:
    def __init__(self, model: ModelDescriptor, *, device: str | torch.device = "auto", half: bool | None = None,
                 precision: str | None = None, tile: int | str | None = "auto",
                 tile_overlap: int = tiling.DEFAULT_OVERLAP):
        self.device = resolve_device(device)
        self.precision = choose_precision(self.device, half, precision)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32  # dtype of weights and input
        model = model.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        self.model = model.to(memory_format=torch.channels_last)
        if isinstance(tile, int) and not isinstance(tile, bool):
            tile = max(tiling.ALIGN, tile // tiling.ALIGN * tiling.ALIGN)
        elif tile not in (None, "auto"):
            from .errors import RlfnError

            raise RlfnError(f"tile must be 'auto', None or a size in pixels, not {tile!r}")
        self.tile = tile
        self.tile_overlap = tiling.align_up(tile_overlap)
        self._tiles: dict[tuple[int, int, int], int | None] = {}

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
        tile: int | str | None = "auto",
    ) -> "Engine":
        return cls(load_model(scale=scale, model=model, weights=weights), device=device, half=half,
                   precision=precision, tile=tile)

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def activation_itemsize(self) -> int:
        return 4 if self.precision == "fp32" else 2

    def activation_bytes(self, frames: int, height: int, width: int) -> int:
        """Estimated peak activation memory of one forward (tiling.activation_bytes)."""
        return tiling.activation_bytes(self.model.arch, self.activation_itemsize, frames * height * width)

    def tile_for(self, frames: int, height: int, width: int, *, budget: int | None = None) -> int | None:
        """Core tile size for this input shape, or None for whole frames (decided once per shape).
        `budget` (bytes, "auto" only): tile for that much memory from now on, e.g. after an
        out-of-memory error showed that whole frames do not fit after all."""
        if self.tile is None or isinstance(self.tile, int):
            return self.tile if self.tile is not None and max(height, width) > self.tile else None
        if self.device.type != "cuda":
            return None
        key = (frames, height, width)
        if budget is None and key not in self._tiles:
            free, _ = torch.cuda.mem_get_info(self.device)
            free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
            if self.activation_bytes(frames, height, width) <= free * _MEMORY_SHARE:
                self._tiles[key] = None
            else:
                budget = int(free * _MEMORY_SHARE)
        if budget is not None:
            tile = tiling.fit_tile(budget, self.model.arch, self.activation_itemsize, frames, self.tile_overlap)
            self._tiles[key] = tile if max(height, width) > tile else None
        return self._tiles[key]

    def _autocast(self, cache: bool = True):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=cache)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, *, capturing: bool = False) -> torch.Tensor:
        """The model on prepared input ((N, 3, H, W) of `self.dtype`, channels_last, on the device):
        clamped output in the model's dtype (bf16 under bf16 autocast), tiled when `tile_for` says.
        `capturing`: inside CUDA graph capture (autocast must not cache casts there)."""
        tile = self.tile_for(x.shape[0], *x.shape[-2:])
        with self._autocast(cache=not capturing):
            if tile is not None:
                return tiling.run_tiled(self.model, x, tile=tile, overlap=self.tile_overlap, scale=self.scale)
            return self.model(x)

    @torch.inference_mode()
    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) or (3, H, W) float RGB in [0, 1] -> float32, `scale`x larger, on `self.device`."""
        single = rgb.dim() == 3
        x = rgb.unsqueeze(0) if single else rgb
        x = x.to(device=self.device, dtype=self.dtype, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = self.forward(x).float().contiguous()
        return y[0] if single else y
