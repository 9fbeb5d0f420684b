"""Throughput benchmark: our engine against the naive per-frame loop, measured in the same run.

Modes:
- `model`: frames already on the device, the model alone;
- `pipeline`: synthetic YUV frames through the transcode's `FramePipeline` (planes -> colour ->
  model -> colour -> planes; on CUDA pinned buffers, streams, graphs, batching), several in
  flight: fps is frames over the whole run, the latency columns are gaps between outputs;
- `e2e`: a real file decoded, upscaled and encoded by `upscale_video`;
- `scaleout`: the same job split into keyframe segments (`upscale_segmented`) on 1, 2, ...
  workers (processes on this machine, one per GPU or sharing the CPU cores); wall time from
  the start of the run to the joined file, worker start-up and model loading included.
The naive baseline is what most SR video scripts do: one thread, per frame decode -> rgb24
ndarray -> fp32 tensor -> model -> numpy -> encode, synchronous.
"""

from __future__ import annotations

import copy
import json
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np
import torch

from . import colour
from .engine import Engine
from .media import Picture
from .pipeline import PipelineOptions, make_pipeline
from .transcode import upscale_video

RESOLUTIONS = {"270p": (480, 270), "540p": (960, 540), "720p": (1280, 720), "1080p": (1920, 1080)}


def parse_resolution(name: str) -> tuple[int, int]:
    """A named input size (270p ... 1080p) or WIDTHxHEIGHT."""
    if name in RESOLUTIONS:
        return RESOLUTIONS[name]
    try:
        w, h = (int(v) for v in name.lower().split("x"))
    except ValueError:
        raise ValueError(f"unknown resolution {name!r}; use {', '.join(RESOLUTIONS)} or WIDTHxHEIGHT") from None
    return w, h


@dataclass
class Result:
    mode: str
    resolution: str
    variant: str  # "ours" or "naive"
    frames: int
    fps: float
    ms_median: float
    ms_p95: float
    peak_mem_mb: float
    extra: dict = field(default_factory=dict)


def environment(engine: Engine, codec: str | None = None) -> dict:
    env = {"torch": torch.__version__, "device": str(engine.device), "precision": engine.precision,
           "model": engine.name, "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "pyav": av.__version__, "ffmpeg": ".".join(map(str, av.library_versions["libavcodec"]))}
    if engine.device.type == "cuda":
        p = torch.cuda.get_device_properties(engine.device)
        env.update(gpu=p.name, cuda=torch.version.cuda, driver=_driver())
    if codec:
        env["encoder"] = codec
    return env


def _driver() -> str:
    try:
        import subprocess

        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KiB on Linux)


def _timed(fn: Callable[[], object], frames: int, device: torch.device, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(frames):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


def _result(mode: str, res: str, variant: str, times: list[float], device: torch.device, **extra) -> Result:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return Result(mode, res, variant, len(ms), 1000 * len(ms) / sum(ms), statistics.median(ms), p95,
                  _peak_mb(device), extra)


def naive_engine(engine: Engine) -> Engine:
    """The same weights as the naive scripts run them: fp32, contiguous memory."""
    naive = Engine(copy.deepcopy(engine.model), device=engine.device, precision="fp32")
    naive.model = naive.model.to(memory_format=torch.contiguous_format)
    return naive


def _naive_frame(model: torch.nn.Module, device: torch.device, rgb24: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(rgb24).permute(2, 0, 1).float().div(255).unsqueeze(0).to(device)
    with torch.inference_mode():
        y = model(x)
    return y[0].mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()


def bench_model(engine: Engine, res: str, frames: int) -> list[Result]:
    w, h = parse_resolution(res)
    x = torch.rand(1, 3, h, w, device=engine.device)
    naive = naive_engine(engine)
    out = [_result("model", res, "ours", _timed(lambda: engine(x), frames, engine.device), engine.device)]

    def naive_step():
        with torch.inference_mode():
            return naive.model(x)

    out.append(_result("model", res, "naive", _timed(naive_step, frames, engine.device), engine.device))
    return out


def _pipelined(engine: Engine, spec: colour.ColourSpec, pic: Picture, frames: int,
               options: PipelineOptions | None) -> tuple[list[float], str]:
    """Gaps between finished frames over `frames` submissions (after one warm-up round that sizes
    the pipeline), and the pipeline's description."""
    with make_pipeline(engine, spec, spec, options=options) as pipe:
        for _ in range(2):
            pipe.submit(pic)
        pipe.flush()
        _sync(engine.device)
        stamps = [time.perf_counter()]
        for _ in range(frames):
            stamps += [time.perf_counter() for _ in pipe.submit(pic)]
        stamps += [time.perf_counter() for _ in pipe.flush()]
        return [b - a for a, b in zip(stamps, stamps[1:])], pipe.description


def bench_pipeline(engine: Engine, res: str, frames: int, options: PipelineOptions | None = None) -> list[Result]:
    w, h = parse_resolution(res)
    rng = np.random.default_rng(0)
    spec = colour.spec_from_tags(colorspace=1, color_range=1, primaries=1, transfer=1, width=w, height=h)
    planes = (rng.integers(16, 236, (h, w), dtype=np.uint8), rng.integers(16, 241, (h // 2, w // 2), dtype=np.uint8),
              rng.integers(16, 241, (h // 2, w // 2), dtype=np.uint8))
    pic = Picture(planes, 0, None, 0)
    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine.device)
    gaps, path = _pipelined(engine, spec, pic, frames, options)
    ours = _result("pipeline", res, "ours", gaps, engine.device, path=path,
                   activation_mib_estimate=round(engine.activation_bytes(1, h, w) / 2**20, 1))
    naive = naive_engine(engine)
    rgb24 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    base = _result("pipeline", res, "naive", _timed(lambda: _naive_frame(naive.model, engine.device, rgb24), frames,
                                                    engine.device), engine.device)
    return [ours, base]


def synthetic_clip(path: Path, res: str, frames: int, rate: int = 25) -> Path:
    """A moving gradient, encoded losslessly enough that decoding is realistic; a keyframe each second."""
    w, h = parse_resolution(res)
    y, x = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "veryfast", "g": str(rate)})
        s.codec_context.width, s.codec_context.height, s.codec_context.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            rgb = np.stack([(x + 4 * i) % 256, (y + 2 * i) % 256, ((x + y) // 2 + 8 * i) % 256], -1).astype(np.uint8)
            out.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(s.encode())
    return path


def naive_transcode(src: Path, dst: Path, model: torch.nn.Module, device: torch.device, scale: int, codec: str,
                    frames: int) -> int:
    n = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        s = out.add_stream(codec, rate=vin.average_rate or 25)
        cc = s.codec_context
        cc.width, cc.height, cc.pix_fmt = vin.width * scale, vin.height * scale, "yuv420p"
        for frame in inp.decode(vin):
            if n >= frames:
                break
            up = _naive_frame(model, device, frame.to_ndarray(format="rgb24"))
            out.mux(s.encode(av.VideoFrame.from_ndarray(up, format="rgb24")))
            n += 1
        out.mux(s.encode())
    return n


def bench_e2e(engine: Engine, res: str, frames: int, clip: Path | None, codec: str) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = clip or synthetic_clip(tmp / f"src_{res}.mp4", res, frames)
        t = time.perf_counter()
        rep = upscale_video(src, tmp / "ours.mp4", engine=engine, codec=codec, max_frames=frames)
        ours_s = time.perf_counter() - t
        naive = naive_engine(engine)
        t = time.perf_counter()
        n = naive_transcode(src, tmp / "naive.mp4", naive.model, engine.device, engine.scale, codec, frames)
        naive_s = time.perf_counter() - t
    label = clip.name if clip else res
    # Per-frame latencies are not separable in a pipeline: the median/p95 columns show the mean.
    return [_result("e2e", label, "ours", [ours_s / rep.frames_out] * rep.frames_out, engine.device, codec=codec,
                    path=rep.pipeline, hardware=rep.hardware),
            _result("e2e", label, "naive", [naive_s / n] * n, engine.device, codec=codec)]


def bench_scaleout(engine: Engine, res: str, frames: int, clip: Path | None, codec: str, workers: list[int],
                   segment_seconds: float, model: str | None = None, weights: Path | None = None) -> list[Result]:
    """Segmented runs with each worker count (GPUs: the first n of them; CPU: n processes)."""
    from .segmented import EncodeSettings, upscale_segmented
    from .workers import make_workers

    gpus = torch.cuda.device_count() if engine.device.type == "cuda" else 0
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = clip or synthetic_clip(tmp / f"src_{res}.mp4", res, frames)
        for n in workers:
            if gpus and n > gpus:
                continue
            devices = ",".join(f"cuda:{i}" for i in range(n)) if gpus else "cpu"
            t = time.perf_counter()
            with make_workers(devices, None if gpus else n) as pool:
                settings = EncodeSettings.create(device_kind=pool.device_kind, precision=engine.precision,
                                                 scale=engine.scale, model=model, weights=weights, codec=codec)
                rep = upscale_segmented(src, tmp / f"w{n}.mp4", settings=settings, workers=pool,
                                        segment_seconds=segment_seconds)
            seconds = time.perf_counter() - t
            out.append(_result("scaleout", f"{n} worker(s)", "ours", [seconds / rep.frames_out] * rep.frames_out,
                               engine.device, workers=n, segments=rep.pipeline, clip=src.name, seconds=seconds))
    return out


def run(engine: Engine, *, modes: list[str], resolutions: list[str], frames: int, clip: Path | None = None,
        codec: str = "libx264", workers: list[int] = (1, 2), segment_seconds: float = 2.0,
        model: str | None = None, weights: Path | None = None) -> dict:
    """`model`/`weights`: what `engine` was built from (the scale-out workers load their own)."""
    results: list[Result] = []
    for mode in modes:
        for res in resolutions if not (mode in ("e2e", "scaleout") and clip) else [None]:
            if mode == "model":
                results += bench_model(engine, res, frames)
            elif mode == "pipeline":
                results += bench_pipeline(engine, res, frames)
            elif mode == "e2e":
                results += bench_e2e(engine, res, frames, clip, codec)
            elif mode == "scaleout":
                results += bench_scaleout(engine, res, frames, clip, codec, list(workers), segment_seconds, model,
                                          weights)
            else:
                raise ValueError(f"unknown mode {mode!r}; use model, pipeline, e2e, scaleout")
    return {"environment": environment(engine, codec if {"e2e", "scaleout"} & set(modes) else None), "scale": engine.scale,
            "results": [asdict(r) for r in results]}


def speedups(report: dict) -> list[tuple[str, str, float]]:
    """(mode, resolution, ours fps / naive fps) for each measured pair."""
    by = {(r["mode"], r["resolution"], r["variant"]): r["fps"] for r in report["results"]}
    return [(m, res, by[(m, res, "ours")] / by[(m, res, "naive")]) for (m, res, v) in by if v == "ours"
            and (m, res, "naive") in by]


def write_json(report: dict, path: Path) -> None:
    path.write_text(json.dumps(report, indent=2))
