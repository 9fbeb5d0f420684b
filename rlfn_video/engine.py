"""The only place the model runs: RGB tensors in, upscaled RGB tensors out.

Front ends (video transcode, image command, eval, VapourSynth, benchmark) all call `Engine`;
it knows nothing of files, colour or progress.

Precision: "fp32", "fp16" (CUDA: weights and activations in half) or "bf16" (autocast; on CPUs
with native bf16 it is ~3x faster than fp32; on 8-bit output >= 54.9 dB from fp32's, >= 99.94 %
of values within +-1, at most 3 apart: Set14 x4, torch and OpenVINO alike, precision_gate.py).
`fast=True` means the device's fast precision: fp16 on CUDA, bf16 on CPUs (the default on CUDA
and on CPUs with native bf16); `fast=False` means fp32. (`half=` is the old name of `fast=`.)

Backend (backends.py): "auto" (default), "torch", "torch-compile", "openvino" or a
`Backend.Torch(...)`/`Backend.OpenVINO(...)`; it only runs the network, the engine keeps the value
range, padding, clamping and tiling around it. `engine.backend` is the resolved config.

Tiling (tiling.py): `tile="auto"` (default) runs whole frames, and on CUDA switches to aligned,
overlapping tiles when the estimated activations of a frame exceed the free memory; an int
forces tiles of that many LR pixels (rounded down to the ESA stride of 6); None never tiles.
"""

from __future__ import annotations

import functools
import os

import torch

from . import backends, tiling
from .backends import Backend
from .devices import resolve_device
from .models import DEFAULT_MODEL, ModelDescriptor, load_model

PRECISIONS = ("fp32", "fp16", "bf16")


def choose_precision(device: torch.device, fast: bool | None, precision: str | None,
                     backend: backends.Spec = None) -> str:
    """`precision`, else `fast`, else the backend's own (an explicit Backend.OpenVINO precision,
    fp16 on an Intel GPU), else the device's: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32."""
    if precision is None and fast is None:
        precision = backends.precision_hint(backend)
    if precision is not None:
        if precision not in PRECISIONS:
            from .errors import RlfnError

            raise RlfnError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
        return precision
    if fast is False:
        return "fp32"
    if device.type == "cuda":
        return "fp16"
    # CPU: bf16 when asked, or by default where the CPU computes it natively.
    return "bf16" if fast or backends.native_bf16_cpu() else "fp32"


_MEMORY_SHARE = 0.8  # of the free GPU memory a frame's activations may take before tiling


class Engine:
    def __init__(self, model: ModelDescriptor, *, device: str | torch.device = "auto", fast: bool | None = None,
                 precision: str | None = None, tile: int | str | None = "auto",
                 tile_overlap: int = tiling.DEFAULT_OVERLAP, backend: backends.Spec = "auto",
                 half: bool | None = None):
        fast = half if fast is None else fast  # `half=`: the old name of `fast=`, still accepted
        spec = backends.parse_backend(backend)
        if isinstance(spec, Backend.OpenVINO) and device in (None, "auto"):
            device = "cpu"  # OpenVINO's tensors live on the host, whatever GPU torch sees
        self.device = resolve_device(device)
        self.precision = choose_precision(self.device, fast, precision, spec)
        self.backend = backends.resolve_backend(spec, self.device, self.precision)
        torch_fp16 = self.precision == "fp16" and isinstance(self.backend, Backend.Torch)
        self.dtype = torch.float16 if torch_fp16 else torch.float32  # dtype of weights and input
        model = model.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        self.model = model.to(memory_format=torch.channels_last)
        self._run = backends.runner(self.backend, self.model.net, self.device, self.precision)
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
        fast: bool | None = None,
        precision: str | None = None,
        tile: int | str | None = "auto",
        backend: backends.Spec = "auto",
        half: bool | None = None,  # the old name of `fast`
    ) -> "Engine":
        return cls(load_model(scale=scale, model=model, weights=weights), device=device, fast=fast, half=half,
                   precision=precision, tile=tile, backend=backend)

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def backend_label(self) -> str:
        """What runs the network, e.g. "openvino bf16", "torch fp16"."""
        return backends.label(self.backend, self.precision)

    @property
    def graphs(self) -> bool | None:
        """The backend's CUDA graphs default for the pipeline: None (auto), True or False."""
        graphs = getattr(self.backend, "graphs", "off")
        return None if graphs == "auto" else graphs == "on"

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

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, *, capturing: bool = False) -> torch.Tensor:
        """The model on prepared input ((N, 3, H, W) of `self.dtype`, channels_last, on the device):
        clamped output (bf16 from torch under bf16 autocast, else the dtype the backend returns),
        tiled when `tile_for` says. `capturing`: inside CUDA graph capture (autocast must not
        cache casts there)."""
        tile = self.tile_for(x.shape[0], *x.shape[-2:])
        model = functools.partial(self.model.around, functools.partial(self._run, capturing=capturing))
        if tile is not None:
            return tiling.run_tiled(model, x, tile=tile, overlap=self.tile_overlap, scale=self.scale)
        return model(x)

    @torch.inference_mode()
    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) or (3, H, W) float RGB in [0, 1] -> float32, `scale`x larger, on `self.device`."""
        single = rgb.dim() == 3
        x = rgb.unsqueeze(0) if single else rgb
        x = x.to(device=self.device, dtype=self.dtype, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = self.forward(x).float().contiguous()
        return y[0] if single else y
