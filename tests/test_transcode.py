"""upscale_video end to end on tiny clips: what comes out is re-opened and checked against the input."""

from __future__ import annotations

import re
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from rlfn_video import encode
from rlfn_video.errors import (EncoderError, OutputError, RlfnError, TruncatedInputError,
                               UnsupportedInputError)
from rlfn_video.transcode import upscale_video

from .conftest import NearestEngine, leftovers, make_clip
from .shared import VIDEOS, needs_videos


def upscale(src, dst, **kw):
    kw.setdefault("engine", NearestEngine(2))
    return upscale_video(src, dst, **kw)


def frames_of(path, limit=None):
    with av.open(str(path)) as c:
        out = []
        for f in c.decode(video=0):
            out.append(f)
            if limit and len(out) == limit:
                break
        return out


def times(frames) -> list[Fraction]:
    return [f.pts * f.time_base for f in frames]


def packets(path, kind: str) -> list[bytes]:
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        return [bytes(p) for p in c.demux(*streams) if p.dts is not None] if streams else []


def subtitle_texts(path) -> list[str]:
    with av.open(str(path)) as c:
        s = c.streams.subtitles[0]
        texts = [r.dialogue.decode() for p in c.demux(s) if p.dts is not None and p.size
                 for sub in [s.decode2(p)] if sub is not None for r in sub]
    return [re.sub(r"\{[^}]*\}", "", t) for t in texts]  # without ASS style overrides


def no_workers() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("rlfn-")]


@pytest.mark.parametrize("src_ext, dst_ext, note", [
    (".mp4", ".mp4", None),
    (".mp4", ".mkv", "matroska cannot hold subtitle stream #2 (mov_text); converting it to subrip"),
    (".mkv", ".mp4", "mp4 cannot hold subtitle stream #2 (srt); converting it to mov_text"),
])
def test_frames_timing_audio_subtitles_tags(tmp_path, src_ext, dst_ext, note):
    src = make_clip(tmp_path / f"in{src_ext}", matrix="bt709", audio="aac", subtitles=["Hello", "World"],
                    metadata={"title": "holiday"})
    dst = tmp_path / f"out{dst_ext}"
    calls, notes = [], []
    report = upscale(src, dst, progress=lambda d, t: calls.append((d, t)), warn=notes.append)
    ins, outs = frames_of(src), frames_of(dst)
    assert report.frames_in == report.frames_out == len(ins) == len(outs) == 8
    assert calls == [(i, 8 if src_ext == ".mp4" else None) for i in range(1, 9)]  # Matroska has no count
    assert {(f.width, f.height) for f in outs} == {(128, 96)} and report.size_out == (128, 96)
    assert times(outs) == times(ins)
    assert packets(dst, "audio") == packets(src, "audio")  # copied packet for packet
    assert subtitle_texts(dst) == ["Hello", "World"]
    if note is None:
        assert packets(dst, "subtitle") == packets(src, "subtitle")
    assert notes == ([note] if note else []) and report.warnings == tuple(notes)
    tags = (outs[0].colorspace, outs[0].color_range, outs[0].color_primaries, outs[0].color_trc)
    assert tags == (ins[0].colorspace, ins[0].color_range, ins[0].color_primaries, ins[0].color_trc) == (1, 1, 1, 1)
    with av.open(str(dst)) as c:
        assert c.metadata.get("title") == "holiday"
    assert report.decode_path == "h264 yuv420p -> yuv420p (direct)"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_variable_frame_rate_keeps_every_timestamp(tmp_path, ext):
    pts = [0, 100, 250, 300, 700, 750, 1400]
    src = make_clip(tmp_path / f"in{ext}", pts=pts, frames=len(pts))
    dst = tmp_path / f"out{ext}"
    upscale(src, dst)
    assert times(frames_of(dst)) == [Fraction(p, 1000) for p in pts]


@pytest.mark.parametrize("matrix, other", [("bt601", "bt709"), ("bt709", "bt601")])
def test_flat_colour_survives(tmp_path, matrix, other):
    """The engine must see the true RGB, and the output decoded by its tags must show it too."""
    rgb = np.array([200, 60, 40])  # saturated: BT.601 and BT.709 disagree by ~10 levels here
    src = make_clip(tmp_path / "in.mkv", matrix=matrix, colour=rgb, frames=3)
    engine = NearestEngine(2)
    upscale(src, tmp_path / "out.mkv", engine=engine)
    seen = np.array([t.tolist() for t in engine.inputs]) * 255
    assert np.abs(seen - rgb).max() < 2.5, seen
    out = frames_of(tmp_path / "out.mkv")[-1]
    sws = {"bt601": "ITU601", "bt709": "ITU709"}
    assert out.colorspace == {"bt601": 6, "bt709": 1}[matrix]

    def shown(m):
        return out.to_ndarray(format="rgb24", src_colorspace=sws[m], src_color_range="MPEG")[8:-8, 8:-8]

    assert np.abs(shown(matrix).astype(int) - rgb).max() <= 3
    assert np.abs(shown(other).astype(int) - rgb).max() >= 8  # the patch does tell the matrices apart


def test_untagged_input_gets_tagged_output(tmp_path):
    """Untagged 64x48 is read as BT.601; x4 would look HD to a player, so the output says BT.601."""
    src = make_clip(tmp_path / "in.mp4", frames=2)
    report = upscale(src, tmp_path / "out.mp4", engine=NearestEngine(4))
    out = frames_of(tmp_path / "out.mp4")[0]
    assert (out.colorspace, out.color_range, out.color_primaries, out.color_trc) == (6, 1, 6, 6)
    assert "matrix" in report.colour_in.guessed


def test_ten_bit_in_ten_bit_out(tmp_path):
    src = make_clip(tmp_path / "in.mkv", codec="ffv1", pix_fmt="yuv420p10le", frames=3)
    report = upscale(src, tmp_path / "out.mkv")
    assert report.pix_fmt == "yuv420p10le"
    assert {f.format.name for f in frames_of(tmp_path / "out.mkv")} == {"yuv420p10le"}


def test_odd_size_keeps_exact_size_with_444(tmp_path):
    src = make_clip(tmp_path / "in.mkv", codec="ffv1", size=(33, 25), frames=3)
    notes = []
    upscale(src, tmp_path / "x3.mkv", engine=NearestEngine(3), warn=notes.append)
    out = frames_of(tmp_path / "x3.mkv")
    assert {(f.width, f.height, f.format.name) for f in out} == {(99, 75, "yuv444p")} and len(out) == 3
    assert len(notes) == 1 and "odd size 99x75" in notes[0]
    notes.clear()
    upscale(src, tmp_path / "x2.mkv", warn=notes.append)
    assert {(f.width, f.height, f.format.name) for f in frames_of(tmp_path / "x2.mkv")} == {(66, 50, "yuv420p")}
    assert notes == []


def test_rotation_kept(tmp_path):
    src = make_clip(tmp_path / "in.mp4", rotation=90, frames=2)
    upscale(src, tmp_path / "out.mp4")
    assert frames_of(tmp_path / "out.mp4")[0].rotation == 90


def test_audio_reencoded_when_container_cannot_hold_it(tmp_path):
    src = make_clip(tmp_path / "in.mov", audio="pcm_alaw", frames=10)
    notes = []
    upscale(src, tmp_path / "out.mp4", warn=notes.append)
    assert notes == ["mp4 cannot hold audio stream #1 (pcm_alaw); re-encoding it to aac"]
    with av.open(str(tmp_path / "out.mp4")) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac"
        samples = sum(f.samples for f in c.decode(a))
    assert abs(samples - 8000) <= 2048  # 1 s of audio, give or take the AAC priming frames


@pytest.mark.parametrize("name", ["in.mkv", "in.mp4"])
def test_truncated_input_processes_then_raises_and_leaves_nothing(tmp_path, name):
    """Matroska cut in half: frames before the cut are upscaled, then the error. A plain MP4 cut
    in half has lost its index ('moov' is written last): it fails before any frame."""
    full = make_clip(tmp_path / name, frames=20, audio="aac")
    cut = tmp_path / f"cut{full.suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    done = []
    with pytest.raises(TruncatedInputError, match="stopped after") as err:
        upscale(cut, tmp_path / "out.mkv", progress=lambda d, t: done.append(d))
    if name == "in.mkv":
        assert 0 < len(done) < 20 and f"after {len(done)} frames" in str(err.value)
    else:
        assert done == [] and "moov" in str(err.value)
    assert not (tmp_path / "out.mkv").exists() and leftovers(tmp_path) == [] and no_workers()


def test_bad_input_leaves_nothing(tmp_path):
    with pytest.raises(UnsupportedInputError, match="no such file"):
        upscale(tmp_path / "missing.mp4", tmp_path / "out.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with pytest.raises(UnsupportedInputError, match="not a media file"):
        upscale(text, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["exists", "same", "folder-is-file", "no-codec", "bad-container", "unknown-ext"])
def test_output_refusals_leave_nothing(tmp_path, case):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    dst, kw, error = tmp_path / "out.mp4", {}, OutputError
    if case == "exists":
        dst.write_bytes(b"keep me")
    elif case == "same":
        dst, kw = src, {"overwrite": True}
    elif case == "folder-is-file":
        (tmp_path / "file").write_text("x")
        dst = tmp_path / "file" / "out.mp4"
    elif case == "no-codec":
        kw, error = {"codec": "libnothing"}, EncoderError
    elif case == "bad-container":
        dst, error = tmp_path / "out.webm", EncoderError  # WebM holds no H.264
    else:
        dst = tmp_path / "out.xyz"
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(error) as err:
        upscale(src, dst, **kw)
    assert isinstance(err.value, RlfnError) and "\n" not in str(err.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_overwrite_replaces_atomically(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"old")
    upscale(src, dst, overwrite=True)
    assert len(frames_of(dst)) == 2 and leftovers(tmp_path) == []


def test_ctrl_c_mid_run_leaves_no_file(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=20, audio="aac")

    def progress(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale(src, tmp_path / "out.mp4", progress=progress)
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == [] and no_workers()


def test_engine_error_mid_run_propagates(tmp_path):
    class Flaky(NearestEngine):
        def __call__(self, rgb):
            if len(self.inputs) == 4:
                raise RuntimeError("CUDA out of memory (simulated)")
            return super().__call__(rgb)

    src = make_clip(tmp_path / "in.mp4", frames=10)
    with pytest.raises(RuntimeError, match="simulated"):
        upscale(src, tmp_path / "out.mp4", engine=Flaky(2))
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == [] and no_workers()


def test_encoder_thread_error_propagates(tmp_path, monkeypatch):
    src = make_clip(tmp_path / "in.mp4", frames=10)
    real = encode.Sink.write_frame

    def failing(self, pic):
        if self.frames == 2:
            raise OutputError("disk full (simulated)")
        real(self, pic)

    monkeypatch.setattr(encode.Sink, "write_frame", failing)
    with pytest.raises(OutputError, match="simulated"):
        upscale(src, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == [] and no_workers()


@needs_videos
def test_real_clip_first_frames(tmp_path):
    src = VIDEOS / "carphone_pristine.mp4"
    calls = []
    report = upscale(src, tmp_path / "out.mp4", max_frames=10, progress=lambda d, t: calls.append((d, t)))
    out = frames_of(tmp_path / "out.mp4")
    assert report.frames_in == report.frames_out == len(out) == 10 and calls[-1] == (10, 10)
    assert {(f.width, f.height) for f in out} == {(352, 288)}
    assert times(out) == times(frames_of(src, limit=10))
    assert report.colour_in.matrix.value == "bt601"  # untagged QCIF


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory):
    """The real Engine: shipped rlfn_s x2 weights, else a randomly initialised RLFN-S x2 (same code path)."""
    try:
        from rlfn_video.engine import Engine
        from rlfn_video.models import RLFN, arch_for, save_checkpoint
    except ImportError as e:
        pytest.skip(f"real engine not importable yet: {e}")
    try:
        return Engine.from_options(scale=2, device="cpu")
    except RlfnError:
        weights = tmp_path_factory.mktemp("weights") / "rlfn_s_x2.pth"
        save_checkpoint(weights, RLFN(arch_for("rlfn_s", 2)), value_range=1.0, meta={})
        return Engine.from_options(scale=2, weights=weights, device="cpu")


@pytest.mark.parametrize("source", ["tiny", pytest.param("carphone", marks=needs_videos)])
def test_real_engine(tmp_path, real_engine, source):
    """Frames under RLFN's 15x15 minimum (the engine pads), and two frames of a real clip."""
    if source == "tiny":
        src = make_clip(tmp_path / "in.mkv", codec="ffv1", size=(12, 10), frames=3)
        frames, size = 3, (24, 20)
    else:
        src, frames, size = VIDEOS / "carphone_pristine.mp4", 2, (352, 288)
    dst = tmp_path / f"out{src.suffix}"  # same container: same timestamp precision
    report = upscale_video(src, dst, engine=real_engine, max_frames=frames)
    out = frames_of(dst)
    assert report.frames_out == len(out) == frames and {(f.width, f.height) for f in out} == {size}
    assert times(out) == times(frames_of(src, limit=frames))
