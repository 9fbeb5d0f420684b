"""Tiles for frames whose activations do not fit in GPU memory, and the memory estimate behind
the choice.

RLFN is not shift-invariant: each ESA block samples a stride-6 grid (3x3 conv, stride 2, then a
7x7 max-pool, stride 3) and scales it back by the ratio of map sizes, so a tile sees its own grid.
Tiles therefore start on multiples of `ALIGN` (the grid phase of the whole frame) and overlap by
a margin that is cropped away; what is left differs from the whole-frame output by far less
than one 8-bit step (tests: >= 45 dB). Whole frames remain the default: tiling is the fallback.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

ALIGN = 6  # ESA's total stride in LR pixels
DEFAULT_OVERLAP = 24  # LR pixels cropped on each inner side of a tile
MIN_TILE = 48


def align_up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def spans(n: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, end, window start, window end) along one axis: cores of `tile` pixels cover [0, n)
    exactly; each window adds `overlap` on both sides within the frame. Starts are multiples of
    ALIGN when tile and overlap are. One span (the whole axis) when n <= tile."""
    out = []
    for start in range(0, n, tile):
        end = min(start + tile, n)
        out.append((start, end, max(0, start - overlap), min(n, end + overlap)))
    return out


def run_tiled(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, tile: int, overlap: int,
              scale: int) -> torch.Tensor:
    """model(x) one tile at a time; x is (N, 3, H, W). Returns (N, 3, H*scale, W*scale)."""
    h, w = x.shape[-2:]
    out = None
    for y0, y1, wy0, wy1 in spans(h, tile, overlap):
        for x0, x1, wx0, wx1 in spans(w, tile, overlap):
            piece = model(x[..., wy0:wy1, wx0:wx1].contiguous(memory_format=torch.channels_last))
            if out is None:
                out = piece.new_empty(x.shape[0], piece.shape[1], h * scale, w * scale)
            out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                piece[..., (y0 - wy0) * scale:(y1 - wy0) * scale, (x0 - wx0) * scale:(x1 - wx0) * scale]
    return out


def activation_bytes(arch, itemsize: int, pixels: int) -> int:
    """Estimated peak activation memory of one forward over `pixels` LR pixels (all frames).

    Channels alive at once per pixel: a block holds the global skip, its input and two mid-size
    maps; ESA adds the gate and its sigmoid over the block output; the upsampler holds the
    3*s^2-channel conv output, the shuffled copy and the clamped view. Doubled for the
    allocator's slack and cuDNN workspaces. The GPU check reports measured peaks next to it."""
    c, m, f, s = arch.channels, arch.mid_channels, arch.esa_channels, arch.scale
    live = max(2 * c + 2 * m, 4 * c + 3 * f, c + 9 * s * s)
    return 2 * live * itemsize * pixels


def fit_tile(budget: int, arch, itemsize: int, frames: int, overlap: int) -> int:
    """The largest aligned core size whose window (core + 2 overlaps, squared) fits `budget`."""
    per_px = activation_bytes(arch, itemsize, 1) * frames
    side = math.isqrt(max(0, budget // per_px)) - 2 * overlap
    return max(MIN_TILE, side // ALIGN * ALIGN)
