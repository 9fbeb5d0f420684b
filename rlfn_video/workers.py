"""Who runs the segment jobs: this process, one process per device, or Ray actors on a cluster.

Every kind runs segment jobs (segment_job.py: `run_segment` on a `SegmentTask`) with an
`Engine` it loads once and keeps for all the segments (and all the inputs of a batch) it is
given; results come back to the caller's thread (segmented.py), which alone writes the manifest.
This module knows the job contract only, never the orchestrator.

- `InProcess`: one device, in this process (Ctrl-C lands between frames, as in a single pass).
- `LocalProcesses`: one spawned process per entry of `devices` ("cuda:0", "cuda:1", or "cpu"
  N times with the cores shared out); a worker that dies is replaced and its segment retried.
- `RayWorkers`: Ray actors (`num_gpus=1` each on GPU clusters); Ray restarts dead actors and
  retries their tasks; inputs and outputs must be on storage every node sees.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import torch

from .errors import RlfnError
from .segment_job import EncodeSettings, SegmentResult, SegmentTask, run_segment

OnResult = Callable[[SegmentResult], None]
OnFrames = Callable[[int, int], None]  # (segment index, frames of it done): where a worker can tell
RETRIES = 3  # times a segment is tried again after its worker died


def parse_devices(spec: str | None, workers: int | None = None) -> list[str]:
    """`--devices`: "all" (every CUDA GPU), "cpu", "cuda", "cuda:0,cuda:1", or None ("auto": the
    GPUs if there are any, else the CPU). On the CPU `workers` processes share the cores."""
    spec = (spec or "auto").strip().lower()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec in ("all", "auto"):
        if gpus:
            devices = [f"cuda:{i}" for i in range(gpus)]
        elif spec == "all":
            raise RlfnError("--devices all: torch sees no CUDA GPU; use --devices cpu --workers N")
        else:
            devices = ["cpu"]
    else:
        devices = [d.strip() for d in spec.split(",") if d.strip()]
        for d in devices:
            from .devices import resolve_device

            resolve_device(d)
        if len(set(devices)) != len(devices) and set(devices) != {"cpu"}:
            raise RlfnError(f"--devices {spec}: a GPU is listed twice")
    if workers is not None:
        if workers < 1:
            raise RlfnError(f"--workers must be at least 1, not {workers}")
        if devices == ["cpu"]:
            devices = ["cpu"] * workers
        elif workers != len(devices):
            raise RlfnError(f"--workers {workers} with {len(devices)} device(s): GPUs run one worker each")
    return devices


def cpu_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


_ENGINES: dict[tuple, Any] = {}


def engine_for(settings: EncodeSettings, device: str) -> Any:
    """This process's engine for these settings and device, loaded on first use."""
    key = (settings.scale, settings.model_name, settings.weights, settings.precision, settings.tile,
           settings.backend, device)
    if key not in _ENGINES:
        from .engine import Engine

        _ENGINES.clear()  # one model at a time per worker
        _ENGINES[key] = Engine.from_options(scale=settings.scale, model=settings.model_name, weights=settings.weights,
                                            device=device, precision=settings.precision, tile=settings.tile,
                                            backend=settings.backend)
    return _ENGINES[key]


def run_task(task: SegmentTask, device: str, label: str, on_frames: OnFrames | None = None) -> SegmentResult:
    progress = (lambda done, total: on_frames(task.index, done)) if on_frames is not None else None
    result = run_segment(task, engine_for(task.settings, device), progress)
    return SegmentResult(result.index, result.frames, result.sha256, result.bytes, result.seconds, label)


class Workers:
    description = ""
    device_kind = "cpu"  # what the workers run on: "cpu" or "cuda" (decides the default precision)

    def run(self, tasks: Sequence[SegmentTask], on_result: OnResult, on_frames: OnFrames | None = None) -> None:
        """Run `tasks`; `on_result` for each finished one, in this thread; `on_frames` as frames
        progress where the worker runs in this process."""
        raise NotImplementedError

    def close(self, kill: bool = False) -> None:
        pass

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(kill=exc_type is not None)


class InProcess(Workers):
    def __init__(self, device: str = "auto"):
        from .devices import resolve_device

        self.device = str(resolve_device(device))
        self.device_kind = self.device.split(":")[0]
        self.description = f"1 worker ({self.device}, in process)"

    def run(self, tasks: Sequence[SegmentTask], on_result: OnResult, on_frames: OnFrames | None = None) -> None:
        for task in tasks:
            on_result(run_task(task, self.device, self.device, on_frames))


# --- one process per device ----------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the run that spawned it dies (even by SIGKILL), so
    no orphan finishes a segment behind the back of a resumed run."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


def _init_worker(devices: multiprocessing.Queue, threads: int, frames: multiprocessing.Queue) -> None:
    _die_with_parent()
    _WORKER["device"] = devices.get()
    _WORKER["label"] = f"{_WORKER['device']} pid {os.getpid()}"
    _WORKER["frames"] = frames
    if _WORKER["device"] == "cpu":
        torch.set_num_threads(threads)


_REPORT_S = 0.5  # a worker reports its frame count at most this often


def _run_in_worker(task: SegmentTask) -> SegmentResult:
    last = 0.0

    def report(index: int, done: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= _REPORT_S:
            last = now
            _WORKER["frames"].put((index, done))

    return run_task(task, _WORKER["device"], _WORKER["label"], report)


class LocalProcesses(Workers):
    def __init__(self, devices: Sequence[str]):
        self.devices = list(devices)
        self.device_kind = "cuda" if any(d.startswith("cuda") for d in self.devices) else "cpu"
        self.threads = cpu_threads(self.devices.count("cpu")) if "cpu" in self.devices else 0
        self._ctx = multiprocessing.get_context("spawn")  # CUDA and torch's thread pools do not survive fork
        self._pool: ProcessPoolExecutor | None = None
        cpu = f", {self.threads} thread(s) each" if self.threads else ""
        self.description = f"{len(self.devices)} worker processes ({', '.join(self.devices)}{cpu})"

    def _start(self) -> ProcessPoolExecutor:
        devices = self._ctx.Queue()
        for d in self.devices:
            devices.put(d)
        self._frames = self._ctx.Queue()  # (segment, frames done) from the workers, for progress
        return ProcessPoolExecutor(len(self.devices), mp_context=self._ctx, initializer=_init_worker,
                                   initargs=(devices, self.threads, self._frames))

    def _drain(self, on_frames: OnFrames | None) -> None:
        while True:
            try:
                index, done = self._frames.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            if on_frames is not None:
                on_frames(index, done)

    def run(self, tasks: Sequence[SegmentTask], on_result: OnResult, on_frames: OnFrames | None = None) -> None:
        left = {t.index: t for t in tasks}
        tries = 0
        while left:
            if self._pool is None:
                self._pool = self._start()
            futures: dict[Future, int] = {self._pool.submit(_run_in_worker, t): i for i, t in left.items()}
            try:
                while futures:
                    finished, _ = wait(futures, timeout=_REPORT_S, return_when=FIRST_COMPLETED)
                    self._drain(on_frames)
                    for f in finished:
                        index = futures.pop(f)
                        on_result(f.result())
                        del left[index]
            except BrokenProcessPool:
                # A worker died (killed, out of memory): fresh workers retry the unfinished segments.
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
                tries += 1
                if tries > RETRIES:
                    raise RlfnError(f"workers died {tries} times; {len(left)} segment(s) left for --resume") from None
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def close(self, kill: bool = False) -> None:
        """Stop the workers: after the running segments finish, or at once (`kill`, after an error
        or Ctrl-C: their temporary files stay in the segment folder, outside the manifest)."""
        if self._pool is None:
            return
        if kill:
            for p in list(getattr(self._pool, "_processes", {}).values()):
                p.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None


# --- Ray --------------------------------------------------------------------------------------


class _SegmentActor:
    """A Ray actor holding one engine; `run` runs one segment job."""

    def __init__(self, device: str, threads: int):
        self.device = device
        if device == "cpu":
            torch.set_num_threads(threads)
        else:
            self.device = "cuda:0"  # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU
        import socket

        self.label = f"ray {socket.gethostname()} pid {os.getpid()} {self.device}"

    def run(self, task: SegmentTask) -> SegmentResult:
        return run_task(task, self.device, self.label)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class RayWorkers(Workers):
    """`address`: "local" starts a private Ray instance for this run; "auto" joins the running
    cluster (RAY_ADDRESS or a local `ray start --head`); anything else is passed to `ray.init`."""

    address: str = "auto"
    workers: int | None = None  # default: one per GPU of the cluster, else one per `threads` CPUs
    gpu: bool | None = None  # default: when the cluster has GPUs
    threads: int = 1  # CPU threads per CPU worker

    def __post_init__(self) -> None:
        try:
            import ray
        except ImportError:
            raise RlfnError("--ray needs Ray: pip install 'rlfn-video[ray]'") from None
        self._ray = ray
        self._own = self.address == "local"
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                                  "configure_logging": True}
        if self._own:
            kwargs["num_cpus"] = max(self.workers or 1, 1) * self.threads
        else:
            kwargs["address"] = self.address
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RlfnError(f"--ray {self.address}: cannot reach a Ray cluster ({e})") from None
        self._actors: list[Any] = []
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.gpu = bool(gpus) if self.gpu is None else self.gpu
        self.device_kind = "cuda" if self.gpu else "cpu"
        if self.gpu and not gpus:
            self.close()
            raise RlfnError("the Ray cluster has no GPUs; run CPU workers with --devices cpu")
        n = self.workers or (gpus if self.gpu else max(1, int(resources.get("CPU", 1)) // self.threads))
        options = {"num_gpus": 1, "num_cpus": 1} if self.gpu else {"num_cpus": self.threads}
        actor = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES, **options)(_SegmentActor)
        self._actors = [actor.remote("cuda" if self.gpu else "cpu", self.threads) for _ in range(n)]
        self.description = f"{n} Ray worker(s) ({'1 GPU' if self.gpu else f'{self.threads} CPU thread(s)'} each)"

    def run(self, tasks: Sequence[SegmentTask], on_result: OnResult, on_frames: OnFrames | None = None) -> None:
        from ray.util import ActorPool

        pool = ActorPool(self._actors)
        try:
            for result in pool.map_unordered(lambda a, t: a.run.remote(t), list(tasks)):
                on_result(result)
        except self._ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, RlfnError):
                raise cause from None
            raise RlfnError(f"a Ray worker failed: {cause or e}") from None
        except self._ray.exceptions.RayError as e:  # an actor died more often than it may restart
            raise RlfnError(f"Ray workers failed ({type(e).__name__}); committed segments are kept for a rerun") from None

    def close(self, kill: bool = False) -> None:
        for a in self._actors:
            self._ray.kill(a)
        if self._own:
            self._ray.shutdown()


def make_workers(devices: str | None = None, workers: int | None = None, ray: str | None = None) -> Workers:
    """The workers the CLI's --devices/--workers/--ray describe."""
    if ray is not None:
        gpu = None if devices in (None, "auto") else devices != "cpu"
        threads = cpu_threads(workers or 1) if ray == "local" else 1
        return RayWorkers(ray, workers=workers, gpu=gpu, threads=threads)
    listed = parse_devices(devices, workers)
    return InProcess(listed[0]) if len(listed) == 1 else LocalProcesses(listed)
