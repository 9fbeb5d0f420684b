"""The one contract every caller relies on: NCHW RGB in [0, 1] in, clamped [0, 1] out."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .rlfn import MIN_SIZE, RLFN, output_size


class ModelDescriptor(nn.Module):
    """Wraps an `RLFN` with its value range (255 for official weights), the 15x15 minimum
    input (smaller frames are edge-padded and the output cropped) and output clamping."""

    supports_half = True
    min_size = MIN_SIZE

    def __init__(self, net: RLFN, *, value_range: float, name: str, meta: dict | None = None):
        super().__init__()
        self.net = net
        self.value_range = float(value_range)
        self.name = name
        self.meta = meta or {}

    @property
    def scale(self) -> int:
        return self.net.arch.scale

    @property
    def arch(self):
        return self.net.arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.around(self.net, x)

    def around(self, net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The contract around `net`: this model's network or a backend running it (backends.py)."""
        h, w = x.shape[-2:]
        pad_h, pad_w = max(0, self.min_size - h), max(0, self.min_size - w)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        y = net(x * self.value_range) if self.value_range != 1 else net(x)
        if self.value_range != 1:
            y = y / self.value_range
        ow, oh = output_size(w, h, self.scale)
        return y[..., :oh, :ow].clamp_(0, 1)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, value_range={self.value_range:g}"
