"""NVDEC / NVENC: what this PyAV build and GPU offer, for the transcode report (detection only).

Frames are decoded in software and their planes uploaded by the pipeline; the encoder is the
one asked for (an `*_nvenc` codec works through the ordinary encode path where the GPU has
NVENC). This says which path ran and what the build and card would allow. Data-centre GPUs such
as the H100 and H200 have NVDEC but no NVENC: an NVENC session then fails to open, which is how
it is detected (once per process).
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any

import av

# decoder or encoder name -> the family of its *_cuvid / *_nvenc twins
_FAMILY = {"h264": "h264", "libx264": "h264", "hevc": "hevc", "libx265": "hevc", "av1": "av1", "libdav1d": "av1",
           "libaom-av1": "av1", "libsvtav1": "av1", "vp9": "vp9", "libvpx-vp9": "vp9", "vp8": "vp8", "libvpx": "vp8",
           "mpeg2video": "mpeg2", "mpeg4": "mpeg4", "mjpeg": "mjpeg", "vc1": "vc1", "mpeg1video": "mpeg1"}


def _family(name: str) -> str:
    return _FAMILY.get(name, name.removesuffix("_nvenc").removesuffix("_cuvid"))


@functools.cache
def nvenc_error(encoder: str, gpu: int = 0) -> str | None:
    """None when an NVENC session of `encoder` opens on GPU `gpu`, else why not."""
    if encoder not in av.codecs_available:
        return "not in this PyAV build"
    try:
        cc = av.CodecContext.create(encoder, "w")
        cc.width, cc.height, cc.pix_fmt, cc.time_base = 256, 256, "yuv420p", Fraction(1, 25)
        cc.options = {"gpu": str(gpu)}
        cc.open()
    except av.FFmpegError as e:
        return f"does not open on this GPU ({e.strerror})"
    except (ValueError, OSError) as e:
        return f"does not open on this GPU ({e})"
    return None


def describe(device: Any, decoder: str, encoder: str) -> str:
    """One line: decode and encode paths, with what NVDEC/NVENC offer here."""
    if getattr(device, "type", "cpu") != "cuda":
        return f"decode {decoder} (software), encode {encoder} (software); no CUDA device"
    from .devices import resolve_device

    gpu = resolve_device(device).index  # NVENC's `gpu` is the CUDA ordinal; bare "cuda": torch's current GPU
    cuvid = f"{_family(decoder)}_cuvid"
    nvdec = (f"NVDEC in this build ({cuvid}), not used: planes are decoded in software and uploaded"
             if cuvid in av.codecs_available and "cuda" in av.codec.hwaccel.hwdevices_available()
             else f"no NVDEC decoder for {decoder} in this build")
    if encoder.endswith("_nvenc"):
        return f"decode {decoder} (software; {nvdec}), encode {encoder} (NVENC)"
    nvenc = f"{_family(encoder)}_nvenc"
    reason = nvenc_error(nvenc, gpu)
    offer = f"{nvenc} usable on this GPU, not chosen" if reason is None else f"no NVENC: {nvenc} {reason}"
    return f"decode {decoder} (software; {nvdec}), encode {encoder} (software; {offer})"
