"""Models for engine tests: the shipped weights when present, else a random RLFN-S that still
produces an image (random weights alone give a near-black output, where any comparison passes)."""

from __future__ import annotations

import numpy as np
import torch

from rlfn_video.colour import ColourSpec, Matrix, rgb_to_planes
from rlfn_video.engine import Engine
from rlfn_video.errors import CheckpointError
from rlfn_video.models import RLFN, ModelDescriptor, arch_for, load_model

from .conftest import pattern


def image_like_rlfn(scale: int = 2, seed: int = 0, gain: float = 3.0) -> ModelDescriptor:
    """conv_1 copies the image into feature channels 0-2 and the upsampler turns those into a
    nearest-neighbour upscale, so the output is the image plus the random blocks' residual (ESA
    included), scaled by `gain` (3: about 26 dB from plain nearest upscaling)."""
    torch.manual_seed(seed)
    net = RLFN(arch_for("rlfn_s", scale))
    s2 = scale * scale
    with torch.no_grad():
        net.conv_1.weight[:3] = 0
        net.conv_1.bias[:3] = 0
        up = net.upsampler[0]
        up.weight.zero_()
        up.bias.zero_()
        for c in range(3):
            net.conv_1.weight[c, c, 1, 1] = 1
            up.weight[c * s2:(c + 1) * s2, c, 1, 1] = 1
        net.conv_2.weight.mul_(gain)
        net.conv_2.bias.mul_(gain)
    return ModelDescriptor(net, value_range=1.0, name="rlfn_s (image-like random)")


def reference_model(scale: int = 2) -> ModelDescriptor:
    try:
        return load_model(scale=scale, model="rlfn_s")
    except CheckpointError:
        return image_like_rlfn(scale)


def engine(device: str = "cpu", scale: int = 2, **kw) -> Engine:
    """Torch by default, the path CUDA runs (the emulated CUDA pipeline needs it); OpenVINO and
    "auto": tests/test_backends.py."""
    kw.setdefault("backend", "torch")
    return Engine(reference_model(scale), device=device, **kw)


def psnr8(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two [0, 1] images after 8-bit rounding."""
    a, b = (a.float().cpu() * 255).round(), (b.float().cpu() * 255).round()
    mse = ((a - b) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def sample_frames(count: int, width: int, height: int, spec: ColourSpec) -> list[tuple[np.ndarray, ...]]:
    """Distinct, image-like frames as planes of `spec` (moving gradients with a sharp square)."""
    frames = []
    for i in range(count):
        rgb = pattern(i, width, height).copy()
        rgb[height // 4: height // 2, width // 3: width // 2] = (255 - 20 * i) % 256
        t = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
        frames.append(tuple(p.numpy() for p in rgb_to_planes(t, spec)))
    return frames


def spec_420(depth: int = 8) -> ColourSpec:
    return ColourSpec(matrix=Matrix.BT709, full_range=False, bit_depth=depth, subsampling="420", chroma_loc="left")


def standin_zoo(folder, clean=(2, 3), video=(2,), *, eval_video: dict | None = None):
    """A weights folder for `zoo.WEIGHTS_DIR` (monkeypatch it) with stand-ins for weights not
    shipped yet: rlfn_s_x{s} for each `clean` scale (the image-like random RLFN-S, seed 0) and
    rlfn_s_video_x{s} for each `video` scale (seed 1, gain 2: another model of the same
    architecture), with `eval_video` in the video ones' metadata."""
    from pathlib import Path

    from rlfn_video.models import save_checkpoint

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for s in clean:
        save_checkpoint(folder / f"rlfn_s_x{s}.pth", image_like_rlfn(s, seed=0).net, value_range=1.0,
                        meta={"steps": 1, "eval": {"Set5": {"psnr": 30.0, "ssim": 0.9}}})
    for s in video:
        meta = {"steps": 2, **({"eval_video": eval_video} if eval_video else {})}
        save_checkpoint(folder / f"rlfn_s_video_x{s}.pth", image_like_rlfn(s, seed=1, gain=2.0).net, value_range=1.0,
                        meta=meta)
    return folder
