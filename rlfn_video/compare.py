"""`rlfn-video compare`: one frame of a video, upscaled several ways, side by side in one image.

The frame is decoded by the project's reader (`media.Source`) and turned into RGB by `colour.py`
with the source's own matrix, range and chroma siting (what the video command feeds the model);
panels: "input (nearest)", "bicubic" (MATLAB-compatible), then one per upscaler, each under a
caption bar. A crop (input pixels) is cut from every panel at its scale; only the crop plus a
margin of `MARGIN` input pixels is upscaled (the receptive field that matters; within rounding of
upscaling the whole frame, as the engine's tiles are). Written under a temporary name and renamed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import atomic, colour, media
from .errors import OutputError, UnsupportedInputError, check_output_shape
from .evaluate import Upscaler, bicubic_upscaler
from .models.rlfn import output_size

LABEL_HEIGHT = 20  # px of caption bar above each panel
GAP = 4  # px between panels
MARGIN = 48  # input px of context around a crop (a multiple of 6, ESA's stride)
SEEK_AFTER = 10.0  # seconds: later times seek to a keyframe instead of decoding from the start
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)

_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def parse_time(text: str) -> float:
    """Seconds ("12.5") or [HH:]MM:SS[.mmm] ("00:01:02.250") -> seconds (float, >= 0)."""
    t = text.strip()
    try:
        value = float(t)
    except ValueError:
        m = _CLOCK.match(t)
        if not m or float(m[3]) >= 60 or (m[1] is not None and int(m[2]) >= 60):
            raise UnsupportedInputError(f"bad time {text!r}: use seconds (12.5) or HH:MM:SS.mmm") from None
        value = int(m[1] or 0) * 3600 + int(m[2]) * 60 + float(m[3])
    if not np.isfinite(value) or value < 0:
        raise UnsupportedInputError(f"bad time {text!r}: must be a number of seconds >= 0")
    return value


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    w: int
    h: int

    @classmethod
    def parse(cls, text: str) -> Crop:
        parts = text.replace(" ", "").split(",")
        try:
            x, y, w, h = (int(p) for p in parts)
        except ValueError:
            raise UnsupportedInputError(f"bad crop {text!r}: use X,Y,W,H in input pixels, e.g. 100,50,160,90") from None
        if min(x, y) < 0 or min(w, h) < 1:
            raise UnsupportedInputError(f"bad crop {text!r}: X and Y must be >= 0, W and H >= 1")
        return cls(x, y, w, h)

    def check(self, width: int, height: int) -> None:
        if self.x + self.w > width or self.y + self.h > height:
            raise UnsupportedInputError(f"crop {self.x},{self.y},{self.w},{self.h} is outside the {width}x{height} "
                                        f"frame (X+W <= {width}, Y+H <= {height})")


@dataclass(frozen=True)
class Grab:
    rgb: torch.Tensor  # (3, H, W) float32 in [0, 1]
    time: float  # seconds from the first frame
    index: int | None  # frame number, when decoded from the start
    info: media.VideoInfo


def _frames(source: media.Source):
    return (p for p in source if isinstance(p, media.Picture))


def picture_rgb(pic: media.Picture) -> torch.Tensor:
    """(3, H, W) float32 RGB in [0, 1] of a decoded frame, with its own matrix, range and siting."""
    return colour.planes_to_rgb([torch.from_numpy(p) for p in pic.planes], pic.colour)


def _frame_step(info: media.VideoInfo, last: Fraction | None) -> Fraction:
    if info.rate:
        return 1 / Fraction(info.rate)
    return last if last else Fraction(1, 25)


def grab_frame(src: str | os.PathLike, at: float) -> Grab:
    """The frame shown at `at` seconds from the first frame (the last one starting at or before
    it); an `UnsupportedInputError` for a time past the end of the video."""
    src = Path(src)
    when = Fraction(at).limit_denominator(1_000_000)  # 0.3 means 3/10 s, not the float just below it
    with media.Source(src) as source:
        info = source.info
        frames = _frames(source)
        first = next(frames)
        t0 = first.pts * first.time_base
        if info.duration is not None and at >= info.duration:
            raise UnsupportedInputError(f"{src}: time {at:g} s is past the end of the video ({info.duration:.3f} s)")
        if at > SEEK_AFTER:
            found = _seek(src, info, t0 + when)
            if found is not None:
                pic, t = found
                return Grab(picture_rgb(pic), float(t - t0), None, info)
        prev, prev_t, gap = first, t0, None
        for pic in frames:
            t = pic.pts * pic.time_base
            if t - t0 > when:
                return Grab(picture_rgb(prev), float(prev_t - t0), prev.index, info)
            gap, prev, prev_t = t - prev_t, pic, t
    end = prev_t - t0 + _frame_step(info, gap)
    if when >= end:
        raise UnsupportedInputError(f"{src}: time {at:g} s is past the end of the video ({float(end):.3f} s)")
    return Grab(picture_rgb(prev), float(prev_t - t0), prev.index, info)


def _seek(src: Path, info: media.VideoInfo, target: Fraction) -> tuple[media.Picture, Fraction] | None:
    """Decode from the keyframe before `target` (seconds, stream clock); None to fall back to
    decoding from the start (no frame found in the window, frames without timestamps)."""
    tb = info.time_base
    start = int((target - 2) / tb)  # frames up to 2 s before, so the one shown at `target` is among them
    try:
        with media.Source(src, span=media.Span(start=start, end=None, first=0, frames=None)) as source:
            prev = None
            for pic in _frames(source):
                t = pic.pts * pic.time_base
                if t > target:
                    break
                prev = (pic, t)
            return prev
    except UnsupportedInputError:
        return None


def _context(crop: Crop | None, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the input region to upscale: the crop plus `MARGIN`, aligned, in the frame."""
    if crop is None:
        return 0, 0, width, height
    x0 = max(0, crop.x - MARGIN) // 6 * 6
    y0 = max(0, crop.y - MARGIN) // 6 * 6
    return x0, y0, min(width, crop.x + crop.w + MARGIN), min(height, crop.y + crop.h + MARGIN)


def _to_image(rgb: torch.Tensor) -> Image.Image:
    arr = rgb.detach().float().cpu().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def panels(rgb: torch.Tensor, upscalers: Mapping[str, Upscaler], scale: int,
           crop: Crop | None = None) -> list[tuple[str, Image.Image]]:
    """(caption, image) per panel: nearest, bicubic, then each upscaler; all `scale` x the crop."""
    _, height, width = rgb.shape
    if crop is not None:
        crop.check(width, height)
    x0, y0, x1, y1 = _context(crop, width, height)
    region = rgb[:, y0:y1, x0:x1]
    cx, cy, cw, ch = (crop.x - x0, crop.y - y0, crop.w, crop.h) if crop else (0, 0, width, height)
    s = scale
    out_w, out_h = output_size(region.shape[2], region.shape[1], s)

    def cut(up: torch.Tensor) -> torch.Tensor:
        check_output_shape(up, (3, out_h, out_w), what="an upscaler", given=f"a {tuple(region.shape)} crop (is it x{s}?)",
                           error=UnsupportedInputError)
        return up[:, cy * s:(cy + ch) * s, cx * s:(cx + cw) * s]

    nearest = region.repeat_interleave(s, dim=1).repeat_interleave(s, dim=2)
    out = [("input (nearest)", _to_image(cut(nearest))), ("bicubic", _to_image(cut(bicubic_upscaler(s)(region))))]
    for name, up in upscalers.items():
        out.append((name, _to_image(cut(up(region)))))
    return out


def sheet(items: list[tuple[str, Image.Image]]) -> Image.Image:
    """Panels left to right, `GAP` px apart, each under a `LABEL_HEIGHT` px caption bar."""
    w, h = items[0][1].size
    canvas = Image.new("RGB", (len(items) * w + (len(items) - 1) * GAP, h + LABEL_HEIGHT), BACKGROUND)
    font = ImageFont.load_default()
    for i, (caption, im) in enumerate(items):
        x = i * (w + GAP)
        bar = Image.new("RGB", (w, LABEL_HEIGHT), BACKGROUND)  # its own bar: a long caption is clipped there
        ImageDraw.Draw(bar).text((4, 4), caption, fill=TEXT, font=font)
        canvas.paste(bar, (x, 0))
        canvas.paste(im, (x, LABEL_HEIGHT))
    return canvas


def compare(src: str | os.PathLike, dst: str | os.PathLike, upscalers: Mapping[str, Upscaler], *, at: float,
            scale: int, crop: Crop | None = None, overwrite: bool = False) -> tuple[Path, Grab]:
    """Write the comparison sheet of the frame at `at` seconds of `src` to `dst` (format from its
    extension; PNG advised). `upscalers`: caption -> callable ((3, H, W) [0, 1] -> x`scale`)."""
    src, dst = Path(src), Path(dst)
    atomic.check_output(src, dst, overwrite=overwrite)
    fmt = Image.registered_extensions().get(dst.suffix.lower())
    if fmt is None:
        raise OutputError(f"{dst}: unknown image format {dst.suffix or '(no extension)'}; use .png")
    grab = grab_frame(src, at)
    if crop is not None:
        crop.check(grab.info.width, grab.info.height)
    image = sheet(panels(grab.rgb, upscalers, scale, crop))
    with atomic.atomic_output(dst, overwrite=overwrite) as tmp:
        image.save(tmp, format=fmt)
    return dst, grab
