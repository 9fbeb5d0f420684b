"""CudaPipeline's own logic on the CPU: its ring of slots, partial batches, flushes, plane layouts,
pinned views and kernel arguments, with streams and events replaced by in-order no-ops, the
colour kernels by their host build and a graph replay by an eager forward into the same output
tensor. What this cannot show (real concurrency, graph capture, CuPy launches) is left to the
cuda tests; everything else of the CUDA path runs here."""

from __future__ import annotations

import contextlib
from fractions import Fraction

import numpy as np
import pytest
import torch

from rlfn_video import colour_cuda, pipeline_cuda
from rlfn_video.media import Picture
from rlfn_video.pipeline import FramePipeline, PipelineOptions

from . import host_kernels as host
from .sr_models import engine as sr_engine
from .sr_models import sample_frames, spec_420


class _Stream:
    def __init__(self, *args, **kwargs):
        self.cuda_stream = id(self)

    def wait_event(self, event):
        assert event.recorded, "waiting on an event that was never recorded"

    def wait_stream(self, stream):
        pass


class _Event:
    def __init__(self, *args, **kwargs):
        self.recorded = 0

    def record(self, stream=None):
        self.recorded += 1

    def query(self):
        return True

    def synchronize(self):
        assert self.recorded, "synchronizing on an event that was never recorded"


class _Graph:
    """Replay = the model again on the same input, into the same output tensor."""

    def __init__(self, engine, rgb):
        self.engine, self.rgb = engine, rgb
        self.out = engine.forward(rgb)
        self.replays = 0

    def replay(self):
        with torch.inference_mode():
            self.out.copy_(self.engine.forward(self.rgb))
        self.replays += 1


@pytest.fixture
def emulated(monkeypatch, host_kernels):
    @contextlib.contextmanager
    def nothing(*args, **kwargs):
        yield

    cuda = torch.cuda
    for name, value in (("Stream", _Stream), ("Event", _Event), ("stream", nothing), ("device", nothing),
                        ("current_stream", lambda *a: _Stream()), ("synchronize", lambda *a: None),
                        ("empty_cache", lambda: None), ("mem_get_info", lambda *a: (8 << 30, 16 << 30))):
        monkeypatch.setattr(cuda, name, value)
    monkeypatch.setattr(pipeline_cuda, "_pinned", lambda n: torch.zeros(n, dtype=torch.uint8))
    monkeypatch.setattr(pipeline_cuda, "CudaColour", lambda device: host.HostColour(host_kernels))
    monkeypatch.setattr(pipeline_cuda.CudaPipeline, "_capture",
                        lambda self, rgb: (g := _Graph(self.engine, rgb), g.out))


@pytest.fixture(scope="module")
def cpu_engine():
    return sr_engine("cpu", precision="fp32")


def pictures(count, width, height, depth=8):
    return [Picture(p, 500 + 3 * i, Fraction(1, 1000), i)
            for i, p in enumerate(sample_frames(count, width, height, spec_420(depth)))]


def run(pipe, pics, flush_at=()):
    out = []
    with pipe:
        for k, pic in enumerate(pics):
            out += pipe.submit(pic)
            if k in flush_at:
                out += pipe.flush()
        out += pipe.flush()
    return out


def max_diff(a: Picture, b: Picture) -> int:
    return max(int(np.abs(p.astype(int) - q.astype(int)).max()) for p, q in zip(a.planes, b.planes))


@pytest.mark.parametrize("depth", [8, 10])
def test_emulated_cuda_pipeline_matches_the_cpu_pipeline(emulated, cpu_engine, depth):
    spec = spec_420(depth)
    pics = pictures(7, 37, 25, depth)  # odd sizes: ragged chroma in and out
    ref = run(FramePipeline(cpu_engine, spec, spec), pics)
    pipe = pipeline_cuda.CudaPipeline(cpu_engine, spec, spec, options=PipelineOptions(depth=3, streams=2, batch=2))
    ours = run(pipe, pics, flush_at=(2,))
    assert pipe.config.batch == 2 and pipe.config.depth == 3 and pipe.config.graphs
    assert [p.index for p in ours] == list(range(7)) and [p.pts for p in ours] == [p.pts for p in pics]
    assert [p.planes[1].shape for p in ours] == [(25, 37)] * 7  # 4:2:0 of 74x50
    assert all(max_diff(a, b) <= 1 for a, b in zip(ours, ref))  # kernels vs colour.py: a tie may flip


def test_emulated_ring_reuses_slots_in_order(emulated, cpu_engine):
    spec = spec_420()
    pics = pictures(23, 20, 14)
    # one batch at a time, of the same size (another batch size may round differently)
    seq = run(pipeline_cuda.CudaPipeline(cpu_engine, spec, spec, options=PipelineOptions(depth=1, batch=3,
                                                                                          graphs=False)), pics)
    pipe = pipeline_cuda.CudaPipeline(cpu_engine, spec, spec, options=PipelineOptions(depth=4, streams=3, batch=3))
    ours = []
    for k, pic in enumerate(pics):
        ours += pipe.submit(pic)
        if k in (4, 5, 16):
            ours += pipe.flush()
    ours += pipe.flush()
    slots = list(pipe._slots)
    pipe.close()
    assert [p.index for p in ours] == list(range(23))
    assert all(max_diff(a, b) == 0 for a, b in zip(ours, seq))  # whatever the grouping and the ring
    assert "4 batch(es) in flight on 3 compute stream(s)" in pipe.description
    # 23 frames with flushes after frames 4, 5 and 16: batches of 3,2,1,3,3,3,2,3,3 -> 9 launches
    assert sorted(s.graph.replays for s in slots) == [2, 2, 2, 3] and not pipe._slots
    assert len({s.stream.cuda_stream for s in slots}) == 3


def test_emulated_tiles_run_eager_and_auto_batch(emulated):
    spec = spec_420()
    engine = sr_engine("cpu", precision="fp32", tile=12)
    pics = pictures(5, 30, 20)
    pipe = pipeline_cuda.CudaPipeline(engine, spec, spec)
    ours = run(pipe, pics)
    assert pipe.config.tile == 12 and not pipe.config.graphs and pipe.config.batch == 1
    assert pipe.config.depth == 2 and pipe.config.streams == 1  # tiles: one forward at a time
    assert "tiles of 12+24 px" in pipe.description and len(ours) == 5
    auto = pipeline_cuda.CudaPipeline(sr_engine("cpu", precision="fp32"), spec, spec)
    run(auto, pics)
    assert auto.config.batch == 8 and auto.config.depth == 4 and auto.config.streams == 2


def test_emulated_bf16_output_kernel(emulated):
    spec = spec_420()
    engine = sr_engine("cpu", precision="bf16")
    pics = pictures(3, 24, 16)
    ours = run(pipeline_cuda.CudaPipeline(engine, spec, spec, options=PipelineOptions(batch=2)), pics)
    ref = run(FramePipeline(engine, spec, spec), pics)
    assert all(max_diff(a, b) <= 1 for a, b in zip(ours, ref))


def test_emulated_refuses_a_frame_of_another_size(emulated, cpu_engine):
    spec = spec_420()
    pipe = pipeline_cuda.CudaPipeline(cpu_engine, spec, spec)
    with pipe, pytest.raises(Exception, match="differ from the first"):
        pipe.submit(pictures(1, 20, 14)[0])
        pipe.submit(pictures(1, 22, 14)[0])
