"""Pass RGB frames through a real video encoder and back, in memory: what compressed video does to them.

Used to make compressed-video LR for training (train/degrade.py) and for the compressed-video
benchmark (`rlfn-video eval --crf ...`). Colour goes through `colour.py` both ways with an explicit
matrix, range and chroma siting (no swscale guess); the encoder sees planar 4:2:0 at 8 bits.
Encoders run single-threaded. At the training crops' 128 px the same input, codec and settings
gave the same output in every trial; narrower clips now and then did not (libx264 at 80 px,
libx265 at 64 px and less, cause not found: not the frames' row padding). libx265 also corrupted
the heap at 48 px, so frames narrower than `codec_options.MIN_WIDTH` are padded for it.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import torch

from . import colour
from .codec_options import MIN_WIDTH
from .media import plane_view

# encoder -> the decoder that reads its packets
DECODERS = {"libx264": "h264", "libx265": "hevc", "libsvtav1": "libdav1d", "mpeg2video": "mpeg2video"}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")


def _options(codec: str, crf: float, preset: str | None) -> dict[str, str]:
    opts = {"crf": f"{crf:g}"}
    if preset:
        opts["preset"] = preset
    if codec == "libx264":
        opts.update(threads="1")
    elif codec == "libx265":
        opts["x265-params"] = "log-level=error:pools=1:frame-threads=1"
    return opts


def roundtrip(rgb: torch.Tensor, *, codec: str = "libx264", crf: float = 23, preset: str | None = "medium",
              matrix: colour.Matrix | str = "bt709", full_range: bool = False, gop: int | None = None) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] as N consecutive frames of one clip -> the decoded frames, same shape.

    H and W must be even (4:2:0). The first frame is an I frame; the rest are P/B frames of the
    same clip unless `gop` says otherwise."""
    n, _, h, w = rgb.shape
    if h % 2 or w % 2:
        raise ValueError(f"frames of {w}x{h}: 4:2:0 needs an even width and height")
    least = MIN_WIDTH.get(codec, 0)
    if w < least:  # too narrow for this encoder: encode with the edge column repeated, then crop
        pad = rgb[..., -1:].expand(*rgb.shape[:-1], least - w)
        return roundtrip(torch.cat([rgb, pad], -1), codec=codec, crf=crf, preset=preset, matrix=matrix,
                         full_range=full_range, gop=gop)[..., :w]
    spec = colour.ColourSpec(matrix=colour.Matrix(matrix), full_range=full_range, bit_depth=8, subsampling="420",
                             chroma_loc="left")
    planes = [p.to(torch.uint8).numpy() for p in colour.rgb_to_planes(rgb.float().cpu(), spec)]
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, 25), Fraction(25, 1)
    enc.color_range = spec.color_range
    enc.thread_count = 1
    if gop:
        enc.gop_size = gop
    enc.options = _options(codec, crf, preset)
    packets = []
    for i in range(n):
        frame = av.VideoFrame(w, h, "yuv420p")
        for k in range(3):
            plane_view(frame.planes[k], np.dtype(np.uint8))[...] = planes[k][i]
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = av.CodecContext.create(DECODERS.get(codec, codec), "r")
    dec.thread_count = 1
    if enc.extradata:
        dec.extradata = enc.extradata
    decoded = []
    for packet in packets:
        decoded += dec.decode(packet)
    decoded += dec.decode(None)
    if len(decoded) != n:
        raise RuntimeError(f"{codec}: {n} frames in, {len(decoded)} out")
    decoded.sort(key=lambda f: f.pts)
    out = [tuple(torch.from_numpy(plane_view(f.planes[k], np.dtype(np.uint8)).copy()) for k in range(3))
           for f in decoded]
    stacked = tuple(torch.stack([o[k] for o in out]) for k in range(3))
    return colour.planes_to_rgb(stacked, spec)
