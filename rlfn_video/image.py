"""`upscale_image`: one still image through the same engine as video."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import atomic_output, check_output
from .engine import Engine
from .errors import OutputError, UnsupportedInputError
from .resize import imresize


def read_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise UnsupportedInputError(f"{path}: no such file")
    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError) as e:
        raise UnsupportedInputError(f"{path}: not a readable image ({e})") from None
    return ImageOps.exif_transpose(im)  # upscale what viewers show, not the raw sensor orientation


def upscale_pil(im: Image.Image, engine: Engine) -> Image.Image:
    """RGB through the model; an alpha channel, if any, by MATLAB-style bicubic."""
    alpha = im.getchannel("A") if "A" in im.getbands() else None
    rgb = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float().div_(255)
    out = engine(rgb).mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
    result = Image.fromarray(out, "RGB")
    if alpha is not None:
        a = imresize(torch.from_numpy(np.array(alpha)).float(), engine.scale).round().clamp(0, 255).byte()
        result.putalpha(Image.fromarray(a.numpy(), "L"))
    return result


def upscale_image(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    scale: int = 4,
    model: str | None = None,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    fast: bool | None = None,
    overwrite: bool = False,
    engine: Engine | None = None,
    backend: Any = "auto",
    half: bool | None = None,  # the old name of `fast`
) -> Path:
    """`src` upscaled into `dst` (format from its extension); `backend` as in `upscale_video`.
    OpenVINO converts the model first (seconds): for one image, torch starts sooner."""
    src, dst = Path(src), Path(dst)
    check_output(src, dst, overwrite=overwrite)
    ext = dst.suffix.lower()
    if Image.registered_extensions().get(ext) is None:
        raise OutputError(f"{dst}: unknown image format {ext or '(no extension)'}; use .png, .jpg, .webp, ...")
    im = read_image(src)
    engine = engine or Engine.from_options(scale=scale, model=model, weights=weights, device=device, fast=fast,
                                           half=half, backend=backend)
    out = upscale_pil(im, engine)
    fmt = Image.registered_extensions()[ext]
    if fmt == "JPEG" and out.mode == "RGBA":
        out = out.convert("RGB")  # JPEG has no alpha
    extra = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if im.info.get("icc_profile"):
        extra["icc_profile"] = im.info["icc_profile"]
    with atomic_output(dst, overwrite=overwrite) as tmp:
        out.save(tmp, format=fmt, **extra)
    return dst
