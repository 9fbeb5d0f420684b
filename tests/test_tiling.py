"""Tiles: aligned spans that cover the frame exactly, output within 45 dB of whole frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rlfn_video import tiling
from rlfn_video.engine import Engine
from rlfn_video.errors import RlfnError
from rlfn_video.models import arch_for

from .shared import BENCHMARKS, needs_shared
from .sr_models import psnr8, reference_model


@pytest.mark.parametrize("n", [1, 14, 48, 49, 100, 361])
@pytest.mark.parametrize("tile, overlap", [(48, 24), (96, 12), (6, 6)])
def test_spans_cover_exactly_and_start_aligned(n, tile, overlap):
    spans = tiling.spans(n, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # cores tile [0, n) without gaps
    for start, end, w0, w1 in spans:
        assert w0 % tiling.ALIGN == 0 and start % tiling.ALIGN == 0  # ESA's grid phase of the whole frame
        assert w0 == max(0, start - overlap) and w1 == min(n, end + overlap)
    if n <= tile:
        assert spans == [(0, n, 0, n)]


def test_fit_tile_fits_its_budget():
    arch = arch_for("rlfn", 4)
    per_px = tiling.activation_bytes(arch, 2, 1)
    for budget in (2**26, 2**30, 2**33):
        tile = tiling.fit_tile(budget, arch, 2, 1, 24)
        assert tile % tiling.ALIGN == 0 and tile >= tiling.MIN_TILE
        assert tile == tiling.MIN_TILE or (tile + 48) ** 2 * per_px <= budget


def comic_lr() -> torch.Tensor:
    img = Image.open(BENCHMARKS / "Set14" / "HR" / "comic.png").convert("RGB")
    img = img.resize((img.width // 2, img.height // 2), Image.BICUBIC)  # 125x180
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)[None]


@needs_shared
def test_tiled_within_45db_of_whole_frame():
    """Small tiles (48 px cores, 12 of them) with the default 24 px overlap: the worst case."""
    x = comic_lr()
    whole = Engine(reference_model(2), device="cpu", precision="fp32", tile=None)(x)
    tiled = Engine(reference_model(2), device="cpu", precision="fp32", tile=48)(x)
    assert tiled.shape == whole.shape == (1, 3, 360, 250)
    assert not torch.equal(tiled, whole)  # the tiles did run, and RLFN is not shift-invariant
    assert psnr8(tiled, whole) >= 45


def test_one_tile_is_the_whole_frame_and_cpu_auto_never_tiles():
    x = torch.rand(1, 3, 30, 40)
    whole = Engine(reference_model(2), device="cpu", precision="fp32", tile=None)(x)
    assert torch.equal(Engine(reference_model(2), device="cpu", precision="fp32", tile=48)(x), whole)
    auto = Engine(reference_model(2), device="cpu", precision="fp32")
    assert auto.tile == "auto" and auto.tile_for(1, 4000, 4000) is None
    assert torch.equal(auto(x), whole)


def test_tile_option_is_aligned_or_refused():
    assert Engine(reference_model(2), device="cpu", tile=100).tile == 96
    assert Engine(reference_model(2), device="cpu", tile=100, tile_overlap=20).tile_overlap == 24
    with pytest.raises(RlfnError, match="tile must be"):
        Engine(reference_model(2), device="cpu", tile="big")
