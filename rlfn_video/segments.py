"""Split a video at keyframes into segments that decode independently.

`index_video` reads the video stream's packets (no decoding): every frame's pts and which
packets are keyframes. `plan_segments` cuts at the first keyframe at or after each multiple of
the target length, so every segment starts at a keyframe and decodes on its own; the first
segment is open at the start and the last at the end, so frames before the first keyframe
or after the last packet's pts still land in exactly one segment (see `media.Span`).
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from .errors import UnsupportedInputError
from .media import Span, open_input


@dataclass(frozen=True)
class VideoIndex:
    pts: tuple[int, ...]  # every frame's pts, in presentation order
    keyframes: tuple[int, ...]  # pts of the keyframe packets, ascending
    time_base: Fraction

    @property
    def frames(self) -> int:
        return len(self.pts)


def index_video(path: str | os.PathLike) -> VideoIndex | None:
    """The frame/keyframe index of the first video stream, or None where packets carry no pts
    (raw streams, some AVI): such a file is processed as one segment."""
    path = Path(path)
    with open_input(path) as container:
        video = next((s for s in container.streams.video
                      if not s.disposition & av.stream.Disposition.attached_pic), None)
        if video is None:
            raise UnsupportedInputError(f"{path}: no video stream")
        pts, keys = [], []
        try:
            for packet in container.demux(video):
                if packet.size == 0:  # end-of-stream flush packet
                    continue
                if packet.pts is None:
                    return None
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.FFmpegError:
            return None  # a damaged file: the single pass reports where it stops
        if len(set(pts)) != len(pts):
            return None
        return VideoIndex(tuple(sorted(pts)), tuple(sorted(keys)), Fraction(video.time_base))


def plan_segments(index: VideoIndex | None, seconds: float) -> list[Span]:
    """Spans of about `seconds` each (at least one keyframe interval), in order, covering every
    frame; without an index, one span of all the frames (their count unknown until decoded)."""
    if index is None or not index.pts:
        return [Span(None, None, 0, None)]
    step = max(1, round(seconds / index.time_base)) if seconds > 0 else None
    cuts: list[int] = []
    origin = index.pts[0]
    for key in index.keyframes:
        if key <= origin:
            continue
        if step is None:
            break
        if key - (cuts[-1] if cuts else origin) >= step:
            cuts.append(key)
    bounds = [None, *cuts, None]
    spans, first = [], 0
    for start, end in zip(bounds, bounds[1:]):
        stop = len(index.pts) if end is None else bisect.bisect_left(index.pts, end)
        spans.append(Span(start, end, first, stop - first))
        first = stop
    return spans
