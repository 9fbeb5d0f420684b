"""The CUDA engine and pipeline (skipped without a GPU unless FAIL_WITHOUT_CUDA is set; the GPU
check script runs them): fp16 against the fp32 CPU reference, streams and graphs against a
sequential run, order and count with 4 streams, tiles, and a whole transcode."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from rlfn_video import colour
from rlfn_video.media import Picture
from rlfn_video.pipeline import HostPipeline, PipelineOptions, make_pipeline
from rlfn_video.transcode import upscale_video

from .conftest import all_devices, make_clip, pattern
from .sr_models import engine as sr_engine
from .sr_models import psnr8, sample_frames, spec_420
from .test_transcode import frames_of, times

CUDA = all_devices()[1]
pytestmark = pytest.mark.parametrize("device", [CUDA])

SEQUENTIAL = PipelineOptions(depth=1, streams=1, frames_per_call=1, graphs=False)


@pytest.fixture(autouse=True)
def deterministic_cudnn():
    """Same shapes -> same cuDNN kernels: bit-identical results whatever the stream or graph."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


@pytest.fixture(scope="module")
def fp16_engine():
    return sr_engine("cuda", precision="fp16")


def pictures(count: int, width: int, height: int, depth: int = 8) -> list[Picture]:
    spec = spec_420(depth)
    return [Picture(planes, 3000 + 1001 * i, Fraction(1, 30000), i, spec)
            for i, planes in enumerate(sample_frames(count, width, height, spec))]


def run(engine, pics: list[Picture], options: PipelineOptions, spec=None, flush_at=()) -> tuple[list[Picture], str]:
    spec = spec or spec_420()
    out = []
    with make_pipeline(engine, spec, options=options) as pipe:
        for k, pic in enumerate(pics):
            out += pipe.submit(pic)
            if k in flush_at:
                out += pipe.flush()
        out += pipe.flush()
        return out, pipe.description


def same_planes(a: Picture, b: Picture) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.planes, b.planes))


def image(width: int = 200, height: int = 120) -> torch.Tensor:
    rgb = pattern(3, width, height)
    rgb[30:70, 50:120] = (250, 40, 20)
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(255)[None]


def test_cuda_fp16_within_50db_of_fp32_cpu(device, fp16_engine):
    x = image()
    ref = sr_engine("cpu", precision="fp32")(x)
    ours = fp16_engine(x.cuda()).cpu()
    assert psnr8(ours, ref) >= 50
    diff = ((ours * 255).round() - (ref * 255).round()).abs()
    assert (diff <= 1).float().mean().item() >= 0.99
    # the same through the pipelines: CuPy kernels + graphs on CUDA, colour.py + fp32 on the CPU
    pics = pictures(3, 96, 64)
    gpu, _ = run(fp16_engine, pics, PipelineOptions())
    cpu, _ = run(sr_engine("cpu", precision="fp32"), pics, PipelineOptions())
    for a, b in zip(gpu, cpu):
        d = np.concatenate([np.abs(p.astype(int) - q.astype(int)).ravel() for p, q in zip(a.planes, b.planes)])
        assert (d <= 1).mean() >= 0.99 and d.max() <= 8


@pytest.mark.parametrize("depth", [8, 10])
def test_cuda_graphs_and_streams_bit_identical_to_sequential(device, fp16_engine, depth):
    pics = pictures(10, 96, 64, depth)
    spec = spec_420(depth)
    ref, ref_path = run(fp16_engine, pics, SEQUENTIAL, spec)
    ours, path = run(fp16_engine, pics, PipelineOptions(depth=4, streams=4, frames_per_call=1, graphs=True), spec)
    assert "CUDA graphs off" in ref_path and "CUDA graphs on" in path and "4 compute stream" in path
    assert [p.index for p in ours] == [p.index for p in ref] == list(range(10))
    assert all(same_planes(a, b) for a, b in zip(ours, ref))
    assert ours[0].planes[0].dtype == (np.uint8 if depth == 8 else np.uint16)


def test_cuda_no_frame_lost_or_reordered_with_4_streams(device, fp16_engine):
    pics = pictures(37, 64, 48)  # 37: the last call of 2 is partial
    ref, _ = run(fp16_engine, pics, SEQUENTIAL)
    ours, path = run(fp16_engine, pics, PipelineOptions(depth=8, streams=4, frames_per_call=2), flush_at=(20,))
    assert "2 frame(s) per call" in path and "4 compute stream" in path
    assert [p.index for p in ours] == list(range(37)) and [p.pts for p in ours] == [p.pts for p in pics]
    for a, b in zip(ours, ref):  # 2 frames per call may pick other cuDNN kernels than 1: +-1 at most
        assert max(np.abs(p.astype(int) - q.astype(int)).max() for p, q in zip(a.planes, b.planes)) <= 1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_other_precisions_use_their_kernels(device, precision):
    eng = sr_engine("cuda", precision=precision)
    pics = pictures(3, 64, 48)
    ours, path = run(eng, pics, PipelineOptions())
    cpu, _ = run(sr_engine("cpu", precision="fp32"), pics, PipelineOptions())
    assert precision in path
    for a, b in zip(ours, cpu):  # cuDNN runs fp32 convolutions in TF32; a wrong kernel is off by far more
        d = np.concatenate([np.abs(p.astype(int) - q.astype(int)).ravel() for p, q in zip(a.planes, b.planes)])
        assert (d <= 1).mean() >= 0.98 and d.max() <= 8


def test_cuda_tiled_within_45db_of_whole(device):
    x = image(300, 200)
    whole = sr_engine("cuda", precision="fp16", tile=None)(x)
    tiled_engine = sr_engine("cuda", precision="fp16", tile=48)
    assert psnr8(tiled_engine(x), whole) >= 45
    pics = pictures(4, 150, 100)
    ours, path = run(tiled_engine, pics, PipelineOptions())
    assert "tiles of 48+24 px" in path and "CUDA graphs off" in path and len(ours) == 4


def test_cuda_auto_choice_puts_small_frames_in_one_call(device, fp16_engine):
    _, path = run(fp16_engine, pictures(9, 160, 90), PipelineOptions())
    assert "8 frame(s) per call" in path and "CUDA graphs on" in path and "whole frames" in path


def test_cuda_transcode_end_to_end(device, fp16_engine, tmp_path):
    src = make_clip(tmp_path / "in.mp4", size=(96, 64), frames=12, matrix="bt709", audio="aac")
    report = upscale_video(src, tmp_path / "out.mp4", engine=fp16_engine)
    assert report.frames_in == report.frames_out == 12
    assert times(frames_of(tmp_path / "out.mp4")) == times(frames_of(src))
    assert "CuPy colour kernels" in report.pipeline and "NVENC" in report.hardware
    print(report.pipeline, "|", report.hardware)  # the GPU check keeps this in its log


def test_cuda_make_pipeline_kinds(device, fp16_engine):
    class Stub:  # not an Engine: the generic pipeline, colour.py on the GPU
        scale, device = 2, torch.device("cuda")

        def __call__(self, rgb):
            return torch.nn.functional.interpolate(rgb, scale_factor=2, mode="nearest")

    spec = spec_420()
    assert type(make_pipeline(Stub(), spec)) is HostPipeline
    assert type(make_pipeline(fp16_engine, spec)).__name__ == "CudaPipeline"
    rgb = colour.planes_to_rgb([torch.from_numpy(p) for p in pictures(1, 32, 32)[0].planes], spec)
    assert rgb.shape == (3, 32, 32)
