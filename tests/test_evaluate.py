"""The SR evaluation protocol: bicubic baseline, official checkpoints, our shipped weights."""

import math

import pytest
import torch

from rlfn_video.engine import Engine
from rlfn_video.evaluate import bicubic_upscaler, evaluate, mean, psnr, score, ssim, y_channel

from .shared import ANCHORS, BENCHMARKS, needs_anchors, needs_shared

# MATLAB bicubic, Y channel, `scale` border: the baseline row of every SR paper's table.
BICUBIC_SET5 = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}
# Every official checkpoint on Set5 and Set14. PSNR: the published figure (RLFN paper, Table 2; NTIRE
# model: the anchors' README) where one exists; the rest, marked "released", are the released file
# measured by this protocol (no published figure to compare with). SSIM: measured, 4 decimals.
OFFICIAL = [
    ("rlfn_x2.pth", "Set5", 2, 38.07, 0.9607),  # paper
    ("rlfn_x2.pth", "Set14", 2, 33.72, 0.9193),  # paper
    ("rlfn_x4.pth", "Set5", 4, 32.24, 0.8953),  # paper
    ("rlfn_x4.pth", "Set14", 4, 28.62, 0.7815),  # paper
    ("rlfn_s_x2.pth", "Set5", 2, 38.05, 0.9607),  # paper
    ("rlfn_s_x2.pth", "Set14", 2, 33.62, 0.9174),  # released
    ("rlfn_s_x4.pth", "Set5", 4, 32.24, 0.8954),  # released
    ("rlfn_s_x4.pth", "Set14", 4, 28.62, 0.7817),  # released
    ("rlfn_ntire_x4.pth", "Set5", 4, 32.10, 0.8939),  # anchors' README
    ("rlfn_ntire_x4.pth", "Set14", 4, 28.60, 0.7815),  # released
    ("team04_rlfn.pth", "Set5", 4, 32.10, 0.8939),  # the NTIRE repository's copy of rlfn_ntire_x4
]


def test_metrics_basics():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(64, 64, generator=g) * 255
    assert psnr(a, a) == math.inf and ssim(a, a) == pytest.approx(1.0)
    noisy = a + 5.0  # constant error of 5 levels: PSNR = 20 log10(255 / 5)
    assert psnr(noisy, a) == pytest.approx(20 * math.log10(255 / 5))
    noise = torch.randn(64, 64, generator=g)
    assert 1 > ssim(a + 10 * noise, a) > ssim(a + 40 * noise, a) > 0


def test_y_is_float_by_default_and_rounded_on_request():
    rgb = torch.tensor([[[10.0]], [[200.0]], [[77.0]]], dtype=torch.float64)  # one pixel, 0-255
    y = 16 + (65.481 * 10 + 128.553 * 200 + 24.966 * 77) / 255  # MATLAB rgb2ycbcr, in float
    assert y_channel(rgb).item() == pytest.approx(y, abs=1e-9) and y_channel(rgb).item() != round(y)
    assert y_channel(rgb, rounded=True).item() == round(y)
    # The score is computed on that float Y: an SR image one level off in G everywhere is not "exact".
    g = torch.Generator().manual_seed(1)
    hr = torch.randint(0, 255, (3, 40, 40), generator=g).double()
    sr = hr.clone()
    sr[1] += 1
    p, _ = score(sr, hr, 2)
    assert p == pytest.approx(20 * math.log10(255 / (128.553 / 255)), abs=1e-6)


@needs_shared
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_baseline_matches_literature(scale):
    p, s = mean(evaluate(bicubic_upscaler(scale), BENCHMARKS / "Set5", scale))
    ref_p, ref_s = BICUBIC_SET5[scale]
    # The literature's LR comes from MATLAB itself; ours is the set's LR files (same up to rounding).
    assert abs(p - ref_p) < 0.03 and abs(s - ref_s) < 0.001


@needs_shared
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_weights_beat_bicubic_by_2db(scale):
    engine = Engine.from_options(scale=scale, device="cpu", precision="fp32")  # the protocol's precision
    ours = mean(evaluate(engine, BENCHMARKS / "Set5", scale))[0]
    base = mean(evaluate(bicubic_upscaler(scale), BENCHMARKS / "Set5", scale))[0]
    assert ours >= base + 2.0, f"x{scale}: {ours:.2f} dB vs bicubic {base:.2f} dB"


@needs_anchors
def test_all_official_checkpoints_load_strictly():
    from rlfn_video.models import load_model

    files = sorted(ANCHORS.glob("*.pth"))
    assert files, f"no .pth files in {ANCHORS}"
    names = {f.name for f in files}
    assert {"rlfn_x2.pth", "rlfn_x4.pth", "rlfn_s_x2.pth", "rlfn_s_x4.pth", "rlfn_ntire_x4.pth",
            "team04_rlfn.pth"} <= names, names
    loaded = {}
    for f in files:
        desc = load_model(scale=None, model=None, weights=f)  # strict: any missing/unexpected key raises
        assert desc.value_range == 255
        loaded[f.name] = desc.net.state_dict()
    # The NTIRE repository's key names (fea_conv, B1..B4, LR_conv) map onto the same tensors.
    ntire, team04 = loaded["rlfn_ntire_x4.pth"], loaded["team04_rlfn.pth"]
    assert ntire.keys() == team04.keys() and all(torch.equal(ntire[k], team04[k]) for k in ntire)


@needs_anchors
@needs_shared
@pytest.mark.parametrize("name,dataset,scale,ref_psnr,ref_ssim", OFFICIAL)
def test_official_checkpoints_reproduce_reference(name, dataset, scale, ref_psnr, ref_ssim):
    if not (ANCHORS / name).is_file():
        pytest.skip(f"{name} not in {ANCHORS}")
    engine = Engine.from_options(scale=scale, model=None, weights=ANCHORS / name, device="cpu", precision="fp32")
    p, s = mean(evaluate(engine, BENCHMARKS / dataset, scale))
    assert abs(p - ref_psnr) <= 0.01 and abs(s - ref_ssim) <= 0.0001 + 0.00005, (p, s)
