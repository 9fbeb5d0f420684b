"""MATLAB-compatible bicubic `imresize` (a = -0.5, antialiased when shrinking), in torch.

The benchmark LR images of the SR literature are made by MATLAB's imresize; torch's bicubic
(a = -0.75, no antialiasing) gives different pixels. Each axis is a dense (out x in) weight
matrix built once per size, so the resize is two matmuls and runs on any device.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def _cubic(x: torch.Tensor) -> torch.Tensor:
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=256)
def _weights(in_len: int, out_len: int, scale: float) -> torch.Tensor:
    """(out_len, in_len) float64 matrix; MATLAB's `contributions` with symmetric edge padding."""
    width = 4.0
    antialias = scale < 1
    if antialias:
        width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if antialias else _cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    # Symmetric padding: index -1 -> 0, in_len -> in_len - 1, ... (MATLAB 1-based aux array).
    period = 2 * in_len
    j = torch.remainder(idx - 1, period).long()
    j = torch.where(j < in_len, j, period - 1 - j)
    mat = torch.zeros(out_len, in_len, dtype=torch.float64)
    mat.scatter_add_(1, j, w)
    return mat


def imresize(img: torch.Tensor, scale: float, *, quantize: bool = False) -> torch.Tensor:
    """Resize (..., H, W) by `scale` like MATLAB `imresize(img, scale, 'bicubic')`.

    Output size is ceil(size * scale). With `quantize`, values (0-255 range) are rounded and
    clamped after each axis, as MATLAB does for uint8 images. Returns the input's float dtype
    (float32 for integer input).
    """
    h, w = img.shape[-2:]
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    dtype = img.dtype if img.is_floating_point() else torch.float32
    x = img.to(dtype)
    # MATLAB resizes the axis with the smaller scale first; with one scale for both, height first.
    wh = _weights(h, out_h, float(scale)).to(device=img.device, dtype=dtype)
    x = torch.matmul(wh, x)
    if quantize:
        x = x.round().clamp(0, 255)
    ww = _weights(w, out_w, float(scale)).to(device=img.device, dtype=dtype)
    x = torch.matmul(x, ww.T)
    if quantize:
        x = x.round().clamp(0, 255)
    return x


def downscale(hr: torch.Tensor, scale: int, *, quantize: bool = True) -> torch.Tensor:
    """LR image of the SR protocol: crop HR to a multiple of `scale`, then MATLAB-bicubic 1/scale."""
    h, w = hr.shape[-2:]
    hr = hr[..., : h - h % scale, : w - w % scale]
    return imresize(hr, 1 / scale, quantize=quantize)
