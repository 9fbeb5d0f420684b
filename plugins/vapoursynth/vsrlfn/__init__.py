"""VapourSynth filter: ``clip = vsrlfn.rlfn(clip, scale=4)`` upscales with RLFN on rlfn_video's `Engine`.

Checks, frame <-> tensor copies and the per-frame callback live here; the model runs in `Engine`
and the colour maths (YUV clips) in `rlfn_video.colour` on the chosen device, or on a GPU with
CuPy in the engine's fused kernels (`rlfn_video.colour_cuda`). Nothing is
printed: under vspipe, stdout carries the video.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import vapoursynth as vs

from rlfn_video import colour, colour_cuda
from rlfn_video.backends import Backend, parse_backend
from rlfn_video.colour_cuda import CudaColour, PlaneLayout
from rlfn_video.devices import resolve_device
from rlfn_video.engine import Engine
from rlfn_video.errors import CheckpointError, RlfnError
from rlfn_video.models import SCALES, load_model
from rlfn_video.models.zoo import DEFAULT_MODEL, embedded_weights, shipped_text

__all__ = ["rlfn"]

_TO_RGBS = 'core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")  (use the clip\'s own matrix)'
_SUBSAMPLING = {(1, 1): "420", (1, 0): "422", (0, 0): "444"}  # (subsampling_w, subsampling_h)

_ENGINES: dict[tuple, Engine] = {}  # shared by all clips: (weights, mtime, scale, model, device, half, ...) -> Engine
_ENGINES_LOCK = threading.Lock()


def rlfn(
    clip: vs.VideoNode,
    scale: int | None = 4,
    model: str | None = DEFAULT_MODEL,
    weights: str | os.PathLike | None = None,
    device_index: int | None = None,
    num_streams: int = 1,
    tile: int | str | None = "auto",
    tile_pad: int = 24,
    device: str | None = None,
    backend: str | Backend.Torch | Backend.OpenVINO = "auto",
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
    :param tile_pad: input pixels of overlap around each tile (rounded up to a multiple of 6),
        cropped after upscaling.
    :param device: ``"cpu"``, ``"cuda"`` (torch's current GPU) or ``"cuda:N"``, instead of ``device_index``.
    :param backend: what runs the network: ``"auto"`` (CUDA: torch; CPU: OpenVINO when installed, at
        fp32 or native bf16, else torch), ``"torch"``, ``"torch-compile"``, ``"openvino"`` (the
        ``openvino`` extra; the CPU unless ``device`` says otherwise, frames run one at a time),
        or a ``rlfn_video.backends.Backend.Torch(...)``/``Backend.OpenVINO(...)``.

    Output: ``scale`` times the size; every frame property copied (untagged YUV also gets the
    ``_Matrix``/``_Range`` it was converted with); values clamped to the format's range.
    """
    fmt = _check_clip(clip)
    if scale is not None and (isinstance(scale, bool) or scale not in SCALES):
        raise vs.Error(f"vsrlfn: scale must be one of {', '.join(map(str, SCALES))}, not {scale!r}")
    if not isinstance(num_streams, int) or num_streams < 1:
        raise vs.Error(f"vsrlfn: num_streams must be an integer >= 1, not {num_streams!r}")
    _check_tile(tile, tile_pad)
    try:
        config = parse_backend(backend)
    except RlfnError as e:
        raise vs.Error(f"vsrlfn: {e}") from None
    if isinstance(config, Backend.OpenVINO) and device_index is None and device is None:
        device = "cpu"  # OpenVINO's frames stay on the host
    dev = _device(device_index, device)
    half = False if fmt.id == vs.RGBS else None  # None: the engine's fast precision (fp16 CUDA, bf16 CPU)
    try:
        engine = _engine(weights, scale, model, dev, half, tile, tile_pad, config or "auto")
    except RlfnError as e:
        raise vs.Error(f"vsrlfn: {e}") from None

    s = engine.scale
    w, h = clip.width, clip.height
    sw, sh = fmt.subsampling_w, fmt.subsampling_h  # 0 for RGB

    def plane_shapes(width: int, height: int) -> list[tuple[int, int]]:
        return [(height, width)] + [(height >> sh, width >> sw)] * 2

    flat = False
    if fmt.sample_type == vs.FLOAT:  # RGBS, RGBH (float YUV was refused)
        dtype = torch.float16 if fmt.bits_per_sample == 16 else torch.float32
        convert = functools.partial(_rgb_frame, engine)
    else:  # integer YUV (integer RGB was refused)
        dtype = torch.uint8 if fmt.bits_per_sample == 8 else torch.uint16
        layout = (w, h, fmt.bits_per_sample, _SUBSAMPLING[sw, sh])
        kernels = _cuda_kernels(dev)
        if kernels is not None:  # the engine's fused CuPy kernels; planes travel as one buffer
            flat = True
            itemsize = dtype.itemsize
            layouts = (PlaneLayout(tuple(plane_shapes(w, h)), itemsize),
                       PlaneLayout(tuple(plane_shapes(w * s, h * s)), itemsize))
            convert = functools.partial(_yuv_frame_kernels, engine, kernels, layouts, layout)
        else:
            convert = functools.partial(_yuv_frame, engine, layout)
    slots = _Slots(num_streams, dev, plane_shapes(w, h), plane_shapes(w * s, h * s), dtype, flat=flat)
    blank = clip.std.BlankClip(width=w * s, height=h * s, keep=True)
    process = functools.partial(_process, slots=slots, convert=convert)
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


def _check_tile(tile: int | str | None, pad: int) -> None:
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise vs.Error(f"vsrlfn: tile_pad must be an integer >= 0, not {pad!r}")
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


def _engine(weights, scale: int | None, model: str | None, dev: torch.device, half: bool | None,
            tile: int | str | None, tile_pad: int, backend="auto") -> Engine:
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
    key = (str(path), path.stat().st_mtime_ns, scale, model, str(dev), half, tile, tile_pad, backend)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = Engine(load_model(scale=scale, model=model, weights=path), device=dev, half=half,
                                   tile=tile, tile_overlap=tile_pad, backend=backend)
        return _ENGINES[key]


# ---------------------------------------------------------------------------------------------
# Per frame

# Note [slot buffers and streams]: a slot is one frame in flight: on CUDA its own stream and
# pinned host buffers. Host -> device copies, the engine, colour conversion and device -> host
# copies are all queued on the slot's stream, so device tensors never cross streams (no
# record_stream needed) and the caching allocator reuses their memory in stream order. The host
# buffers are refilled only by the slot's next frame, which starts after `sync()` (stream
# synchronize) returned and the result was copied into the VapourSynth frame. On the CPU the
# slots only bound how many frames run at once (a semaphore with buffers).


@dataclass
class _Slot:
    inp: list[torch.Tensor]  # per plane; views of `flat_in` when the planes travel as one buffer
    out: list[torch.Tensor]
    stream: Callable[[], contextlib.AbstractContextManager]
    sync: Callable[[], None]
    flat_in: torch.Tensor | None = None
    flat_out: torch.Tensor | None = None
    device_state: dict = field(default_factory=dict)  # kernel path: device buffers, launches by colour spec


def _plane_buffers(shapes: list, dtype: torch.dtype, pinned: bool, flat: bool):
    """Host buffers of the planes: separate tensors, or views of one back-to-back buffer."""
    if not flat:
        return [torch.empty(s, dtype=dtype, pin_memory=pinned) for s in shapes], None
    whole = torch.empty(sum(h * w for h, w in shapes), dtype=dtype, pin_memory=pinned)
    views, start = [], 0
    for h, w in shapes:
        views.append(whole[start:start + h * w].view(h, w))
        start += h * w
    return views, whole


class _Slots:
    def __init__(self, n: int, dev: torch.device, shapes_in: list, shapes_out: list, dtype: torch.dtype,
                 flat: bool = False):
        cuda = dev.type == "cuda"
        self.device = dev
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        for _ in range(n):
            (inp, flat_in), (out, flat_out) = (_plane_buffers(shapes, dtype, cuda, flat)
                                               for shapes in (shapes_in, shapes_out))
            if cuda:
                stream = torch.cuda.Stream(dev)
                self._free.put(_Slot(inp, out, functools.partial(torch.cuda.stream, stream), stream.synchronize,
                                     flat_in, flat_out))
            else:
                self._free.put(_Slot(inp, out, contextlib.nullcontext, _nothing, flat_in, flat_out))

    @contextlib.contextmanager
    def take(self):
        slot = self._free.get()
        try:
            yield slot
        finally:
            self._free.put(slot)


def _nothing() -> None:
    pass


def _process(n: int, f: list[vs.VideoFrame], *, slots: _Slots, convert: Callable) -> vs.VideoFrame:
    fin, fout = f[0], f[1].copy()
    fout.props.clear()
    fout.props.update(fin.props)
    with slots.take() as slot, slot.stream(), torch.inference_mode():
        for p, buf in enumerate(slot.inp):
            np.copyto(buf.numpy(), np.asarray(fin[p]))
        if slot.flat_in is not None:  # one upload, one download; the kernels find the planes inside
            convert(slot, fin.props, fout.props)
        else:
            planes = [b.to(slots.device, non_blocking=True) for b in slot.inp]
            for buf, t in zip(slot.out, convert(planes, fin.props, fout.props)):
                buf.copy_(t.to(buf.dtype), non_blocking=True)
        slot.sync()
        for p, buf in enumerate(slot.out):
            np.copyto(np.asarray(fout[p]), buf.numpy())
    return fout


def _rgb_frame(infer: Callable, planes: list[torch.Tensor], props_in, props_out) -> list[torch.Tensor]:
    return list(infer(torch.stack(planes)[None])[0])


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


def _yuv_frame(infer: Callable, layout: tuple, planes: list[torch.Tensor], props_in,
               props_out) -> tuple[torch.Tensor, ...]:
    spec = _frame_spec(layout, props_in, props_out)
    rgb = colour.planes_to_rgb(planes, spec)[None]  # fp32: 16-bit code values overflow fp16
    return colour.rgb_to_planes(infer(rgb)[0], spec)


def _cuda_kernels(dev: torch.device):
    """The engine's fused colour kernels for this GPU (CudaColour), or None: CPU, or no CuPy."""
    if dev.type != "cuda":
        return None
    try:
        import cupy  # noqa: F401 - deferred: optional (the cuda extra)
    except ImportError:
        return None
    return CudaColour(dev)


def _yuv_frame_kernels(engine: Engine, kernels, layouts: tuple[PlaneLayout, PlaneLayout], layout: tuple,
                       slot: _Slot, props_in, props_out, stream=None) -> None:
    """The slot's planes (back to back) up -> decode kernel -> model -> encode kernel -> down into
    `slot.flat_out`, all queued on the current stream (the slot's). The slot's device buffers are
    made on its first frame, the decode launch once per colour spec; the kernels compute like colour.py."""
    spec = _frame_spec(layout, props_in, props_out)
    lin, lout = layouts
    state = slot.device_state
    if not state:
        h, w = lin.shapes[0]
        state["in"] = torch.empty_like(slot.flat_in, device=engine.device)
        state["rgb"] = torch.empty(1, 3, h, w, dtype=engine.dtype, device=engine.device).contiguous(
            memory_format=torch.channels_last)
        state["out"] = torch.empty_like(slot.flat_out, device=engine.device)
        state["decode"] = {}  # by colour spec (frame props may change it)
    if stream is None and engine.device.type == "cuda":
        stream = torch.cuda.current_stream(engine.device)
    decode = state["decode"]
    if spec not in decode:
        decode[spec] = kernels.launcher("planes_to_rgb", lin.itemsize, state["rgb"].dtype,
                                        colour_cuda.decode_args(spec, lin, state["in"].data_ptr(), state["rgb"], 1))
    state["in"].copy_(slot.flat_in, non_blocking=True)
    decode[spec](stream)
    out = engine.forward(state["rgb"])  # a new tensor each frame (eager model), so its launch is per frame
    kernels.launcher("rgb_to_planes", lout.itemsize, out.dtype,
                     colour_cuda.encode_args(spec, lout, out, state["out"].data_ptr(), 1))(stream)
    slot.flat_out.copy_(state["out"], non_blocking=True)
