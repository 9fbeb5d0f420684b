"""Throughput benchmark: our engine against the naive per-frame loop, measured in the same run.

Modes:
- `model`: frames already on the device, the model alone;
- `pipeline`: synthetic YUV frames through the transcode's pipeline (planes -> colour ->
  model -> colour -> planes; on CUDA pinned buffers, streams, graphs, frames per call), several in
  flight: fps is frames over the whole run, the latency columns are gaps between outputs;
- `e2e`: a real file decoded, upscaled and encoded by `upscale_video` (the engine called once at
  the clip's size first, so that OpenVINO's conversion or torch.compile counts as start-up);
- `scaleout`: the same job split into keyframe segments (`upscale_segmented`) on 1, 2, ...
  workers (processes on this machine, one per GPU or sharing the CPU cores); wall time from
  the start of the run to the joined file, worker start-up and model loading included.
Several engines (one per `--backend`) are measured in the same run, the naive loop once beside
the first; with more than one, rows are labelled "ours torch", "ours openvino", ... and every
row carries its `backend` ("torch fp32" for the naive loop). `--gate` first checks each engine
against fp32 torch (precision_gate.py) and measures only those that pass.
The naive baseline is what most SR video scripts do: one thread, per frame decode -> rgb24
ndarray -> fp32 tensor -> model -> numpy -> encode, synchronous.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np
import torch

from . import colour
from .atomic import write_atomic
from .engine import Engine
from .media import Picture, probe
from .models import output_size
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
    backend: str = ""  # what ran the network, e.g. "openvino bf16"; the naive loop: "torch fp32"


def environment(engine: Engine, codec: str | None = None) -> dict:
    env = {"torch": torch.__version__, "device": str(engine.device), "precision": engine.precision,
           "backend": engine.backend.label, "model": engine.name, "cpu": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(),
           "pyav": av.__version__, "ffmpeg": ".".join(map(str, av.library_versions["libavcodec"]))}
    if engine.device.type == "cuda":
        p = torch.cuda.get_device_properties(engine.device)
        env.update(gpu=p.name, cuda=torch.version.cuda, driver=_driver())
    if codec:
        env["encoder"] = codec
    return env


def _openvino_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino")
    except PackageNotFoundError:
        return "unknown"


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


def _result(mode: str, res: str, variant: str, times: list[float], device: torch.device, *, backend: str,
            **extra) -> Result:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return Result(mode, res, variant, len(ms), 1000 * len(ms) / sum(ms), statistics.median(ms), p95,
                  _peak_mb(device), extra, backend)


NAIVE = "torch fp32"  # the naive loop's backend


def naive_engine(engine: Engine) -> Engine:
    """The same weights as the naive scripts run them: torch, fp32, contiguous memory."""
    naive = Engine(copy.deepcopy(engine.model), device=engine.device, precision="fp32", backend="torch")
    naive.model = naive.model.to(memory_format=torch.contiguous_format)
    return naive


def _naive_frame(model: torch.nn.Module, device: torch.device, rgb24: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(rgb24).permute(2, 0, 1).float().div(255).unsqueeze(0).to(device)
    with torch.inference_mode():
        y = model(x)
    return y[0].mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()


def bench_model(engine: Engine, res: str, frames: int, *, variant: str = "ours",
                with_naive: bool = True) -> list[Result]:
    w, h = parse_resolution(res)
    x = torch.rand(1, 3, h, w, device=engine.device)
    out = [_result("model", res, variant, _timed(lambda: engine(x), frames, engine.device), engine.device,
                   backend=engine.backend_label)]
    if not with_naive:
        return out
    naive = naive_engine(engine)

    def naive_step():
        with torch.inference_mode():
            return naive.model(x)

    out.append(_result("model", res, "naive", _timed(naive_step, frames, engine.device), engine.device,
                       backend=NAIVE))
    return out


def _pipelined(engine: Engine, spec: colour.ColourSpec, pic: Picture, frames: int,
               options: PipelineOptions | None) -> tuple[list[float], str]:
    """Gaps between finished frames over `frames` submissions (after one warm-up round that sizes
    the pipeline), and the pipeline's description."""
    with make_pipeline(engine, spec, options=options) as pipe:
        for _ in range(2):
            pipe.submit(pic)
        pipe.flush()
        _sync(engine.device)
        stamps = [time.perf_counter()]
        for _ in range(frames):
            stamps += [time.perf_counter() for _ in pipe.submit(pic)]
        stamps += [time.perf_counter() for _ in pipe.flush()]
        return [b - a for a, b in zip(stamps, stamps[1:])], pipe.description


def bench_pipeline(engine: Engine, res: str, frames: int, options: PipelineOptions | None = None, *,
                   variant: str = "ours", with_naive: bool = True) -> list[Result]:
    """Ours (with `options`) and, if `with_naive`, the naive loop at the same size."""
    w, h = parse_resolution(res)
    rng = np.random.default_rng(0)
    spec = colour.spec_from_tags(colorspace=1, color_range=1, primaries=1, transfer=1, width=w, height=h)
    planes = (rng.integers(16, 236, (h, w), dtype=np.uint8), rng.integers(16, 241, (h // 2, w // 2), dtype=np.uint8),
              rng.integers(16, 241, (h // 2, w // 2), dtype=np.uint8))
    pic = Picture(planes, 0, None, 0, spec)
    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine.device)
    gaps, path = _pipelined(engine, spec, pic, frames, options)
    ours = _result("pipeline", res, variant, gaps, engine.device, backend=engine.backend_label, path=path,
                   activation_mib_estimate=round(engine.activation_bytes(1, h, w) / 2**20, 1))
    if not with_naive:
        return [ours]
    naive = naive_engine(engine)
    rgb24 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    base = _result("pipeline", res, "naive", _timed(lambda: _naive_frame(naive.model, engine.device, rgb24), frames,
                                                    engine.device), engine.device, backend=NAIVE)
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
        (cc.width, cc.height), cc.pix_fmt = output_size(vin.width, vin.height, scale), "yuv420p"
        for frame in inp.decode(vin):
            if n >= frames:
                break
            up = _naive_frame(model, device, frame.to_ndarray(format="rgb24"))
            out.mux(s.encode(av.VideoFrame.from_ndarray(up, format="rgb24")))
            n += 1
        out.mux(s.encode())
    return n


def bench_e2e(engine: Engine, res: str, frames: int, clip: Path | None, codec: str, *, variant: str = "ours",
              with_naive: bool = True) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = clip or synthetic_clip(tmp / f"src_{res}.mp4", res, frames)
        info = probe(src)  # one call at the clip's size first: OpenVINO's conversion is start-up, not fps
        engine(torch.rand(1, 3, info.height, info.width, device=engine.device))
        _sync(engine.device)
        t = time.perf_counter()
        rep = upscale_video(src, tmp / "ours.mp4", engine=engine, codec=codec, max_frames=frames)
        ours_s = time.perf_counter() - t
        if with_naive:
            naive = naive_engine(engine)
            t = time.perf_counter()
            n = naive_transcode(src, tmp / "naive.mp4", naive.model, engine.device, engine.scale, codec, frames)
            naive_s = time.perf_counter() - t
    label = clip.name if clip else res
    # Per-frame latencies are not separable in a pipeline: the median/p95 columns show the mean.
    out = [_result("e2e", label, variant, [ours_s / rep.frames_out] * rep.frames_out, engine.device,
                   backend=engine.backend_label, codec=codec, path=rep.pipeline, hardware=rep.hardware)]
    if with_naive:
        out.append(_result("e2e", label, "naive", [naive_s / n] * n, engine.device, backend=NAIVE, codec=codec))
    return out


def bench_scaleout(engine: Engine, res: str, frames: int, clip: Path | None, codec: str, workers: list[int],
                   segment_seconds: float, model: str | None = None, weights: Path | None = None, *,
                   variant: str = "ours") -> list[Result]:
    """Segmented runs with each worker count (GPUs: the first n of them; CPU: n processes)."""
    from .segment_job import EncodeSettings
    from .segmented import upscale_segmented
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
                                                 scale=engine.scale, model=model, weights=weights, codec=codec,
                                                 backend=engine.backend)
                rep = upscale_segmented(src, tmp / f"w{n}.mp4", settings=settings, workers=pool,
                                        segment_seconds=segment_seconds)
            seconds = time.perf_counter() - t
            out.append(_result("scaleout", f"{n} worker(s)", variant, [seconds / rep.frames_out] * rep.frames_out,
                               engine.device, backend=engine.backend_label, workers=n, segments=rep.pipeline,
                               clip=src.name, seconds=seconds))
    return out


@dataclass
class Failure:
    """A measurement that raised: reported and skipped, the rest of the run goes on."""
    mode: str
    resolution: str
    variant: str
    error: str


def _variant(frames_per_call: int, graphs: str, backend: str | None = None) -> tuple[str, PipelineOptions | None]:
    """Label and options of one pipeline setting (frames per call 0 / graphs "auto": chosen by the
    pipeline); `backend`: named in the label when several are measured."""
    parts = (([f"{frames_per_call} frame(s) per call"] if frames_per_call else [])
             + ([f"graphs {graphs}"] if graphs != "auto" else []))
    options = PipelineOptions(frames_per_call=frames_per_call or None,
                              graphs=None if graphs == "auto" else graphs == "on") if parts else None
    label = "ours" + (f" {backend}" if backend else "")
    return (f"{label}{',' if backend else ''} {', '.join(parts)}" if parts else label), options


def engine_labels(engines: Sequence[Engine]) -> list[str | None]:
    """What names each engine's rows: its backend when several are measured, else nothing."""
    if len(engines) < 2:
        return [None] * len(engines)
    return [e.backend.label for e in engines]


def gate_engines(engines: Sequence[Engine], crops: Sequence[torch.Tensor]) -> tuple[list[Engine], list[str],
                                                                                     list[Failure]]:
    """(the engines that pass the precision gate, a line per engine, a Failure per refused one)."""
    from .errors import RlfnError
    from .precision_gate import check_engine, reference_engine

    kept, lines, failed = [], [], []
    reference = reference_engine(engines[0]) if engines else None
    for engine in engines:
        try:
            lines.append("gate " + check_engine(engine, crops, reference).summary())
            kept.append(engine)
        except RlfnError as e:
            lines.append(f"gate {e}")
            failed.append(Failure("gate", f"{len(crops)} crops", engine.backend_label, str(e)))
    return kept, lines, failed


def measure(engines: Engine | Sequence[Engine], *, modes: list[str], resolutions: list[str], frames: int,
            clip: Path | None = None,
            codec: str = "libx264", workers: list[int] = (1, 2), segment_seconds: float = 2.0,
            model: str | None = None, weights: Path | None = None, frames_per_call: list[int] = (0,),
            graphs: list[str] = ("auto",)) -> Iterator[Result | Failure]:
    """Each measurement as soon as it is made, in the order asked (modes outer, sizes inner).

    A measurement that raises is yielded as a `Failure` and the next one runs; Ctrl-C and SIGTERM
    propagate, so a caller that kept what was yielded keeps every number measured so far.
    `engines`: one engine or several (one per backend), measured in turn for each mode and size.
    `model`/`weights`: what they were built from (the scale-out workers load their own)."""
    check_options(modes, graphs)
    engines = [engines] if isinstance(engines, Engine) else list(engines)
    labels = engine_labels(engines)
    for mode in modes:
        for res in resolutions if not (mode in ("e2e", "scaleout") and clip) else [None]:
            label = res or clip.name
            jobs = []
            for k, (engine, backend) in enumerate(zip(engines, labels)):
                first = k == 0  # the naive loop once, beside the first engine's first setting
                ours = "ours" + (f" {backend}" if backend else "")
                if mode == "pipeline":  # one row per setting
                    for i, (v, o) in enumerate(_variant(n, g, backend) for n in frames_per_call for g in graphs):
                        jobs.append((v, functools.partial(bench_pipeline, engine, res, frames, o, variant=v,
                                                          with_naive=first and i == 0)))
                elif mode == "model":
                    jobs.append((ours, functools.partial(bench_model, engine, res, frames, variant=ours,
                                                         with_naive=first)))
                elif mode == "e2e":
                    jobs.append((ours, functools.partial(bench_e2e, engine, res, frames, clip, codec, variant=ours,
                                                         with_naive=first)))
                else:
                    jobs.append((ours, functools.partial(bench_scaleout, engine, res, frames, clip, codec,
                                                         list(workers), segment_seconds, model, weights,
                                                         variant=ours)))
            for variant, job in jobs:
                try:
                    rows = job()
                except Exception as e:  # noqa: BLE001 - reported, then the next measurement runs
                    yield Failure(mode, label, variant, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                    continue
                yield from rows


MODES = ("model", "pipeline", "e2e", "scaleout")


def check_options(modes: list[str], graphs: list[str] = ("auto",)) -> None:
    """Raise ValueError, before any work, for a mode or graphs setting that does not exist."""
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use {', '.join(MODES)}")
    for g in graphs:
        if g not in ("auto", "on", "off"):
            raise ValueError(f"unknown graphs setting {g!r}; use auto, on or off")


class Report:
    """What a run has measured so far; `to_dict` is the JSON report at any moment."""

    def __init__(self, engines: Engine | Sequence[Engine], modes: list[str], codec: str):
        engines = [engines] if isinstance(engines, Engine) else list(engines)
        self.environment = environment(engines[0], codec if {"e2e", "scaleout"} & set(modes) else None)
        if len(engines) > 1:
            self.environment["backend"] = ", ".join(e.backend.label for e in engines)
        if any(e.backend.label.startswith("openvino") for e in engines):
            self.environment["openvino"] = _openvino_version()
        self.scale = engines[0].scale
        self.results: list[Result] = []
        self.failures: list[Failure] = []

    def add(self, item: Result | Failure) -> None:
        (self.failures if isinstance(item, Failure) else self.results).append(item)

    def to_dict(self, complete: bool = True) -> dict:
        return {"environment": self.environment, "scale": self.scale, "complete": complete,
                "results": [asdict(r) for r in self.results], "failures": [asdict(f) for f in self.failures]}


def run(engines: Engine | Sequence[Engine], *, modes: list[str], resolutions: list[str], frames: int,
        clip: Path | None = None,
        codec: str = "libx264", workers: list[int] = (1, 2), segment_seconds: float = 2.0,
        model: str | None = None, weights: Path | None = None, frames_per_call: list[int] = (0,),
        graphs: list[str] = ("auto",)) -> dict:
    """Every measurement of `measure`, as one report."""
    report = Report(engines, modes, codec)
    for item in measure(engines, modes=modes, resolutions=resolutions, frames=frames, clip=clip, codec=codec,
                        workers=workers, segment_seconds=segment_seconds, model=model, weights=weights,
                        frames_per_call=frames_per_call, graphs=graphs):
        report.add(item)
    return report.to_dict()


def speedups(report: dict) -> list[tuple[str, str, str, float]]:
    """(mode, resolution, variant, its fps / naive fps) for every variant measured beside a naive row."""
    rows = report["results"]
    naive = {(r["mode"], r["resolution"]): r["fps"] for r in rows if r["variant"] == "naive"}
    return [(r["mode"], r["resolution"], r["variant"], r["fps"] / naive[(r["mode"], r["resolution"])])
            for r in rows if r["variant"] != "naive" and (r["mode"], r["resolution"]) in naive]


def write_json(report: dict, path: Path) -> None:
    """Atomically: a reader (or a kill) never sees a half-written report."""
    write_atomic(path, json.dumps(report, indent=2))


def append_jsonl(record: dict, path: Path) -> None:
    """One line per row, flushed: what a timeout leaves behind is every finished row."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def summarize_jsonl(path: Path) -> str:
    """The measurements of one or more `bench --jsonl` runs as a plain-text table, with speed-ups."""
    import io

    from rich.console import Console
    from rich.table import Table

    try:
        records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as e:
        return f"no measurements: {e}"
    rows = [r for r in records if r.get("kind") == "result"]
    failures = [r for r in records if r.get("kind") == "failure"]
    table = Table(title=f"{len(rows)} measurement(s), {len(failures)} failure(s)")
    for col in ("scale", "device", "prec", "mode", "input", "variant", "fps", "ms med", "ms p95", "peak MB", "x naive"):
        table.add_column(col, justify="right" if col in ("fps", "ms med", "ms p95", "peak MB", "x naive") else "left")
    key = lambda r: (r["scale"], r["device"], r["precision"], r["mode"], r["resolution"])  # noqa: E731
    naive = {key(r): r["fps"] for r in rows if r["variant"] == "naive"}
    for r in rows:
        x = naive.get(key(r)) if r["variant"] != "naive" else None
        table.add_row(f"x{r['scale']}", r["device"], r["precision"], r["mode"], r["resolution"], r["variant"],
                      f"{r['fps']:.2f}", f"{r['ms_median']:.1f}", f"{r['ms_p95']:.1f}", f"{r['peak_mem_mb']:.0f}",
                      f"{r['fps'] / x:.2f}" if x else "")
    for f in failures:
        table.add_row(f"x{f['scale']}", f["device"], f["precision"], f["mode"], f["resolution"], f["variant"],
                      "FAILED", "", "", "", "")
    buf = io.StringIO()
    Console(file=buf, width=160, highlight=False).print(table)
    lines = [buf.getvalue().rstrip()] + [f"failed: x{f['scale']} {f['mode']} {f['resolution']} {f['variant']}: "
                                         f"{f['error']}" for f in failures]
    return "\n".join(lines)
