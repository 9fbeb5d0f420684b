"""Degradations that turn clean HR crops into the LR that real video brings: soft optics, resampling,
sensor noise, 4:2:0 chroma and real H.264/HEVC (or JPEG) compression.

A recipe's `[degrade]` table (see train/recipes/rlfn_s_video_x4.toml) gives each step a
probability and ranges; every random choice comes from one seeded numpy Generator, so the same
seed gives the same LR. The order follows how video is made: blur and resample the whole HR
region (optics, scaler), cut a short clip of windows moving a few LR pixels per frame (with `subpixel`, a
few HR pixels, each window downscaled on its own: a pan's fractional motion), add noise
per frame (it is not the same in two frames), then 4:2:0 and a real encoder over the clip (the
middle frame, a P/B frame, is kept) or a JPEG of the still. Encoders need frames of realistic
size, so crops are `crop` LR pixels (default 128) and `DegradedSampler` degrades a cache of them
once per stage, then draws training patches from the cache as fast as clean ones.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rlfn_video import colour
from rlfn_video.codec_roundtrip import roundtrip
from rlfn_video.resize import imresize

RESIZE_METHODS = ("bicubic", "bilinear", "area")


@dataclass
class Blur:
    p: float = 0.0
    sigma: tuple[float, float] = (0.2, 1.5)  # HR pixels
    aniso: float = 0.5  # probability of an anisotropic (rotated elliptic) kernel


@dataclass
class Resize:
    p: float = 0.0
    mid: tuple[float, float] = (1.0, 1.6)  # first to LR size x mid, then to LR size
    methods: tuple[str, ...] = RESIZE_METHODS


@dataclass
class Noise:
    p: float = 0.0
    gaussian: tuple[float, float] = (0.5, 6.0)  # sigma in 8-bit levels
    poisson: float = 0.3  # probability that the noise is Poisson (shot noise) instead
    poisson_scale: tuple[float, float] = (0.05, 1.5)
    grey: float = 0.4  # probability that the noise is the same in R, G and B


@dataclass
class Chroma:
    p: float = 0.0  # 4:2:0 and back when no codec ran (an encoder always implies 4:2:0)


@dataclass
class Codec:
    p: float = 0.0
    codecs: tuple[str, ...] = ("libx264", "libx265")
    weights: tuple[float, ...] = (0.75, 0.25)
    crf: tuple[float, float] = (18, 35)
    presets: tuple[str, ...] = ("veryfast", "faster", "medium")
    frames: int = 3  # clip length; the middle frame is kept
    motion: int = 2  # largest shift per frame, LR pixels
    subpixel: bool = False  # shifts in HR pixels (1/scale LR steps), each frame downscaled on its own


@dataclass
class Jpeg:
    p: float = 0.0  # when no video codec ran
    quality: tuple[int, int] = (40, 95)


@dataclass
class Degradation:
    """The `[degrade]` table of a recipe. All probabilities 0 (the default) is the clean pipeline."""

    cache: int = 2000  # crops degraded once per stage
    crop: int = 128  # LR side of a crop
    clean: float = 0.0  # share of crops left as plain MATLAB-bicubic LR
    blur: Blur = field(default_factory=Blur)
    resize: Resize = field(default_factory=Resize)
    noise: Noise = field(default_factory=Noise)
    chroma: Chroma = field(default_factory=Chroma)
    codec: Codec = field(default_factory=Codec)
    jpeg: Jpeg = field(default_factory=Jpeg)

    @classmethod
    def from_dict(cls, d: dict) -> Degradation:
        parts = {"blur": Blur, "resize": Resize, "noise": Noise, "chroma": Chroma, "codec": Codec, "jpeg": Jpeg}
        unknown = set(d) - set(parts) - {"cache", "crop", "clean"}
        if unknown:
            raise ValueError(f"[degrade]: unknown keys {sorted(unknown)}")
        kw = {k: v for k, v in d.items() if k not in parts}
        for name, kind in parts.items():
            sub = dict(d.get(name, {}))
            bad = set(sub) - set(kind.__dataclass_fields__)
            if bad:
                raise ValueError(f"[degrade.{name}]: unknown keys {sorted(bad)}")
            kw[name] = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in sub.items()})
        out = cls(**kw)
        for m in out.resize.methods:
            if m not in RESIZE_METHODS:
                raise ValueError(f"[degrade.resize]: unknown method {m!r}; use {', '.join(RESIZE_METHODS)}")
        if len(out.codec.weights) != len(out.codec.codecs):
            raise ValueError("[degrade.codec]: one weight per codec")
        if out.crop % 2:
            raise ValueError("[degrade]: crop must be even (4:2:0)")
        return out


# --- the steps, each usable alone -------------------------------------------------------------


def gaussian_kernel(sigma_x: float, sigma_y: float, theta: float = 0.0) -> torch.Tensor:
    """(k, k) normalised Gaussian, k = 2 ceil(3 max sigma) + 1, its x axis rotated by theta."""
    r = max(1, math.ceil(3 * max(sigma_x, sigma_y)))
    ax = torch.arange(-r, r + 1, dtype=torch.float64)
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * x + s * y, -s * x + c * y
    k = torch.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).float()


def blur(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float convolved with `kernel`, reflected at the borders."""
    r = kernel.shape[-1] // 2
    x = F.pad(img[None], (r, r, r, r), mode="reflect")
    return F.conv2d(x, kernel.expand(3, 1, -1, -1).to(img.dtype), groups=3)[0]


def resize_to(img: torch.Tensor, size: tuple[int, int], method: str) -> torch.Tensor:
    """(3, H, W) float (0-255) to `size` (h, w): bicubic (antialiased, a = -0.75), bilinear, area."""
    x = img[None]
    if method == "area":
        return F.interpolate(x, size=size, mode="area")[0]
    return F.interpolate(x, size=size, mode=method, align_corners=False, antialias=True)[0]


def add_noise(img: torch.Tensor, rng: np.random.Generator, cfg: Noise) -> torch.Tensor:
    """Gaussian or Poisson noise on (3, H, W) float 0-255, grey (same in R, G, B) or colour."""
    grey = rng.random() < cfg.grey
    shape = (1, *img.shape[1:]) if grey else img.shape
    if rng.random() < cfg.poisson:
        # shot noise: variance proportional to the signal; `scale` sets the strength
        scale = rng.uniform(*cfg.poisson_scale)
        base = img.mean(0, keepdim=True) if grey else img
        lam = (base / 255).clamp(0, 1) * (255 / scale)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        noise = (torch.poisson(lam, generator=gen) - lam) * scale
    else:
        sigma = rng.uniform(*cfg.gaussian)
        noise = torch.from_numpy(rng.standard_normal(shape)).float() * sigma
    return img + noise.expand_as(img)


_SPEC_420 = colour.ColourSpec(matrix=colour.Matrix.BT709, full_range=False, bit_depth=8, subsampling="420",
                              chroma_loc="left")


def chroma_420(rgb255: torch.Tensor) -> torch.Tensor:
    """RGB (..., 3, H, W) 0-255 -> 8-bit Y'CbCr 4:2:0 (BT.709 limited, MPEG-2 siting) -> RGB 0-255."""
    planes = colour.rgb_to_planes((rgb255 / 255).clamp(0, 1), _SPEC_420)
    return colour.planes_to_rgb(planes, _SPEC_420) * 255


def jpeg(rgb255: torch.Tensor, quality: int) -> torch.Tensor:
    """A JPEG of (3, H, W) 0-255 (4:2:0, as cameras and the web write them), decoded back."""
    arr = rgb255.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float()


# --- one crop ---------------------------------------------------------------------------------


def degrade(hr: torch.Tensor, scale: int, cfg: Degradation, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A region (3, (c + m) s, (c + m) s) uint8, with c = cfg.crop and m the clip's motion margin
    (`margin(cfg)`) -> (LR uint8 (3, c, c), the HR window it shows (3, c s, c s) uint8, steps done)."""
    c, m = cfg.crop, margin(cfg)
    if hr.shape[-2:] != ((c + m) * scale, (c + m) * scale):
        raise ValueError(f"region {tuple(hr.shape[-2:])}, expected {((c + m) * scale,) * 2}")
    x = hr.float()
    steps: list[str] = []
    if rng.random() < cfg.clean:
        lr = imresize(x, 1 / scale, quantize=True)
        return _window(lr, x, m // 2, m // 2, c, scale, ["clean"])
    if rng.random() < cfg.blur.p:
        sx = rng.uniform(*cfg.blur.sigma)
        if rng.random() < cfg.blur.aniso:
            sy, theta = rng.uniform(*cfg.blur.sigma), rng.uniform(0, math.pi)
        else:
            sy, theta = sx, 0.0
        x = blur(x, gaussian_kernel(sx, sy, theta))
        steps.append(f"blur {sx:.2f}x{sy:.2f}")
    if rng.random() < cfg.resize.p:
        mid = rng.uniform(*cfg.resize.mid)
        m1, m2 = (cfg.resize.methods[int(rng.integers(len(cfg.resize.methods)))] for _ in range(2))

        def down(im: torch.Tensor) -> torch.Tensor:
            size = (im.shape[-2] // scale, im.shape[-1] // scale)
            inner = (max(size[0], round(size[0] * mid)), max(size[1], round(size[1] * mid)))
            return resize_to(resize_to(im, inner, m1), size, m2)
        steps.append(f"resize {m1}->{m2} via x{mid:.2f}")
    else:  # MATLAB bicubic, rounded per axis like the benchmarks' LR files
        def down(im: torch.Tensor) -> torch.Tensor:
            return imresize(im, 1 / scale, quantize=True)
    # the clip: windows moving by (dy, dx) per frame; the middle one is the target. Whole LR pixels
    # cut from one LR image, or (subpixel) HR pixels, each HR window downscaled: a pan's real motion
    n = cfg.codec.frames if cfg.codec.p > 0 else 1
    unit = scale if cfg.codec.subpixel else 1
    reach = cfg.codec.motion * unit
    dy, dx = (int(rng.integers(-reach, reach + 1)) for _ in range(2)) if n > 1 else (0, 0)
    mid_k = n // 2
    base = m // 2 * unit
    offsets = [(base + (k - mid_k) * dy, base + (k - mid_k) * dx) for k in range(n)]
    if unit == 1:
        lr = down(x)
        frames = torch.stack([lr[:, oy:oy + c, ox:ox + c] for oy, ox in offsets])
    else:
        side = c * scale
        frames = torch.stack([down(x[:, oy:oy + side, ox:ox + side]) for oy, ox in offsets])
    noisy = rng.random() < cfg.noise.p
    if noisy:
        frames = torch.stack([add_noise(f, rng, cfg.noise) for f in frames])
        steps.append("noise")
    frames = frames.round().clamp(0, 255)
    if rng.random() < cfg.codec.p:
        w = np.asarray(cfg.codec.weights, dtype=np.float64)
        name = cfg.codec.codecs[int(rng.choice(len(w), p=w / w.sum()))]
        crf = float(rng.uniform(*cfg.codec.crf))
        preset = cfg.codec.presets[int(rng.integers(len(cfg.codec.presets)))]
        frames = roundtrip(frames / 255, codec=name, crf=round(crf, 1), preset=preset) * 255
        steps.append(f"{name} crf {crf:.1f} {preset}")
    elif rng.random() < cfg.jpeg.p:
        q = int(rng.integers(cfg.jpeg.quality[0], cfg.jpeg.quality[1] + 1))
        frames = torch.stack([jpeg(f, q) for f in frames])
        steps.append(f"jpeg q{q}")
    elif rng.random() < cfg.chroma.p:
        frames = chroma_420(frames)
        steps.append("420")
    b = m // 2 * scale  # the middle frame's window, in HR pixels, whatever the motion unit
    lr_out = frames[mid_k].round().clamp(0, 255).byte()
    hr_out = hr[:, b:b + c * scale, b:b + c * scale]
    return lr_out, hr_out.clone(), steps


def margin(cfg: Degradation) -> int:
    """LR pixels around a crop that the clip's windows may move into (even)."""
    if cfg.codec.p <= 0 or cfg.codec.frames <= 1:
        return 0
    m = 2 * cfg.codec.motion * (cfg.codec.frames // 2)
    return m + m % 2


def _window(lr: torch.Tensor, hr: torch.Tensor, oy: int, ox: int, c: int, scale: int, steps: list[str]):
    return (lr[:, oy:oy + c, ox:ox + c].round().clamp(0, 255).byte(),
            hr[:, oy * scale:(oy + c) * scale, ox * scale:(ox + c) * scale].round().byte().clone(), steps)


# --- training patches -------------------------------------------------------------------------


class DegradedSampler:
    """Batches of (LR, HR) float patches in [0, 1] from a cache of degraded crops.

    The cache (`cfg.cache` crops of `cfg.crop` LR pixels, from images picked by area) is made once
    from `seed`, so a resumed stage rebuilds exactly the same one; batches then draw a random
    patch of each cached crop and one of the 8 flips/rotations, from the trainer's generator."""

    def __init__(self, images: list[torch.Tensor], patch: int, scale: int, batch: int, cfg: Degradation, *,
                 seed: int, device: torch.device | str = "cpu", log=None):
        if patch > cfg.crop:
            raise ValueError(f"patch {patch} is larger than the degraded crop {cfg.crop}")
        self.patch, self.scale, self.batch = patch, scale, batch
        rng = np.random.default_rng(seed)
        region = (cfg.crop + margin(cfg)) * scale
        images = [im.cpu() for im in images if min(im.shape[-2:]) >= region]
        if not images:
            raise ValueError(f"no training image is at least {region}x{region}")
        areas = np.array([im.shape[1] * im.shape[2] for im in images], dtype=np.float64)
        t0 = time.perf_counter()
        lrs, hrs, self.counts = [], [], {}
        for _ in range(cfg.cache):
            im = images[int(rng.choice(len(images), p=areas / areas.sum()))]
            y = int(rng.integers(0, im.shape[1] - region + 1))
            x = int(rng.integers(0, im.shape[2] - region + 1))
            lr, hr, steps = degrade(im[:, y:y + region, x:x + region], scale, cfg, rng)
            lrs.append(lr)
            hrs.append(hr)
            for s in steps:
                key = s.split()[0]
                self.counts[key] = self.counts.get(key, 0) + 1
        self.lr = torch.stack(lrs).to(device)
        self.hr = torch.stack(hrs).to(device)
        self.build_seconds = time.perf_counter() - t0
        self.cache_mib = (self.lr.numel() + self.hr.numel()) / 2**20
        if log:
            log({"degraded_cache": cfg.cache, "seconds": round(self.build_seconds, 1),
                 "mib": round(self.cache_mib, 1), "steps": self.counts})

    def sample(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        p, s, c = self.patch, self.scale, self.lr.shape[-1]
        idx = torch.randint(0, len(self.lr), (self.batch,), generator=gen).tolist()
        lrs, hrs = [], []
        for i in idx:
            y = int(torch.randint(0, c - p + 1, (1,), generator=gen))
            x = int(torch.randint(0, c - p + 1, (1,), generator=gen))
            lr = self.lr[i, :, y:y + p, x:x + p]
            hr = self.hr[i, :, y * s:(y + p) * s, x * s:(x + p) * s]
            t = int(torch.randint(0, 8, (1,), generator=gen))
            if t & 1:
                lr, hr = lr.flip(-1), hr.flip(-1)
            if t & 2:
                lr, hr = lr.flip(-2), hr.flip(-2)
            if t & 4:
                lr, hr = lr.transpose(-1, -2), hr.transpose(-1, -2)
            lrs.append(lr)
            hrs.append(hr)
        return torch.stack(lrs).float() / 255.0, torch.stack(hrs).float() / 255.0
