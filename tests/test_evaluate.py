"""The SR evaluation protocol: bicubic baseline, official checkpoints, our shipped weights."""

import math

import pytest
import torch

from rlfn_video.engine import Engine
from rlfn_video.evaluate import bicubic_upscaler, evaluate, mean, psnr, ssim

from .shared import ANCHORS, BENCHMARKS, needs_anchors, needs_shared

# MATLAB bicubic, Y channel, `scale` border: the baseline row of every SR paper's table.
BICUBIC_SET5 = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}
# Official RLFN checkpoints, measured independently with this protocol (issue #2).
OFFICIAL = [("rlfn_x4.pth", "Set5", 4, 32.24, 0.8953), ("rlfn_x4.pth", "Set14", 4, 28.62, 0.7814),
            ("rlfn_x2.pth", "Set5", 2, 38.07, 0.9607), ("rlfn_ntire_x4.pth", "Set5", 4, 32.10, 0.8939)]


def test_metrics_basics():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(64, 64, generator=g) * 255
    assert psnr(a, a) == math.inf and ssim(a, a) == pytest.approx(1.0)
    noisy = a + 5.0  # constant error of 5 levels: PSNR = 20 log10(255 / 5)
    assert psnr(noisy, a) == pytest.approx(20 * math.log10(255 / 5))
    noise = torch.randn(64, 64, generator=g)
    assert 1 > ssim(a + 10 * noise, a) > ssim(a + 40 * noise, a) > 0


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
    for f in files:
        desc = load_model(scale=None, model=None, weights=f)
        assert desc.value_range == 255


@needs_anchors
@needs_shared
@pytest.mark.parametrize("name,dataset,scale,ref_psnr,ref_ssim", OFFICIAL)
def test_official_checkpoints_reproduce_reference(name, dataset, scale, ref_psnr, ref_ssim):
    if not (ANCHORS / name).is_file():
        pytest.skip(f"{name} not in {ANCHORS}")
    engine = Engine.from_options(scale=scale, model=None, weights=ANCHORS / name, device="cpu", precision="fp32")
    p, s = mean(evaluate(engine, BENCHMARKS / dataset, scale))
    assert abs(p - ref_psnr) <= 0.01 and abs(s - ref_ssim) <= 0.0001 + 0.00005, (p, s)
