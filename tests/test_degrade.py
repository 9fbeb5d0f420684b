"""The training degradations do what they say, reproducibly, and nothing when switched off."""

from pathlib import Path

import numpy as np
import pytest
import torch

from rlfn_video import colour
from rlfn_video.codec_roundtrip import roundtrip
from rlfn_video.evaluate import read_rgb
from rlfn_video.resize import imresize
from train.degrade import (Codec, Degradation, DegradedSampler, Noise, add_noise, blur, chroma_420, degrade,
                           gaussian_kernel, jpeg, margin)
from train.trainer import Stage, StageConfig

from .shared import BENCHMARKS, needs_shared

VIDEO_LIKE = {"cache": 6, "crop": 64, "clean": 0.1, "blur": {"p": 0.5}, "resize": {"p": 0.5}, "noise": {"p": 0.5},
              "chroma": {"p": 1.0}, "codec": {"p": 0.8, "frames": 3, "motion": 2}, "jpeg": {"p": 0.5}}


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A real photo (Set14 lenna, 0-255 float): the blur, blocking and chroma checks need real detail."""
    path = BENCHMARKS / "Set14" / "HR" / "lenna.png"
    if not path.is_file():
        pytest.skip(f"benchmark photo not found at {path}")
    return read_rgb(path).float()[:, :256, :256]


def _high_freq(img: torch.Tensor) -> float:
    lap = img[:, 1:-1, 1:-1] * 4 - img[:, :-2, 1:-1] - img[:, 2:, 1:-1] - img[:, 1:-1, :-2] - img[:, 1:-1, 2:]
    return lap.pow(2).mean().item()


def _blockiness(img: torch.Tensor, b: int = 8) -> float:
    """Mean luma step across b x b block edges over the mean step inside blocks (both axes)."""
    y = img.mean(0)
    ratios = []
    for d in ((y[:, 1:] - y[:, :-1]).abs(), (y[1:] - y[:-1]).abs().T):
        at = (torch.arange(d.shape[1]) % b) == b - 1
        ratios.append((d[:, at].mean() / d[:, ~at].mean()).item())
    return float(np.mean(ratios))


def test_blur_lowers_high_frequency_energy_more_with_larger_sigma(photo):
    e0 = _high_freq(photo)
    e1 = _high_freq(blur(photo, gaussian_kernel(0.8, 0.8)))
    e2 = _high_freq(blur(photo, gaussian_kernel(1.5, 1.5)))
    assert e2 < e1 < 0.6 * e0
    k = gaussian_kernel(2.0, 0.3, 0.0)  # anisotropic: smooths along x far more than along y
    out = blur(photo, k)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-5) and out.shape == photo.shape
    dx = (out[:, :, 1:] - out[:, :, :-1]).abs().mean() / (photo[:, :, 1:] - photo[:, :, :-1]).abs().mean()
    dy = (out[:, 1:] - out[:, :-1]).abs().mean() / (photo[:, 1:] - photo[:, :-1]).abs().mean()
    assert dx < 0.75 * dy


def test_high_crf_codec_makes_blocking_the_hr_does_not_have(photo):
    lr = imresize(photo, 0.5, quantize=True)
    clip = torch.stack([lr / 255] * 3)
    coded = roundtrip(clip, codec="libx264", crf=42, preset="medium")[1] * 255
    gentle = roundtrip(clip, codec="libx264", crf=18, preset="medium")[1] * 255
    assert _blockiness(photo) < 1.1 and _blockiness(lr) < 1.1
    assert _blockiness(coded) > 1.25 > _blockiness(gentle)
    hevc = roundtrip(clip, codec="libx265", crf=40, preset="fast")[1] * 255
    assert (hevc - lr).abs().mean() > (gentle - lr).abs().mean()  # HEVC at high CRF loses more than x264 at 18


def test_libx265_roundtrip_of_narrow_frames_is_deterministic(photo):
    """libx265 alone is not deterministic at 64 px wide or less (and crashed at 48): such frames are
    padded for it, so the same frames give the same decoded pixels every time."""
    clip = torch.stack([photo[:, i:i + 96, i:i + 48] for i in range(3)]) / 255
    runs = [roundtrip(clip, codec="libx265", crf=21, preset="medium") for _ in range(6)]
    assert runs[0].shape == clip.shape and all(torch.equal(runs[0], r) for r in runs)
    assert (runs[0] - clip).abs().mean() < 0.03


def test_420_halves_chroma_resolution_and_keeps_luma(photo):
    h, w = 64, 64
    stripes = torch.zeros(3, h, w)
    stripes[:, :, 0::2] = torch.tensor([200.0, 60.0, 90.0])[:, None, None]  # period 2: only 4:4:4 holds it
    stripes[:, :, 1::2] = torch.tensor([60.0, 130.0, 160.0])[:, None, None]
    spec = colour.ColourSpec(matrix=colour.Matrix.BT709, full_range=False, bit_depth=8, subsampling="444")

    def chroma_swing(rgb):
        _, u, v = colour.rgb_to_planes((rgb / 255).clamp(0, 1), spec)
        return (u[:, 0::2].float() - u[:, 1::2].float()).abs().mean().item()

    out = chroma_420(stripes)
    assert chroma_swing(stripes) > 20 and chroma_swing(out) < 0.1 * chroma_swing(stripes)
    y_in = colour.luma(stripes / 255, matrix="bt709")
    y_out = colour.luma(out / 255, matrix="bt709")
    assert (y_in - y_out).abs().mean() < 8  # luma detail survives (only its leak from chroma changes)
    smooth = imresize(photo, 0.5, quantize=True)  # on a photo 4:2:0 costs little
    assert (chroma_420(smooth) - smooth).abs().mean() < 4


def test_noise_kinds_and_jpeg():
    flat = torch.full((3, 64, 64), 128.0)
    rng = np.random.default_rng(0)
    grey = add_noise(flat, rng, Noise(p=1, gaussian=(5, 5), poisson=0.0, grey=1.0))
    assert torch.equal(grey[0], grey[1]) and 4 < (grey - flat).std() < 6
    rgb = add_noise(flat, rng, Noise(p=1, gaussian=(5, 5), poisson=0.0, grey=0.0))
    assert not torch.equal(rgb[0], rgb[1])
    dark, bright = torch.full((3, 64, 64), 20.0), torch.full((3, 64, 64), 220.0)
    shot = Noise(p=1, poisson=1.0, poisson_scale=(1.0, 1.0), grey=0.0)
    # shot noise grows with the signal
    assert (add_noise(bright, rng, shot) - bright).std() > 2 * (add_noise(dark, rng, shot) - dark).std()
    g = torch.Generator().manual_seed(1)
    img = torch.rand(3, 64, 64, generator=g) * 255
    assert (jpeg(img, 30) - img).abs().mean() > (jpeg(img, 95) - img).abs().mean()


def test_switched_off_is_exactly_the_clean_lr(photo):
    """All probabilities 0 (the default table): the LR is MATLAB bicubic, as without [degrade]."""
    cfg = Degradation(crop=64)
    assert margin(cfg) == 0
    region = photo[:, :128, :128].round().byte()
    lr, hr, steps = degrade(region, 2, cfg, np.random.default_rng(0))
    assert steps == [] and torch.equal(hr, region)
    assert torch.equal(lr, imresize(region.float(), 0.5, quantize=True).byte())


def test_video_like_crop_is_degraded_and_aligned(photo):
    cfg = Degradation.from_dict({**VIDEO_LIKE, "clean": 0.0, "codec": {"p": 1.0, "crf": [30, 30], "frames": 3,
                                                                        "motion": 2}})
    m = margin(cfg)
    region = photo[:, : (64 + m) * 2, : (64 + m) * 2].round().byte()
    lr, hr, steps = degrade(region, 2, cfg, np.random.default_rng(3))
    assert lr.shape == (3, 64, 64) and hr.shape == (3, 128, 128) and any("crf 30.0" in s for s in steps)
    # the LR shows the HR window it is paired with: closer to that window's bicubic than to a shifted one
    ref = imresize(hr.float(), 0.5, quantize=True)
    shifted = imresize(torch.roll(hr.float(), 6, dims=-1), 0.5, quantize=True)
    assert (lr.float() - ref).abs().mean() < 0.5 * (lr.float() - shifted).abs().mean()


def test_subpixel_pan_downscales_each_hr_window_on_its_own(photo, monkeypatch):
    """With `subpixel`, clip frames move by whole HR pixels (fractions of an LR pixel): frame k is
    MATLAB bicubic of the HR window shifted k steps, the kept middle one of the target window."""
    clips = []

    def keep(frames, **_):
        clips.append(frames.clone())
        return frames

    monkeypatch.setattr("train.degrade.roundtrip", keep)
    cfg = Degradation.from_dict({"crop": 32, "codec": {"p": 1.0, "frames": 3, "motion": 2, "subpixel": True}})
    scale, m = 4, margin(cfg)
    region = photo[:, : (32 + m) * scale, : (32 + m) * scale].round().byte()
    fractional = 0
    for seed in range(6):
        lr, hr, _ = degrade(region, scale, cfg, np.random.default_rng(seed))
        frames = clips[-1] * 255
        base = m // 2 * scale
        # find the per-frame HR step: frame 0 is the window at base - step
        matches = [(dy, dx) for dy in range(-8, 9) for dx in range(-8, 9)
                   if torch.allclose(frames[0], imresize(region[:, base - dy:base - dy + 128, base - dx:base - dx + 128]
                                                         .float(), 1 / scale, quantize=True), atol=1e-3)]
        assert len(matches) == 1, f"seed {seed}: frame 0 is no single shifted window ({len(matches)} matches)"
        dy, dx = matches[0]
        win = region[:, base + dy:base + dy + 128, base + dx:base + dx + 128].float()
        assert torch.allclose(frames[2], imresize(win, 1 / scale, quantize=True), atol=1e-3)
        assert torch.equal(hr, region[:, base:base + 128, base:base + 128])
        assert torch.equal(lr, imresize(hr.float(), 1 / scale, quantize=True).round().byte())
        fractional += dy % scale != 0 or dx % scale != 0
    assert fractional >= 3  # most draws are not whole LR pixels


def test_unknown_keys_are_refused():
    with pytest.raises(ValueError, match="unknown keys"):
        Degradation.from_dict({"blurr": {}})
    with pytest.raises(ValueError, match=r"degrade.codec"):
        Degradation.from_dict({"codec": {"crff": [1, 2]}})
    with pytest.raises(ValueError, match="unknown method"):
        Degradation.from_dict({"resize": {"methods": ["lanczos"]}})
    assert Degradation.from_dict({"codec": {"crf": [20, 30]}}).codec == Codec(crf=(20, 30))


def _images():
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 200, 220), dtype=torch.uint8, generator=g) for _ in range(3)]


def test_seeded_cache_reproduces_and_seeds_differ():
    cfg = Degradation.from_dict(VIDEO_LIKE)
    a = DegradedSampler(_images(), 32, 2, 4, cfg, seed=5)
    b = DegradedSampler(_images(), 32, 2, 4, cfg, seed=5)
    c = DegradedSampler(_images(), 32, 2, 4, cfg, seed=6)
    assert torch.equal(a.lr, b.lr) and torch.equal(a.hr, b.hr) and not torch.equal(a.lr, c.lr)
    lr, hr = a.sample(torch.Generator().manual_seed(0))
    lr2, hr2 = b.sample(torch.Generator().manual_seed(0))
    assert lr.shape == (4, 3, 32, 32) and hr.shape == (4, 3, 64, 64) and torch.equal(lr, lr2) and torch.equal(hr, hr2)
    assert 0 <= lr.min() and lr.max() <= 1


def test_stage_with_degrade_trains_and_resumes_bit_exactly(tmp_path):
    images = _images()
    cfg = StageConfig(model="rlfn_ntire", scale=2, patch=24, batch=2, steps=4, degrade=VIDEO_LIKE,
                      checkpoint_every=2, log_every=2)
    whole = Stage(cfg, tmp_path / "a", images=images)
    assert isinstance(whole.sampler, DegradedSampler)
    whole.run()
    part = Stage(cfg, tmp_path / "b", images=images)
    part.run(max_steps=2)
    resumed = Stage(cfg, tmp_path / "b", images=images)  # rebuilds the same cache from the seed
    resumed.run()
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    log = (tmp_path / "a" / "log.jsonl").read_text()
    assert '"degraded_cache": 6' in log  # cache size, build time and step counts are logged


@needs_shared
def test_recipes_parse(tmp_path):
    from train.recipe import load_recipe

    for name in ("rlfn_s_video_x2.toml", "rlfn_s_video_x4.toml"):
        plan = load_recipe(Path(__file__).resolve().parents[1] / "train" / "recipes" / name, tmp_path, tmp_path)
        for _, cfg, _ in plan:
            Degradation.from_dict(cfg.degrade)  # every stage's table is valid
