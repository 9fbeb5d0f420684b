"""colour.py against independent references: published matrix coefficients, MATLAB's Y, a float64
re-derivation of H.273, swscale, and hand-computed chroma filters."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from rlfn_video import colour
from rlfn_video.colour import ColourSpec, Matrix
from rlfn_video.errors import UnsupportedInputError

# Published inverse-matrix entries: R = Y + a Cr, G = Y - b Cb - c Cr, B = Y + d Cb (Pb/Pr in [-0.5, 0.5]).
PUBLISHED = {
    "bt601": (1.402, 0.344136, 0.714136, 1.772),
    "bt709": (1.5748, 0.187324, 0.468124, 1.8556),
    "bt2020nc": (1.4746, 0.164553, 0.571353, 1.8814),
}
KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020nc": (0.2627, 0.0593),
         "smpte240m": (0.212, 0.087), "fcc": (0.30, 0.11)}
DEPTHS = (8, 10, 12, 16)


def reference_yuv(rgb: np.ndarray, matrix: str, full: bool, depth: int) -> np.ndarray:
    """float64 H.273 encoding of (3, H, W) RGB, unrounded code values (4:4:4)."""
    kr, kb = KR_KB[matrix]
    m = np.array([[kr, 1 - kr - kb, kb],
                  [-kr / (2 * (1 - kb)), -(1 - kr - kb) / (2 * (1 - kb)), 0.5],
                  [0.5, -(1 - kr - kb) / (2 * (1 - kr)), -kb / (2 * (1 - kr))]])
    e = np.einsum("ij,jhw->ihw", m, rgb)
    if full:
        top = 2**depth - 1
        return np.stack([top * e[0], top * e[1] + 2 ** (depth - 1), top * e[2] + 2 ** (depth - 1)])
    k = 2 ** (depth - 8)
    return np.stack([k * (219 * e[0] + 16), k * (224 * e[1] + 128), k * (224 * e[2] + 128)])


@pytest.mark.parametrize("matrix", PUBLISHED)
def test_matrix_matches_published_coefficients(matrix):
    a, b, c, d = PUBLISHED[matrix]
    y = torch.full((1, 1), 128.0, dtype=torch.float64)
    delta = 20.0  # code values of full-range 8-bit chroma: Pb = 20 / 255
    cb = colour.yuv_to_rgb(y, y + delta, y, matrix=matrix, full_range=True, bit_depth=8, dtype=torch.float64)
    cr = colour.yuv_to_rgb(y, y, y + delta, matrix=matrix, full_range=True, bit_depth=8, dtype=torch.float64)
    base = 128 / 255
    step = delta / 255
    assert cb[:, 0, 0].tolist() == pytest.approx([base, base - b * step, base + d * step], abs=2e-6)
    assert cr[:, 0, 0].tolist() == pytest.approx([base + a * step, base - c * step, base], abs=2e-6)


def test_luma_is_matlab_rgb2ycbcr():
    rgb = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    r, g, b = rgb.unbind(1)
    expected = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    assert torch.allclose(colour.luma(rgb), expected, atol=1e-9)
    assert colour.luma(torch.ones(3, 1, 1)).item() == pytest.approx(235)
    assert colour.luma(torch.ones(3, 1, 1), matrix="bt709", full_range=True).item() == pytest.approx(255)


@pytest.mark.parametrize("matrix", list(KR_KB))
@pytest.mark.parametrize("full", [False, True], ids=["limited", "full"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_round_trip_against_float64_reference(matrix, full, depth, device):
    gen = torch.Generator().manual_seed(depth)
    rgb64 = torch.rand(3, 6, 10, generator=gen, dtype=torch.float64)
    rgb64[:, 0, :8] = torch.tensor([[0, 1, 0, 0, 1, 1, 0, 1], [0, 0, 1, 0, 1, 0, 1, 1], [0, 0, 0, 1, 0, 1, 1, 1]])
    ref = reference_yuv(rgb64.numpy(), matrix, full, depth)
    y, u, v = colour.rgb_to_yuv(rgb64.float().to(device), matrix=matrix, full_range=full, bit_depth=depth,
                                subsampling="444")
    assert y.dtype == (torch.uint8 if depth == 8 else torch.uint16) and y.device.type == device
    ours = np.stack([p.cpu().numpy().astype(np.int64) for p in (y, u, v)])
    # float32 vs float64 may flip a rounding tie; anything more is a wrong matrix or range.
    assert np.abs(ours - np.round(ref)).max() <= 1
    assert np.mean(ours == np.round(ref)) > 0.97
    back = colour.yuv_to_rgb(*(torch.from_numpy(p).to(device) for p in ref), matrix=matrix, full_range=full,
                             bit_depth=depth, dtype=torch.float64)
    assert torch.allclose(back.cpu(), rgb64, atol=1e-9)
    # Through integers: the error is bounded by half a code value of luma and chroma.
    back_q = colour.yuv_to_rgb(y, u, v, matrix=matrix, full_range=full, bit_depth=depth).cpu().double()
    steps = 2**depth - 1 if full else 219 * 2 ** (depth - 8)
    assert (back_q - rgb64).abs().max().item() <= 1.5 / steps


@pytest.mark.parametrize("matrix, code", [("bt601", 6), ("bt709", 1)])
@pytest.mark.parametrize("full", [False, True], ids=["limited", "full"])
def test_agrees_with_swscale(matrix, code, full):
    sws = {"bt601": "ITU601", "bt709": "ITU709"}[matrix]
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv444p", dst_colorspace=sws, dst_color_range="JPEG" if full else "MPEG")
    planes = [torch.from_numpy(np.frombuffer(p, np.uint8).reshape(p.height, -1)[:, : p.width].copy())
              for p in frame.planes]
    ours = colour.yuv_to_rgb(*planes, matrix=matrix, full_range=full, bit_depth=8) * 255
    # swscale's fixed point is ~1 code off in full range; a wrong matrix is off by tens.
    assert (ours - torch.from_numpy(rgb).permute(2, 0, 1).float()).abs().max().item() <= 3.5


@pytest.mark.parametrize("subsampling, size, chroma", [("420", (7, 5), (4, 3)), ("422", (7, 5), (4, 5)),
                                                      ("444", (7, 5), (7, 5)), ("420", (1, 1), (1, 1))])
@pytest.mark.parametrize("loc", ["left", "center", "topleft"])
def test_subsampled_flat_colour_is_exact(subsampling, size, chroma, loc, device):
    w, h = size
    rgb = torch.tensor([0.8, 0.25, 0.1], device=device)[:, None, None].expand(3, h, w)
    y, u, v = colour.rgb_to_yuv(rgb, matrix="bt709", full_range=False, bit_depth=10, subsampling=subsampling,
                                chroma_loc=loc)
    assert tuple(y.shape) == (h, w) and tuple(u.shape) == tuple(v.shape) == (chroma[1], chroma[0])
    back = colour.yuv_to_rgb(y, u, v, matrix="bt709", full_range=False, bit_depth=10, chroma_loc=loc)
    assert back.shape == (3, h, w)
    assert torch.allclose(back, rgb, atol=2e-3)


def test_chroma_filters_by_siting():
    x = torch.tensor([0.0, 4.0])
    assert colour._upsample_axis(x, -1, 4, cosited=True).tolist() == [0, 2, 4, 4]
    assert colour._upsample_axis(x, -1, 4, cosited=False).tolist() == [0, 1, 3, 4]
    x = torch.tensor([0.0, 2, 4, 6, 8])  # odd length: the last sample repeats
    assert colour._downsample_axis(x, -1, cosited=False).tolist() == [1, 5, 8]
    assert colour._downsample_axis(x, -1, cosited=True).tolist() == [0.5, 4, 7.5]


def test_batched_planes_and_legal_range_clamp():
    rgb = torch.tensor([-0.5, 1.5, 0.3])[None, :, None, None].expand(2, 3, 4, 4)
    y, u, v = colour.rgb_to_yuv(rgb, matrix="bt601", full_range=False, bit_depth=8, subsampling="420")
    assert y.shape == (2, 4, 4) and u.shape == (2, 2, 2)
    assert 16 <= int(y.min()) and int(y.max()) <= 235
    assert 16 <= int(min(u.min(), v.min())) and int(max(u.max(), v.max())) <= 240
    assert colour.yuv_to_rgb(y, u, v, matrix="bt601", full_range=False, bit_depth=8).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("depth", [8, 10])
def test_rgb_planes_round_trip_exactly(depth):
    spec = ColourSpec(matrix=Matrix.RGB, full_range=True, bit_depth=depth, subsampling="444")
    top = 2**depth - 1
    gbr = [torch.randint(0, top + 1, (3, 5), dtype=torch.int32) for _ in range(3)]
    rgb = colour.planes_to_rgb(gbr, spec)
    assert torch.allclose(rgb[0] * top, gbr[2].float(), atol=1e-3)  # planes are G, B, R
    back = colour.rgb_to_planes(rgb, spec)
    assert all(torch.equal(a.int(), b) for a, b in zip(back, gbr))


@pytest.mark.parametrize("tags, size, matrix, full, guessed", [
    ((2, 0, 2, 2), (176, 144), Matrix.BT601, False, {"matrix", "range", "primaries", "transfer"}),
    ((2, 0, 2, 2), (1280, 536), Matrix.BT709, False, {"matrix", "range", "primaries", "transfer"}),
    ((2, 1, 2, 2), (960, 720), Matrix.BT709, False, {"matrix", "primaries", "transfer"}),
    ((5, 2, 5, 6), (1920, 1080), Matrix.BT601, True, set()),
    ((1, 1, 1, 1), (64, 48), Matrix.BT709, False, set()),
    ((9, 1, 9, 16), (64, 48), Matrix.BT2020, False, set()),
])
def test_spec_from_tags(tags, size, matrix, full, guessed):
    cs, rng, prim, trc = tags
    spec = colour.spec_from_tags(colorspace=cs, color_range=rng, primaries=prim, transfer=trc,
                                 width=size[0], height=size[1])
    assert (spec.matrix, spec.full_range, set(spec.guessed)) == (matrix, full, guessed)
    if "matrix" in guessed:  # the guess is written out, so players do not re-guess from the new size
        assert spec.colorspace == (1 if matrix is Matrix.BT709 else 6) == spec.primaries == spec.transfer
    else:
        assert (spec.colorspace, spec.primaries, spec.transfer) == (cs, prim, trc)


def test_spec_refuses_matrices_it_cannot_do():
    with pytest.raises(UnsupportedInputError, match="MatrixCoefficients 10"):
        colour.spec_from_tags(colorspace=10, color_range=1, primaries=9, transfer=14, width=64, height=48)


def test_spec_from_av_frame():
    frame = av.VideoFrame(33, 25, "yuvj422p")
    spec = colour.spec_from_av(frame)
    assert (spec.full_range, spec.subsampling, spec.bit_depth) == (True, "422", 8)
    spec = colour.spec_from_av(av.VideoFrame(8, 8, "yuv420p10le"))
    assert (spec.full_range, spec.subsampling, spec.bit_depth, spec.matrix) == (False, "420", 10, Matrix.BT601)
    spec = colour.spec_from_av(av.VideoFrame(8, 8, "gbrp"))
    assert (spec.matrix, spec.full_range, spec.subsampling) == (Matrix.RGB, True, "444")
