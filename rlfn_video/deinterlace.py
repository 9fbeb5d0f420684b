"""Interlaced sources: the field order the stream declares and the frames' flags show, and
FFmpeg's bwdif (yadif where the build lacks it) through a PyAV filter graph.

Works on `av.VideoFrame`, before `media.Source` takes the planes; decodes nothing and prints
nothing (notes are returned to the caller). A `Deinterlacer` belongs to one `Source` and is fed
from the thread that iterates it. PyAV 19 exposes `interlaced_frame` but not the top-field-first
flag: a `select` filter on `interlace_type` reads it (`FieldProbe`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import av.filter

from .errors import RlfnError, UnsupportedInputError

MODES = ("auto", "off", "frame", "field")
FILTERS = ("bwdif", "yadif")  # in order of preference
SAMPLE = 6  # frames whose flags `Source` reads on opening (a 3:2 telecine pattern repeats every 5)
# AVFieldOrder by the field displayed first: TT, BB, TB (top coded first, bottom shown first), BT.
_STREAM_ORDER = {1: "progressive", 2: "tff", 3: "bff", 4: "bff", 5: "tff"}
WORDS = {"tff": "top field first", "bff": "bottom field first", "progressive": "progressive"}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UnsupportedInputError(f"deinterlace must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def filter_name() -> str | None:
    """The deinterlacing filter this FFmpeg build has, or None."""
    return next((f for f in FILTERS if f in av.filter.filters_available), None)


def _graph(template: av.VideoFrame, time_base: Fraction, name: str, **args: str) -> av.filter.Graph:
    """buffer -> `name`(args) -> buffersink, for frames like `template`. The source declares the
    frame's colorspace and range: FFmpeg stamps the link's onto every frame it outputs."""
    graph = av.filter.Graph()
    src = graph.add("buffer", video_size=f"{template.width}x{template.height}", pix_fmt=template.format.name,
                    time_base=str(time_base), pixel_aspect="1/1", colorspace=str(int(template.colorspace)),
                    range=str(int(template.color_range)))
    graph.link_nodes(src, graph.add(name, **args), graph.add("buffersink")).configure()
    return graph


def _pull(graph: av.filter.Graph) -> list[av.VideoFrame]:
    out = []
    while True:
        try:
            out.append(graph.pull())
        except (av.BlockingIOError, av.EOFError):
            return out


class FieldProbe:
    """A frame's field order from its flags: "progressive", "tff" or "bff"."""

    def __init__(self) -> None:
        self._graph: av.filter.Graph | None = None

    def __call__(self, frame: av.VideoFrame) -> str:
        if not frame.interlaced_frame:
            return "progressive"
        if self._graph is None:  # passes only frames flagged top field first
            self._graph = _graph(frame, Fraction(frame.time_base or Fraction(1, 1)), "select",
                                 expr="eq(interlace_type,TOPFIRST)")
        self._graph.push(frame)
        return "tff" if _pull(self._graph) else "bff"


@dataclass(frozen=True)
class Fields:
    """What the stream declares (None: unknown) and the first frames are flagged."""

    stream: str | None
    frames: tuple[str, ...]

    @classmethod
    def read(cls, stream: av.VideoStream, frames: Sequence[av.VideoFrame], probe: FieldProbe) -> Fields:
        return cls(_STREAM_ORDER.get(stream.codec_context.field_order), tuple(probe(f) for f in frames))

    @property
    def flagged(self) -> int:
        return sum(f != "progressive" for f in self.frames)

    @property
    def order(self) -> str:
        """The flagged frames' field order (the more common one), else "progressive"."""
        tff, bff = self.frames.count("tff"), self.frames.count("bff")
        return "progressive" if not tff + bff else "tff" if tff >= bff else "bff"

    @property
    def mixed(self) -> bool:
        """Some frames flagged interlaced and some not, both field orders, or frames flagged
        interlaced in a stream that declares progressive video (telecined or hybrid sources)."""
        return bool(self._mixed_reasons())

    def _mixed_reasons(self) -> list[str]:
        n, k = len(self.frames), self.flagged
        reasons = []
        if 0 < k < n:
            reasons.append(f"{k} of the first {n} frames are flagged interlaced ({WORDS[self.order]}), the others "
                           f"progressive")
        if "tff" in self.frames and "bff" in self.frames:
            reasons.append("the field order changes between frames")
        if k and self.stream == "progressive":
            reasons.append("the stream declares progressive video" + (
                "" if k < n else f" but its frames are flagged interlaced ({WORDS[self.order]})"))
        return reasons

    def notes(self, mode: str) -> list[str]:
        """Remarks on mixed flags or a stream and frames that disagree, and what `mode` does."""
        if mode == "field":
            action = "deinterlacing every frame, one frame per field"
        elif mode == "off":
            action = "left as is (deinterlace='off')"
        else:
            action = "deinterlacing only the frames flagged interlaced"
        reasons = self._mixed_reasons()
        notes = [f"mixed interlacing (telecined or hybrid source): {'; '.join(reasons)}; {action}"] if reasons else []
        if self.flagged and self.stream in ("tff", "bff") and self.stream != self.order:
            notes.append(f"the stream declares {WORDS[self.stream]} but its frames are flagged {WORDS[self.order]}; "
                         f"following the frames")
        if not self.flagged and self.stream in ("tff", "bff") and mode != "off":
            then = (f"deinterlacing them anyway, {WORDS[self.stream]}" if mode == "field"
                    else "not deinterlacing them (deinterlace='field' forces it)")
            notes.append(f"the stream declares interlaced video ({WORDS[self.stream]}) but its first "
                         f"{len(self.frames)} frames are flagged progressive; {then}")
        return notes

    def field_parity(self) -> tuple[str, list[str]]:
        """The bwdif parity for one frame per field: the frames' own flags where they have them,
        else the stream's declared order, else top field first (with a note)."""
        if self.flagged:
            return "auto", []
        if self.stream in ("tff", "bff"):
            return self.stream, []
        return "tff", ["no frame is flagged interlaced and the stream declares no field order: "
                       "deinterlacing as top field first"]


class Deinterlacer:
    """bwdif/yadif over frames in decode order. One frame per frame (`per_field=False`, deint=
    interlaced): the graph starts at the first frame flagged interlaced, with the frame before
    as its neighbour, so progressive frames are passed through untouched (the very frames
    decoded) and a progressive source never enters a graph; output keeps the input's time base
    and pts. One frame per field (deint=all): every frame gives two, in half the time base.
    `push(frame, keep=False)` feeds a neighbour (the frame before a segment or range, or the one
    after it) whose own output is dropped, so each kept frame is deinterlaced as in a whole pass.
    """

    def __init__(self, name: str, *, per_field: bool, parity: str = "auto", frame_ticks: int = 1):
        """`frame_ticks`: a frame's duration in the input time base, where frames carry none."""
        self.name, self.per_field, self.parity, self.frame_ticks = name, per_field, parity, frame_ticks
        self.started = False
        self._graph: av.filter.Graph | None = None
        self._time_base: Fraction | None = None
        self._owed: deque[list] = deque()  # per frame in the graph: [outputs due, kept, its pts, duration]
        self._last: av.VideoFrame | None = None  # before the graph starts: the neighbour of the first
        self._field_pts: int | None = None  # the first field's pts of the frame being output

    def push(self, frame: av.VideoFrame, keep: bool = True) -> list[av.VideoFrame]:
        if self._graph is None:
            if not self.per_field and not frame.interlaced_frame:
                self._last = frame
                return [frame] if keep else []
            self._start(frame)
        return self._feed(frame, keep)

    def flush(self) -> list[av.VideoFrame]:
        """The frames still in the graph (its last frame needs the end of stream to come out)."""
        if self._graph is None:
            return []
        try:
            self._graph.push(None)
            out = self._drain()
        except av.FFmpegError as e:
            raise UnsupportedInputError(f"{self.name} failed at the end of the frames ({e})") from None
        if self._owed:
            raise RlfnError(f"{self.name} kept {len(self._owed)} frame(s) back")
        return out

    def _start(self, frame: av.VideoFrame) -> None:
        self._time_base = Fraction(frame.time_base or Fraction(1, 1))
        deint = "all" if self.per_field else "interlaced"
        self._graph = _graph(frame, self._time_base, self.name, mode="send_field" if self.per_field else "send_frame",
                             parity=self.parity, deint=deint)
        self.started = True
        if self._last is not None:
            self._feed(self._last, False)  # nothing comes out before its successor is in
            self._last = None

    def _feed(self, frame: av.VideoFrame, keep: bool) -> list[av.VideoFrame]:
        ticks = frame.duration or self.frame_ticks
        self._owed.append([2 if self.per_field else 1, keep, frame.pts, ticks])
        try:
            self._graph.push(frame)
            return self._drain()
        except av.FFmpegError as e:  # a frame unlike the first (format changed mid-stream, ...)
            raise UnsupportedInputError(f"{self.name} refused a {frame.format.name} frame at pts {frame.pts} "
                                        f"({e})") from None

    def _drain(self) -> list[av.VideoFrame]:
        out = []
        for frame in _pull(self._graph):
            if not self._owed:
                raise RlfnError(f"{self.name} returned more frames than it was given")
            due = self._owed[0]
            due[0] -= 1
            if due[0] == 0:
                self._owed.popleft()
            if self.per_field:
                self._time_field(frame, due)
            else:  # the filter doubles the time base; every pts it writes is even
                frame.pts = frame.pts // 2 if frame.pts is not None else None
                frame.time_base = self._time_base
            if due[1]:
                out.append(frame)
        return out

    def _time_field(self, frame: av.VideoFrame, due: list) -> None:
        """Field pts in half the time base: FFmpeg's (the first at 2 x pts, the second halfway to
        the next frame), except the second field of a last frame with no neighbour before it,
        which FFmpeg gives the first one's pts: there, half a frame after it."""
        if due[2] is None:
            return
        if due[0] == 1:  # the first field
            self._field_pts = frame.pts = 2 * due[2]
        elif frame.pts is None or frame.pts <= self._field_pts:
            frame.pts = self._field_pts + due[3]


def plan(mode: str, fields: Fields, frame_ticks: int) -> tuple[Deinterlacer | None, list[str]]:
    """The deinterlacer for `mode` on this source (None: frames pass as decoded) and the notes
    known on opening. auto and frame are the same filter, which only touches flagged frames;
    auto says nothing about a progressive source, frame says so at the end (`summary`)."""
    notes = fields.notes(mode)
    if mode == "off":
        return None, notes
    name = filter_name()
    if name is None:
        if mode != "auto":
            raise UnsupportedInputError("this FFmpeg build has neither bwdif nor yadif; pass deinterlace='off'")
        return None, notes
    if mode == "field":
        parity, more = fields.field_parity()
        return Deinterlacer(name, per_field=True, parity=parity, frame_ticks=frame_ticks), notes + more
    return Deinterlacer(name, per_field=False, frame_ticks=frame_ticks), notes


def _fps(rate: Fraction | None) -> str:
    return f"{float(rate):.3f}".rstrip("0").rstrip(".") if rate else "?"


def summary(mode: str, deinterlacer: Deinterlacer | None, order: str, flagged: int, frames_in: int,
            frames_out: int, rate_out: Fraction | None) -> list[str]:
    """What was done, once the frames are through: counts and the output rate."""
    kind = (f"interlaced ({WORDS[order]})" if order != "progressive" else "interlaced" if flagged
            else f"deinterlace={mode!r} on frames flagged progressive")
    if deinterlacer is not None and (deinterlacer.per_field or deinterlacer.started):
        per = "field" if deinterlacer.per_field else "frame"
        done = (f"{kind}: deinterlaced with {deinterlacer.name}, one frame per {per}: {frames_in} -> {frames_out} "
                f"frames at {_fps(rate_out)} fps")
        if not deinterlacer.per_field and flagged < frames_in:
            done += f" ({flagged} of {frames_in} flagged interlaced, the others passed through untouched)"
        return [done]
    if not flagged:
        return ["deinterlace='frame': no frame is flagged interlaced; nothing was deinterlaced"] if mode == "frame" \
            else []
    why = "deinterlace='off'" if mode == "off" else "this FFmpeg build has neither bwdif nor yadif"
    return [f"{kind}: {flagged} of {frames_in} frames flagged interlaced, left as decoded with both fields woven "
            f"together ({why})"]
