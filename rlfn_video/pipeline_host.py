"""The host pipeline: host lanes (lane.py) on the caller's thread or on `threads` threads.

`threads=1` runs each frame when it is submitted, in the caller's thread (the transcode's decode
and encode threads overlap it); `threads>1` runs that many frames at once on threads, each on a
lane of its own. Used on CPUs and for stand-in engines (anything with Engine's call contract);
see pipeline_types.py for the API.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import torch

from .colour import ColourSpec
from .colour_cuda import PlaneLayout
from .errors import RlfnError
from .lane import Lane, LanePool
from .models import output_size
from .pipeline_types import Output, PipelineOptions, finished

if TYPE_CHECKING:
    from .media import Picture


class HostPipeline:
    def __init__(self, engine: Any, colour_out: ColourSpec, *, options: PipelineOptions | None = None,
                 output: Output | None = None):
        self.options = options or PipelineOptions()
        if self.options.threads < 1:
            raise RlfnError(f"threads must be at least 1, not {self.options.threads}")
        self.engine, self.colour_out, self._output = engine, colour_out, output
        self._lanes: LanePool | None = None  # sized on the first frame
        self._pool = ThreadPoolExecutor(self.options.threads, thread_name_prefix="rlfn-sr") \
            if self.options.threads > 1 else None
        self._pending: collections.deque[Future] = collections.deque()
        device = getattr(engine, "device", torch.device("cpu"))
        precision = getattr(engine, "precision", None)
        backend = getattr(engine, "backend", None)
        via = f" ({backend.label})" if backend is not None else ""
        self.description = (f"{device}{f' {precision}' if precision else ''}{via}, "
                            f"{self.options.threads} SR thread(s)")

    def _step(self, pic: Picture) -> Picture:
        storage = self._output() if self._output is not None else None
        planes = self._lanes.run(pic.planes, pic.colour, self.colour_out,
                                 storage.planes if storage is not None else None)
        return finished(pic, planes, self.colour_out, storage)

    def submit(self, pic: Picture) -> list[Picture]:
        if self._lanes is None:
            (h, w) = pic.planes[0].shape
            layout_in = PlaneLayout.of(pic.planes)
            layout_out = PlaneLayout.for_spec(self.colour_out, *output_size(w, h, self.engine.scale))
            self._lanes = LanePool([Lane(self.engine, layout_in, layout_out) for _ in range(self.options.threads)])
        if self._pool is None:
            return [self._step(pic)]
        self._pending.append(self._pool.submit(self._step, pic))
        done = []
        # Block only when `threads` frames are already running; return whatever finished, in order.
        while self._pending and (len(self._pending) > self.options.threads or self._pending[0].done()):
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

    def __enter__(self) -> HostPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
