"""CudaPipeline's own logic on the CPU (tests/emulated_cuda.py): its ring of device lanes, partly
filled calls, flushes, plane layouts, pinned views and kernel arguments. The VapourSynth filter's
lanes run under the same emulation in test_vapoursynth.py."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from rlfn_video import pipeline_cuda
from rlfn_video.colour_cuda import PlaneLayout
from rlfn_video.media import Picture
from rlfn_video.pipeline import HostPipeline, PipelineOptions

from .sr_models import engine as sr_engine
from .sr_models import sample_frames, spec_420


@pytest.fixture
def emulated(emulated_cuda):
    pass


@pytest.fixture(scope="module")
def cpu_engine():
    return sr_engine("cpu", precision="fp32")


def pictures(count, width, height, depth=8):
    return [Picture(p, 500 + 3 * i, Fraction(1, 1000), i, spec_420(depth))
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
    ref = run(HostPipeline(cpu_engine, spec), pics)
    pipe = pipeline_cuda.CudaPipeline(cpu_engine, spec, options=PipelineOptions(depth=3, streams=2, frames_per_call=2))
    ours = run(pipe, pics, flush_at=(2,))
    assert pipe.config.frames_per_call == 2 and pipe.config.depth == 3 and pipe.config.graphs
    assert [p.index for p in ours] == list(range(7)) and [p.pts for p in ours] == [p.pts for p in pics]
    assert [p.planes[1].shape for p in ours] == [(25, 37)] * 7  # 4:2:0 of 74x50
    assert all(max_diff(a, b) <= 1 for a, b in zip(ours, ref))  # kernels vs colour.py: a tie may flip


def test_emulated_ring_reuses_slots_in_order(emulated, cpu_engine):
    spec = spec_420()
    pics = pictures(23, 20, 14)
    # one call at a time, of the same size (another number of frames per call may round differently)
    seq = run(pipeline_cuda.CudaPipeline(cpu_engine, spec, options=PipelineOptions(depth=1, frames_per_call=3,
                                                                                          graphs=False)), pics)
    pipe = pipeline_cuda.CudaPipeline(cpu_engine, spec, options=PipelineOptions(depth=4, streams=3, frames_per_call=3))
    ours = []
    for k, pic in enumerate(pics):
        ours += pipe.submit(pic)
        if k in (4, 5, 16):
            ours += pipe.flush()
    ours += pipe.flush()
    lanes = [seat.lane for seat in pipe._ring]
    pipe.close()
    assert [p.index for p in ours] == list(range(23))
    assert all(max_diff(a, b) == 0 for a, b in zip(ours, seq))  # whatever the grouping and the ring
    assert "3 frame(s) per call, 4 call(s) in flight on 3 compute stream(s)" in pipe.description
    # 23 frames with flushes after frames 4, 5 and 16: calls of 3,2,1,3,3,3,2,3,3 -> 9 launches
    assert sorted(ln.graph.replays for ln in lanes) == [2, 2, 2, 3] and not pipe._ring
    assert len({ln.stream.cuda_stream for ln in lanes}) == 3


def test_emulated_tiles_run_eager_and_auto_frames_per_call(emulated):
    spec = spec_420()
    engine = sr_engine("cpu", precision="fp32", tile=12)
    pics = pictures(5, 30, 20)
    pipe = pipeline_cuda.CudaPipeline(engine, spec)
    ours = run(pipe, pics)
    assert pipe.config.tile == 12 and not pipe.config.graphs and pipe.config.frames_per_call == 1
    assert pipe.config.depth == 2 and pipe.config.streams == 1  # tiles: one forward at a time
    assert "tiles of 12+24 px" in pipe.description and len(ours) == 5
    auto = pipeline_cuda.CudaPipeline(sr_engine("cpu", precision="fp32"), spec)
    run(auto, pics)
    assert auto.config.frames_per_call == 8 and auto.config.depth == 4 and auto.config.streams == 2


def test_emulated_bf16_output_kernel(emulated):
    spec = spec_420()
    engine = sr_engine("cpu", precision="bf16")
    pics = pictures(3, 24, 16)
    ours = run(pipeline_cuda.CudaPipeline(engine, spec, options=PipelineOptions(frames_per_call=2)), pics)
    ref = run(HostPipeline(engine, spec), pics)
    assert all(max_diff(a, b) <= 1 for a, b in zip(ours, ref))


def test_emulated_refuses_a_frame_of_another_size(emulated, cpu_engine):
    spec = spec_420()
    pipe = pipeline_cuda.CudaPipeline(cpu_engine, spec)
    with pipe, pytest.raises(Exception, match="differ from the first"):
        pipe.submit(pictures(1, 20, 14)[0])
        pipe.submit(pictures(1, 22, 14)[0])


class _Storage:
    """Stands in for encode.FrameBuffer: planes a consumer allocated."""

    def __init__(self, layout):
        self.planes = tuple(np.full(shape, 7, layout.dtype) for shape in layout.shapes)


def test_emulated_output_lands_in_the_consumers_planes_with_one_copy(emulated, cpu_engine, monkeypatch):
    """Finished frames are written straight into the allocator's planes (encode.Sink.new_frame in a
    transcode): one host copy out of the pinned ring, one into it (lane.load), no others."""
    spec = spec_420()
    pics = pictures(5, 24, 16)
    ref = run(pipeline_cuda.CudaPipeline(cpu_engine, spec, options=PipelineOptions(frames_per_call=2)), pics)
    made = []

    def output():
        made.append(_Storage(PlaneLayout.for_spec(spec, 48, 32)))
        return made[-1]

    copies = []
    real = np.copyto
    monkeypatch.setattr(np, "copyto", lambda dst, src, **kw: (copies.append(dst.shape), real(dst, src, **kw)))
    ours = run(pipeline_cuda.CudaPipeline(cpu_engine, spec, options=PipelineOptions(frames_per_call=2),
                                          output=output), pics)
    assert [p.storage for p in ours] == made and all(p.planes is s.planes for p, s in zip(ours, made))
    assert all(max_diff(a, b) == 0 for a, b in zip(ours, ref)) and all(p.colour == spec for p in ours)
    assert len(copies) == 5 * 3 * 2  # per frame and plane: one into pinned memory, one out


def test_emulated_call_breaks_where_the_colour_changes(emulated, cpu_engine):
    """Frames carry their colour: a call holds one, a frame tagged otherwise starts the next."""
    full = replace(spec_420(), full_range=True)
    pics = pictures(4, 24, 16)
    pics[2] = replace(pics[2], colour=full)
    spec = spec_420()
    ours = run(pipeline_cuda.CudaPipeline(cpu_engine, spec, options=PipelineOptions(frames_per_call=4)), pics)
    ref = run(HostPipeline(cpu_engine, spec), pics)
    assert [p.index for p in ours] == [0, 1, 2, 3] and all(max_diff(a, b) <= 1 for a, b in zip(ours, ref))
    assert max_diff(ours[2], run(pipeline_cuda.CudaPipeline(cpu_engine, spec), pictures(4, 24, 16))[2]) > 1
