"""A lane: up to `frames` frames' trip from host planes to host planes, on one stream.

    load(k, planes) -> launch(n, colour_in, colour_out) -> wait() -> store(k, dst) / result(k)

Every front end runs frames through lanes: the video pipeline (pipeline.py: a pool of host lanes
on threads; pipeline_cuda.py: a ring of device lanes, several frames per model call, CUDA
graphs), the VapourSynth filter (a pool of `num_streams` lanes) and the benchmark through the
pipeline.

Two kinds, by the stream a lane is given:
- None: a host lane. `load` keeps references (no copy), `launch` runs in the caller's thread and
  calls the model as `engine(rgb)` (Engine.__call__, or any stand-in with that contract).
- a CUDA stream: a device lane (Note [Lane buffers, streams and events]). `load` copies the planes
  into pinned memory (the one host copy in), `launch` queues upload, planes -> RGB, the model
  (`engine.forward`, or a CUDA graph replay after `capture`), RGB -> planes and the download,
  and returns at once; `store` copies the result out of pinned memory (the one host copy out).

Colour, by the layout: integer planes (YUV or GBR, with a ColourSpec per launch) go through the
fused CuPy kernels of colour_cuda.py when a device lane has them (launches prepared once per
colour and frame count; the eager model's output only rebinds an address), else through colour.py
in torch on the engine's device; float R, G, B planes (VapourSynth RGBS/RGBH) are only cast.

Note [Lane buffers, streams and events]
A device lane's buffers (pinned input, device planes, model input, device output planes, pinned
output; the graph's pool when captured) are allocated once and live as long as the lane. Three
streams may touch them: the upload stream, the lane's compute stream and the download stream
(all three the lane's own stream unless the pipeline shares copy streams between lanes), ordered
by the lane's events `up` (upload -> compute), `done` (compute -> download) and `back` (download
-> host). Its owner reuses a lane only after `wait()` (or `ready()`), i.e. after `back`, which
comes after every earlier use of every buffer, so no buffer is written while a stream may still
read it, and no `record_stream` is needed: the buffers never go back to the caching allocator
while in flight (the owner synchronises the device once before dropping lanes). The eager
model's temporaries are allocated and freed on the compute stream, the caching allocator's own
stream-ordered contract.
"""

from __future__ import annotations

import contextlib
import functools
import queue
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from . import colour
from .colour import ColourSpec
from .colour_cuda import CudaColour, Launch, PlaneLayout, to_rgb_args, to_planes_args
from .devices import resolve_device
from .errors import RlfnError, check_output_shape


def _pinned(count: int, dtype: torch.dtype) -> torch.Tensor:
    """Page-locked host memory (torch's caching host allocator), so copies run asynchronously."""
    return torch.empty(count, dtype=dtype, pin_memory=True)


def new_stream(device: torch.device) -> torch.cuda.Stream | None:
    """A compute stream for a lane on `device`; None on the CPU (a host lane)."""
    return torch.cuda.Stream(device) if device.type == "cuda" else None


def colour_kernels(device: torch.device) -> CudaColour | None:
    """The fused CuPy colour kernels of a GPU, or None: the CPU, or CuPy missing (colour.py in torch).
    One per GPU for the process, so every pipeline and clip shares the compiled modules."""
    if device.type != "cuda":
        return None
    try:
        import cupy  # noqa: F401 - deferred: optional (the cuda extra)
    except ImportError:
        return None
    return _kernels_of(resolve_device(device))


@functools.lru_cache(maxsize=None)
def _kernels_of(device: torch.device) -> CudaColour:
    return CudaColour(device)


def capture_graph(engine: Any, rgb: torch.Tensor, stream: torch.cuda.Stream) -> tuple[Any, torch.Tensor]:
    """The model on `rgb` as a CUDA graph, and the graph's (static) output tensor.

    Captured on the caller's own stream of the engine's device: without `stream=`,
    `torch.cuda.graph` uses one side stream shared by the whole process and created on whichever
    device was current the first time, wrong for a second GPU. The device context makes the
    capture's synchronize, empty_cache and capture_begin act on this GPU too."""
    with torch.cuda.device(engine.device):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
            out = engine.forward(rgb, capturing=True)
    return graph, out


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


class Lane:
    """See the module docstring. `copy_streams` (upload, download): streams shared with other
    lanes (pipeline_cuda's H2D/D2H streams); default: the lane's own stream for everything."""

    def __init__(self, engine: Any, layout_in: PlaneLayout, layout_out: PlaneLayout, *, frames: int = 1,
                 stream: torch.cuda.Stream | None = None, kernels: Any = None,
                 copy_streams: tuple[Any, Any] | None = None):
        self.engine, self.layout_in, self.layout_out, self.frames = engine, layout_in, layout_out, frames
        self.stream = stream
        self.kernels = kernels if stream is not None and not layout_in.is_float else None
        self.graph: Any = None
        self._graph_out: torch.Tensor | None = None
        self._launches: dict[tuple, Launch] = {}  # (direction, colour, frames, ...) -> prepared launch
        if stream is None:
            self._loaded: list[Sequence[np.ndarray] | None] = [None] * frames
            self._results: list[tuple[np.ndarray, ...]] = []
            return
        self._upload, self._download = copy_streams or (stream, stream)
        device = engine.device
        tin, tout = _torch_dtype(layout_in.dtype), _torch_dtype(layout_out.dtype)
        self._host_in = _pinned(frames * layout_in.frame, tin)
        self._host_out = _pinned(frames * layout_out.frame, tout)
        self._in_np, self._out_np = self._host_in.numpy(), self._host_out.numpy()
        self._dev_in = torch.empty(self._host_in.shape, dtype=tin, device=device)  # empty: no uint16 fill kernel needed
        self._dev_out = torch.empty(self._host_out.shape, dtype=tout, device=device)
        (h, w) = layout_in.shapes[0]
        self.rgb = torch.zeros(frames, 3, h, w, dtype=engine.dtype, device=device).contiguous(
            memory_format=torch.channels_last)  # the model's input
        self.up, self.done = torch.cuda.Event(), torch.cuda.Event()
        self.back = torch.cuda.Event(blocking=True)  # the host sleeps on it rather than spinning

    @property
    def on_device(self) -> bool:
        return self.stream is not None

    # -- loading and reading -----------------------------------------------------------------

    def check(self, planes: Sequence[np.ndarray], what: str = "a frame") -> None:
        shapes = tuple(tuple(p.shape) for p in planes[:3])
        if shapes != self.layout_in.shapes or planes[0].dtype != self.layout_in.dtype:
            raise RlfnError(f"{what}: planes {shapes} of {planes[0].dtype} differ from the first frame's "
                            f"{self.layout_in.shapes} of {self.layout_in.dtype}")

    def load(self, k: int, planes: Sequence[np.ndarray]) -> None:
        """Frame k of the next launch: host lanes keep the arrays, device lanes copy them into pinned memory."""
        if not self.on_device:
            self._loaded[k] = planes
            return
        for view, plane in zip(self.layout_in.views(self._in_np, k), planes[:3]):
            np.copyto(view, plane)

    def result(self, k: int) -> tuple[np.ndarray, ...]:
        """Frame k's output planes of the last launch (after `wait`); valid until the next launch."""
        return self._results[k] if not self.on_device else self.layout_out.views(self._out_np, k)

    def store(self, k: int, dst: Sequence[np.ndarray]) -> None:
        """Copy frame k's output planes into `dst` (same shapes; any strides)."""
        for d, v in zip(dst, self.result(k)):
            np.copyto(d, v)

    def ready(self) -> bool:
        return not self.on_device or self.back.query()

    def wait(self) -> None:
        if self.on_device:
            self.back.synchronize()  # this lane only; see Note [Lane buffers, streams and events]

    # -- running -----------------------------------------------------------------------------

    @torch.inference_mode()
    def launch(self, n: int, colour_in: ColourSpec | None, colour_out: ColourSpec | None) -> None:
        """Run frames 0..n-1 (None colours: float RGB planes). Host lanes finish before returning;
        device lanes only queue the work (`wait` before `result`/`store`/the next `load`)."""
        if not self.on_device:
            self._run_host(n, colour_in, colour_out)
            return
        lin, lout, cs = self.layout_in, self.layout_out, self.stream
        size_in, size_out = n * lin.frame, n * lout.frame
        with torch.cuda.stream(self._upload):
            self._dev_in[:size_in].copy_(self._host_in[:size_in], non_blocking=True)
            self.up.record(self._upload)
        cs.wait_event(self.up)
        with torch.cuda.stream(cs):
            self._to_rgb(n, colour_in)
            if self.graph is not None:
                self.graph.replay()  # all `frames` frames; a partial call ignores the extra outputs
                out = self._graph_out
            else:
                out = self.engine.forward(self.rgb if n == self.frames else self.rgb[:n])
            self._to_planes(out, n, colour_out)  # `out` stays referenced until the work is enqueued
            self.done.record(cs)
        self._download.wait_event(self.done)
        with torch.cuda.stream(self._download):
            self._host_out[:size_out].copy_(self._dev_out[:size_out], non_blocking=True)
            self.back.record(self._download)

    def warm_up(self, times: int = 2) -> None:
        """Run the model on the lane's input (cuDNN picks its kernels, workspaces are allocated),
        on a side stream, so a later capture records no first-use work."""
        side = torch.cuda.Stream(self.engine.device)
        side.wait_stream(torch.cuda.current_stream(self.engine.device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(times):
                self.engine.forward(self.rgb)
        torch.cuda.current_stream(self.engine.device).wait_stream(side)
        torch.cuda.empty_cache()  # the side stream's cached blocks would serve no other stream

    def capture(self, stream: torch.cuda.Stream) -> None:
        """Replace the eager model by a CUDA graph of all `frames` frames (captured on `stream`)."""
        self.graph, self._graph_out = capture_graph(self.engine, self.rgb, stream)

    def _prepared(self, key: tuple, make) -> Launch:
        if key not in self._launches:
            self._launches[key] = make()
        return self._launches[key]

    def _to_rgb(self, n: int, spec: ColourSpec | None) -> None:
        lin, rgb = self.layout_in, self.rgb
        if lin.is_float:
            h, w = lin.shapes[0]
            rgb[:n].copy_(self._dev_in[: n * lin.frame].view(n, 3, h, w))
        elif self.kernels is not None:
            self._prepared(("to_rgb", spec, n), lambda: self.kernels.launcher(
                "planes_to_rgb", lin.itemsize, rgb.dtype, to_rgb_args(spec, lin, self._dev_in.data_ptr(), rgb, n),
            ))(self.stream)
        else:
            for k in range(n):
                rgb[k].copy_(colour.planes_to_rgb(list(lin.views(self._dev_in, k)), spec))

    def _to_planes(self, out: torch.Tensor, n: int, spec: ColourSpec | None) -> None:
        lout = self.layout_out
        if lout.is_float:
            h, w = lout.shapes[0]
            self._dev_out[: n * lout.frame].view(n, 3, h, w).copy_(out[:n])
        elif self.kernels is not None:
            key = ("to_planes", spec, n, out.dtype, tuple(out.stride()))
            launch = self._prepared(key, lambda: self.kernels.launcher(
                "rgb_to_planes", lout.itemsize, out.dtype, to_planes_args(spec, lout, out, self._dev_out.data_ptr(), n)))
            (launch if launch.values["src"] == out.data_ptr() else launch.rebind(src=out.data_ptr()))(self.stream)
        else:
            for k in range(n):
                for view, plane in zip(lout.views(self._dev_out, k), colour.rgb_to_planes(out[k], spec)):
                    view.copy_(plane)

    def _run_host(self, n: int, colour_in: ColourSpec | None, colour_out: ColourSpec | None) -> None:
        device = getattr(self.engine, "device", torch.device("cpu"))
        frames = []
        for planes in self._loaded[:n]:
            # read-only planes (VapourSynth's) are copied: torch has no read-only tensors
            tensors = [torch.from_numpy(p if p.flags.writeable else p.copy()).to(device) for p in map(np.asarray, planes[:3])]
            frames.append(torch.stack(tensors).float() if colour_in is None else colour.planes_to_rgb(tensors, colour_in))
        rgb = torch.stack(frames)
        out = self.engine(rgb)
        check_output_shape(out, (n, 3, *self.layout_out.shapes[0]), what="the engine",
                           given=f"{n} frame(s) of {'x'.join(map(str, self.layout_in.shapes[0]))}")
        dtype = self.layout_out.dtype
        self._results = [tuple(p.cpu().numpy() for p in colour.rgb_to_planes(o, colour_out)) if colour_out is not None
                         else tuple(o.cpu().numpy().astype(dtype)) for o in out]
        self._loaded = [None] * self.frames


class LanePool:
    """Lanes for frames that arrive on several threads (VapourSynth's callbacks, the host
    pipeline's workers): `take()` lends a free one, blocking while all are busy."""

    def __init__(self, lanes: Sequence[Lane]):
        self.lanes = tuple(lanes)
        self._free: queue.SimpleQueue[Lane] = queue.SimpleQueue()
        for lane in self.lanes:
            self._free.put(lane)

    @contextlib.contextmanager
    def take(self) -> Iterator[Lane]:
        lane = self._free.get()
        try:
            yield lane
        finally:
            self._free.put(lane)

    def run(self, planes: Sequence[np.ndarray], colour_in: ColourSpec | None, colour_out: ColourSpec | None,
            dst: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
        """One frame through a free lane: its output copied into `dst` (returned), or into new arrays."""
        with self.take() as lane:
            lane.check(planes)
            lane.load(0, planes)
            lane.launch(1, colour_in, colour_out)
            lane.wait()
            if dst is None and not lane.on_device:
                return lane.result(0)  # a host lane's own new arrays
            if dst is None:
                dst = tuple(np.empty_like(v) for v in lane.result(0))
            lane.store(0, dst)
            return tuple(dst)
