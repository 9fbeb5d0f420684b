"""media.py and encode.py: probing, exact decoding to planes, bad inputs, encoder planning,
atomic output. (Writing itself is exercised end to end in test_transcode.py.)"""

from __future__ import annotations

import os
import runpy
import stat
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from rlfn_video import atomic, encode, media
from rlfn_video.colour import Matrix
from rlfn_video.errors import EncoderError, OutputError, TruncatedInputError, UnsupportedInputError

from .conftest import leftovers, make_clip, pattern


def reference_planes(index: int, size: tuple[int, int], pix_fmt: str) -> list[np.ndarray]:
    """The planes make_clip encodes for frame `index` (swscale, BT.601 limited)."""
    frame = av.VideoFrame.from_ndarray(pattern(index, *size), format="rgb24")
    frame = frame.reformat(format=pix_fmt, dst_colorspace="ITU601", dst_color_range="MPEG", threads=1)
    dtype = np.dtype("<u2") if "10le" in pix_fmt else np.dtype(np.uint8)
    return [media.plane_view(p, dtype).copy() for p in frame.planes[:3]]


def pictures(path, **kw) -> tuple[media.VideoInfo, list[media.Picture]]:
    with media.Source(path, **kw) as source:
        return source.info, [x for x in source if isinstance(x, media.Picture)]


@pytest.mark.parametrize("pix_fmt, size", [("yuv420p", (64, 48)), ("yuv420p", (33, 25)), ("yuv422p10le", (33, 25)),
                                           ("yuv444p", (20, 14))])
def test_planar_formats_decode_exactly(tmp_path, pix_fmt, size):
    path = make_clip(tmp_path / "in.mkv", codec="ffv1", pix_fmt=pix_fmt, size=size, frames=3)  # lossless
    info, pics = pictures(path)
    assert (info.decode_format, info.width, info.height) == (pix_fmt, *size)
    assert info.decode_path.endswith("(direct)")
    assert info.colour.bit_depth == (10 if "10" in pix_fmt else 8)
    assert [p.index for p in pics] == [0, 1, 2]
    for pic in pics:
        ref = reference_planes(pic.index, size, pix_fmt)
        assert [p.shape for p in pic.planes] == [r.shape for r in ref]
        assert all(p.dtype == r.dtype and np.array_equal(p, r) for p, r in zip(pic.planes, ref))
    w, h = size
    chroma = {"yuv420p": ((h + 1) // 2, (w + 1) // 2), "yuv422p10le": (h, (w + 1) // 2), "yuv444p": (h, w)}
    assert pics[0].planes[1].shape == chroma[pix_fmt]
    # views of the decoder's frames, not copies; the frame's colour travels with each
    assert not any(p.flags.owndata for pic in pics for p in pic.planes)
    assert all(pic.colour == info.colour for pic in pics)


def test_semi_planar_is_repacked_losslessly(tmp_path):
    path = make_clip(tmp_path / "nv12.mkv", codec="rawvideo", pix_fmt="nv12", frames=2)
    info, pics = pictures(path)
    assert info.pix_fmt == "nv12" and info.decode_format == "yuv420p"
    assert info.decode_path.endswith("(swscale)")
    for pic in pics:
        frame = av.VideoFrame.from_ndarray(pattern(pic.index, 64, 48), format="rgb24")
        frame = frame.reformat(format="nv12", dst_colorspace="ITU601", dst_color_range="MPEG", threads=1)
        y, uv = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :64] for p in frame.planes)
        assert np.array_equal(pic.planes[0], y)
        assert np.array_equal(pic.planes[1], uv[:, 0::2]) and np.array_equal(pic.planes[2], uv[:, 1::2])


def test_rgb_source_decodes_to_gbr_planes(tmp_path):
    path = make_clip(tmp_path / "rgb.mkv", codec="ffv1", pix_fmt="bgr0", size=(33, 25), frames=2)
    info, pics = pictures(path)
    assert info.decode_format == "gbrp" and info.colour.matrix is Matrix.RGB and info.colour.full_range
    g, b, r = pics[1].planes
    assert np.array_equal(np.stack([r, g, b], -1), pattern(1, 33, 25))


def test_jpeg_range_formats_are_read_as_full_range(tmp_path):
    path = make_clip(tmp_path / "mjpeg.mkv", codec="mjpeg", pix_fmt="yuvj420p", frames=2, full_range=True)
    info, pics = pictures(path)
    assert info.decode_format == "yuvj420p" and info.colour.full_range and info.decode_path.endswith("(direct)")
    assert pics[0].planes[0].shape == (48, 64)


def test_info_tags_rotation_and_other_streams(tmp_path):
    path = make_clip(tmp_path / "in.mp4", matrix="bt709", audio="aac", subtitles=["hi"], rotation=90, frames=5)
    info, pics = pictures(path)
    assert info.colour.matrix is Matrix.BT709 and info.colour.guessed == ()
    assert (info.colour.colorspace, info.colour.primaries, info.colour.transfer) == (1, 1, 1)
    assert (info.frames, info.rate, info.duration) == (5, Fraction(10), pytest.approx(0.5))
    assert av.VideoFrame(2, 2).rotation == 0
    with av.open(str(path)) as c:
        assert next(c.decode(video=0)).rotation == 90
    assert info.display_matrix is not None and info.display_matrix[8] == 1 << 30
    with media.Source(path) as source:
        assert [s.type for s in source.carry] == ["audio", "subtitle"]
        kinds = {x.stream.type for x in source if isinstance(x, av.Packet)}
    assert kinds == {"audio", "subtitle"}


def test_legacy_rotate_tag_matches_ffmpegs_display_matrix(tmp_path):
    """`rotate=90` (clockwise) is FFmpeg's counter-clockwise -90: the matrix must say the same."""
    path = make_clip(tmp_path / "in.mp4", rotation=-90, frames=1)
    assert media.probe(path).display_matrix == media._rotation_matrix(90)


def test_vfr_pts_are_the_containers(tmp_path):
    pts = [0, 100, 250, 300, 700, 750]
    path = make_clip(tmp_path / "vfr.mkv", pts=pts, frames=len(pts))
    info, pics = pictures(path)
    assert info.time_base == Fraction(1, 1000)
    assert [p.pts for p in pics] == pts and {p.time_base for p in pics} == {Fraction(1, 1000)}


def test_max_frames_stops_early_without_complaint(tmp_path):
    path = make_clip(tmp_path / "in.mkv", frames=8)
    _, pics = pictures(path, max_frames=3)
    assert len(pics) == 3


def _audio_only(path):
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(a.encode(frame))
        out.mux(a.encode())


def _no_frames(path):
    with av.open(str(path), "w") as out:
        vs = out.add_stream("ffv1", rate=10)
        vs.width, vs.height = 16, 16
        out.start_encoding()


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "not a regular file"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("just some notes, not a video\n" * 20), "not a media file"),
    (_audio_only, "no video stream .*audio aac"),
    (_no_frames, "no decodable frames"),
], ids=["missing", "folder", "zero-length", "text-renamed", "audio-only", "no-frames"])
def test_bad_inputs_are_refused_with_one_clear_line(tmp_path, make, message):
    path = tmp_path / ("in.avi" if make is _no_frames else "in.mp4")  # AVI keeps an empty video track
    make(path)
    with pytest.raises(UnsupportedInputError, match=message) as err:
        media.Source(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def _cut(path, fraction=0.5):
    data = path.read_bytes()
    cut = path.with_name("cut" + path.suffix)
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


@pytest.mark.parametrize("name, options", [("in.mkv", None), ("in.mp4", {"movflags": "faststart"})])
def test_truncated_file_yields_its_frames_then_raises(tmp_path, name, options):
    """Matroska and faststart MP4 keep their index/length up front: frames before the cut decode."""
    path = make_clip(tmp_path / name, frames=20, audio="aac", options=None)
    if options:  # remux with the index first
        fast = tmp_path / ("fast" + path.suffix)
        with av.open(str(path)) as src, av.open(str(fast), "w", options=options) as dst:
            streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
            for packet in src.demux():
                if packet.dts is not None:
                    packet.stream = streams[packet.stream.index]
                    dst.mux(packet)
        path = fast
    source = media.Source(_cut(path))
    got = []
    with source, pytest.raises(TruncatedInputError, match=r"stopped after (\d+) frames at t=") as err:
        got.extend(x for x in source if isinstance(x, media.Picture))
    assert 0 < len(got) < 20 and f"after {len(got)} frames" in str(err.value)


def test_cut_mp4_without_index_is_reported_as_truncated(tmp_path):
    """A plain MP4 writes 'moov' last: cut in half, nothing can be decoded at all."""
    cut = _cut(make_clip(tmp_path / "in.mp4", frames=20))
    with pytest.raises(TruncatedInputError, match="moov"):
        media.Source(cut)


# ---------------------------------------------------------------------------------------------
# Encoder planning


def info_for(tmp_path, **kw) -> media.VideoInfo:
    path = make_clip(tmp_path / "in.mkv", codec="ffv1", frames=1, **kw)
    return pictures(path)[0]


@pytest.mark.parametrize("pix_fmt, scale, codec, expected, warns", [
    ("yuv420p", 2, "libx264", "yuv420p", False),
    ("yuv420p10le", 2, "libx264", "yuv420p10le", False),
    ("yuv420p10le", 2, "libsvtav1", "yuv420p10le", False),
    ("yuv420p10le", 2, "mpeg4", "yuv420p", True),  # 8-bit only codec
    ("yuv420p", 3, "libx264", "yuv444p", True),  # odd output: 4:4:4 rather than resizing
    ("yuv422p10le", 3, "libx264", "yuv444p10le", True),
    ("yuv444p", 3, "libx264", "yuv444p", False),
    ("bgr0", 2, "libx264", "yuv444p", True),  # RGB into a Y'CbCr-only encoder
    ("bgr0", 3, "ffv1", "bgr0", False),  # ffv1 has no 8-bit gbrp: its packed twin
    ("bgr0", 2, "libx265", "gbrp", False),
])
def test_plan_pixel_format(tmp_path, pix_fmt, scale, codec, expected, warns):
    info = info_for(tmp_path, pix_fmt=pix_fmt, size=(33, 25))
    notes = []
    plan = encode.plan_video(info, width=33 * scale, height=25 * scale, codec=codec, warn=notes.append)
    assert plan.pix_fmt == expected and bool(notes) == warns, notes
    assert (plan.width, plan.height) == (33 * scale, 25 * scale)
    if pix_fmt == "bgr0" and codec == "libx264":
        assert plan.colour.matrix is Matrix.BT601 and plan.colour.colorspace == 6 and not plan.colour.full_range


@pytest.mark.parametrize("kw, message", [
    (dict(codec="no_such_codec"), "not in this FFmpeg build"),
    (dict(codec="aac"), "audio encoder"),
    (dict(codec="ffv1", crf=18), "no 'crf' option"),
    (dict(codec="libx264", pix_fmt="gbrp"), "cannot encode gbrp"),
    (dict(codec="libx264", pix_fmt="yuv420p"), "needs even dimensions"),
    (dict(codec="libsvtav1"), "no pixel format for a 99x75"),
])
def test_plan_refuses(tmp_path, kw, message):
    info = info_for(tmp_path, size=(33, 25))
    with pytest.raises(EncoderError, match=message):
        encode.plan_video(info, width=99, height=75, **kw)


def test_plan_refuses_frames_too_narrow_for_libx265(tmp_path):
    info = info_for(tmp_path, size=(32, 32))
    with pytest.raises(EncoderError, match="libx265 is unreliable on frames under 66 px wide.*64x64"):
        encode.plan_video(info, width=64, height=64, codec="libx265")
    assert encode.plan_video(info, width=66, height=64, codec="libx265").width == 66
    assert encode.plan_video(info, width=64, height=64, codec="libx264").width == 64


def test_plan_passes_options(tmp_path):
    plan = encode.plan_video(info_for(tmp_path), width=128, height=96, crf=20, preset="veryfast")
    assert plan.options == {"crf": "20", "preset": "veryfast"}


# ---------------------------------------------------------------------------------------------
# Atomic output


def test_atomic_output_commits_or_cleans_up(tmp_path):
    dst = tmp_path / "out.mp4"
    with atomic.atomic_output(dst) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".out.mp4.part-")
        tmp.write_bytes(b"done")
    assert dst.read_bytes() == b"done" and leftovers(tmp_path) == []
    assert stat.S_IMODE(dst.stat().st_mode) == 0o666 & ~_umask()
    for exc in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(exc), atomic.atomic_output(dst, overwrite=True) as tmp:
            tmp.write_bytes(b"half")
            raise exc()
        assert dst.read_bytes() == b"done" and leftovers(tmp_path) == []


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write in"):
        with atomic.atomic_output(blocker / "out.mp4"):
            pytest.fail("must not get here")
    with pytest.raises(OutputError, match="cannot write in"):
        with atomic.atomic_output(tmp_path / "missing" / "out.mp4"):
            pytest.fail("must not get here")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="cannot write in"):
            with atomic.atomic_output(folder / "out.mp4"):
                pass
    finally:
        folder.chmod(0o755)


def test_check_output(tmp_path):
    src = tmp_path / "in.mp4"
    src.write_bytes(b"x")
    (tmp_path / "link.mp4").symlink_to(src)
    os.link(src, tmp_path / "hard.mp4")
    for same in (src, tmp_path / "link.mp4", tmp_path / "hard.mp4", tmp_path / "." / "in.mp4"):
        with pytest.raises(OutputError, match="is the input"):
            atomic.check_output(src, same, overwrite=True)
    (tmp_path / "out.mp4").write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists"):
        atomic.check_output(src, tmp_path / "out.mp4")
    atomic.check_output(src, tmp_path / "out.mp4", overwrite=True)
    with pytest.raises(OutputError, match="is a folder"):
        atomic.check_output(src, tmp_path, overwrite=True)


def test_make_sample_example(tmp_path):
    """examples/make_sample.py (the README quickstart) writes a tagged clip with sound."""
    script = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "make_sample.py"))
    script["main"](str(tmp_path / "sample.mp4"))
    with media.Source(tmp_path / "sample.mp4") as source:
        info = source.info
        assert [s.type for s in source.carry] == ["audio"]
    assert (info.width, info.height, info.frames, info.rate) == (320, 180, 100, 25)
    assert info.colour.matrix is Matrix.BT709 and info.colour.guessed == ()
