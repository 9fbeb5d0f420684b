"""The CUDA pipeline: K batches in flight, decode/H2D/compute/D2H/encode overlapping.

Per batch ("slot"): the decoded planes are copied into a pinned host buffer, uploaded as they
are (1.5 bytes per pixel for 8-bit 4:2:0) on the H2D stream, converted to RGB by a fused CuPy
kernel on the slot's compute stream, upscaled there (a CUDA graph replay for the fixed shape, or
the eager engine when tiling), converted back to planes by the second kernel and downloaded on
the D2H stream into pinned memory; `submit` returns slots the host finds finished, in order.
Everything is sized on the first frame; after that the hot path allocates nothing on the device
and never synchronises the device, only waits for the oldest slot's own event when the ring
is full.

Note [Slot buffers, streams and events]
A slot's buffers (pinned input, device planes, model input, graph output, device output planes,
pinned output) are allocated once, before its first launch, and live until close(). Three
streams touch them: the H2D copy stream, the slot's compute stream and the D2H copy stream,
ordered by the slot's events: `up` (upload -> compute), `done` (compute -> download) and `back`
(download -> host). The host reuses a slot only after waiting on its `back` event, which comes
after every earlier use of every buffer of that slot, so no buffer is written while a stream may
still read it. That is why no `record_stream` is needed here (unlike torchcodec's frames, these
buffers are never freed to the caching allocator while in flight: close() synchronises the
device once before dropping them). The eager engine's temporaries are allocated and freed on
the slot's compute stream, the caching allocator's own stream-ordered contract. The host copies
output planes out of the pinned ring, since the encoder may hold a frame longer than the slot
stays free.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import colour_cuda
from .colour import ColourSpec
from .colour_cuda import CudaColour, PlaneLayout
from .devices import resolve_device
from .errors import RlfnError
from .pipeline import FramePipeline, PipelineOptions

if TYPE_CHECKING:
    from .media import Picture

_BATCH_PIXELS = 960 * 540  # auto batch: frames per call until a call covers about this many pixels
_MAX_BATCH = 8
_DEPTH = 4  # auto: batches in flight, fewer where memory is short
_RESERVE = 0.15  # of total GPU memory left free when sizing the ring


@dataclass(frozen=True)
class CudaConfig:
    batch: int
    depth: int
    streams: int
    graphs: bool
    tile: int | None
    slot_mib: float  # measured device memory of one slot (buffers, graph pool, first warm-up)

    def describe(self, engine) -> str:
        tiles = f"tiles of {self.tile}+{engine.tile_overlap} px" if self.tile else "whole frames"
        compiled = " (torch compile)" if getattr(getattr(engine, "backend", None), "compile", False) else ""
        return (f"{engine.device} {engine.precision}{compiled}, batch {self.batch}, {self.depth} batch(es) in flight "
                f"on {self.streams} compute stream(s) + H2D/D2H copy streams, CUDA graphs "
                f"{'on' if self.graphs else 'off'}, {tiles}, CuPy colour kernels, {self.slot_mib:.0f} MiB per slot")


def _pinned(nbytes: int) -> torch.Tensor:
    """Page-locked host bytes (from torch's caching host allocator), so copies run asynchronously."""
    return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)


class _Slot:
    def __init__(self, pipe: "CudaPipeline", stream: torch.cuda.Stream):
        b, dev = pipe.config_batch, pipe.device
        lin, lout = pipe.layout_in, pipe.layout_out
        self.stream = stream
        self.host_in = _pinned(b * lin.frame * lin.itemsize)
        self.dev_in = torch.zeros_like(self.host_in, device=dev)
        h, w = lin.shapes[0]
        self.rgb = torch.zeros(b, 3, h, w, dtype=pipe.engine.dtype, device=dev).contiguous(
            memory_format=torch.channels_last)
        self.dev_out = torch.empty(b * lout.frame * lout.itemsize, dtype=torch.uint8, device=dev)
        self.host_out = _pinned(self.dev_out.numel())
        self.in_np = self.host_in.numpy().view(lin.dtype)
        self.out_np = self.host_out.numpy().view(lout.dtype)
        self.up, self.done = torch.cuda.Event(), torch.cuda.Event()
        self.back = torch.cuda.Event(blocking=True)  # the host sleeps on it rather than spinning
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: torch.Tensor | None = None  # the graph's output (static), None when eager
        self.decode = pipe.decode_launch(self, b)
        self.encode: colour_cuda.Launch | None = None
        self.pics: list[Picture] = []
        self.busy = False


class CudaPipeline(FramePipeline):
    """See the module docstring; same API as `FramePipeline`."""

    def __init__(self, engine, spec_in: ColourSpec, spec_out: ColourSpec, *, options: PipelineOptions | None = None):
        self.options = options or PipelineOptions()
        self.engine, self.spec_in, self.spec_out = engine, spec_in, spec_out
        self.device = resolve_device(engine.device)  # indexed: the same GPU for torch, CuPy and graphs
        self.kernels = CudaColour(self.device)
        self.config: CudaConfig | None = None
        self.description = f"{self.device} {engine.precision} (sized on the first frame)"
        self._slots: list[_Slot] = []
        self._inflight: collections.deque[_Slot] = collections.deque()
        self._filling: _Slot | None = None
        self._next = 0
        self._capture_stream: torch.cuda.Stream | None = None  # CUDA graph capture, on self.device

    # -- setup, on the first frame ---------------------------------------------------------------

    def _setup(self, pic: Picture) -> None:
        planes = pic.planes[:3]
        self.layout_in = PlaneLayout(tuple(p.shape for p in planes), planes[0].dtype.itemsize)
        (h, w), s = planes[0].shape, self.engine.scale
        self.layout_out = PlaneLayout.for_spec(self.spec_out, w * s, h * s)
        opts, engine = self.options, self.engine
        batch = opts.batch or max(1, min(_MAX_BATCH, _BATCH_PIXELS // (h * w)))
        tile = engine.tile_for(batch, h, w)
        if tile is not None and opts.batch is None:
            batch, tile = 1, engine.tile_for(1, h, w)
        wanted = opts.graphs if opts.graphs is not None else getattr(engine, "graphs", None)  # Backend.Torch(graphs=)
        graphs = tile is None and wanted is not False
        with torch.cuda.device(self.device):
            self._h2d, self._d2h = torch.cuda.Stream(self.device), torch.cuda.Stream(self.device)
            self._compute = [torch.cuda.Stream(self.device) for _ in range(max(1, opts.streams or 2))]
            self.config_batch = batch
            free0, total = torch.cuda.mem_get_info(self.device)
            try:
                self._slots.append(self._make_slot(0, graphs, warm_up=True))
            except torch.OutOfMemoryError:
                # The estimate was optimistic: whole frames do not fit after all. Tile if allowed.
                torch.cuda.empty_cache()
                if engine.tile != "auto" or tile is not None or opts.batch is not None:
                    raise RlfnError(f"a {w}x{h} batch of {batch} does not fit in GPU memory "
                                    f"({free0 / 2**30:.1f} GiB free); set a smaller tile or batch") from None
                batch, graphs, self.config_batch = 1, False, 1
                free0, total = torch.cuda.mem_get_info(self.device)
                tile = engine.tile_for(1, h, w, budget=free0 // 3)
                self._slots.append(self._make_slot(0, graphs, warm_up=True))
            free1, _ = torch.cuda.mem_get_info(self.device)
            slot_bytes = max(1, free0 - free1)
            # Tiles are sized for one forward at a time: one compute stream, two batches to overlap copies.
            depth = opts.depth or (2 if tile else _DEPTH)
            if tile and opts.streams is None:
                del self._compute[1:]
            if opts.depth is None:  # as many as fit, keeping a reserve for the encoder and others
                depth = max(1, min(depth, 1 + int((free1 - _RESERVE * total) // slot_bytes)))
            for i in range(1, depth):
                try:
                    self._slots.append(self._make_slot(i, graphs, warm_up=False))
                except torch.OutOfMemoryError:
                    if opts.depth is not None:
                        raise RlfnError(f"{opts.depth} batches in flight do not fit in GPU memory; "
                                        f"{i} did") from None
                    torch.cuda.empty_cache()
                    break
        streams = len({id(slot.stream) for slot in self._slots})
        self.config = CudaConfig(batch, len(self._slots), streams, graphs, tile, slot_bytes / 2**20)
        self.description = self.config.describe(engine)

    def _make_slot(self, index: int, graphs: bool, warm_up: bool) -> _Slot:
        slot = _Slot(self, self._compute[index % len(self._compute)])
        if warm_up:  # cuDNN picks its kernels and allocates workspaces here, not during capture
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.engine.forward(slot.rgb)
            torch.cuda.current_stream(self.device).wait_stream(side)
            torch.cuda.empty_cache()  # the side stream's cached blocks would serve no other stream
        if graphs:
            slot.graph, slot.out = self._capture(slot.rgb)
            slot.encode = self.encode_launch(slot, slot.out, self.config_batch)
        torch.cuda.synchronize(self.device)  # setup only: the slot is ready before first use
        return slot

    def _capture(self, rgb: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """The model on `rgb` as a CUDA graph, and the graph's (static) output tensor.

        Captured on this pipeline's own stream of its own device: without `stream=`,
        `torch.cuda.graph` uses one side stream shared by the whole process and created on
        whichever device was current the first time, wrong for a second GPU. The device context
        makes the capture's synchronize, empty_cache and capture_begin act on this GPU too."""
        with torch.cuda.device(self.device):
            if self._capture_stream is None:
                self._capture_stream = torch.cuda.Stream(self.device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._capture_stream, capture_error_mode="thread_local"):
                out = self.engine.forward(rgb, capturing=True)
        return graph, out

    def decode_launch(self, slot: _Slot, count: int) -> colour_cuda.Launch:
        values = colour_cuda.decode_args(self.spec_in, self.layout_in, slot.dev_in.data_ptr(), slot.rgb, count)
        return self.kernels.launcher("planes_to_rgb", self.layout_in.itemsize, slot.rgb.dtype, values)

    def encode_launch(self, slot: _Slot, out: torch.Tensor, count: int) -> colour_cuda.Launch:
        values = colour_cuda.encode_args(self.spec_out, self.layout_out, out, slot.dev_out.data_ptr(), count)
        return self.kernels.launcher("rgb_to_planes", self.layout_out.itemsize, out.dtype, values)

    # -- the hot path ----------------------------------------------------------------------------

    def _check(self, pic: Picture) -> None:
        shapes = tuple(p.shape for p in pic.planes[:3])
        if shapes != self.layout_in.shapes or pic.planes[0].dtype.itemsize != self.layout_in.itemsize:
            raise RlfnError(f"frame {pic.index}: planes {shapes} of {pic.planes[0].dtype} differ from the first "
                            f"frame's {self.layout_in.shapes}")

    def _launch(self, slot: _Slot) -> None:
        n, lin, lout = len(slot.pics), self.layout_in, self.layout_out
        full = n == self.config_batch
        cs = slot.stream
        with torch.cuda.stream(self._h2d):
            size = n * lin.frame * lin.itemsize
            (slot.dev_in if full else slot.dev_in[:size]).copy_(slot.host_in if full else slot.host_in[:size],
                                                                 non_blocking=True)
            slot.up.record(self._h2d)
        cs.wait_event(slot.up)
        (slot.decode if full else self.decode_launch(slot, n))(cs)
        with torch.cuda.stream(cs):
            if slot.graph is not None:
                slot.graph.replay()  # all `batch` frames; a partial batch ignores the extra outputs
                encode = slot.encode if full else self.encode_launch(slot, slot.out, n)
            else:
                out = self.engine.forward(slot.rgb)
                encode = self.encode_launch(slot, out, n)
            encode(cs)  # `out` stays referenced until the kernel is enqueued on cs
            slot.done.record(cs)
        self._d2h.wait_event(slot.done)
        with torch.cuda.stream(self._d2h):
            size = n * lout.frame * lout.itemsize
            (slot.host_out if full else slot.host_out[:size]).copy_(slot.dev_out if full else slot.dev_out[:size],
                                                                    non_blocking=True)
            slot.back.record(self._d2h)
        slot.busy = True
        self._inflight.append(slot)

    def _finish(self, slot: _Slot) -> list[Picture]:
        slot.back.synchronize()  # this slot only; see Note [Slot buffers, streams and events]
        done = [replace(pic, planes=tuple(v.copy() for v in self.layout_out.views(slot.out_np, k)))
                for k, pic in enumerate(slot.pics)]
        slot.pics.clear()
        slot.busy = False
        return done

    def submit(self, pic: Picture) -> list[Picture]:
        if not self._slots:
            self._setup(pic)
        self._check(pic)
        done: list[Picture] = []
        slot = self._filling
        if slot is None:
            slot = self._slots[self._next]
            self._next = (self._next + 1) % len(self._slots)
            while slot.busy:  # slots launch in ring order, so a busy one is the oldest in flight
                done += self._finish(self._inflight.popleft())
            self._filling = slot
        for view, plane in zip(self.layout_in.views(slot.in_np, len(slot.pics)), pic.planes[:3]):
            np.copyto(view, plane)
        slot.pics.append(pic)
        if len(slot.pics) == self.config_batch:
            self._launch(slot)
            self._filling = None
        while self._inflight and self._inflight[0].back.query():  # whatever is already back
            done += self._finish(self._inflight.popleft())
        return done

    def flush(self) -> list[Picture]:
        if self._filling is not None:
            self._launch(self._filling)
            self._filling = None
        done: list[Picture] = []
        while self._inflight:
            done += self._finish(self._inflight.popleft())
        return done

    def close(self) -> None:
        if self._slots:
            torch.cuda.synchronize(self.device)  # nothing in flight may outlive its buffers
        self._inflight.clear()
        self._slots.clear()
        self._filling = None

