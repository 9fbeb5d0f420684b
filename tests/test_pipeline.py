"""HostPipeline on the CPU: the pipelined transcode equals a plain sequential loop bit for bit,
and order and count hold with several workers (the CUDA pipeline: test_pipeline_cuda.py)."""

from __future__ import annotations

import random
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
import torch

from rlfn_video import colour, media, transcode
from rlfn_video.errors import RlfnError
from rlfn_video.pipeline import HostPipeline, PipelineOptions, make_pipeline
from rlfn_video.transcode import upscale_video

from .conftest import NearestEngine, leftovers, make_clip
from .sr_models import engine as sr_engine
from .sr_models import sample_frames, spec_420
from .test_transcode import frames_of, packets, times


@pytest.fixture(scope="module")
def cpu_engine():
    return sr_engine("cpu")


def plain_loop(src, engine, spec_out) -> list[tuple[np.ndarray, ...]]:
    """What the pipeline must equal: one frame at a time, no threads, no queues."""
    out = []
    with media.Source(src) as source:
        for pic in source:
            if isinstance(pic, media.Picture):
                rgb = colour.planes_to_rgb([torch.from_numpy(p) for p in pic.planes], source.info.colour)
                out.append(tuple(p.numpy() for p in colour.rgb_to_planes(engine(rgb[None])[0], spec_out)))
    return out


def decoded_planes(path) -> list[tuple[np.ndarray, ...]]:
    with media.Source(path) as source:
        return [p.planes for p in source if isinstance(p, media.Picture)]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le"])
def test_transcode_is_bit_identical_to_a_plain_loop(tmp_path, cpu_engine, threads, pix_fmt):
    src = make_clip(tmp_path / "in.mkv", codec="ffv1", pix_fmt=pix_fmt, size=(40, 30), frames=5, matrix="bt709")
    dst = tmp_path / "out.mkv"
    report = upscale_video(src, dst, engine=cpu_engine, codec="ffv1", pipeline=PipelineOptions(threads=threads))
    ours = decoded_planes(dst)
    ref = plain_loop(src, cpu_engine, report.colour_out)
    assert len(ours) == len(ref) == 5
    for a, b in zip(ours, ref):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert f"{threads} SR thread(s)" in report.pipeline and "no CUDA device" in report.hardware


class Sleepy(NearestEngine):
    """Takes a random time per frame, so threads finish out of order."""

    def __init__(self, fail_at: int | None = None):
        super().__init__(2)
        self.calls = 0
        self.lock = threading.Lock()
        self.fail_at = fail_at

    def __call__(self, rgb):
        with self.lock:
            self.calls += 1
            n = self.calls
        if n == self.fail_at:
            raise RuntimeError("simulated failure")
        time.sleep(random.uniform(0, 0.01))
        return super().__call__(rgb)


def numbered(count: int) -> list[media.Picture]:
    """Frames whose luma is their index, with irregular pts."""
    return [media.Picture((np.full((8, 6), 16 + i, np.uint8), np.full((4, 3), 128, np.uint8),
                           np.full((4, 3), 128, np.uint8)), 1000 + 7 * i * i, Fraction(1, 90000), i, spec_420())
            for i in range(count)]


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_order_and_count_under_threads(threads):
    random.seed(threads)
    spec = spec_420()
    pics = numbered(25)
    out = []
    with make_pipeline(Sleepy(), spec, options=PipelineOptions(threads=threads)) as pipe:
        for k, pic in enumerate(pics):
            got = pipe.submit(pic)
            assert len(got) <= threads + 1  # never more in flight than that
            out += got
            if k == 11:
                out += pipe.flush()  # a flush mid-stream, then more frames
        out += pipe.flush()
    assert [p.index for p in out] == list(range(25))
    assert [p.pts for p in out] == [p.pts for p in pics]
    assert [int(p.planes[0][0, 0]) for p in out] == [16 + i for i in range(25)]
    assert {p.planes[0].shape for p in out} == {(16, 12)}


def test_thread_error_propagates_and_closes():
    spec = spec_420()
    with pytest.raises(RuntimeError, match="simulated"):
        with HostPipeline(Sleepy(fail_at=5), spec, options=PipelineOptions(threads=3)) as pipe:
            for pic in numbered(20):
                pipe.submit(pic)
            pipe.flush()
    assert not [t for t in threading.enumerate() if t.name.startswith("rlfn-sr")]
    with pytest.raises(RlfnError, match="threads must be at least 1"):
        HostPipeline(Sleepy(), spec, options=PipelineOptions(threads=0))


def test_old_option_names_still_work():
    """`workers=` and `batch=`: the old names of `threads=` and `frames_per_call=`."""
    assert PipelineOptions(workers=3, batch=2) == PipelineOptions(threads=3, frames_per_call=2)
    assert PipelineOptions(depth=2).threads == 1 and PipelineOptions(depth=2).frames_per_call is None


def test_packets_keep_their_place_with_frames_in_flight(tmp_path):
    src = make_clip(tmp_path / "in.mkv", matrix="bt709", audio="aac", subtitles=["Hello", "World"], frames=12)
    dst = tmp_path / "out.mkv"
    calls = []
    report = upscale_video(src, dst, engine=Sleepy(), pipeline=PipelineOptions(threads=4),
                           progress=lambda d, t: calls.append(d))
    assert report.frames_in == report.frames_out == 12 and calls == list(range(1, 13))
    assert times(frames_of(dst)) == times(frames_of(src))
    assert packets(dst, "audio") == packets(src, "audio")
    assert packets(dst, "subtitle") == packets(src, "subtitle")


def test_a_pipeline_that_loses_a_frame_is_an_error(tmp_path, monkeypatch):
    class Lossy(HostPipeline):
        def flush(self):
            return []

        def submit(self, pic):
            return [] if pic.index == 3 else super().submit(pic)

    monkeypatch.setattr(transcode, "make_pipeline", lambda *a, **k: Lossy(*a, **k))
    src = make_clip(tmp_path / "in.mp4", frames=6)
    with pytest.raises(RlfnError, match="lost 1 frame"):
        upscale_video(src, tmp_path / "out.mp4", engine=NearestEngine(2))
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_cpu_description_and_same_frames_as_the_step():
    spec = spec_420()
    eng = NearestEngine(2)
    pics = [media.Picture(planes, i, Fraction(1, 25), i, spec) for i, planes in enumerate(sample_frames(3, 20, 16, spec))]
    with make_pipeline(eng, spec) as pipe:
        assert type(pipe) is HostPipeline and pipe.description.startswith("cpu")
        out = [p for pic in pics for p in pipe.submit(pic)] + pipe.flush()
    step = transcode.make_pipeline  # the transcode uses exactly this factory
    assert step is make_pipeline
    assert [p.planes[0].shape for p in out] == [(32, 40)] * 3
