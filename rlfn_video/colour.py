"""Y'CbCr <-> R'G'B' maths in torch: the one place the matrices, ranges and chroma filters live.

Everything works on gamma-encoded values (no linearisation, no gamut mapping): the network sees
the same R'G'B' a player would show, and primaries/transfer are only carried through as tags.
Tensors may carry leading batch dims: planes are (..., H, W), RGB is (..., 3, H, W), and any
device works, so the pipeline can convert on the GPU.

Chroma siting (H.273 / AVChromaLocation) decides where a subsampled chroma sample sits between
luma samples. Upsampling is bilinear at the sited position (edge samples repeat); downsampling is
the matching average: a 2-tap box for centred samples, [1, 2, 1] / 4 for co-sited ones. H.264,
HEVC and AV1 4:2:0 default to "left" (co-sited horizontally, centred vertically); JPEG uses
"center". Bottom sitings (rare) are treated as their top/centre counterparts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import numpy as np
import torch

from .errors import UnsupportedInputError

Subsampling = Literal["420", "422", "444"]


class Matrix(str, Enum):
    BT601 = "bt601"
    BT709 = "bt709"
    BT2020 = "bt2020nc"
    SMPTE240M = "smpte240m"
    FCC = "fcc"
    RGB = "rgb"  # planar G, B, R samples, no matrix (gbrp sources)


# (Kr, Kb) of each Y'CbCr matrix; Kg = 1 - Kr - Kb.
_KR_KB = {
    Matrix.BT601: (0.299, 0.114),
    Matrix.BT709: (0.2126, 0.0722),
    Matrix.BT2020: (0.2627, 0.0593),
    Matrix.SMPTE240M: (0.212, 0.087),
    Matrix.FCC: (0.30, 0.11),
}

# H.273 MatrixCoefficients (= AVColorSpace) -> Matrix. Others (YCgCo, BT.2020 constant luminance,
# ICtCp, ...) need more than a 3x3 matrix and are refused.
_MATRIX_FROM_CODE = {0: Matrix.RGB, 1: Matrix.BT709, 4: Matrix.FCC, 5: Matrix.BT601, 6: Matrix.BT601,
                     7: Matrix.SMPTE240M, 9: Matrix.BT2020}
# Tags written for a matrix we had to guess, so players do not guess again from the new (larger)
# frame size: (colorspace, primaries, transfer) codes of H.273.
_DEFAULT_TAGS = {Matrix.BT601: (6, 6, 6), Matrix.BT709: (1, 1, 1), Matrix.BT2020: (9, 9, 14),
                 Matrix.SMPTE240M: (7, 7, 7), Matrix.FCC: (4, 4, 4), Matrix.RGB: (0, 1, 13)}
_UNSPECIFIED = 2  # the "unspecified" code of all three H.273 enums

# AVChromaLocation code -> name, and name -> (horizontally co-sited, vertically co-sited).
_CHROMA_LOC_FROM_CODE = {0: "left", 1: "left", 2: "center", 3: "topleft", 4: "top", 5: "left", 6: "center"}
_CHROMA_LOC_CODE = {"left": 1, "center": 2, "topleft": 3, "top": 4}
_COSITED = {"left": (True, False), "center": (False, False), "topleft": (True, True), "top": (False, True)}


@dataclass(frozen=True)
class ColourSpec:
    """How a frame's integer planes map to R'G'B'. The codes are H.273 ones, as PyAV exposes."""

    matrix: Matrix
    full_range: bool
    primaries: int = _UNSPECIFIED
    transfer: int = _UNSPECIFIED
    bit_depth: int = 8
    subsampling: Subsampling = "420"
    chroma_loc: str = "left"
    colorspace: int = _UNSPECIFIED  # the MatrixCoefficients code, kept as the source spelled it
    guessed: tuple[str, ...] = ()  # fields that were untagged and chosen by rule

    @property
    def color_range(self) -> int:
        return 2 if self.full_range else 1

    @property
    def chroma_loc_code(self) -> int:
        return _CHROMA_LOC_CODE[self.chroma_loc]

    def describe(self) -> str:
        """E.g. "bt709 limited 10-bit 4:2:0 left"."""
        sub = ":".join(self.subsampling)
        return (f"{self.matrix.value} {'full' if self.full_range else 'limited'} {self.bit_depth}-bit {sub}"
                f"{f' {self.chroma_loc}' if self.subsampling != '444' else ''}")


def default_matrix(width: int, height: int) -> Matrix:
    """Untagged video: BT.709 for HD, BT.601 below (what players and FFmpeg's filters assume)."""
    return Matrix.BT709 if height >= 720 or width >= 1280 else Matrix.BT601


def spec_from_tags(*, colorspace: int, color_range: int, primaries: int, transfer: int, width: int, height: int,
                   bit_depth: int = 8, subsampling: Subsampling = "420", chroma_loc: int = 0,
                   rgb: bool = False) -> ColourSpec:
    """ColourSpec from H.273 codes; untagged matrix by frame size, untagged range -> limited.

    Unspecified primaries/transfer/colorspace are filled with the guessed matrix's usual values."""
    guessed = []
    if rgb:
        matrix = Matrix.RGB
    elif colorspace in _MATRIX_FROM_CODE and colorspace != 0:
        matrix = _MATRIX_FROM_CODE[colorspace]
    elif colorspace in (_UNSPECIFIED, 3, 0):  # 3 is "reserved", treated as unspecified
        matrix = default_matrix(width, height)
        guessed.append("matrix")
    else:
        raise UnsupportedInputError(f"unsupported colour matrix (H.273 MatrixCoefficients {colorspace})")
    defaults = _DEFAULT_TAGS[matrix]
    if matrix is Matrix.RGB:
        full_range = color_range != 1  # RGB is full range unless it says otherwise
    else:
        full_range = color_range == 2
        if color_range not in (1, 2):
            guessed.append("range")
    if primaries in (_UNSPECIFIED, 0):
        primaries = defaults[1]
        guessed.append("primaries")
    if transfer in (_UNSPECIFIED, 0):
        transfer = defaults[2]
        guessed.append("transfer")
    code = colorspace if "matrix" not in guessed and not rgb else defaults[0]
    return ColourSpec(matrix=matrix, full_range=full_range, primaries=primaries, transfer=transfer,
                      bit_depth=bit_depth, subsampling="444" if rgb else subsampling,
                      chroma_loc=_CHROMA_LOC_FROM_CODE.get(chroma_loc, "left"), colorspace=code,
                      guessed=tuple(guessed))


def format_layout(fmt: Any) -> tuple[bool, int, Subsampling]:
    """(is_rgb, bit_depth, subsampling) of a PyAV VideoFormat; subsampling is the nearest one
    we handle (4:1:1 and 4:1:0 -> 4:2:2 / 4:2:0, 4:4:0 -> 4:4:4)."""
    comps = [c for c in fmt.components if not c.is_alpha]
    depth = max(8, max(c.bits for c in comps))
    if fmt.is_rgb or len(comps) < 3:
        return bool(fmt.is_rgb), depth, "444"
    w_sub = fmt.chroma_width(1024) < 1024
    h_sub = fmt.chroma_height(1024) < 1024
    return False, depth, ("420" if w_sub and h_sub else "422" if w_sub else "444")


def sample_dtype(bit_depth: int) -> np.dtype:
    """Integer plane samples of this depth: uint8 up to 8 bits, else little-endian uint16."""
    return np.dtype(np.uint8 if bit_depth <= 8 else "<u2")


def sample_torch_dtype(bit_depth: int) -> torch.dtype:
    return torch.uint8 if bit_depth <= 8 else torch.uint16


def jpeg_range(pix_fmt: str) -> bool:
    """The deprecated JPEG formats (yuvj420p, ...): the planes of yuv4xxp, full range whatever the tag."""
    return pix_fmt.startswith("yuvj")


def spec_from_av(obj: Any) -> ColourSpec:
    """ColourSpec from a PyAV VideoFrame or video stream (duck-typed: no av import here)."""
    cc = getattr(obj, "codec_context", obj)
    fmt = cc.format
    rgb, depth, sub = format_layout(fmt)
    color_range = cc.color_range
    if jpeg_range(fmt.name):
        color_range = 2
    loc = getattr(cc, "chroma_location", None)
    if loc is None:
        loc = getattr(cc, "chroma_sample_location", 0)
    return spec_from_tags(colorspace=cc.colorspace, color_range=color_range, primaries=cc.color_primaries,
                          transfer=cc.color_trc, width=cc.width, height=cc.height, bit_depth=depth,
                          subsampling=sub, chroma_loc=loc, rgb=rgb)


# ---------------------------------------------------------------------------------------------
# Ranges and matrices


def _levels(full_range: bool, bit_depth: int) -> tuple[float, float, float, float]:
    """(luma offset, luma excursion, chroma offset, chroma excursion) in code values (H.273)."""
    if full_range:
        top = float(2**bit_depth - 1)
        return 0.0, top, float(2 ** (bit_depth - 1)), top
    k = float(2 ** (bit_depth - 8))
    return 16 * k, 219 * k, 128 * k, 224 * k


def _kr_kb(matrix: Matrix | str) -> tuple[float, float]:
    m = Matrix(matrix)
    if m is Matrix.RGB:
        raise ValueError("the RGB 'matrix' has no luma coefficients")
    return _KR_KB[m]


def luma(rgb: torch.Tensor, *, matrix: Matrix | str = "bt601", full_range: bool = False) -> torch.Tensor:
    """Float Y' in 8-bit code values from (..., 3, H, W) RGB in [0, 1], unrounded.

    bt601 limited is MATLAB's rgb2ycbcr: 16 + 65.481 R + 128.553 G + 24.966 B (the SR-eval Y)."""
    kr, kb = _kr_kb(matrix)
    y0, ys, _, _ = _levels(full_range, 8)
    r, g, b = rgb.unbind(-3)
    return y0 + ys * (kr * r + (1 - kr - kb) * g + kb * b)


# ---------------------------------------------------------------------------------------------
# Chroma resampling along one axis


def _upsample_axis(c: torch.Tensor, dim: int, size: int, cosited: bool) -> torch.Tensor:
    n = c.shape[dim]
    if n == size:
        return c
    # Luma sample x sits at chroma coordinate x/2 (co-sited) or x/2 - 1/4 (centred).
    pos = torch.arange(size, device=c.device, dtype=c.dtype) / 2 - (0.0 if cosited else 0.25)
    pos = pos.clamp(0, n - 1)
    i0 = pos.floor().long()
    i1 = (i0 + 1).clamp(max=n - 1)
    shape = [1] * c.dim()
    shape[dim] = size
    w = (pos - i0).view(shape)
    a, b = c.index_select(dim, i0), c.index_select(dim, i1)
    return a + (b - a) * w


def _downsample_axis(x: torch.Tensor, dim: int, cosited: bool) -> torch.Tensor:
    n = x.shape[dim]
    j2 = torch.arange(math.ceil(n / 2), device=x.device) * 2
    nxt = x.index_select(dim, (j2 + 1).clamp(max=n - 1))  # an odd size repeats its last sample
    if not cosited:
        return (x.index_select(dim, j2) + nxt) / 2
    prev = x.index_select(dim, (j2 - 1).clamp(min=0))
    return (prev + 2 * x.index_select(dim, j2) + nxt) / 4


def _subsampled_axes(subsampling: str) -> tuple[bool, bool]:
    """(vertical, horizontal) subsampling."""
    if subsampling not in ("420", "422", "444"):
        raise ValueError(f"unsupported chroma subsampling {subsampling!r}")
    return subsampling == "420", subsampling in ("420", "422")


# ---------------------------------------------------------------------------------------------
# Conversions


def yuv_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, matrix: Matrix | str, full_range: bool,
               bit_depth: int, chroma_loc: str = "left", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer (or float code-value) planes -> R'G'B' (..., 3, H, W) in [0, 1].

    u/v may be 4:2:0, 4:2:2 or 4:4:4 relative to y (chroma size ceil(size / 2)); they are
    upsampled to y's size as described in the module docstring."""
    kr, kb = _kr_kb(matrix)
    h, w = y.shape[-2:]
    h_cosited, v_cosited = _COSITED[chroma_loc]
    planes = []
    for c in (u, v):
        c = _upsample_axis(c.to(dtype), -2, h, v_cosited)
        planes.append(_upsample_axis(c, -1, w, h_cosited))
    y0, ys, c0, cs = _levels(full_range, bit_depth)
    yn = (y.to(dtype) - y0) / ys
    pb = (planes[0] - c0) / cs
    pr = (planes[1] - c0) / cs
    r = yn + 2 * (1 - kr) * pr
    b = yn + 2 * (1 - kb) * pb
    g = (yn - kr * r - kb * b) / (1 - kr - kb)
    return torch.stack((r, g, b), dim=-3).clamp_(0, 1)


def _quantize(x: torch.Tensor, lo: float, hi: float, bit_depth: int) -> torch.Tensor:
    return x.round().clamp_(lo, hi).to(sample_torch_dtype(bit_depth))


def rgb_to_yuv(rgb: torch.Tensor, *, matrix: Matrix | str, full_range: bool, bit_depth: int,
               subsampling: Subsampling = "420", chroma_loc: str = "left"
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """R'G'B' (..., 3, H, W) in [0, 1] -> integer (y, u, v): uint8 up to 8 bits, else uint16.

    Rounded, then clamped to the nominal range of the depth (16-235 / 16-240 x 2^(n-8) limited,
    0..2^n - 1 full). Chroma of 4:2:0 / 4:2:2 has size ceil(size / 2)."""
    kr, kb = _kr_kb(matrix)
    rgb = rgb.float() if not rgb.is_floating_point() else rgb
    r, g, b = rgb.unbind(-3)
    yn = kr * r + (1 - kr - kb) * g + kb * b
    pb = (b - yn) / (2 * (1 - kb))
    pr = (r - yn) / (2 * (1 - kr))
    vert, horiz = _subsampled_axes(subsampling)
    h_cosited, v_cosited = _COSITED[chroma_loc]
    chroma = []
    for c in (pb, pr):
        if vert:
            c = _downsample_axis(c, -2, v_cosited)
        if horiz:
            c = _downsample_axis(c, -1, h_cosited)
        chroma.append(c)
    y0, ys, c0, cs = _levels(full_range, bit_depth)
    c_lo, c_hi = (0.0, ys) if full_range else (c0 - cs / 2, c0 + cs / 2)
    y = _quantize(y0 + ys * yn, y0, y0 + ys, bit_depth)
    u = _quantize(c0 + cs * chroma[0], c_lo, c_hi, bit_depth)
    v = _quantize(c0 + cs * chroma[1], c_lo, c_hi, bit_depth)
    return y, u, v


def planes_to_rgb(planes: tuple[torch.Tensor, ...] | list[torch.Tensor], spec: ColourSpec,
                  *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Decoded planes (Y, U, V, or G, B, R for RGB sources) -> (..., 3, H, W) RGB in [0, 1]."""
    if spec.matrix is Matrix.RGB:
        g, b, r = (p.to(dtype) for p in planes[:3])
        return (torch.stack((r, g, b), dim=-3) / (2**spec.bit_depth - 1)).clamp_(0, 1)
    return yuv_to_rgb(*planes[:3], matrix=spec.matrix, full_range=spec.full_range, bit_depth=spec.bit_depth,
                      chroma_loc=spec.chroma_loc, dtype=dtype)


def rgb_to_planes(rgb: torch.Tensor, spec: ColourSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., 3, H, W) RGB in [0, 1] -> integer planes laid out as `spec` says (inverse of planes_to_rgb)."""
    if spec.matrix is Matrix.RGB:
        top = 2**spec.bit_depth - 1
        r, g, b = rgb.unbind(-3)
        return tuple(_quantize(p * top, 0, top, spec.bit_depth) for p in (g, b, r))  # type: ignore[return-value]
    return rgb_to_yuv(rgb, matrix=spec.matrix, full_range=spec.full_range, bit_depth=spec.bit_depth,
                      subsampling=spec.subsampling, chroma_loc=spec.chroma_loc)
