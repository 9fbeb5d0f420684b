"""Segmented upscaling: keyframe segments encoded independently, a manifest, resume, one join.

    plan (segments.py) -> manifest (manifest.py) -> run the missing segments' jobs on the workers
    (workers.py: this process, one process per GPU/CPU worker, or Ray actors) -> join the
    segments by stream copy, muxing the source's audio and subtitles once.

Each segment is a job (segment_job.py: `SegmentTask` in, `SegmentResult` out): decoded from its
keyframe, upscaled and encoded by the same code as a single pass (`transcode.transcode_into`)
into `OUT.rlfn/NNNNN.ext` via a temporary name; this module plans the jobs and commits each in
the manifest with its checksum. Segments keep the input's pts, so joining needs no timestamp
shift; the joined file has exactly the input's frames and timestamps.
"""

from __future__ import annotations

import heapq
import os
import shutil
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av

from . import encode, media
from .atomic import atomic_output, check_output
from .errors import OutputError, RlfnError
from .manifest import Manifest, SegmentRecord, input_fingerprint
from .models import check_scale
from .pipeline import PipelineOptions
from .segment_job import EncodeSettings, SegmentResult, SegmentTask
from .segments import index_video, plan_segments
from .transcode import TranscodeReport, collect_warnings

if TYPE_CHECKING:
    from .workers import Workers

DEFAULT_SEGMENT_SECONDS = 30.0


def manifest_path(dst: Path) -> Path:
    return dst.with_name(dst.name + ".rlfn.json")


def _prepare(src: Path, dst: Path, settings: EncodeSettings, seconds: float, resume: bool,
             note: Callable[[str], None]) -> tuple[Manifest, media.VideoInfo, encode.VideoPlan, EncodeSettings]:
    """(manifest, info, plan, the settings `fitted` to this input)."""
    info = media.probe(src)
    settings = settings.fitted(info, note)
    plan = settings.plan(info, warn=note)
    index = index_video(src)
    if index is None:
        note("packets without timestamps: processing the input as one segment")
    spans = plan_segments(index, seconds)
    fingerprint = input_fingerprint(src, index.frames if index else -1, index.keyframes if index else ())
    wanted = {**settings.fingerprint(), "segment_seconds": seconds}
    path = manifest_path(dst)
    if path.exists() and resume:
        manifest = Manifest.load(path)
        manifest.check_matches(fingerprint, wanted)
        manifest.folder.mkdir(exist_ok=True)
        return manifest, info, plan, settings
    if path.exists():  # --no-resume: start over
        path.unlink()
        shutil.rmtree(path.with_suffix(""), ignore_errors=True)
    records = [SegmentRecord(i, s.start, s.end, s.first, s.frames, f"{i:05d}{dst.suffix}")
               for i, s in enumerate(spans)]
    manifest = Manifest(path, fingerprint, wanted, records)
    try:
        manifest.folder.mkdir(exist_ok=True)
        manifest.save()
    except OSError as e:
        raise OutputError(f"{dst}: cannot write the segment manifest in {dst.parent} ({e.strerror})") from None
    return manifest, info, plan, settings


def _video_packets(paths: list[Path], extradata: bytes | None, dts: list[int] | None = None) -> Iterator[av.Packet]:
    """Every segment's video packets in order; a segment whose codec headers differ from the
    first one's (another encoder build or options) could not be decoded after a stream copy.
    `dts`: decode timestamps to set, one per packet (containers that store none, see `_rebuild_dts`)."""
    n = 0
    for path in paths:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            if stream.codec_context.extradata != extradata:
                raise RlfnError(f"{path}: encoded with other codec parameters than the first segment; "
                                f"rerun with --no-resume")
            for packet in c.demux(stream):
                if packet.size:
                    if dts is not None:
                        packet.dts = dts[n]
                    n += 1
                    yield packet


def _rebuild_dts(paths: list[Path]) -> list[int] | None:
    """Decode timestamps for the joined stream where the segments' container keeps none
    (Matroska): the presentation times in order, shifted back by the smallest reorder delay that
    keeps every dts at or before its pts; None where every packet has its dts."""
    order, missing = [], False
    for path in paths:
        with av.open(str(path)) as c:
            for packet in c.demux(c.streams.video[0]):
                if packet.size:
                    order.append(packet.pts)
                    missing |= packet.dts is None
    if not missing:
        return None
    ordered = sorted(order)
    delay = next(d for d in range(len(order) + 1) if all(ordered[k - d] <= order[k] for k in range(d, len(order))))
    return [ordered[0] - (delay - k) if k < delay else ordered[k - delay] for k in range(len(order))]


def _seconds(packet: av.Packet) -> Fraction:
    t = packet.dts if packet.dts is not None else packet.pts
    return Fraction(t or 0) * Fraction(packet.time_base)


def join_segments(src: Path, dst: Path, manifest: Manifest, plan: encode.VideoPlan, *, overwrite: bool,
                  warn: Callable[[str], None]) -> int:
    """Stream-copy the segments' video and the source's other streams into `dst`; returns frames."""
    paths = [manifest.segment_path(r) for r in manifest.segments]
    with media.Source(src) as source, av.open(str(paths[0])) as first, media.open_input(src) as carried:
        with atomic_output(dst, overwrite=overwrite) as tmp:
            sink = encode.Sink(tmp, source, plan, warn=warn, name=str(dst), video_template=first.streams.video[0])
            try:
                extra = [carried.streams[s.index] for s in source.carry]
                others = (p for p in carried.demux(*extra) if p.dts is not None) if extra else iter(())
                video = _video_packets(paths, first.streams.video[0].codec_context.extradata, _rebuild_dts(paths))
                merged = heapq.merge(((_seconds(p), 0, n, p) for n, p in enumerate(video)),
                                     ((_seconds(p), 1, n, p) for n, p in enumerate(others)), key=lambda t: t[:3])
                for _, kind, _, packet in merged:
                    sink.write_video_packet(packet) if kind == 0 else sink.write_packet(packet)
                want = sum(r.frames for r in manifest.segments)
                if sink.frames != want:
                    raise RlfnError(f"{dst}: the segments hold {sink.frames} frames, the input {want}")
                sink.finish()
            finally:
                sink.close()
    return sink.frames


def upscale_segmented(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    settings: EncodeSettings,
    workers: Workers,
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
    resume: bool = True,
    keep_segments: bool = False,
    overwrite: bool = False,
    pipeline: PipelineOptions | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> TranscodeReport:
    """Upscale `src` into `dst` segment by segment on `workers` (see the module docstring).

    With `resume` (default) a manifest left by an interrupted run for the same input and settings
    is continued: committed segments whose checksum still holds are kept, the others redone; a
    manifest for another input or other settings raises `ManifestMismatch`. On success the
    manifest and segments are removed unless `keep_segments`."""
    src, dst = Path(src), Path(dst)
    warnings, note = collect_warnings(warn)

    check_scale(settings.scale)
    check_output(src, dst, overwrite=overwrite)
    settings = settings.resolved(workers.device_kind)
    manifest, info, plan, settings = _prepare(src, dst, settings, segment_seconds, resume, note)
    total = None if any(r.frames is None for r in manifest.segments) else sum(r.frames for r in manifest.segments)
    todo, done = [], 0
    for record in manifest.segments:
        if manifest.committed(record):
            done += record.frames
            continue
        if record.sha256 is not None:
            note(f"segment {record.index}: file missing or checksum mismatch; redoing it")
            record.sha256 = record.bytes = None
        todo.append(SegmentTask(str(src.resolve()), str(manifest.segment_path(record).resolve()), record.index,
                                record.span, info.colour, settings, pipeline, hdr=info.hdr))
    if progress is not None:
        progress(done, total)
    t0 = time.perf_counter()

    running: dict[int, int] = {}  # frames done so far in segments still being encoded (this process)

    def committed(result: SegmentResult) -> None:
        nonlocal done
        record = manifest.segments[result.index]
        record.sha256, record.bytes, record.frames = result.sha256, result.bytes, result.frames
        manifest.save()
        done += result.frames
        running.pop(result.index, None)
        if progress is not None:
            progress(done + sum(running.values()), total)

    def advanced(index: int, frames: int) -> None:
        if manifest.segments[index].sha256 is not None:
            return  # a late report from a worker whose segment is already committed
        running[index] = frames
        if progress is not None:
            progress(done + sum(running.values()), total)

    workers.run(todo, committed, advanced)
    changed = [r.index for r in manifest.segments if not manifest.committed(r)]
    if changed:  # every segment is read back against its checksum before the join trusts it
        raise RlfnError(f"segment(s) {', '.join(map(str, changed))} changed on disk after being committed; "
                        f"rerun the same command to redo them")
    frames = join_segments(src, dst, manifest, plan, overwrite=overwrite, warn=note)
    seconds = time.perf_counter() - t0
    if not keep_segments:
        shutil.rmtree(manifest.folder, ignore_errors=True)
        manifest.path.unlink(missing_ok=True)
    return TranscodeReport(
        src=src, dst=dst, frames_in=sum(r.frames for r in manifest.segments), frames_out=frames, seconds=seconds,
        fps=sum(manifest.segments[t.index].frames for t in todo) / seconds if seconds > 0 and todo else 0.0,
        size_in=(info.width, info.height), size_out=(plan.width, plan.height), decode_path=info.decode_path,
        colour_in=info.colour, colour_out=plan.colour, codec=plan.codec, pix_fmt=plan.pix_fmt,
        warnings=tuple(warnings), pipeline=f"{len(manifest.segments)} segment(s), {len(todo)} encoded, "
                                          f"{workers.description}")
