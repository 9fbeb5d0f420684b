"""What every frame pipeline offers (`Pipeline`) and is told (`PipelineOptions`).

A pipeline takes decoded frames (`media.Picture`: planes, timing and colour) and gives back the
upscaled ones: `submit(picture)` hands a frame in and returns the frames finished so far, oldest
first; `flush()` returns the rest; every submitted frame comes back exactly once, in submission
order, with its pts, time base and index, its planes replaced and its colour the output's. Use as
a context manager (or `close()`): closing waits for work in flight and frees the buffers.

`output`, when given, allocates where a finished frame's planes are written (the encoder's own
frame, `encode.Sink.new_frame`), so the result is copied once, straight into it; the returned
picture's `storage` is that object. Without it, finished frames get new arrays.

The pipelines: pipeline_host.HostPipeline (host lanes on threads) and
pipeline_cuda.CudaPipeline (a ring of device lanes); pipeline.make_pipeline picks one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import InitVar, dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from .media import Picture


class OutputStorage(Protocol):
    planes: tuple[np.ndarray, ...]


Output = Callable[[], OutputStorage]


@dataclass(frozen=True)
class PipelineOptions:
    """None means chosen from the frame size, the model and free GPU memory. `batch=` and
    `workers=`: the old names of `frames_per_call=` and `threads=`, still accepted."""

    depth: int | None = None  # CUDA: model calls in flight (each with its own lane and graph)
    streams: int | None = None  # CUDA: compute streams the calls rotate over
    frames_per_call: int | None = None  # CUDA: frames per model call (small frames share one)
    graphs: bool | None = None  # CUDA: capture the model for the fixed shape (not when tiling)
    threads: int = 1  # CPU: frames upscaled at once on threads (1: in the caller's thread)
    batch: InitVar[int | None] = None  # the old name of frames_per_call (init only: `.batch` reads None)
    workers: InitVar[int | None] = None  # the old name of threads (init only)

    def __post_init__(self, batch: int | None, workers: int | None) -> None:
        if batch is not None:
            object.__setattr__(self, "frames_per_call", batch)
        if workers is not None:
            object.__setattr__(self, "threads", workers)


class Pipeline(Protocol):
    description: str

    def submit(self, pic: Picture) -> list[Picture]: ...

    def flush(self) -> list[Picture]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Pipeline: ...

    def __exit__(self, *exc: object) -> None: ...


def finished(pic: Picture, planes: tuple[np.ndarray, ...], colour_out: Any, storage: Any = None) -> Picture:
    """`pic` upscaled: its timing kept, the new planes, the output colour and what holds the planes."""
    return replace(pic, planes=tuple(planes), colour=colour_out, storage=storage)
