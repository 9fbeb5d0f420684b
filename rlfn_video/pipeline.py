"""Decoded frames -> colour -> `Engine` -> colour -> frames to encode, several frames in flight.

One API on every device: `submit(picture)` hands a frame in and returns the frames finished so
far, oldest first; `flush()` returns the rest; every submitted frame comes back exactly once, in
submission order, with its pts, time base and index. Use as a context manager (or `close()`):
closing waits for work in flight and frees the buffers.

- CPU (and stand-in engines): the step of the transcode, planes -> colour.py -> engine ->
  colour.py -> planes. `workers=1` runs it in the caller's thread when submitted (the transcode's
  decode and encode threads overlap it); `workers>1` runs that many frames at once on threads.
- CUDA with an `Engine`: pipeline_cuda.CudaPipeline (pinned ring buffers, copy and compute
  streams ordered by events, fused CuPy colour kernels, CUDA graphs, batching, tiles).

No av here: planes are numpy arrays, as `media.Picture` carries them; output pictures are the
input ones with new planes (`dataclasses.replace`), so pts, time base and index carry over.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from . import colour
from .colour import ColourSpec
from .errors import RlfnError

if TYPE_CHECKING:
    from .media import Picture


@dataclass(frozen=True)
class PipelineOptions:
    """None means chosen from the frame size, the model and free GPU memory."""

    depth: int | None = None  # CUDA: batches in flight (each with its own buffers and graph)
    streams: int | None = None  # CUDA: compute streams the batches rotate over
    batch: int | None = None  # CUDA: frames per model call (small frames)
    graphs: bool | None = None  # CUDA: capture the model for the fixed shape (not when tiling)
    workers: int = 1  # CPU: frames upscaled at once on threads (1: in the caller's thread)


def upscale_step(engine: Any, spec_in: ColourSpec, spec_out: ColourSpec) -> Callable[[Picture], Picture]:
    """Integer planes -> RGB -> engine -> integer planes; the colour maths runs on the engine's device."""
    device = getattr(engine, "device", torch.device("cpu"))

    def step(pic: Picture) -> Picture:
        planes = [torch.from_numpy(p).to(device) for p in pic.planes]
        rgb = colour.planes_to_rgb(planes, spec_in).unsqueeze(0)
        out = engine(rgb)[0]
        want = (3, rgb.shape[-2] * engine.scale, rgb.shape[-1] * engine.scale)
        if tuple(out.shape) != want:
            raise RlfnError(f"the engine returned {tuple(out.shape)} for a {tuple(rgb.shape[1:])} frame, not {want}")
        planes_out = tuple(p.cpu().numpy() for p in colour.rgb_to_planes(out, spec_out))
        return replace(pic, planes=planes_out)

    return step


class FramePipeline:
    """The step on the host's threads (see the module docstring); base of the CUDA pipeline's API."""

    def __init__(self, engine: Any, spec_in: ColourSpec, spec_out: ColourSpec, *,
                 options: PipelineOptions | None = None):
        self.options = options or PipelineOptions()
        if self.options.workers < 1:
            raise RlfnError(f"workers must be at least 1, not {self.options.workers}")
        self._step = upscale_step(engine, spec_in, spec_out)
        self._pool = ThreadPoolExecutor(self.options.workers, thread_name_prefix="rlfn-sr") \
            if self.options.workers > 1 else None
        self._pending: collections.deque[Future] = collections.deque()
        device = getattr(engine, "device", torch.device("cpu"))
        precision = getattr(engine, "precision", None)
        backend = getattr(engine, "backend", None)
        via = f" ({backend.label})" if backend is not None else ""
        self.description = (f"{device}{f' {precision}' if precision else ''}{via}, "
                            f"{self.options.workers} SR thread(s)")

    def submit(self, pic: Picture) -> list[Picture]:
        if self._pool is None:
            return [self._step(pic)]
        self._pending.append(self._pool.submit(self._step, pic))
        done = []
        # Block only when `workers` frames are already running; return whatever finished, in order.
        while self._pending and (len(self._pending) > self.options.workers or self._pending[0].done()):
            done.append(self._pending.popleft().result())
        return done

    def flush(self) -> list[Picture]:
        done = []
        while self._pending:
            done.append(self._pending.popleft().result())
        return done

    def close(self) -> None:
        for f in self._pending:
            f.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "FramePipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_pipeline(engine: Any, spec_in: ColourSpec, spec_out: ColourSpec, *,
                  options: PipelineOptions | None = None) -> FramePipeline:
    """CudaPipeline for an `Engine` on a CUDA device, else the host pipeline."""
    device = getattr(engine, "device", torch.device("cpu"))
    if device.type == "cuda" and hasattr(engine, "forward"):
        try:
            import cupy  # noqa: F401 - deferred: only the CUDA pipeline needs it
        except ImportError:
            pipe = FramePipeline(engine, spec_in, spec_out, options=options)
            pipe.description += " (CuPy missing: colour in torch, one frame at a time; pip install cupy-cuda13x)"
            return pipe
        from .pipeline_cuda import CudaPipeline

        return CudaPipeline(engine, spec_in, spec_out, options=options)
    return FramePipeline(engine, spec_in, spec_out, options=options)
