"""Super-resolution quality on benchmark sets, by the standard protocol of the SR literature.

Protocol (the one that reproduces the published tables): SR output clamped and rounded to 8 bits;
Y of BT.601 studio swing (MATLAB `rgb2ycbcr`'s coefficients) computed in float64 from the 8-bit
SR and HR images and *not* rounded, as the NTIRE/KAIR test scripts do; `scale` pixels cropped
from every border; PSNR against the HR image cropped to LR size x scale; SSIM on the same Y
with an 11x11 Gaussian (sigma 1.5) window. LR images come from the set's `LR_bicubic/X{scale}`
folder when present, else from the HR by MATLAB-compatible bicubic (resize.py).

`round_y=True` rounds Y to 8 bits first (MATLAB `rgb2ycbcr` on uint8 images, as some papers'
MATLAB scripts do); it scores about 0.02-0.09 dB lower and is never the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .colour import luma
from .errors import UnsupportedInputError
from .models import output_size
from .resize import downscale, imresize

Upscaler = Callable[[torch.Tensor], torch.Tensor]  # (3,H,W) [0,1] -> (3,sH,sW) [0,1]


@dataclass(frozen=True)
class ImageScore:
    name: str
    psnr: float
    ssim: float


def read_rgb(path: Path) -> torch.Tensor:
    """(3, H, W) float64 in 0-255; greyscale and palette images become RGB."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float64)
    return torch.from_numpy(arr).permute(2, 0, 1)


def y_channel(rgb255: torch.Tensor, *, rounded: bool = False) -> torch.Tensor:
    """Y (16-235 scale) of (3, H, W) RGB in 0-255, float64; `rounded`: to 8-bit codes."""
    y = luma(rgb255.double() / 255.0, matrix="bt601", full_range=False)
    return y.round() if rounded else y


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM of two (H, W) images in 0-255 ('valid' 11x11 Gaussian window, sigma 1.5).

    The window is separable: one 11-tap pass down the columns, one along the rows, over the five
    maps at once (the same sums as the 11x11 window to within float64 rounding, ~3x faster)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    x, y = a.double(), b.double()
    maps = torch.stack([x, y, x * x, y * y, x * y])[:, None]
    blurred = F.conv2d(F.conv2d(maps, g.view(1, 1, 11, 1)), g.view(1, 1, 1, 11))[:, 0]
    mx, my, exx, eyy, exy = blurred
    sxx = exx - mx**2
    syy = eyy - my**2
    sxy = exy - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return m.mean().item()


def score(sr255: torch.Tensor, hr255: torch.Tensor, scale: int, *, round_y: bool = False) -> tuple[float, float]:
    """Y-PSNR and SSIM of an 8-bit SR image against its HR, borders of `scale` px cropped."""
    ys, yh = y_channel(sr255, rounded=round_y), y_channel(hr255, rounded=round_y)
    c = scale
    ys, yh = ys[c:-c, c:-c], yh[c:-c, c:-c]
    return psnr(ys, yh), ssim(ys, yh)


def pairs(data: Path, scale: int) -> list[tuple[str, Path, Path | None]]:
    """(name, HR path, LR path or None) for a set folder laid out as HR/ + LR_bicubic/X{s}/."""
    data = Path(data)
    hr_dir = data / "HR" if (data / "HR").is_dir() else data
    files = sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in {".png", ".bmp", ".jpg", ".jpeg"}) \
        if hr_dir.is_dir() else []
    if not files:
        raise UnsupportedInputError(f"no HR images found in {hr_dir}")
    lr_dir = data / "LR_bicubic" / f"X{scale}"
    out = []
    for hr in files:
        lr = lr_dir / f"{hr.stem}x{scale}{hr.suffix}"
        out.append((hr.stem, hr, lr if lr.is_file() else None))
    return out


def bicubic_upscaler(scale: int) -> Upscaler:
    """MATLAB-bicubic upscaling, the baseline every SR table lists."""
    return lambda lr: imresize(lr * 255.0, scale).div(255.0)


def evaluate(upscale: Upscaler, data: Path, scale: int, *, round_y: bool = False) -> list[ImageScore]:
    results = []
    for name, hr_path, lr_path in pairs(data, scale):
        hr = read_rgb(hr_path)
        lr = read_rgb(lr_path) if lr_path else downscale(hr, scale, quantize=True)
        ow, oh = output_size(lr.shape[2], lr.shape[1], scale)
        hr = hr[:, :oh, :ow]
        if hr.shape[1:] != (oh, ow):
            raise UnsupportedInputError(f"{name}: LR {tuple(lr.shape[1:])} x{scale} is larger than HR {tuple(hr.shape[1:])}")
        sr = upscale(lr.float() / 255.0).double().clamp(0, 1).mul(255).round().cpu()
        p, s = score(sr, hr, scale, round_y=round_y)
        results.append(ImageScore(name, p, s))
    return results


def mean(scores: list[ImageScore]) -> tuple[float, float]:
    return float(np.mean([s.psnr for s in scores])), float(np.mean([s.ssim for s in scores]))
