"""PyAV input side: open and probe, decode to planar numpy with exact timing; atomic output files.

No model and no colour maths here (that is `colour.py`), no printing. The output side (encoder
choice, encoding, remux) is `encode.py`; the deinterlacing filter `deinterlace.py`, the window of a
frame range `frame_range.py`. `Source` is created in the caller's thread and then
iterated by the decode thread of `transcode.py`, never by two threads at once.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from . import deinterlace as deint
from .colour import ColourSpec, format_layout, jpeg_range, sample_dtype, spec_from_av
from .errors import RlfnError, TruncatedInputError, UnsupportedInputError
from .frame_range import Cut, Window, check_range
from .hdr import HdrMetadata, read_hdr

DISPLAYMATRIX = av.sidedata.sidedata.Type.DISPLAYMATRIX

PLANAR_DEPTHS = (8, 10, 12, 14, 16)  # planar depths FFmpeg has for both yuv4xxp and gbrp


def planar_format(rgb: bool, bit_depth: int, subsampling: str = "444") -> str:
    """The planar pixel format holding this layout: yuv420p, yuv444p10le, gbrp12le, ..."""
    depth = planar_depth(bit_depth)
    base = "gbrp" if rgb else f"yuv{subsampling}p"
    return base if depth == 8 else f"{base}{depth}le"


def planar_depth(bit_depth: int) -> int:
    return next((d for d in PLANAR_DEPTHS if d >= bit_depth), 16)


@dataclass(frozen=True)
class Picture:
    """One frame: planes (Y, U, V or G, B, R; uint8 or uint16), its exact timing and its colour
    (matrix, range, siting, depth), which travels with it from the decoder to the encoder.

    Decoded planes are views of the decoder's frame (no copy; the views keep it alive). `storage`
    is what holds upscaled planes when the encoder allocated them (encode.FrameBuffer), else None."""

    planes: tuple[np.ndarray, ...]
    pts: int
    time_base: Fraction
    index: int
    colour: ColourSpec
    storage: Any = None


@dataclass(frozen=True)
class Span:
    """The frames of a segment: pts in [start, end) of the video stream's time base (None: open
    end), `first` the index of its first frame in the whole stream, `frames` how many it holds
    (None: not known, for the one span of a file whose packets carry no timestamps)."""

    start: int | None
    end: int | None
    first: int
    frames: int | None


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    container: str
    codec: str
    width: int
    height: int
    pix_fmt: str  # as the decoder gives it
    decode_format: str  # planar format of `Picture.planes`
    time_base: Fraction
    rate: Fraction | None
    frames: int | None  # from the container's index, when it has one
    duration: float | None  # declared length of the video stream in seconds, when known
    colour: ColourSpec
    display_matrix: tuple[int, ...] | None  # rotation / flips, as FFmpeg's 3x3 fixed-point matrix
    sample_aspect_ratio: Fraction | None
    notes: tuple[str, ...] = ()  # remarks on the decode path, for the caller's `warn`
    hdr: HdrMetadata | None = None  # mastering display, light level, dynamic metadata found (hdr.py)
    # Of the source: the stream's declared field order and the first frames' flags (deinterlace.py).
    # (`time_base` and `rate` are those of the frames yielded: one frame per field halves/doubles them.)
    field_order: str = "progressive"  # "progressive" | "tff" | "bff"
    mixed_fields: bool = False  # flagged both ways, or against the stream's declared order

    @property
    def decode_path(self) -> str:
        how = "direct" if self.decode_format == self.pix_fmt or jpeg_range(self.pix_fmt) else "swscale"
        return f"{self.codec} {self.pix_fmt} -> {self.decode_format} ({how})"


def _mp4_without_moov(path: Path) -> bool:
    """An ISO-BMFF file whose top-level boxes run past EOF before any 'moov': cut short."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(8)[4:8] != b"ftyp":
            return False
        pos = 0
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            n, kind = struct.unpack(">I4s", head[:8])
            if kind == b"moov":
                return False
            n = struct.unpack(">Q", head[8:16])[0] if n == 1 else size - pos if n == 0 else n
            if n < 8:
                return False
            pos += n
        return pos > size


def open_input(path: str | os.PathLike) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise UnsupportedInputError(f"{path}: no such file")
    if not path.is_file():
        raise UnsupportedInputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise UnsupportedInputError(f"{path}: file is empty (0 bytes)")
    try:
        return av.open(str(path))
    except PermissionError as e:  # PyAV's also derives from FFmpegError: catch it first
        raise UnsupportedInputError(f"{path}: cannot read ({e.strerror})") from None
    except av.FFmpegError as e:
        if _mp4_without_moov(path):
            raise TruncatedInputError(f"{path}: MP4/MOV without its 'moov' index (cut short or still being "
                                      f"written); stopped after 0 frames at t=0.00s") from None
        raise UnsupportedInputError(f"{path}: not a media file FFmpeg can read ({e.strerror})") from None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _rotation_matrix(degrees: float) -> tuple[int, ...]:
    """Display matrix of a legacy clockwise `rotate` tag: FFmpeg's av_display_rotation_set(degrees)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    fx = lambda x: int(x * 65536)  # noqa: E731 - 16.16 fixed point, truncated like FFmpeg's CONV_DB
    return (fx(c), fx(s), 0, fx(-s), fx(c), 0, 0, 0, 1 << 30)


@dataclass(frozen=True)
class _Context:
    """A frame decoded only as the deinterlacer's neighbour (the one just before or just after
    the frames wanted): fed to it, never yielded."""

    frame: av.VideoFrame


class Source:
    """An open input: its first video stream decoded to `Picture`s, other packets passed through.

    Iterating yields `Picture` and `av.Packet` (non-video streams, in demux order). Opening
    decodes the first few frames (`deinterlace.SAMPLE`), so tags, pixel format, rotation and
    field order are those of real frames. After the last frame, a stream that ends well before
    its declared length, or a demux/decode error, raises `TruncatedInputError`.
    `span`: only that segment's frames (seeking to its keyframe), and no other streams; a span
    that decodes to another frame count than it declares raises `TruncatedInputError`.

    A range, for trying settings on a piece: `start` (seconds from the video's first frame)
    seeks to the keyframe at or before it and drops the frames before it; `frames` stops after
    that many frames (`max_frames` is the older name), `duration` at start + duration. The other
    streams keep the packets inside the same window; with a `start`, every stream is shifted by
    the first frame's time, so the output starts at 0 and stays in sync.

    `deinterlace` ("off" here; `upscale_video` defaults to "auto"): "auto"/"frame" run frames
    flagged interlaced through bwdif (yadif without it), one frame each, and pass progressive
    ones untouched; "field" makes one frame per field (double rate, half the time base in
    `info`); see deinterlace.py. `summary()` says what was done, once iterated.

    `colour`, `hdr`: what the frames are taken to be instead of what the first ones say (a
    segment takes the whole file's, so every segment converts alike); each `Picture` carries it.
    """

    def __init__(self, path: str | os.PathLike, *, max_frames: int | None = None, span: Span | None = None,
                 deinterlace: str = "off", start: float | None = None, frames: int | None = None,
                 duration: float | None = None, colour: ColourSpec | None = None, hdr: HdrMetadata | None = None):
        self.path = Path(path)
        self.max_frames = check_range(start, frames, duration, max_frames, span)
        self.span = span
        self.deinterlace = deint.check_mode(deinterlace)
        self.frames_in = self.flagged = 0  # source frames yielded (or deinterlaced), and flagged interlaced
        self.container = open_input(self.path)
        try:
            video = next((s for s in self.container.streams.video
                          if not s.disposition & av.stream.Disposition.attached_pic), None)
            if video is None:
                kinds = ", ".join(f"{s.type} {s.codec_context.name if s.codec_context else '?'}"
                                  for s in self.container.streams) or "none"
                raise UnsupportedInputError(f"{self.path}: no video stream (streams: {kinds})")
            video.thread_type = "AUTO"
            self.video = video
            self.carry = [s for s in self.container.streams if s.index != video.index] if span is None else []
            self._rate = Fraction(video.average_rate) if video.average_rate else None  # of the source frames
            tb = Fraction(video.time_base)
            self._frame_ticks = max(1, round(1 / (self._rate * tb))) if self._rate else 1
            self._start = start
            self._window = Window.of(video, start, self.max_frames, duration, self._declared_length(), self.path)
            target = span.start if span is not None else self._window.start if start else None
            if target is not None:  # to the keyframe at or before; when deinterlacing, one frame earlier so
                # that the first frame has its neighbour (a segment starts on a keyframe)
                self.container.seek(target - (self.deinterlace != "off"), stream=video, backward=True)
            self._items = self._demux()
            self._ended: tuple[int, float] | None = None  # (frames, end time) where decoding reached the end
            self._pending, self._failed = self._sample()
            sampled = [i for i in self._pending if isinstance(i, av.VideoFrame)]
            info = self._describe(sampled[0])
            self._probe = deint.FieldProbe()
            self.fields = deint.Fields.read(video, sampled, self._probe)
            self._deint, notes = deint.plan(self.deinterlace, self.fields, self._frame_ticks)
            if self._deint is not None and self._deint.per_field:
                info = replace(info, time_base=info.time_base / 2, rate=info.rate * 2 if info.rate else None)
            self.info = replace(info, field_order=self.fields.order, mixed_fields=bool(self.fields.mixed),
                                notes=info.notes + tuple(notes), colour=colour or info.colour, hdr=hdr or info.hdr)
            self._late_order: str | None = None  # of the first frame flagged interlaced after a progressive start
            self._step = max(1, round(1 / (self.info.rate * self.info.time_base))) if self.info.rate else 1
            self._index = self.span.first if self.span is not None else 0
            self._zero: int | None = None  # the first picture's pts, subtracted with a start
            # How many pictures iterating yields, where known beforehand (container count, span, range).
            n = span.frames if span is not None else self._window.expected(video, self.info.frames, self._rate)
            self.total = n * 2 if n is not None and self._deint is not None and self._deint.per_field else n
        except BaseException:
            self.container.close()
            raise

    def _declared_length(self) -> float | None:
        s = self.video
        if s.duration:
            return float(s.duration * s.time_base)
        return self.container.duration / 1_000_000 if self.container.duration else None

    def _sample(self) -> tuple[list, RlfnError | None]:
        """Decode the first `deint.SAMPLE` frames; a failure after the first frame is kept, to be
        raised in order after the frames before it."""
        pending, count = [], 0
        try:
            for item in self._items:
                pending.append(item)
                if isinstance(item, av.VideoFrame):
                    count += 1
                    if count >= deint.SAMPLE:
                        break
        except RlfnError as e:
            if not count:
                raise
            return pending, e
        if not count and self._start:
            raise UnsupportedInputError(f"{self.path}: start {self._start:g}s is past the last frame")
        if not count:
            raise UnsupportedInputError(f"{self.path}: the video stream has no decodable frames")
        return pending, None

    def summary(self) -> list[str]:
        """Remarks known once the frames are through (call after iterating): what deinterlacing
        did, and a range that the video ends before."""
        order = self.fields.order if self.fields.order != "progressive" else self._late_order or "progressive"
        first = self.span.first if self.span is not None else 0
        notes = deint.summary(self.deinterlace, self._deint, order, self.flagged, self.frames_in,
                              self._index - first, self.info.rate)
        if self.span is None and self.max_frames is not None and self.frames_in < self.max_frames:
            notes.append(f"the video ends after {self.frames_in} of the {self.max_frames} frames asked for")
        return notes

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def _describe(self, frame: av.VideoFrame) -> VideoInfo:
        s = self.video
        rgb, depth, sub = format_layout(frame.format)
        direct = jpeg_range(frame.format.name)  # same planes as yuv4xxp, full range
        decode_format = frame.format.name if direct else planar_format(rgb, depth, sub)
        colour = replace(spec_from_av(frame), bit_depth=format_layout(av.VideoFormat(decode_format))[1])
        matrix = frame.side_data.get(DISPLAYMATRIX)
        display = struct.unpack("<9i", bytes(matrix)) if matrix is not None else None
        rotate = _number(s.metadata.get("rotate", ""))
        if display is None and rotate:
            display = _rotation_matrix(rotate)
        duration = s.duration * s.time_base if s.duration else None
        if duration is None:  # Matroska keeps it as a tag, "01:02:03.500000000"
            parts = [_number(x) for x in s.metadata.get("DURATION", "").split(":")]
            duration = parts[0] * 3600 + parts[1] * 60 + parts[2] if len(parts) == 3 and None not in parts else None
        notes = ["alpha channel dropped"] if any(c.is_alpha for c in frame.format.components) else []
        if frame.pts is None:
            notes.append("frames carry no timestamps; numbering them at the stream rate")
        return VideoInfo(
            path=self.path, container=self.container.format.name, codec=s.codec_context.name,
            width=frame.width, height=frame.height, pix_fmt=frame.format.name, decode_format=decode_format,
            time_base=Fraction(s.time_base), rate=Fraction(s.average_rate) if s.average_rate else None,
            frames=s.frames or None, duration=float(duration) if duration else None, colour=colour,
            display_matrix=display, sample_aspect_ratio=Fraction(s.sample_aspect_ratio) if s.sample_aspect_ratio
            else None, notes=tuple(notes), hdr=read_hdr(frame, s))

    def _demux(self) -> Iterator[av.VideoFrame | _Context | av.Packet]:
        if self.span is not None:
            yield from self._demux_span(self.span)
            return
        w, tb = self._window, Fraction(self.video.time_base)
        cut = Cut(w.shift, {s.index for s in self.carry if s.type == "audio"}) if w != Window() else None
        neighbour = self.deinterlace != "off"  # decode one frame past the window, for the deinterlacer
        count, end, before = 0, 0.0, None
        state = "frames"  # -> "after" (the frame past the window) -> "tail" (the other streams only)
        try:
            for packet in self.container.demux():
                if packet.stream.index != self.video.index:
                    if packet.dts is None:  # skip the empty end-of-stream packets
                        continue
                    if cut is None:
                        yield packet
                        continue
                    yield from cut.add(packet)
                    if state == "tail" and cut.complete:
                        return
                    continue
                if state == "tail":
                    if cut.complete or cut.beyond(packet):
                        return
                    continue
                for frame in packet.decode():
                    if state == "tail":
                        break
                    if state == "after":
                        yield _Context(frame)
                        state = "tail"
                        break
                    if frame.pts is None and (w.start is not None or w.end is not None):
                        raise UnsupportedInputError(f"{self.path}: frames carry no timestamps; a start or duration "
                                                    f"needs them (give frames alone)")
                    if w.start is not None and frame.pts < w.start:
                        before = frame
                        continue
                    if w.end is not None and frame.pts >= w.end:
                        yield _Context(frame)
                        yield from cut.close(w.end * tb)
                        state = "tail"
                        break
                    if before is not None:
                        yield _Context(before)
                        before = None
                    count += 1
                    yield frame
                    if frame.pts is not None:
                        ticks = frame.duration or self._frame_ticks
                        shown = (Fraction(frame.pts) * tb, Fraction(frame.pts + ticks) * tb)
                        end = float(shown[1])
                        if cut is not None:
                            yield from cut.advance(*shown)
                    if w.frames is not None and count >= w.frames:
                        yield from cut.close(shown[1] if frame.pts is not None else None)
                        state = "after" if neighbour else "tail"
                if state == "tail" and cut.complete:
                    return
        except av.FFmpegError as e:
            if state == "frames":  # (damage past a range's frames does not matter)
                raise TruncatedInputError(f"{self.path}: unreadable data ({e.strerror}); decoding stopped after "
                                          f"{count} frames at t={end:.2f}s") from None
        if cut is not None and not cut.closed:
            yield from cut.close(None)
        if state == "frames":
            self._ended = (count, end)

    def _check_length(self) -> None:
        """Decoding reached the end of the file: one that ends well before its declared length is cut short."""
        if self._ended is None or not self._ended[0]:
            return  # stopped by a range, or no frames at all (__init__ reports that)
        count, end = self._ended
        duration = self.info.duration
        start = float(self.video.start_time * self.video.time_base) if self.video.start_time else 0.0
        slack = max(0.25, 3 / self._rate) if self._rate else 0.25
        if duration and duration - (end - start) > slack:
            raise TruncatedInputError(f"{self.path}: file ends early; decoding stopped after {count} frames "
                                      f"at t={end - start:.2f}s of {duration:.2f}s")

    def _demux_span(self, span: Span) -> Iterator[av.VideoFrame | _Context]:
        """The span's frames: decoding from its keyframe, frames before `start` belong to the
        previous segment, and the first frame at or past `end` (decoders output in pts order) ends
        it. The last frame before and that one are yielded as neighbours (`_Context`)."""
        count, before = 0, None
        try:
            for packet in self.container.demux(self.video):
                for frame in packet.decode():
                    if frame.pts is None and (span.start is not None or span.end is not None):
                        raise UnsupportedInputError(f"{self.path}: frames without timestamps cannot be segmented")
                    if span.start is not None and frame.pts < span.start:
                        before = frame
                        continue
                    if span.end is not None and frame.pts >= span.end:
                        yield _Context(frame)
                        break
                    if before is not None:
                        yield _Context(before)
                        before = None
                    count += 1
                    yield frame
                else:
                    continue
                break
        except av.FFmpegError as e:
            raise TruncatedInputError(f"{self.path}: unreadable data ({e.strerror}) after frame "
                                      f"{span.first + count}") from None
        if span.frames is not None and count != span.frames:
            raise TruncatedInputError(f"{self.path}: frames {span.first}..{span.first + span.frames - 1} decode to "
                                      f"{count} frames, not {span.frames}; run without segments")

    def _rest(self) -> Iterator[av.VideoFrame | _Context | av.Packet]:
        if self._failed is not None:
            raise self._failed
        yield from self._items

    def __iter__(self) -> Iterator[Picture | av.Packet]:
        pending, self._pending = self._pending, []
        flush = self._deint.flush if self._deint is not None else list
        try:
            for item in itertools.chain(pending, self._rest()):
                if isinstance(item, av.Packet):
                    yield item
                elif isinstance(item, _Context):
                    if self._deint is not None and self._fits(item.frame):
                        yield from self._pictures(self._deint.push(item.frame, keep=False))
                else:
                    if not self._fits(item):
                        raise UnsupportedInputError(f"{self.path}: frame size changes mid-stream at frame "
                                                    f"{self._index} ({self.info.width}x{self.info.height} -> "
                                                    f"{item.width}x{item.height})")
                    self.frames_in += 1
                    if item.interlaced_frame:
                        self.flagged += 1
                        if self._late_order is None and self.fields.order == "progressive":
                            self._late_order = self._probe(item)
                    yield from self._pictures(self._deint.push(item) if self._deint is not None else [item])
        except TruncatedInputError:
            yield from self._pictures(flush())  # the frames before the damage, still in the filter
            raise
        yield from self._pictures(flush())
        self._check_length()

    def _fits(self, frame: av.VideoFrame) -> bool:
        return (frame.width, frame.height) == (self.info.width, self.info.height)

    def _pictures(self, frames: list[av.VideoFrame]) -> Iterator[Picture]:
        info = self.info
        for frame in frames:
            pts = frame.pts if frame.pts is not None else self._index * self._step  # raw streams: numbered
            if self._window.shift:
                if self._zero is None:
                    self._zero = pts
                pts -= self._zero
            yield Picture(_planes(frame, info), pts, Fraction(frame.time_base or info.time_base), self._index,
                          info.colour)
            self._index += 1


def plane_view(plane: av.video.plane.VideoPlane, dtype: np.dtype) -> np.ndarray:
    """(height, width) view of a frame plane's memory, without the row padding (writable for
    frames we allocate, so the encoder side fills planes through it too)."""
    row = plane.line_size // dtype.itemsize
    return np.frombuffer(plane, dtype, count=row * plane.height).reshape(plane.height, row)[:, : plane.width]


def _planes(frame: av.VideoFrame, info: VideoInfo) -> tuple[np.ndarray, ...]:
    if frame.format.name != info.decode_format:
        rng = info.colour.color_range  # same range both sides: swscale only repacks/reshifts
        # threads=1: deterministic (sliced swscale can dither differently after a reconfiguration).
        frame = frame.reformat(format=info.decode_format, src_color_range=rng, dst_color_range=rng, threads=1)
    return tuple(plane_view(p, sample_dtype(info.colour.bit_depth)) for p in frame.planes[:3])


def probe(path: str | os.PathLike) -> VideoInfo:
    """What `Source` learns on opening (it decodes the first frame), without keeping it open."""
    with Source(path) as source:
        return source.info
