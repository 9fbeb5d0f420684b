"""A frame range (start, frames / duration): the frames kept, output times from 0, audio and
subtitle packets cut to the same window, the output's duration, and malformed ranges refused."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from rlfn_video import media
from rlfn_video.errors import RlfnError, UnsupportedInputError
from rlfn_video.transcode import upscale_video

from .conftest import NearestEngine, leftovers, make_clip
from .shared import VIDEOS

CUP = VIDEOS / "cup.mp4"  # 640x480 h264 (26.78 fps) with AAC audio
AUDIO_PACKET = 1024 / 8000  # seconds in one AAC packet of the generated clips


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """3 s at 10 fps, B-frames and a keyframe every second, AAC audio (1024-sample packets at 8 kHz)."""
    return make_clip(tmp_path_factory.mktemp("range") / "in.mp4", frames=30, audio="aac",
                     options={"g": "10", "preset": "fast"})


def pictures(path: Path, **kw) -> list[media.Picture]:
    with media.Source(path, **kw) as source:
        return [p for p in source if isinstance(p, media.Picture)]


def same_planes(a: media.Picture, b: media.Picture) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.planes, b.planes))


def video_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[tuple[Fraction, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts * p.time_base, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.dts is not None]


def duration(path: Path) -> float:
    with av.open(str(path)) as c:
        return c.duration / 1_000_000


def upscale(src: Path, dst: Path, **kw):
    notes: list[str] = []
    calls: list[tuple[int, int | None]] = []
    report = upscale_video(src, dst, engine=NearestEngine(2), warn=notes.append,
                           progress=lambda d, t: calls.append((d, t)), **kw)
    return report, notes, calls


def test_start_and_frames(clip, tmp_path):
    dst = tmp_path / "out.mp4"
    report, notes, calls = upscale(clip, dst, start=1.25, frames=8)
    assert report.frames_in == report.frames_out == 8 and calls[-1] == (8, 8) and notes == []
    assert video_times(dst) == [Fraction(k, 10) for k in range(8)]  # from 1.3 s, shifted to 0
    # the very frames a whole decode gives from 1.3 s on (seeking to the keyframe at 1.0 s)
    whole, piece = pictures(clip), pictures(clip, start=1.25, frames=8)
    assert all(same_planes(a, b) for a, b in zip(piece, whole[13:21], strict=True))
    # audio: the input's packets that start inside [1.3, 2.1), copied, shifted by the same 1.3 s
    want = [(t - Fraction(13, 10), data) for t, data in audio_packets(clip) if Fraction(13, 10) <= t < Fraction(21, 10)]
    got = audio_packets(dst)
    assert got == want and all(0 <= t < Fraction(8, 10) for t, _ in got)
    assert 0.8 <= duration(dst) < 0.8 + AUDIO_PACKET  # the last audio packet may end past the last frame
    assert leftovers(tmp_path) == []


def test_start_and_duration(clip, tmp_path):
    dst = tmp_path / "out.mp4"
    report, _, calls = upscale(clip, dst, start=0.5, duration=1.0)
    assert report.frames_out == 10 and calls[-1] == (10, 10)
    assert video_times(dst) == [Fraction(k, 10) for k in range(10)]
    got = audio_packets(dst)
    assert got and all(0 <= t < 1 for t, _ in got)
    assert [d for _, d in got] == [d for t, d in audio_packets(clip) if Fraction(1, 2) <= t < Fraction(3, 2)]
    assert 1.0 <= duration(dst) < 1.0 + AUDIO_PACKET


def test_frames_alone_keep_the_input_times(clip, tmp_path):
    """No start: the first frames, times as in the input; audio up to the end of the last frame."""
    dst = tmp_path / "out.mp4"
    report, _, _ = upscale(clip, dst, frames=5)
    assert report.frames_out == 5 and video_times(dst) == video_times(clip)[:5]
    assert audio_packets(dst) == [(t, d) for t, d in audio_packets(clip) if t < Fraction(1, 2)]  # priming kept


def test_a_range_past_the_last_frames_says_so(clip, tmp_path):
    report, notes, _ = upscale(clip, tmp_path / "out.mp4", start=2.5, frames=50)
    assert report.frames_out == 5 and notes == ["the video ends after 5 of the 50 frames asked for"]


def test_subtitles_cut_to_the_window(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=30, subtitles=["Hello", "World", "Three"])
    dst = tmp_path / "out.mkv"
    upscale(src, dst, start=1.2, duration=1.5)
    with av.open(str(dst)) as c:
        s = c.streams.subtitles[0]
        cues = [(p.pts * p.time_base, p.duration * p.time_base, s.decode2(p)) for p in c.demux(s) if p.size]
    texts = [re.sub(r"\{[^}]*\}", "", r.dialogue.decode()) for _, _, sub in cues for r in sub]
    assert texts == ["World", "Three"]
    assert [(t, d) for t, d, _ in cues] == [(0, Fraction(3, 10)), (Fraction(8, 10), Fraction(1, 2))]  # World: 1.2-1.5


@pytest.mark.parametrize("kw, message", [
    (dict(start=-1.0), "start must be 0 or more seconds, got -1.0"),
    (dict(start=float("nan")), "start must be 0 or more seconds, got nan"),
    (dict(frames=0), "frames must be a whole number of at least 1, got 0"),
    (dict(frames=2.5), "frames must be a whole number of at least 1, got 2.5"),
    (dict(duration=0), "duration must be more than 0 seconds, got 0"),
    (dict(frames=5, duration=1.0), "give frames or duration, not both"),
    (dict(frames=5, max_frames=5), "give frames or max_frames, not both"),
    (dict(start=10.0), r"start 10s is past the end of the video \(3.00s\)"),
    (dict(start=2.95), "start 2.95s is past the last frame"),
])
def test_malformed_ranges_are_refused_in_one_line(clip, tmp_path, kw, message):
    with pytest.raises(UnsupportedInputError, match=message) as err:
        upscale(clip, tmp_path / "out.mp4", **kw)
    assert "\n" not in str(err.value) and isinstance(err.value, RlfnError) and isinstance(err.value, ValueError)
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_a_range_with_a_segment_span_is_refused(clip):
    with pytest.raises(UnsupportedInputError, match="cannot be combined with a segment span"):
        media.Source(clip, span=media.Span(None, None, 0, None), frames=3)


@pytest.mark.skipif(not CUP.is_file(), reason=f"test clip not found at {CUP}")
def test_real_clip_piece(tmp_path):
    dst = tmp_path / "out.mp4"
    report, _, calls = upscale(CUP, dst, start=2.0, frames=6)
    assert report.frames_out == 6 and calls[-1] == (6, 6)
    times = video_times(dst)
    assert times[0] == 0 and len(times) == 6 and times == sorted(times)
    whole = pictures(CUP)
    first = next(i for i, p in enumerate(whole) if p.pts * p.time_base >= 2)
    piece = pictures(CUP, start=2.0, frames=6)
    assert all(same_planes(a, b) for a, b in zip(piece, whole[first:first + 6], strict=True))
    t0 = whole[first].pts * whole[first].time_base
    end = whole[first + 5].pts * whole[first + 5].time_base - t0 + Fraction(1000, 26777)
    got = audio_packets(dst)
    assert got and all(0 <= t < end for t, _ in got) and got[0][0] < Fraction(1, 20)
    assert [d for _, d in got] == [d for t, d in audio_packets(CUP) if t0 <= t < t0 + end]
    assert abs(duration(dst) - float(end)) < 0.05
