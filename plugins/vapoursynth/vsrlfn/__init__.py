"""VapourSynth filter: ``clip = vsrlfn.rlfn(clip, scale=4)`` upscales with RLFN on rlfn_video's `Engine`.

Checks and the per-frame callback live here; each frame runs through a lane of rlfn_video
(`rlfn_video.lane`: on a GPU its own stream, pinned buffers and the fused CuPy colour kernels of
the video pipeline; on the CPU colour.py and the engine in the callback's thread), the same code
the CLI's pipeline runs. Nothing is printed: under vspipe, stdout carries the video.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import numpy as np
import torch
import vapoursynth as vs

from rlfn_video import colour, lane
from rlfn_video.backends import Backend, parse_backend
from rlfn_video.colour_cuda import PlaneLayout
from rlfn_video.devices import resolve_device
from rlfn_video.engine import Engine
from rlfn_video.errors import CheckpointError, RlfnError
from rlfn_video.models import check_scale, load_model, output_size
from rlfn_video.models.zoo import DEFAULT_MODEL, embedded_weights, shipped_text
from rlfn_video.tiling import DEFAULT_OVERLAP

__all__ = ["rlfn"]

_TO_RGBS = 'core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")  (use the clip\'s own matrix)'
_SUBSAMPLING = {(1, 1): "420", (1, 0): "422", (0, 0): "444"}  # (subsampling_w, subsampling_h)

_ENGINES: dict[tuple, Engine] = {}  # shared by all clips: (weights, mtime, scale, model, device, fast, ...) -> Engine
_ENGINES_LOCK = threading.Lock()


def rlfn(
    clip: vs.VideoNode,
    scale: int | None = 4,
    model: str | None = DEFAULT_MODEL,
    weights: str | os.PathLike | None = None,
    device_index: int | None = None,
    num_streams: int = 1,
    tile: int | str | None = "auto",
    tile_overlap: int = DEFAULT_OVERLAP,  # 24
    device: str | None = None,
    backend: str | Backend.Torch | Backend.OpenVINO = "auto",
    *,
    tile_pad: int | None = None,
) -> vs.VideoNode:
    """Upscale `clip` `scale` times with RLFN.

    :param clip: RGBS (fp32 inference) or RGBH (the engine's fast precision: fp16 on CUDA; on a CPU
        bf16 where it has native bf16, else fp32; written back as fp16). Integer YUV (8-16 bit,
        4:2:0 / 4:2:2 / 4:4:4) is converted to RGB and back on the device with the frame's
        ``_Matrix``/``_Range``/``_ChromaLocation`` (untagged: BT.709 from 720p up, BT.601 below,
        limited range), upscaled at the same precision as RGBH and returned in the same format.
        Constant format and size.
    :param scale: 2, 3 or 4. None takes it from the ``weights`` file.
    :param model: a model name (``rlfn-video models``): ``rlfn_s`` (default; clean photos),
        ``rlfn_s_video`` (compressed video, x2 and x4, when shipped), or an architecture (``rlfn``,
        ``rlfn_ntire``) to check ``weights`` against. None takes it from ``weights``.
    :param weights: checkpoint path (ours or an official RLFN one); None uses the embedded weights.
    :param device_index: CUDA device number; None (and ``device`` None): torch's current GPU (0 unless
        ``torch.cuda.set_device`` chose another) when torch sees one, else the CPU.
    :param num_streams: frames in flight at once: CUDA streams (each with its own pinned host
        buffers) on a GPU, concurrent callbacks on the CPU. Set ``core.num_threads`` at least as high.
    :param tile: ``"auto"`` (default): whole frames, tiles only when a frame's activations do not
        fit in GPU memory; an integer: square tiles of that many input pixels (rounded down to a
        multiple of 6, ESA's stride); None: never tile. Tiles stay within 45 dB of whole frames.
    :param tile_overlap: input pixels of overlap around each tile (rounded up to a multiple of 6),
        cropped after upscaling.
    :param device: ``"cpu"``, ``"cuda"`` (torch's current GPU) or ``"cuda:N"``, instead of ``device_index``.
    :param backend: what runs the network: ``"auto"`` (CUDA: torch; CPU: OpenVINO when installed, at
        fp32 or native bf16, else torch), ``"torch"``, ``"torch-compile"``, ``"openvino"`` (the
        ``openvino`` extra; the CPU unless ``device`` says otherwise, frames run one at a time),
        or a ``rlfn_video.backends.Backend.Torch(...)``/``Backend.OpenVINO(...)``.
    :param tile_pad: the old name of ``tile_overlap``, still accepted (keyword only).

    Output: ``scale`` times the size; every frame property copied (untagged YUV also gets the
    ``_Matrix``/``_Range`` it was converted with); values clamped to the format's range.
    """
    fmt = _check_clip(clip)
    try:
        if scale is not None:
            check_scale(scale)
    except RlfnError as e:
        raise vs.Error(f"vsrlfn: {e}") from None
    if not isinstance(num_streams, int) or num_streams < 1:
        raise vs.Error(f"vsrlfn: num_streams must be an integer >= 1, not {num_streams!r}")
    if tile_pad is not None:
        if tile_overlap != DEFAULT_OVERLAP:
            raise vs.Error("vsrlfn: pass tile_overlap or tile_pad, not both")
        tile_overlap = tile_pad
    _check_tile(tile, tile_overlap, "tile_overlap" if tile_pad is None else "tile_pad")
    try:
        config = parse_backend(backend)
    except RlfnError as e:
        raise vs.Error(f"vsrlfn: {e}") from None
    if isinstance(config, Backend.OpenVINO) and device_index is None and device is None:
        device = "cpu"  # OpenVINO's frames stay on the host
    dev = _device(device_index, device)
    fast = False if fmt.id == vs.RGBS else None  # None: the engine's fast precision (fp16 CUDA, bf16 CPU)
    try:
        engine = _engine(weights, scale, model, dev, fast, tile, tile_overlap, config or "auto")
    except RlfnError as e:
        raise vs.Error(f"vsrlfn: {e}") from None

    w, h = clip.width, clip.height
    ow, oh = output_size(w, h, engine.scale)
    if fmt.sample_type == vs.FLOAT:  # RGBS, RGBH (float YUV was refused)
        dtype = np.dtype(np.float16 if fmt.bits_per_sample == 16 else np.float32)
        layouts = PlaneLayout.rgb(w, h, dtype), PlaneLayout.rgb(ow, oh, dtype)
        colour_of = None
    else:  # integer YUV (integer RGB was refused)
        sw, sh, bits = fmt.subsampling_w, fmt.subsampling_h, fmt.bits_per_sample
        layouts = tuple(PlaneLayout(((y, x), (y >> sh, x >> sw), (y >> sh, x >> sw)), colour.sample_dtype(bits))
                        for x, y in ((w, h), (ow, oh)))
        colour_of = functools.partial(_frame_spec, (w, h, bits, _SUBSAMPLING[sw, sh]))
    kernels = lane.colour_kernels(engine.device)
    lanes = lane.LanePool([lane.Lane(engine, *layouts, stream=lane.new_stream(engine.device), kernels=kernels)
                           for _ in range(num_streams)])
    blank = clip.std.BlankClip(width=ow, height=oh, keep=True)
    process = functools.partial(_process, lanes=lanes, colour_of=colour_of)
    modify = functools.partial(blank.std.ModifyFrame, clips=[clip, blank], selector=process)
    # FrameEval builds one ModifyFrame per request: a single ModifyFrame node would run its
    # Python callback for one frame at a time, so frames could not overlap on the device.
    return blank.std.FrameEval(lambda n: modify(), clip_src=[clip, blank])


# ---------------------------------------------------------------------------------------------
# Checks (all before any model is loaded)


def _check_clip(clip: vs.VideoNode) -> vs.VideoFormat:
    if not isinstance(clip, vs.VideoNode):
        raise vs.Error(f"vsrlfn: clip must be a video clip (vs.VideoNode), not {type(clip).__name__}")
    fmt = clip.format
    if fmt is None or fmt.id == vs.NONE or clip.width == 0 or clip.height == 0:
        raise vs.Error("vsrlfn: the clip must have a constant format and size; make it constant, e.g. "
                       "core.resize.Bicubic(clip, width=W, height=H, format=vs.RGBS) on every part before Splice")
    name = fmt.name
    if fmt.color_family == vs.RGB:
        if fmt.sample_type != vs.FLOAT:
            raise vs.Error(f"vsrlfn: {name} is not supported; RGB input must be RGBS (fp32) or RGBH (fp16): "
                           f"core.resize.Point(clip, format=vs.RGBS)")
    elif fmt.color_family == vs.YUV:
        if fmt.sample_type == vs.FLOAT:
            raise vs.Error(f"vsrlfn: float YUV ({name}) is not supported; convert to RGB: {_TO_RGBS}, or to "
                           f"integer YUV: core.resize.Point(clip, format=vs.YUV444P16)")
        if (fmt.subsampling_w, fmt.subsampling_h) not in _SUBSAMPLING:
            raise vs.Error(f"vsrlfn: {name}: only 4:2:0, 4:2:2 and 4:4:4 chroma are supported; convert to RGB: "
                           f"{_TO_RGBS}")
    else:
        raise vs.Error(f"vsrlfn: {name} is not supported (RLFN needs colour); convert grey to RGB with "
                       f"core.resize.Point(core.std.ShufflePlanes(clip, [0, 0, 0], vs.RGB), format=vs.RGBS)")
    return fmt


def _check_tile(tile: int | str | None, overlap: int, name: str = "tile_overlap") -> None:
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise vs.Error(f"vsrlfn: {name} must be an integer >= 0, not {overlap!r}")
    if tile in (None, "auto"):
        return
    if not isinstance(tile, int) or isinstance(tile, bool) or tile <= 0:
        raise vs.Error(f'vsrlfn: tile must be "auto", None or a positive integer (square tiles), not {tile!r}')


def _device(index: int | None, spec: str | None) -> torch.device:
    """`device_index` or `device` -> an indexed torch.device, by the same rules as the CLI's
    `resolve_device` (a bare "cuda" or no choice at all: torch's current GPU, with its index)."""
    if spec is not None and index is not None:
        raise vs.Error("vsrlfn: pass device_index or device, not both")
    if index is not None:
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise vs.Error(f"vsrlfn: device_index must be a GPU number >= 0, not {index!r}")
        spec = f"cuda:{index}"
    if spec is not None and not isinstance(spec, (str, torch.device)):
        raise vs.Error(f'vsrlfn: device must be a string ("cpu", "cuda" or "cuda:N"), not {spec!r}')
    try:
        return resolve_device(spec or "auto", advice='leave device_index unset or pass device="cpu"')
    except RlfnError as e:
        raise vs.Error(f"vsrlfn: {e}") from None


def _engine(weights, scale: int | None, model: str | None, dev: torch.device, fast: bool | None,
            tile: int | str | None, tile_overlap: int, backend="auto") -> Engine:
    if weights is None:
        if scale is None:
            raise vs.Error("vsrlfn: scale=None needs a weights file; pass scale=2, 3 or 4")
        model = model or DEFAULT_MODEL
        try:
            weights = embedded_weights(model, scale)
        except CheckpointError:
            raise vs.Error(f"vsrlfn: no embedded weights for {model} x{scale} (shipped: {shipped_text()}); "
                           f'pass weights="/path/to/model.pth"') from None
    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        raise vs.Error(f"vsrlfn: weights file {str(weights)!r} not found")
    key = (str(path), path.stat().st_mtime_ns, scale, model, str(dev), fast, tile, tile_overlap, backend)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = Engine(load_model(scale=scale, model=model, weights=path), device=dev, fast=fast,
                                   tile=tile, tile_overlap=tile_overlap, backend=backend)
        return _ENGINES[key]


# ---------------------------------------------------------------------------------------------
# Per frame


def _process(n: int, f: list[vs.VideoFrame], *, lanes: lane.LanePool, colour_of) -> vs.VideoFrame:
    """On a VapourSynth thread: frame n through a free lane, straight into the output frame."""
    fin, fout = f[0], f[1].copy()
    fout.props.clear()
    fout.props.update(fin.props)
    spec = colour_of(fin.props, fout.props) if colour_of is not None else None
    lanes.run([np.asarray(fin[p]) for p in range(3)], spec, spec, [np.asarray(fout[p]) for p in range(3)])
    return fout


@functools.lru_cache(maxsize=64)
def _spec(matrix: int, rng: int, loc: int, width: int, height: int, bits: int, sub: str) -> colour.ColourSpec:
    # VapourSynth codes -> the H.273 / FFmpeg ones spec_from_tags reads. _Matrix is H.273 already;
    # _Range is H.273's full-range flag (1 full, 0 limited; absent: limited), FFmpeg's range is
    # 2 full, 1 limited, 0 unknown; _ChromaLocation counts from left = 0, FFmpeg's from left = 1.
    return colour.spec_from_tags(colorspace=matrix, color_range={1: 2, 0: 1}.get(rng, 0), primaries=2, transfer=2,
                                 width=width, height=height, bit_depth=bits, subsampling=sub, chroma_loc=loc + 1)


def _frame_spec(layout: tuple, props_in, props_out) -> colour.ColourSpec:
    """The frame's colour from its properties; a guessed matrix/range is written to the output."""
    try:
        spec = _spec(props_in.get("_Matrix", 2), props_in.get("_Range", -1), props_in.get("_ChromaLocation", 0),
                     *layout)
    except RlfnError as e:
        raise vs.Error(f"vsrlfn: {e}; convert to RGB first: {_TO_RGBS}") from None
    if "matrix" in spec.guessed:  # write down the guess, so nothing guesses again from the new size
        props_out["_Matrix"] = spec.colorspace
    if "range" in spec.guessed:
        props_out["_Range"] = 0
    return spec
