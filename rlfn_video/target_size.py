"""A target output size (`--size 3840x2160`, `--height 2160`): which model scale, and the final size.

The picture keeps its shape: the output is the largest size with the input's aspect that fits the
target (a box, or one side given), rounded to even sides so 4:2:0 stays 4:2:0; the sample aspect
ratio is unchanged, so the display aspect is too. The model runs at the smallest scale whose output
covers that size, and a downscale (encode.py, swscale Lanczos) brings it to the exact size; past the
largest scale, that one runs and the resize goes up the rest of the way (`Fit.note` says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import RlfnError
from .models.rlfn import SCALES as MODEL_SCALES
from .models.rlfn import output_size


@dataclass(frozen=True)
class Fit:
    scale: int  # the model's factor
    width: int  # the encoded size
    height: int

    beyond: bool = False  # the target needs more than the largest model scale

    def resized(self, width: int, height: int) -> bool:
        """Whether the model's output (of a `width` x `height` input) needs the resize."""
        return (self.width, self.height) != output_size(width, height, self.scale)

    def note(self, width: int, height: int) -> str:
        how = "resized up (Lanczos) the rest of the way" if self.beyond else "downscaled (Lanczos)"
        resize = f", {how}" if self.resized(width, height) else ""
        return f"target size {self.width}x{self.height}: x{self.scale} model{resize}"


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[x:×]\s*(\d+)\s*", text)
    if not m or 0 in (int(m[1]), int(m[2])):
        raise RlfnError(f"size {text!r}: give WIDTHxHEIGHT, e.g. 3840x2160")
    return int(m[1]), int(m[2])


def _floor_even(x: float) -> int:
    return max(2, int(x) // 2 * 2)


def _near_even(x: float, limit: int | None) -> int:
    """`x` to the nearest even size, at most `limit` (the box's other side, when there is one)."""
    even = int(round(x / 2)) * 2
    return max(2, even if limit is None else min(even, limit // 2 * 2))


def fit(width: int, height: int, *, size: tuple[int, int] | None = None, target_width: int | None = None,
        target_height: int | None = None, scales: tuple[int, ...] = MODEL_SCALES) -> Fit:
    """The scale and output size for a `width` x `height` input: within the box `size`, or with the
    given side (`target_width` or `target_height`; both at once is a box too)."""
    if size is not None and (target_width or target_height):
        raise RlfnError("give a target size or a width/height, not both")
    if size is None and not (target_width or target_height):
        raise RlfnError("no target size given")
    box_w, box_h = size if size is not None else (target_width, target_height)
    if box_w is not None and box_w < 1 or box_h is not None and box_h < 1:
        raise RlfnError(f"target size {box_w}x{box_h}: sides must be positive")
    aspect = width / height
    if box_h is None or (box_w is not None and box_w / box_h < aspect):  # the width decides
        out_w, out_h = _floor_even(box_w), _near_even(box_w / aspect, box_h)
    else:
        out_w, out_h = _near_even(box_h * aspect, box_w), _floor_even(box_h)
    if out_w <= width and out_h <= height:
        raise RlfnError(f"target {out_w}x{out_h} is not larger than the {width}x{height} input; nothing to upscale")
    for s in sorted(scales):
        model_w, model_h = output_size(width, height, s)
        if model_w >= out_w and model_h >= out_h:
            return Fit(s, out_w, out_h)
    return Fit(max(scales), out_w, out_h, beyond=True)
