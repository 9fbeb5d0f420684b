"""The CUDA pipeline: a ring of device lanes (lane.py), decode/H2D/compute/D2H/encode overlapping.

Each lane holds the frames of one model call: `submit` loads frames into the filling lane's pinned input (the one
host copy in), launches it when full (upload on the shared H2D stream, the fused colour kernel,
the model as a CUDA graph replay for the fixed shape or the eager engine when tiling, the second
kernel, download on the shared D2H stream) and returns the lanes the host finds finished, in
order, each frame copied once out of pinned memory into its destination (the encoder's frame when
the caller gave `output`). Everything is sized on the first frame; after that the hot path
allocates nothing on the device and never synchronises the device, only waits for the oldest
lane's own event when the ring is full (Note [Lane buffers, streams and events] in lane.py).
Without CuPy the lanes convert colour with colour.py in torch on the GPU, same results.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from . import lane as lanes
from .colour import ColourSpec
from .colour_cuda import PlaneLayout
from .devices import resolve_device
from .errors import RlfnError
from .lane import Lane
from .models import output_size
from .pipeline_types import Output, PipelineOptions, finished

if TYPE_CHECKING:
    from .media import Picture

_CALL_PIXELS = 960 * 540  # auto: frames per call until a call covers about this many pixels
_MAX_FRAMES_PER_CALL = 8
_DEPTH = 4  # auto: calls in flight, fewer where memory is short
_RESERVE = 0.15  # of total GPU memory left free when sizing the ring


@dataclass(frozen=True)
class CudaConfig:
    frames_per_call: int
    depth: int
    streams: int
    graphs: bool
    tile: int | None
    lane_mib: float  # measured device memory of one lane (buffers, graph pool, first warm-up)
    kernels: bool  # CuPy colour kernels (else colour.py in torch on the GPU)

    def describe(self, engine) -> str:
        tiles = f"tiles of {self.tile}+{engine.tile_overlap} px" if self.tile else "whole frames"
        compiled = " (torch compile)" if getattr(getattr(engine, "backend", None), "compile", False) else ""
        return (f"{engine.device} {engine.precision}{compiled}, {self.frames_per_call} frame(s) per call, "
                f"{self.depth} call(s) in flight on {self.streams} compute stream(s) + H2D/D2H copy streams, "
                f"CUDA graphs {'on' if self.graphs else 'off'}, {tiles}, "
                f"{'CuPy colour kernels' if self.kernels else 'colour in torch (CuPy missing: pip install cupy-cuda13x)'}, "
                f"{self.lane_mib:.0f} MiB per lane")


@dataclass
class _Seat:
    """A lane of the ring and the pictures it carries."""

    lane: Lane
    pics: list[Picture] = field(default_factory=list)
    busy: bool = False


class CudaPipeline:
    """See the module docstring and pipeline_types.py for the API."""

    def __init__(self, engine: Any, colour_out: ColourSpec, *, options: PipelineOptions | None = None,
                 output: Output | None = None):
        self.options = options or PipelineOptions()
        self.engine, self.colour_out, self._output = engine, colour_out, output
        self.device = resolve_device(engine.device)  # indexed: the same GPU for torch, CuPy and graphs
        self.kernels = lanes.colour_kernels(self.device)
        self.config: CudaConfig | None = None
        self.description = f"{self.device} {engine.precision} (sized on the first frame)"
        self._ring: list[_Seat] = []
        self._inflight: collections.deque[_Seat] = collections.deque()
        self._filling: _Seat | None = None
        self._next = 0
        self._capture_stream: torch.cuda.Stream | None = None  # CUDA graph capture, on self.device

    # -- setup, on the first frame ---------------------------------------------------------------

    def _setup(self, pic: Picture) -> None:
        self.layout_in = PlaneLayout.of(pic.planes)
        (h, w) = pic.planes[0].shape
        self.layout_out = PlaneLayout.for_spec(self.colour_out, *output_size(w, h, self.engine.scale))
        opts, engine = self.options, self.engine
        per_call = opts.frames_per_call or max(1, min(_MAX_FRAMES_PER_CALL, _CALL_PIXELS // (h * w)))
        tile = engine.tile_for(per_call, h, w)
        if tile is not None and opts.frames_per_call is None:
            per_call, tile = 1, engine.tile_for(1, h, w)
        wanted = opts.graphs if opts.graphs is not None else getattr(engine, "graphs", None)  # Backend.Torch(graphs=)
        graphs = tile is None and wanted is not False
        with torch.cuda.device(self.device):
            self._h2d, self._d2h = torch.cuda.Stream(self.device), torch.cuda.Stream(self.device)
            self._compute = [torch.cuda.Stream(self.device) for _ in range(max(1, opts.streams or 2))]
            self.frames_per_call = per_call
            free0, total = torch.cuda.mem_get_info(self.device)
            try:
                self._ring.append(self._seat(0, graphs, warm_up=True))
            except torch.OutOfMemoryError:
                # The estimate was optimistic: whole frames do not fit after all. Tile if allowed.
                torch.cuda.empty_cache()
                if engine.tile != "auto" or tile is not None or opts.frames_per_call is not None:
                    raise RlfnError(f"{per_call} {w}x{h} frame(s) per call do not fit in GPU memory "
                                    f"({free0 / 2**30:.1f} GiB free); set a smaller tile or fewer frames "
                                    f"per call") from None
                per_call, graphs, self.frames_per_call = 1, False, 1
                free0, total = torch.cuda.mem_get_info(self.device)
                tile = engine.tile_for(1, h, w, budget=free0 // 3)
                self._ring.append(self._seat(0, graphs, warm_up=True))
            free1, _ = torch.cuda.mem_get_info(self.device)
            lane_bytes = max(1, free0 - free1)
            # Tiles are sized for one forward at a time: one compute stream, two calls to overlap copies.
            depth = opts.depth or (2 if tile else _DEPTH)
            if tile and opts.streams is None:
                del self._compute[1:]
            if opts.depth is None:  # as many as fit, keeping a reserve for the encoder and others
                depth = max(1, min(depth, 1 + int((free1 - _RESERVE * total) // lane_bytes)))
            for i in range(1, depth):
                try:
                    self._ring.append(self._seat(i, graphs, warm_up=False))
                except torch.OutOfMemoryError:
                    if opts.depth is not None:
                        raise RlfnError(f"{opts.depth} calls in flight do not fit in GPU memory; "
                                        f"{i} did") from None
                    torch.cuda.empty_cache()
                    break
        streams = len({id(seat.lane.stream) for seat in self._ring})
        self.config = CudaConfig(per_call, len(self._ring), streams, graphs, tile, lane_bytes / 2**20,
                                 self.kernels is not None)
        self.description = self.config.describe(engine)

    def _seat(self, index: int, graphs: bool, warm_up: bool) -> _Seat:
        lane = Lane(self.engine, self.layout_in, self.layout_out, frames=self.frames_per_call,
                    stream=self._compute[index % len(self._compute)], kernels=self.kernels,
                    copy_streams=(self._h2d, self._d2h))
        if warm_up:  # cuDNN picks its kernels and allocates workspaces here, not during capture
            lane.warm_up()
        if graphs:
            if self._capture_stream is None:
                self._capture_stream = torch.cuda.Stream(self.device)
            lane.capture(self._capture_stream)
        torch.cuda.synchronize(self.device)  # setup only: the lane is ready before first use
        return _Seat(lane)

    # -- the hot path ----------------------------------------------------------------------------

    def _launch(self, seat: _Seat) -> None:
        seat.lane.launch(len(seat.pics), seat.pics[0].colour, self.colour_out)
        seat.busy = True
        self._inflight.append(seat)

    def _finish(self, seat: _Seat) -> list[Picture]:
        seat.lane.wait()
        done = []
        for k, pic in enumerate(seat.pics):
            storage = self._output() if self._output is not None else None
            if storage is None:
                planes = tuple(v.copy() for v in seat.lane.result(k))
            else:
                planes = storage.planes
                seat.lane.store(k, planes)
            done.append(finished(pic, planes, self.colour_out, storage))
        seat.pics.clear()
        seat.busy = False
        return done

    def submit(self, pic: Picture) -> list[Picture]:
        if not self._ring:
            self._setup(pic)
        self._ring[0].lane.check(pic.planes, f"frame {pic.index}")
        done: list[Picture] = []
        seat = self._filling
        if seat is not None and seat.pics and pic.colour != seat.pics[0].colour:
            self._launch(seat)  # a call has one colour: a frame tagged otherwise starts the next
            seat = self._filling = None
        if seat is None:
            seat = self._ring[self._next]
            self._next = (self._next + 1) % len(self._ring)
            while seat.busy:  # lanes launch in ring order, so a busy one is the oldest in flight
                done += self._finish(self._inflight.popleft())
            self._filling = seat
        seat.lane.load(len(seat.pics), pic.planes)
        seat.pics.append(pic)
        if len(seat.pics) == self.frames_per_call:
            self._launch(seat)
            self._filling = None
        while self._inflight and self._inflight[0].lane.ready():  # whatever is already back
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
        if self._ring:
            torch.cuda.synchronize(self.device)  # nothing in flight may outlive its buffers
        self._inflight.clear()
        self._ring.clear()
        self._filling = None

    def __enter__(self) -> CudaPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
