"""Interlaced sources: field order detection, the deinterlace modes' frame counts and timestamps,
comb energy against a progressive source of the same motion, progressive input untouched, mixed
sources named, segments deinterlaced as one pass.

Clips are 96x64: each interlaced frame interleaves two fields rendered at different times of a
moving box, flagged top (or bottom) field first with FFmpeg's setfield and coded interlaced by
libx264 (+ildct+ilme), so the decoder returns frames with interlaced_frame set.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np
import pytest

from rlfn_video import deinterlace, media
from rlfn_video.errors import RlfnError, UnsupportedInputError
from rlfn_video.segment_job import EncodeSettings
from rlfn_video.segments import index_video, plan_segments
from rlfn_video.transcode import upscale_video

from .conftest import NearestEngine

W, H, N, RATE = 96, 64, 10, 25
INTERLACED = av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me


def scene(t: float) -> np.ndarray:
    """RGB at time `t` (in fields): a bright box moving 3 px per field over a gradient."""
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([40 + y, 60 + x // 2, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    x0 = int(8 + 3 * t)
    rgb[(x >= x0) & (x < x0 + 20) & (y >= 16) & (y < 48)] = (230, 220, 200)
    return rgb


def woven(i: int, order: str) -> np.ndarray:
    """Frame `i` of an interlaced camera: the first field at time 2i, the second at 2i + 1."""
    first, second = scene(2 * i), scene(2 * i + 1)
    top, bottom = (first, second) if order == "tff" else (second, first)
    out = top.copy()
    out[1::2] = bottom[1::2]
    return out


def _flag(frame: av.VideoFrame, order: str) -> av.VideoFrame:
    """The frame flagged interlaced with this field order (PyAV has no setter: FFmpeg's setfield)."""
    graph = av.filter.Graph()
    src = graph.add_buffer(width=W, height=H, format=frame.format.name, time_base=frame.time_base)
    graph.link_nodes(src, graph.add("setfield", mode=order), graph.add("buffersink")).configure()
    graph.push(frame)
    return graph.pull()


def _yuv(rgb: np.ndarray, pts: int, time_base: Fraction) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace="ITU709",
                                                                      dst_color_range="MPEG", threads=1)
    frame.pts, frame.time_base = pts, time_base
    return frame


def _encoder(interlaced: bool, rate: int, gop: int) -> av.CodecContext:
    cc = av.CodecContext.create("libx264", "w")
    cc.width, cc.height, cc.pix_fmt = W, H, "yuv420p"
    cc.time_base, cc.framerate = Fraction(1, rate), rate
    cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709, limited range: tags to keep
    cc.color_range = 1
    cc.options = {"preset": "ultrafast", "crf": "10", "g": str(gop)}
    if interlaced:
        cc.flags = cc.flags | INTERLACED
    return cc


def make_clip(path: Path, parts: list[tuple[str, list[np.ndarray]]], rate: int = RATE, gop: int = 250) -> Path:
    """Write the parts ("tff", "bff" or "progressive", RGB frames) one after another into one
    stream, each part by its own encoder (a transport stream carries the headers in band, so a
    stream can change from progressive to interlaced like a broadcast)."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.codec_context.width, vs.codec_context.height, vs.codec_context.pix_fmt = W, H, "yuv420p"
        vs.time_base = Fraction(1, 90000) if path.suffix == ".ts" else Fraction(1, 12800)
        out.start_encoding()
        n = 0
        for order, frames in parts:
            cc = _encoder(order != "progressive", rate, gop)
            packets = []
            for rgb in frames:
                frame = _yuv(rgb, n, Fraction(1, rate))
                packets += cc.encode(frame if order == "progressive" else _flag(frame, order))
                n += 1
            for packet in packets + list(cc.encode(None)):
                packet.stream, packet.time_base = vs, Fraction(1, rate)
                out.mux(packet)
    return path


def interlaced_clip(path: Path, order: str = "tff", frames: int = N, gop: int = 250) -> Path:
    return make_clip(path, [(order, [woven(i, order) for i in range(frames)])], gop=gop)


def progressive_clip(path: Path, frames: int = N, fields: bool = False) -> Path:
    """The same motion filmed progressively: at each frame's first field time, or at every field's."""
    times = range(2 * frames) if fields else range(0, 2 * frames, 2)
    return make_clip(path, [("progressive", [scene(t) for t in times])], rate=2 * RATE if fields else RATE)


def decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def comb(frames: list[av.VideoFrame]) -> float:
    """Vertical high-frequency energy of Y: mean |row[i] - (row[i-1] + row[i+1]) / 2|."""
    ys = [f.to_ndarray(format="gray").astype(np.float64) for f in frames]
    return float(np.mean([np.abs(y[1:-1] - (y[:-2] + y[2:]) / 2).mean() for y in ys]))


def pictures(path: Path, **kw) -> tuple[media.Source, list[media.Picture]]:
    with media.Source(path, **kw) as source:
        return source, [p for p in source if isinstance(p, media.Picture)]


def upscale(src: Path, dst: Path, **kw):
    notes: list[str] = []
    report = upscale_video(src, dst, engine=NearestEngine(2), warn=notes.append, **kw)
    assert list(report.warnings) == notes
    return report, notes


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("interlaced")
    return {"tff": interlaced_clip(folder / "tff.mp4"), "bff": interlaced_clip(folder / "bff.mp4", "bff"),
            "progressive": progressive_clip(folder / "progressive.mp4"),
            "progressive50": progressive_clip(folder / "progressive50.mp4", fields=True)}


# --- detection ---------------------------------------------------------------------------------


def test_field_order_from_the_frames_flags(clips):
    tff, bff, prog = (media.probe(clips[k]) for k in ("tff", "bff", "progressive"))
    assert (tff.field_order, tff.mixed_fields, tff.notes) == ("tff", False, ())
    assert (prog.field_order, prog.mixed_fields, prog.notes) == ("progressive", False, ())
    # libx264 writes the stream's field order from its options (tff) but codes each frame by its flag
    assert (bff.field_order, bff.mixed_fields) == ("bff", False)
    assert bff.notes == ("the stream declares top field first but its frames are flagged bottom field first; "
                         "following the frames",)


def test_mixed_source_is_named(tmp_path):
    """A broadcast-like stream: 3 progressive frames, then interlaced ones (the stream says progressive)."""
    src = make_clip(tmp_path / "mixed.ts", [("progressive", [scene(2 * i) for i in range(3)]),
                                            ("tff", [woven(i, "tff") for i in range(3, N)])])
    info = media.probe(src)
    assert (info.field_order, info.mixed_fields) == ("tff", True)
    report, notes = upscale(src, tmp_path / "out.mp4")
    assert notes == [
        "mixed interlacing (telecined or hybrid source): 3 of the first 6 frames are flagged interlaced (top field "
        "first), the others progressive; the stream declares progressive video; deinterlacing only the frames "
        "flagged interlaced",
        "interlaced (top field first): deinterlaced with bwdif, one frame per frame: 10 -> 10 frames at 25 fps "
        "(7 of 10 flagged interlaced, the others passed through untouched)"]
    assert report.frames_in == report.frames_out == len(decoded(tmp_path / "out.mp4")) == N
    # the progressive frames are the decoder's own, the interlaced ones are not
    _, off = pictures(src)
    _, auto = pictures(src, deinterlace="auto")
    same = [all(np.array_equal(a, b) for a, b in zip(x.planes, y.planes)) for x, y in zip(off, auto)]
    assert same == [True] * 3 + [False] * 7
    assert [p.pts for p in auto] == [p.pts for p in off]


# --- modes: counts, timestamps, tags, notes ----------------------------------------------------


@pytest.mark.parametrize("mode", ["off", "auto", "frame", "field"])
def test_frame_counts_and_timestamps_follow_the_mode(clips, tmp_path, mode):
    dst = tmp_path / "out.mp4"
    report, notes = upscale(clips["tff"], dst, deinterlace=mode)
    out, src = decoded(dst), decoded(clips["tff"])
    per_field = mode == "field"
    assert report.frames_in == N and report.frames_out == len(out) == (2 * N if per_field else N)
    times = [f.pts * f.time_base for f in out]
    if per_field:
        assert times == [Fraction(k, 2 * RATE) for k in range(2 * N)]  # exact, one per field
        with av.open(str(dst)) as c:
            assert c.streams.video[0].average_rate == 2 * RATE
    else:
        assert times == [f.pts * f.time_base for f in src]
    assert not any(f.interlaced_frame for f in out) or mode == "off"
    tags = {(f.colorspace, f.color_range, f.color_primaries, f.color_trc) for f in out}
    assert tags == {(1, 1, 1, 1)}  # BT.709 limited range survives the filter graph
    done = {
        "off": "interlaced (top field first): 10 of 10 frames flagged interlaced, left as decoded with both fields "
               "woven together (deinterlace='off')",
        "auto": "interlaced (top field first): deinterlaced with bwdif, one frame per frame: 10 -> 10 frames at 25 fps",
        "field": "interlaced (top field first): deinterlaced with bwdif, one frame per field: 10 -> 20 frames at "
                 "50 fps"}
    assert notes == [done.get(mode, done["auto"])]


def test_bottom_field_first_field_order_in_time(clips):
    """Field mode follows the flags: the first output of each frame shows its first field (time 2i)."""
    _, pics = pictures(clips["bff"], deinterlace="field")
    _, ref = pictures(clips["progressive50"])
    assert len(pics) == len(ref) == 2 * N
    # each field frame is nearest (in Y) to the progressive frame of the same time
    for k, p in enumerate(pics):
        errs = [np.abs(p.planes[0].astype(int) - r.planes[0].astype(int)).mean() for r in ref]
        assert int(np.argmin(errs)) == k


def test_comb_energy_like_a_progressive_source(clips, tmp_path):
    outs = {}
    for name, src, mode in [("off", "tff", "off"), ("frame", "tff", "auto"), ("field", "tff", "field"),
                            ("progressive", "progressive", "auto"), ("progressive50", "progressive50", "auto")]:
        upscale(clips[src], tmp_path / f"{name}.mp4", deinterlace=mode)
        outs[name] = comb(decoded(tmp_path / f"{name}.mp4"))
    assert outs["off"] > 3 * outs["progressive"], outs
    assert outs["frame"] < 1.25 * outs["progressive"], outs
    assert outs["field"] < 1.25 * outs["progressive50"], outs


def test_progressive_input_is_untouched(clips, tmp_path):
    for mode in ("auto", "frame", "field"):
        source, pics = pictures(clips["progressive"], deinterlace=mode)
        _, plain = pictures(clips["progressive"])
        if mode == "field":  # asked for: every frame as two fields (top first: no flags, no declared order)
            assert len(pics) == 2 * N and "deinterlacing as top field first" in source.info.notes[-1]
            continue
        assert [p.pts for p in pics] == [p.pts for p in plain] and source.info.notes == ()
        assert all(np.array_equal(a, b) for x, y in zip(pics, plain) for a, b in zip(x.planes, y.planes))
    off, _ = upscale(clips["progressive"], tmp_path / "off.mp4", deinterlace="off")
    auto, notes = upscale(clips["progressive"], tmp_path / "auto.mp4")
    assert notes == []
    _, frame_notes = upscale(clips["progressive"], tmp_path / "frame.mp4", deinterlace="frame")
    assert frame_notes == ["deinterlace='frame': no frame is flagged interlaced; nothing was deinterlaced"]
    planes = [[bytes(p) for p in f.planes] for f in decoded(tmp_path / "off.mp4")]
    assert planes == [[bytes(p) for p in f.planes] for f in decoded(tmp_path / "auto.mp4")]


def test_field_mode_with_a_range_starts_at_zero(clips):
    source, pics = pictures(clips["tff"], deinterlace="field", start=0.2, frames=3)
    assert [p.pts * p.time_base for p in pics] == [Fraction(k, 2 * RATE) for k in range(6)]
    assert source.total == 6 and source.info.rate == 2 * RATE
    # the same fields as a whole pass (frame 4 has its neighbour, frame 5 was decoded past the range)
    _, whole = pictures(clips["tff"], deinterlace="field")
    assert all(np.array_equal(a, b) for x, y in zip(pics, whole[10:16]) for a, b in zip(x.planes, y.planes))


def test_one_field_frame_gets_two_timestamps(tmp_path):
    """FFmpeg gives the last frame's second field the first one's pts when there is no frame before."""
    src = interlaced_clip(tmp_path / "one.mp4", frames=1)
    _, pics = pictures(src, deinterlace="field")
    assert [p.pts * p.time_base for p in pics] == [0, Fraction(1, 2 * RATE)]


# --- segments, filters, errors -----------------------------------------------------------------


def test_segments_deinterlace_like_one_pass(tmp_path):
    src = interlaced_clip(tmp_path / "gop.mp4", frames=12, gop=4)
    spans = plan_segments(index_video(src), 0.1)
    assert len(spans) == 3
    _, whole = pictures(src, deinterlace="frame")
    pieces = [p for span in spans for p in pictures(src, span=span, deinterlace="frame")[1]]
    assert [(p.pts, p.index) for p in pieces] == [(p.pts, p.index) for p in whole]
    assert all(np.array_equal(a, b) for x, y in zip(pieces, whole) for a, b in zip(x.planes, y.planes))
    with pytest.raises(UnsupportedInputError, match="cannot run in segments"):
        EncodeSettings(deinterlace="field")


def test_yadif_where_bwdif_is_missing(clips, monkeypatch):
    monkeypatch.setattr(deinterlace, "FILTERS", ("no-such-filter", "yadif"))
    source, pics = pictures(clips["tff"], deinterlace="field")
    assert len(pics) == 2 * N and source.summary()[0].startswith("interlaced (top field first): deinterlaced with "
                                                                 "yadif, one frame per field")
    monkeypatch.setattr(deinterlace, "FILTERS", ("no-such-filter",))
    with pytest.raises(UnsupportedInputError, match="neither bwdif nor yadif"):
        media.Source(clips["tff"], deinterlace="frame")
    source, pics = pictures(clips["tff"], deinterlace="auto")
    assert len(pics) == N and "neither bwdif nor yadif" in source.summary()[0]


def test_unknown_mode_is_one_line(clips, tmp_path):
    with pytest.raises(UnsupportedInputError, match="^deinterlace must be one of auto, off, frame, field; got 'yes'$"):
        upscale_video(clips["tff"], tmp_path / "out.mp4", engine=NearestEngine(2), deinterlace="yes")
    assert issubclass(UnsupportedInputError, RlfnError) and not (tmp_path / "out.mp4").exists()
