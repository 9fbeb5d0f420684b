"""Upscale a video file: decode thread -> SR pipeline driven from the caller's thread -> encode/mux thread.

Bounded queues give back-pressure, so memory stays at a few frames whatever the speed of each
stage. The pipeline (pipeline.py) is driven from the calling thread so that Ctrl-C (delivered to
the main thread) lands between frames; on CUDA it keeps several frames in flight, and packets of
other streams wait behind the frames decoded before them, so the encoder sees the input's order.
The worker threads poll a stop event and are always joined. Whatever fails, the output is
written to a temporary file that only replaces OUT when everything succeeded.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import atomic, encode, hwcodec, media, target_size
from .colour import ColourSpec
from .errors import RlfnError
from .models.rlfn import check_scale, output_size
from .pipeline import Pipeline, PipelineOptions, make_pipeline

Progress = Callable[[int, "int | None"], None]

_QUEUE_FRAMES = 4  # per queue: enough to ride out jitter; a 1080p frame x4 is ~50 MB of planes
_POLL_S = 0.1


@dataclass(frozen=True)
class TranscodeReport:
    """`seconds` and `fps` cover decoding, upscaling and encoding, not probing or loading the model."""

    src: Path
    dst: Path
    frames_in: int
    frames_out: int
    seconds: float
    fps: float
    size_in: tuple[int, int]
    size_out: tuple[int, int]
    decode_path: str
    colour_in: ColourSpec
    colour_out: ColourSpec
    codec: str
    pix_fmt: str
    warnings: tuple[str, ...]
    pipeline: str = ""  # which SR path ran (device, frames per call, streams, graphs, tiles)
    hardware: str = ""  # NVDEC/NVENC: what this PyAV build and GPU offer, and what was used


class _Failed:
    """Carries a worker's exception through a queue, in order with the items before it."""

    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Blocking put that gives up (False) once `stop` is set."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            pass
    return False


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    """Blocking get that returns `_END` once `stop` is set and nothing is left."""
    while True:
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            if stop.is_set():
                return _END


def _produce(items: Iterable[Any], q: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in items:
            if not _put(q, item, stop):
                return
        _put(q, _END, stop)
    except BaseException as e:  # noqa: BLE001 - handed to the caller, who re-raises it
        _put(q, _Failed(e), stop)


def _consume(sink: encode.Sink, q: queue.Queue, stop: threading.Event, failed: list[BaseException]) -> None:
    try:
        while (item := _get(q, stop)) is not _END:
            if isinstance(item, media.Picture):
                sink.write_frame(item)
            else:
                sink.write_packet(item)
        if not stop.is_set():
            sink.finish()
    except BaseException as e:  # noqa: BLE001
        failed.append(e)
        stop.set()


def _join(workers: list[threading.Thread], stop: threading.Event) -> None:
    """Join all workers; a Ctrl-C during the join stops them first, so they never outlive the call."""
    try:
        for w in workers:
            w.join()
    except BaseException:
        stop.set()
        for w in workers:
            w.join()
        raise


def collect_warnings(warn: Callable[[str], None] | None) -> tuple[list[str], Callable[[str], None]]:
    """(the list of remarks for the report, a `note` that appends and forwards each to `warn`)."""
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)

    return warnings, note


def upscale_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    scale: int = 4,
    model: str | None = None,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    fast: bool | None = None,
    codec: str = "libx264",
    crf: float | None = None,
    preset: str | None = None,
    pix_fmt: str | None = None,
    bitrate: str | int | None = None,
    encoder_options: dict[str, str] | None = None,
    size: tuple[int | None, int | None] | None = None,
    tile: int | str | None = "auto",
    overwrite: bool = False,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    engine: Any = None,
    max_frames: int | None = None,
    pipeline: PipelineOptions | None = None,
    deinterlace: str = "auto",
    start: float | None = None,
    frames: int | None = None,
    duration: float | None = None,
    backend: Any = "auto",
    half: bool | None = None,  # the old name of `fast`
) -> TranscodeReport:
    """Upscale every frame of `src` into `dst`, keeping timing, colour, rotation, audio and subtitles.

    `engine`: a ready `Engine` (or any object with `.scale` and `__call__(rgb NCHW) -> NCHW`);
    when given, `scale`, `model`, `weights`, `device`, `fast` and `backend` are not used. `fast`: the
    device's fast precision (fp16 on CUDA, bf16 on CPUs; None: where it is native). `backend`:
    what runs the network, "auto", "torch", "torch-compile", "openvino" or a `Backend.Torch(...)`/
    `Backend.OpenVINO(...)` (backends.py; "auto": `backends.choose_backend`). `model`: a name of
    `models.zoo.MODELS`; None with no `weights` is `zoo.DEFAULT_VIDEO_MODEL`, or the clean model
    at a scale the video model has no weights for. `bitrate` ("8M", "2500k"; not with `crf`) and
    `encoder_options` (AVOptions of the encoder, each key checked) go to the encoder.
    `size`: a target (width, height), either side None for "follows the aspect": the smallest
    model scale that covers it runs (`scale` is not used), then a Lanczos resize to the exact size
    (target_size.py). `tile`: "auto", None (whole frames) or a tile size in LR pixels (engine.py).
    A piece, for trying settings: `start` (seconds from the first frame; from the keyframe at or
    before it, the frames before it dropped), and `frames` (`max_frames`: the older name) or
    `duration` (seconds); the other streams keep their packets inside the same window and, with a
    `start`, every stream is shifted so the output starts at 0. `deinterlace`: "auto" (frames
    flagged interlaced go through bwdif, one frame each; progressive input untouched), "frame"
    (the same, and says so when nothing is flagged), "field" (one frame per field: double frame
    rate), "off" (as decoded); what was done is a remark (see `media.Source`, deinterlace.py).
    `pipeline`: frames per model call, calls in flight, streams, graphs, SR threads on the CPU
    (`PipelineOptions`; None: chosen from the frame size).
    `progress(done, total)` is called after each frame from this thread (`total` is None when
    the container has no frame count); `warn(message)` receives each remark, also listed in the
    report. Raises the `RlfnError` subclasses of `errors.py`; on any error or KeyboardInterrupt
    nothing is left at `dst` (an existing file there is untouched).
    """
    src, dst = Path(src), Path(dst)
    warnings, note = collect_warnings(warn)
    with media.Source(src, max_frames=max_frames, deinterlace=deinterlace, start=start, frames=frames,
                      duration=duration) as source:
        info = source.info
        for remark in info.notes:
            note(remark)
        atomic.check_output(src, dst, overwrite=overwrite)
        fitted = None
        if size is not None:
            fitted = target_size.fit(info.width, info.height, target_width=size[0], target_height=size[1],
                                     scales=(engine.scale,) if engine is not None else target_size.MODEL_SCALES)
            scale = fitted.scale
            note(fitted.note(info.width, info.height))
        model_size = output_size(info.width, info.height, engine.scale if engine is not None else check_scale(scale))
        with atomic.atomic_output(dst, overwrite=overwrite) as tmp:  # fails early on an unwritable folder
            plan = encode.plan_video(info, width=fitted.width if fitted else model_size[0],
                                     height=fitted.height if fitted else model_size[1], codec=codec, crf=crf,
                                     preset=preset, pix_fmt=pix_fmt, bitrate=bitrate,
                                     encoder_options=encoder_options, model_size=model_size, warn=note)
            if engine is None:
                from .engine import Engine  # deferred: validating the request needs no model

                from .models.zoo import video_model_for

                engine = Engine.from_options(scale=scale, model=video_model_for(model, weights, scale), weights=weights,
                                             device=device, fast=fast, half=half, tile=tile, backend=backend)
            hardware = hwcodec.describe(getattr(engine, "device", None), info.codec, plan.codec)
            _, frames_out, seconds, path = transcode_into(
                source, tmp, plan, engine, pipeline=pipeline, progress=progress, total=source.total, warn=note,
                name=str(dst))
        for remark in source.summary():
            note(remark)
        frames_in = source.frames_in
    return TranscodeReport(
        src=src, dst=dst, frames_in=frames_in, frames_out=frames_out, seconds=seconds,
        fps=frames_out / seconds if seconds > 0 else 0.0, size_in=(info.width, info.height),
        size_out=(plan.width, plan.height), decode_path=info.decode_path, colour_in=info.colour,
        colour_out=plan.colour, codec=plan.codec, pix_fmt=plan.pix_fmt, warnings=tuple(warnings), pipeline=path,
        hardware=hardware)


def transcode_into(source: media.Source, path: Path, plan: encode.VideoPlan, engine: Any, *,
                   pipeline: PipelineOptions | None = None, progress: Progress | None = None,
                   total: int | None = None, warn: Callable[[str], None] = lambda m: None,
                   name: str | None = None) -> tuple[int, int, float, str]:
    """Decode `source`, upscale, encode into `path` as planned: (frames in, frames out, seconds,
    pipeline description). The caller owns `path` (a temporary file it commits or deletes)."""
    sink = encode.Sink(path, source, plan, warn=warn, name=name)
    try:
        with make_pipeline(engine, plan.colour, options=pipeline, output=sink.new_frame) as pipe:
            t0 = time.perf_counter()
            frames_in = _run(source, sink, pipe, progress, total)
            return frames_in, sink.frames, time.perf_counter() - t0, pipe.description
    finally:
        sink.close()


_FRAME = object()  # a frame's place among the packets, while the pipeline holds it


def _run(source: media.Source, sink: encode.Sink, pipe: Pipeline, progress: Progress | None,
         total: int | None) -> int:
    """Run the three stages; returns the frame count. Re-raises the first failure of any stage."""
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
    upscaled: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
    failed: list[BaseException] = []
    workers = [threading.Thread(target=_produce, args=(source, decoded, stop), name="rlfn-decode", daemon=True),
               threading.Thread(target=_consume, args=(sink, upscaled, stop, failed), name="rlfn-encode",
                                daemon=True)]
    for w in workers:
        w.start()
    done = 0
    backlog: collections.deque = collections.deque()  # packets and frame places, in decode order

    def emit(finished: list[media.Picture]) -> bool:
        """Hand the finished frames, and the packets between them, to the encoder (False: it failed)."""
        nonlocal done
        ready = collections.deque(finished)
        while backlog and (backlog[0] is not _FRAME or ready):
            item = backlog.popleft()
            if item is _FRAME:
                item = ready.popleft()
                done += 1
                if progress is not None:
                    progress(done, total)
            if not _put(upscaled, item, stop):
                return False
        if ready:
            raise RlfnError(f"the pipeline returned {len(ready)} frame(s) more than it was given")
        return True

    try:
        ok = True
        while ok and (item := _get(decoded, stop)) is not _END:
            if isinstance(item, _Failed):
                raise item.exc
            if isinstance(item, media.Picture):
                backlog.append(_FRAME)
                ok = emit(pipe.submit(item))
            else:
                backlog.append(item)
                ok = emit([])
        if ok and not stop.is_set():
            ok = emit(pipe.flush())
            if ok and backlog:
                raise RlfnError(f"the pipeline lost {sum(i is _FRAME for i in backlog)} frame(s)")
        _put(upscaled, _END, stop)
    except BaseException:
        stop.set()
        raise
    finally:
        _join(workers, stop)
    if failed:
        raise failed[0]
    return done
