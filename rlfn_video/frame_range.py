"""A piece of a video, for trying settings: the range asked for (`check_range`), the window of
frames it means in the video stream's ticks (`Window`), and the other streams' packets cut to
the same window and shifted with it (`Cut`).

No decoding here: `media.Source` seeks, decodes, drops the frames outside the window and feeds
`Cut` from its one decode thread.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import av

from .errors import UnsupportedInputError


def _is_seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_range(start: float | None, frames: int | None, duration: float | None, max_frames: int | None = None,
                span: object = None) -> int | None:
    """Refuse a malformed range; returns the frame limit (`frames`, or the older `max_frames`)."""
    if frames is not None and max_frames is not None:
        raise UnsupportedInputError("give frames or max_frames, not both")
    frames = frames if frames is not None else max_frames
    if start is not None and not (_is_seconds(start) and start >= 0):
        raise UnsupportedInputError(f"start must be 0 or more seconds, got {start!r}")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise UnsupportedInputError(f"frames must be a whole number of at least 1, got {frames!r}")
    if duration is not None and not (_is_seconds(duration) and duration > 0):
        raise UnsupportedInputError(f"duration must be more than 0 seconds, got {duration!r}")
    if frames is not None and duration is not None:
        raise UnsupportedInputError("give frames or duration, not both")
    if span is not None and (start, frames, duration) != (None, None, None):
        raise UnsupportedInputError("a frame range cannot be combined with a segment span")
    return frames


def ticks(seconds: float, time_base: Fraction) -> int:
    """The first tick at or after `seconds` (a float's rounding noise aside)."""
    return math.ceil(float(Fraction(seconds) / time_base) - 1e-6)


@dataclass(frozen=True)
class Window:
    """The frames wanted, in the video stream's time base: pts in [start, end) (None: open), at
    most `frames` of them; `shift`: output times start at 0 (a start was asked for)."""

    start: int | None = None
    end: int | None = None
    frames: int | None = None
    shift: bool = False

    @classmethod
    def of(cls, video: av.VideoStream, start: float | None, frames: int | None, duration: float | None,
           length: float | None, name: object) -> Window:
        """Seconds count from the video's first frame; `length`: the declared one, to refuse a
        start past it (`name`: the file, for the message)."""
        if start is None and duration is None:
            return cls(frames=frames)
        if start is not None and length is not None and start >= length:
            raise UnsupportedInputError(f"{name}: start {start:g}s is past the end of the video ({length:.2f}s)")
        tb, origin = Fraction(video.time_base), video.start_time or 0
        first = origin + ticks(start, tb) if start is not None else None
        end = origin + ticks((start or 0) + duration, tb) if duration is not None else None
        return cls(first, end, frames, shift=start is not None)

    def expected(self, video: av.VideoStream, frames: int | None, rate: Fraction | None) -> int | None:
        """Frames in the window, where the container's count (`frames`) or the rate tells."""
        tb, origin = Fraction(video.time_base), video.start_time or 0
        n = frames
        if rate and n is not None and self.start is not None:
            n = max(0, n - round((self.start - origin) * tb * rate))
        if rate and self.end is not None:
            m = round((self.end - (origin if self.start is None else self.start)) * tb * rate)
            n = m if n is None else min(n, m)
        if self.frames is not None:
            n = self.frames if n is None else min(n, self.frames)
        return n


def _packet_time(packet: av.Packet) -> Fraction:
    return Fraction(packet.pts if packet.pts is not None else packet.dts) * Fraction(packet.time_base)


class Cut:
    """The other streams' packets inside the video window, shifted with it. Each is held until
    the frames decoded around it tell whether it falls inside: from the first frame (with a
    start; else from the file's beginning) to the end of the last frame, or to start + duration."""

    SLACK = 2  # seconds past the end after which no packet of the window is waited for

    def __init__(self, shift: bool, audio: set[int]):
        self.shift = shift
        self.t0: Fraction | None = None  # the first frame's time: 0 in the output
        self.covered: Fraction | None = None  # the frames so far reach up to here
        self.end: Fraction | None = None  # where the window ends, once the frames are out (None: the file's end)
        self.closed = False
        self.waiting = set(audio)  # audio streams with no packet past the end yet
        self.held: deque[av.Packet] = deque()

    def add(self, packet: av.Packet) -> list[av.Packet]:
        self.held.append(packet)
        return self._release()

    def advance(self, start: Fraction, end: Fraction) -> list[av.Packet]:
        """One more frame, shown from `start` to `end` (seconds)."""
        if self.t0 is None:
            self.t0 = start
        self.covered = end
        return self._release()

    def close(self, end: Fraction | None) -> list[av.Packet]:
        self.closed, self.end = True, end
        return self._release()

    @property
    def complete(self) -> bool:
        """Closed, and every audio stream has gone past the end: nothing more to read."""
        return self.closed and (self.end is None or not self.waiting)

    def beyond(self, packet: av.Packet) -> bool:
        """Further past the end than any interleaving: stop reading."""
        return (self.closed and self.end is not None and packet.dts is not None
                and _packet_time(packet) > self.end + self.SLACK)

    def _release(self) -> list[av.Packet]:
        out = []
        while self.held and not (self.shift and self.t0 is None):
            packet = self.held[0]
            t = _packet_time(packet)
            if self.end is not None and t >= self.end:
                self.held.popleft()
                self.waiting.discard(packet.stream.index)
            elif self.shift and t < self.t0:
                self.held.popleft()
                if self._clip_subtitle(packet, t):
                    out.append(self._shifted(packet))
            elif self.closed or (self.covered is not None and t < self.covered):
                out.append(self._shifted(self.held.popleft()))
            else:
                break  # not known yet; later packets wait behind it, so the order is kept
        return out

    def _clip_subtitle(self, packet: av.Packet, t: Fraction) -> bool:
        """A subtitle shown across the window's start: from the start on (False: not across it)."""
        tb = Fraction(packet.time_base)
        if packet.stream.type != "subtitle" or packet.pts is None or not packet.duration:
            return False
        if t + packet.duration * tb <= self.t0:
            return False
        start = math.ceil(self.t0 / tb)
        packet.duration -= start - packet.pts
        packet.pts = start
        if packet.dts is not None:
            packet.dts = start
        return True

    def _shifted(self, packet: av.Packet) -> av.Packet:
        if self.shift:
            offset = round(self.t0 / Fraction(packet.time_base))
            if packet.pts is not None:
                packet.pts -= offset
            if packet.dts is not None:
                packet.dts -= offset
        return packet
