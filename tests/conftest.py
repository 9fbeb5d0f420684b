"""Shared fixtures: tiny synthetic clips written with PyAV, stand-in engines, devices.

Clips are made with swscale's own RGB -> Y'CbCr conversion (explicit matrix and range), not
with `rlfn_video.colour`, so colour tests compare our maths against an independent one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

# swscale name, and the H.273 code written as colorspace, primaries and transfer, per matrix.
SWS_MATRIX = {"bt601": ("ITU601", 6), "bt709": ("ITU709", 1)}


GPU_CHECK_SUMMARY = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The GPU check's CPU dry run (tests/test_gpu_check.py): its summary, so CI's log shows the
    steps, the budget, the file count and every row measured."""
    summary = config.stash.get(GPU_CHECK_SUMMARY, None)
    if summary:
        terminalreporter.section("scripts/gpu_check.sh dry run (DRY_RUN=1, CPU)")
        terminalreporter.write(summary)


def all_devices() -> list:
    """cpu, plus cuda: skipped without a GPU unless FAIL_WITHOUT_CUDA is set (the GPU check)."""
    need = bool(os.environ.get("FAIL_WITHOUT_CUDA"))
    no_gpu = not torch.cuda.is_available() and not need
    return ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(no_gpu, reason="no CUDA GPU"))]


@pytest.fixture(scope="session")
def host_kernels(tmp_path_factory):
    """The CuPy kernels' C source built with the host compiler (tests/host_kernels.py)."""
    from . import host_kernels as host

    try:
        return host.build(tmp_path_factory.mktemp("kernels"))
    except RuntimeError as e:
        pytest.skip(str(e))


@pytest.fixture
def emulated_cuda(monkeypatch, host_kernels):
    """Device lanes (rlfn_video.lane) on the CPU: tests/emulated_cuda.py."""
    from . import emulated_cuda as emulation

    emulation.emulate(monkeypatch, host_kernels)


@pytest.fixture(params=all_devices())
def device(request) -> str:
    return request.param


class NearestEngine:
    """Stand-in for `Engine`: nearest-neighbour upscaling keeps flat colours exact."""

    def __init__(self, scale: int = 2):
        self.scale = scale
        self.device = torch.device("cpu")
        self.inputs: list[torch.Tensor] = []  # mean RGB of each frame it was given

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        assert rgb.dim() == 4 and rgb.shape[1] == 3 and rgb.is_floating_point()
        self.inputs.append(rgb.mean(dim=(0, 2, 3)))
        return F.interpolate(rgb, scale_factor=self.scale, mode="nearest")


def pattern(index: int, width: int, height: int, colour: Sequence[int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8: a flat `colour`, or a moving colourful gradient."""
    if colour is not None:
        return np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy()
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(1, width - 1) + index * 16) % 256
    g = (y * 255 // max(1, height - 1) + index * 8) % 256
    b = ((x + y) * 4 + index * 32) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


ASS_HEADER = (b"[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontname, Fontsize\n"
              b"Style: Default,Arial,16\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, "
              b"MarginR, MarginV, Effect, Text\n")


def make_clip(path: Path, *, size: tuple[int, int] = (64, 48), frames: int = 8, rate: int = 10,
              codec: str = "libx264", pix_fmt: str = "yuv420p", matrix: str | None = None,
              full_range: bool = False, colour: Sequence[int] | None = None, pts: Sequence[int] | None = None,
              audio: str | None = None, subtitles: Sequence[str] = (), rotation: int | None = None,
              metadata: dict[str, str] | None = None, options: dict[str, str] | None = None) -> Path:
    """Write a small clip. `matrix` (bt601/bt709) converts and tags; None leaves it untagged
    (converted as BT.601 limited, which is what our reader assumes below 720p). `pts` (in ms)
    gives variable frame timing. `audio`: an audio encoder name (mono 8 kHz sine). `subtitles`:
    one cue of text per second, mov_text in MP4, subrip in Matroska."""
    width, height = size
    sws, code = SWS_MATRIX[matrix or "bt601"]
    rng = "JPEG" if full_range else "MPEG"
    with av.open(str(path), "w") as out:
        if metadata:
            out.metadata.update(metadata)
        opts = {"preset": "ultrafast", "crf": "10"} if codec == "libx264" else {}
        vs = out.add_stream(codec, rate=rate, options={**opts, **(options or {})})
        cc = vs.codec_context
        cc.width, cc.height, cc.pix_fmt = width, height, pix_fmt
        if pts is not None:
            vs.time_base = cc.time_base = Fraction(1, 1000)
        if matrix:
            cc.colorspace = cc.color_primaries = cc.color_trc = code
        cc.color_range = 2 if full_range else (1 if matrix else 0)
        if rotation is not None:
            vs.set_display_rotation(rotation)
        if audio:
            a = out.add_stream(audio, rate=8000, layout="mono")
        if subtitles:
            s = out.add_stream("mov_text" if path.suffix == ".mp4" else "subrip")
            s.codec_context.subtitle_header = ASS_HEADER
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(i, width, height, colour), format="rgb24")
            is_rgb = av.VideoFormat(pix_fmt).is_rgb
            # threads=1: sliced swscale dithers 8 -> 10 bit differently after a reconfiguration
            frame = frame.reformat(format=pix_fmt, dst_colorspace=None if is_rgb else sws, dst_color_range=rng,
                                   threads=1)
            frame.pts = pts[i] if pts is not None else i
            if pts is not None:
                frame.time_base = Fraction(1, 1000)
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        seconds = (pts[-1] / 1000 + 0.1) if pts is not None else frames / rate
        if audio:
            t = np.arange(int(seconds * 8000)) / 8000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, len(samples), 1024):
                chunk = samples[start:start + 1024]
                fmt = a.codec_context.format.name
                data = chunk if "flt" in fmt else (chunk * 32767).astype(np.int16)
                af = av.AudioFrame.from_ndarray(data[None, :], format=fmt, layout="mono")
                af.sample_rate, af.pts, af.time_base = 8000, start, Fraction(1, 8000)
                out.mux(a.encode(af))
            out.mux(a.encode())
        for k, text in enumerate(subtitles):
            sub = av.subtitles.subtitle.SubtitleSet.create(f"0,0,Default,,0,0,0,,{text}".encode(), 0, 500)
            packet = s.codec_context.encode_subtitle(sub)
            tb = Fraction(1, 1000)
            packet.pts = packet.dts = k * 1000
            packet.duration, packet.time_base, packet.stream = 500, tb, s
            out.mux(packet)
    return path


def leftovers(folder: Path) -> list[str]:
    """Temporary outputs left in a folder (there must be none after any failure)."""
    return sorted(p.name for p in folder.iterdir() if ".part-" in p.name)
