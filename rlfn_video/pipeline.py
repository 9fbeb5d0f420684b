"""`make_pipeline`: the frame pipeline for an engine (pipeline_types.py says what one does).

- an `Engine` on a CUDA device: pipeline_cuda.CudaPipeline, a ring of device lanes (pinned
  buffers, copy and compute streams ordered by events, fused CuPy colour kernels, CUDA graphs,
  several frames per model call, tiles);
- anything else (CPUs, OpenVINO, stand-in engines): pipeline_host.HostPipeline, host lanes on
  the caller's thread or on `threads` threads.

No av here: planes are numpy arrays, as `media.Picture` carries them.
"""

from __future__ import annotations

from typing import Any

import torch

from .colour import ColourSpec
from .pipeline_cuda import CudaPipeline
from .pipeline_host import HostPipeline
from .pipeline_types import Output, Pipeline, PipelineOptions

__all__ = ["CudaPipeline", "HostPipeline", "Pipeline", "PipelineOptions", "make_pipeline"]


def make_pipeline(engine: Any, colour_out: ColourSpec, *, options: PipelineOptions | None = None,
                  output: Output | None = None) -> Pipeline:
    """Frames in (each with its colour) -> frames of `colour_out`, `engine.scale` times larger."""
    device = getattr(engine, "device", torch.device("cpu"))
    if device.type == "cuda" and hasattr(engine, "forward"):
        return CudaPipeline(engine, colour_out, options=options, output=output)
    return HostPipeline(engine, colour_out, options=options, output=output)
