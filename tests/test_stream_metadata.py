"""What the output keeps besides the pictures, single pass and segmented, into .mkv and .mp4:
HDR10 static metadata, PQ/HLG tags, chapters, languages, titles, dispositions, attachments; and
the encoder options (crf, preset, bitrate, -x KEY=VALUE) checked before any work.

Clips are tiny and written here with PyAV; outputs are re-opened and their decoded side data,
chapters and stream fields compared with the input's.
"""

from __future__ import annotations

import pickle
import re
import struct
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from rlfn_video import encode, media
from rlfn_video.errors import EncoderError
from rlfn_video.hdr import HdrMetadata
from rlfn_video.segment_job import EncodeSettings
from rlfn_video.segmented import upscale_segmented
from rlfn_video.transcode import transcode_into, upscale_video
from rlfn_video.workers import InProcess

from .conftest import ASS_HEADER, NearestEngine, leftovers, make_clip, pattern

T = av.sidedata.sidedata.Type
D = av.stream.Disposition
# BT.2020 primaries, D65, 1000 / 0.005 cd/m² (x265 units: 0.00002 and 0.0001 cd/m²); MaxCLL 1000, MaxFALL 400
MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
PQ, HLG = 16, 18
X26X_PRESETS = "ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow, placebo"


def has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except ValueError:
        return False


needs_x265 = pytest.mark.skipif(not has_encoder("libx265"), reason="this FFmpeg build has no libx265")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A small random RLFN x2 (8 channels, 1 block): segmented runs stay quick on a CPU."""
    from rlfn_video.models import RLFN, Arch, save_checkpoint

    path = tmp_path_factory.mktemp("weights") / "tiny_x2.pth"
    save_checkpoint(path, RLFN(Arch(channels=8, mid_channels=8, blocks=1, scale=2)), value_range=1.0, meta={})
    return path


def segmented(src: Path, dst: Path, weights: Path, *, notes: list | None = None, **settings):
    s = EncodeSettings(scale=2, weights=str(weights), precision="fp32", **settings)
    with InProcess("cpu") as pool:
        return upscale_segmented(src, dst, settings=s, workers=pool, segment_seconds=0.3,
                                 warn=None if notes is None else notes.append)


def hdr_clip(path: Path, *, transfer: int = PQ, static: bool = True, frames: int = 6) -> Path:
    """64x48 HEVC Main 10, BT.2020, PQ or HLG, a keyframe every 3 frames; with ST 2086 + CLL SEI."""
    params = "log-level=error:keyint=3:min-keyint=3:scenecut=0"
    if static:
        params += f":master-display={MASTER_DISPLAY}:max-cll=1000,400"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx265", rate=10, options={"preset": "ultrafast", "x265-params": params})
        cc = vs.codec_context
        cc.width, cc.height, cc.pix_fmt = 64, 48, "yuv420p10le"
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 9, 9, transfer, 1
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24")
            frame = frame.reformat(format="yuv420p10le", dst_colorspace="BT2020", dst_color_range="MPEG", threads=1)
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
    return path


def _bits(fields: list[tuple[int, int]]) -> bytes:
    value, n = 0, 0
    for width, v in fields:
        value, n = value << width | v, n + width
    return (value << (-n % 8)).to_bytes((n + 7) // 8, "big")


def _escape(rbsp: bytes) -> bytes:
    """HEVC emulation prevention: 00 00 0x (x <= 3) -> 00 00 03 0x."""
    out, zeros = bytearray(), 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def add_hdr10_plus(src: Path, dst: Path) -> Path:
    """`src` with an HDR10+ (ST 2094-40) SEI before each picture: ITU-T T.35, Samsung, application 4,
    one window, 400 cd/m² target, MaxSCL 1000; the decoder exports it as DYNAMIC_HDR_PLUS."""
    t35 = bytes([0xB5, 0x00, 0x3C, 0x00, 0x01, 0x04]) + _bits(
        [(8, 1), (2, 1), (27, 400), (1, 0), (17, 1000), (17, 1000), (17, 1000), (17, 500), (4, 0), (10, 0),
         (1, 0), (1, 0), (1, 0)])
    sei = b"\x4e\x01" + _escape(bytes([4, len(t35)]) + t35 + b"\x80")  # prefix SEI NAL, payload type 4
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for packet in inp.demux(vin):
            if not packet.size:
                continue
            data, pos, nals = bytes(packet), 0, []
            while pos < len(data):  # 4-byte length-prefixed NAL units (hvcC)
                n = struct.unpack_from(">I", data, pos)[0]
                nals.append(data[pos + 4:pos + 4 + n])
                pos += 4 + n
            nals.insert(next(i for i, nal in enumerate(nals) if nal[0] >> 1 < 32), sei)  # before the first slice
            new = av.Packet(b"".join(struct.pack(">I", len(n)) + n for n in nals))
            new.pts, new.dts, new.duration, new.time_base = packet.pts, packet.dts, packet.duration, packet.time_base
            new.is_keyframe, new.stream = packet.is_keyframe, vout
            out.mux(new)
    return dst


def decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def side(frame: av.VideoFrame, kind: T) -> bytes | None:
    data = frame.side_data.get(kind)
    return bytes(data) if data is not None else None


def assert_hdr10_kept(src: Path, dst: Path, *, every_frame: bool = True) -> None:
    """Same ST 2086 / CLL bytes on every output frame (x264: on every keyframe; H.264 decoders
    export the SEI with the picture it came with, and it holds until the next IDR)."""
    ins, outs = decoded(src), decoded(dst)
    assert len(outs) == len(ins) and {(f.width, f.height) for f in outs} == {(128, 96)}
    assert {f.format.name for f in outs} == {"yuv420p10le"}
    assert {(f.colorspace, f.color_primaries, f.color_trc, f.color_range) for f in outs} == {(9, 9, PQ, 1)}
    for kind in (T.MASTERING_DISPLAY_METADATA, T.CONTENT_LIGHT_LEVEL):
        want = side(ins[0], kind)
        carrying = outs if every_frame else [f for f in outs if f.key_frame]
        assert want is not None and carrying and {side(f, kind) for f in carrying} == {want}
    hdr, was = media.probe(dst).hdr, media.probe(src).hdr
    assert (hdr.mastering, hdr.light_level, hdr.dynamic) == (was.mastering, was.light_level, ()) == (
        hdr.mastering, (1000, 400), ())
    m = hdr.mastering
    assert (m.red, m.green, m.blue, m.white) == ((Fraction(17, 25), Fraction(8, 25)), (Fraction(53, 200),
                                                 Fraction(69, 100)), (Fraction(3, 20), Fraction(3, 50)),
                                                (Fraction(3127, 10000), Fraction(329, 1000)))
    assert (m.max_luminance, m.min_luminance) == (1000, Fraction(1, 200))


# --- HDR ---------------------------------------------------------------------------------------


@needs_x265
@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_hdr10_static_metadata_survives_a_single_pass(tmp_path, ext, capfd):
    src = hdr_clip(tmp_path / "in.mkv")
    notes = []
    report = upscale_video(src, tmp_path / f"out{ext}", engine=NearestEngine(2), codec="libx265", warn=notes.append)
    assert notes == [] and report.pix_fmt == "yuv420p10le" and report.colour_out.transfer == PQ
    assert_hdr10_kept(src, tmp_path / f"out{ext}")
    assert "x265 [" not in capfd.readouterr().err  # x265 logs to stderr itself: kept quiet


@needs_x265
@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_hdr10_static_metadata_survives_segments_and_the_join(tmp_path, tiny_weights, ext):
    src = hdr_clip(tmp_path / "in.mkv")
    notes = []
    report = segmented(src, tmp_path / f"out{ext}", tiny_weights, notes=notes, codec="libx265")
    assert "2 segment(s)" in report.pipeline and notes == []
    assert_hdr10_kept(src, tmp_path / f"out{ext}")


@needs_x265
def test_hlg_tag_kept_and_nothing_invented(tmp_path):
    src = hdr_clip(tmp_path / "in.mkv", transfer=HLG, static=False)
    notes = []
    upscale_video(src, tmp_path / "out.mkv", engine=NearestEngine(2), codec="libx265", warn=notes.append)
    outs = decoded(tmp_path / "out.mkv")
    assert notes == [] and {(f.color_primaries, f.color_trc, f.format.name) for f in outs} == {(9, HLG, "yuv420p10le")}
    assert all(side(f, T.MASTERING_DISPLAY_METADATA) is None for f in outs)
    assert media.probe(tmp_path / "out.mkv").hdr is None


@needs_x265
def test_hdr10_plus_is_dropped_with_a_note_and_hdr10_kept(tmp_path):
    src = add_hdr10_plus(hdr_clip(tmp_path / "base.mkv"), tmp_path / "in.mkv")
    assert side(decoded(src)[0], T.DYNAMIC_HDR_PLUS) is not None and media.probe(src).hdr.dynamic == ("HDR10+",)
    notes = []
    upscale_video(src, tmp_path / "out.mkv", engine=NearestEngine(2), codec="libx265", warn=notes.append)
    assert notes == ["HDR10+ dynamic metadata dropped: it describes the source's frames and cannot survive "
                     "re-encoding (the static HDR10 metadata is kept)"]
    assert all(side(f, T.DYNAMIC_HDR_PLUS) is None for f in decoded(tmp_path / "out.mkv"))
    assert_hdr10_kept(src, tmp_path / "out.mkv")


@needs_x265
def test_dolby_vision_note_names_the_base_layer(tmp_path):
    info = media.probe(hdr_clip(tmp_path / "in.mkv"))
    notes = []
    dv = replace(info, hdr=HdrMetadata(dynamic=("Dolby Vision",), dovi_base="not backward compatible (the "
                                                                           "output's colours will be wrong)"))
    encode.plan_video(dv, width=128, height=96, codec="libx265", warn=notes.append)
    assert notes == ["Dolby Vision dynamic metadata dropped: it describes the source's frames and cannot survive "
                     "re-encoding; the Dolby Vision base layer is not backward compatible (the output's colours "
                     "will be wrong)"]


@needs_x265
def test_libx264_carries_hdr10_at_10_bits_and_warns_at_8(tmp_path):
    src = hdr_clip(tmp_path / "in.mkv")
    notes = []
    upscale_video(src, tmp_path / "ten.mkv", engine=NearestEngine(2), codec="libx264", warn=notes.append)
    assert notes == []
    assert_hdr10_kept(src, tmp_path / "ten.mkv", every_frame=False)
    upscale_video(src, tmp_path / "eight.mkv", engine=NearestEngine(2), codec="libx264", pix_fmt="yuv420p",
                  warn=notes.append)
    assert notes == ["PQ video encoded at 8 bits: expect banding; a 10-bit format (yuv420p10le, libx265) keeps it "
                     "smooth"]
    out = decoded(tmp_path / "eight.mkv")[0]
    assert out.color_trc == PQ and side(out, T.CONTENT_LIGHT_LEVEL) == side(decoded(src)[0], T.CONTENT_LIGHT_LEVEL)


@needs_x265
def test_encoder_without_an_hdr_route_says_it_drops_the_metadata(tmp_path):
    src = hdr_clip(tmp_path / "in.mkv")
    notes = []
    upscale_video(src, tmp_path / "out.mkv", engine=NearestEngine(2), codec="ffv1", warn=notes.append)
    assert notes == ["HDR mastering display / content light level metadata dropped: ffv1 takes none here "
                     "(libx265, libx264 and libsvtav1 do)"]
    assert decoded(tmp_path / "out.mkv")[0].color_trc == PQ  # the tags still say PQ


def av1_metadata(packet: bytes) -> dict[int, bytes]:
    """Metadata OBUs (type 5) of an AV1 temporal unit: metadata_type -> payload."""
    found, pos = {}, 0
    while pos < len(packet):
        header = packet[pos]
        kind, pos = header >> 3 & 15, pos + 1 + (header >> 2 & 1)  # type; skip the extension byte if any
        size = shift = 0
        while True:  # leb128 obu_size (the encoder always writes it)
            byte = packet[pos]
            size, shift, pos = size | (byte & 127) << shift, shift + 7, pos + 1
            if byte < 128:
                break
        if kind == 5:
            found[packet[pos]] = packet[pos + 1:pos + size]
        pos += size
    return found


@needs_x265
@pytest.mark.skipif(not has_encoder("libsvtav1"), reason="this FFmpeg build has no libsvtav1")
def test_libsvtav1_writes_hdr10_metadata_obus(tmp_path):
    """No AV1 decoder in this build: the metadata OBUs of the first packet are read directly."""
    src = hdr_clip(tmp_path / "in.mkv")
    notes = []
    upscale_video(src, tmp_path / "out.mkv", engine=NearestEngine(2), codec="libsvtav1", preset="12",
                  warn=notes.append)
    assert notes == []
    with av.open(str(tmp_path / "out.mkv")) as c:
        s = c.streams.video[0]
        assert (s.codec_context.color_trc, s.codec_context.color_primaries) == (PQ, 9)
        first = bytes(next(p for p in c.demux(s) if p.size))
    meta = av1_metadata(first)
    assert struct.unpack(">HH", meta[1][:4]) == (1000, 400)  # METADATA_TYPE_HDR_CLL
    mdcv = struct.unpack(">8H2I", meta[2][:24])  # METADATA_TYPE_HDR_MDCV: R, G, B, white in 0.16; max 24.8, min 18.14
    want = [0.68, 0.32, 0.265, 0.69, 0.15, 0.06, 0.3127, 0.329]
    assert all(abs(got - x * 65536) <= 1 for got, x in zip(mdcv[:8], want))
    assert (mdcv[8], mdcv[9]) == (1000 << 8, round(0.005 * (1 << 14)))


# --- chapters, tags, dispositions, attachments -------------------------------------------------

FONT = b"\x00\x01\x00\x00" + bytes(range(256)) * 2  # stands in for a TrueType file
CHAPTERS = [(Fraction(0), Fraction(3, 10), "Opening"), (Fraction(3, 10), Fraction(7, 10), "Ending")]
STREAMS = [  # type, language, title, disposition
    ("video", "jpn", "Main video", D.default | D.original),
    ("audio", "eng", "Commentary", D.comment),
    ("audio", "fra", "Stereo", D.default | D.dub),
    ("subtitle", "deu", "Signs", D.forced),
]


def rich_clip(path: Path, frames: int = 8) -> Path:
    """H.264 (a keyframe every 3 frames), two AAC tracks, an ASS (Matroska) / mov_text (MP4)
    track, a font attachment (Matroska), two chapters; languages, titles, dispositions as STREAMS."""
    mkv = path.suffix == ".mkv"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=10, options={"preset": "ultrafast", "g": "3", "sc_threshold": "0"})
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        audio = [out.add_stream("aac", rate=8000, layout="mono") for _ in range(2)]
        sub = out.add_stream("ass" if mkv else "mov_text")
        sub.codec_context.subtitle_header = ASS_HEADER
        for stream, (_, language, title, disposition) in zip([vs, *audio, sub], STREAMS):
            stream.metadata.update(language=language, title=title)
            stream.disposition = disposition
        if mkv:
            out.add_attachment("Font.ttf", "font/ttf", FONT)
        out.set_chapters([{"id": i + 1, "start": int(a * 1000), "end": int(b * 1000), "time_base": Fraction(1, 1000),
                           "metadata": {"title": title}} for i, (a, b, title) in enumerate(CHAPTERS)])
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        for a in audio:
            for start in range(0, frames * 800, 1024):
                af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = 8000, start, Fraction(1, 8000)
                out.mux(a.encode(af))
            out.mux(a.encode())
        cue = av.subtitles.subtitle.SubtitleSet.create(b"0,0,Default,,0,0,0,,Hello", 0, 500)
        packet = sub.codec_context.encode_subtitle(cue)
        packet.pts = packet.dts = 0
        packet.duration, packet.time_base, packet.stream = 500, Fraction(1, 1000), sub
        out.mux(packet)
    return path


def chapters(c: av.container.Container) -> list[tuple[Fraction, Fraction, str]]:
    return [(ch["start"] * Fraction(ch["time_base"]), ch["end"] * Fraction(ch["time_base"]), ch["metadata"]["title"])
            for ch in c.chapters()]


def described(c: av.container.Container) -> list[tuple]:
    """(type, language, title, disposition) of the streams a player lists (not MP4's chapter track)."""
    return [(s.type, s.metadata.get("language"), s.metadata.get("title") or s.metadata.get("name"), s.disposition)
            for s in c.streams if s.type not in ("attachment", "data")]


def as_mp4_keeps(rows: list[tuple]) -> list[tuple]:
    """MP4 has no "original" flag, and enables (default) the first track of a type with no default one."""
    rows = [(*r[:3], r[3] & ~D.original) for r in rows]
    for kind in {r[0] for r in rows}:
        if not any(r[3] & D.default for r in rows if r[0] == kind):
            i = next(i for i, r in enumerate(rows) if r[0] == kind)
            rows[i] = (*rows[i][:3], rows[i][3] | D.default)
    return rows


def assert_metadata_kept(dst: Path, src: Path) -> None:
    with av.open(str(src)) as c:
        want = described(c)
    assert want == (STREAMS if src.suffix == ".mkv" else as_mp4_keeps(STREAMS))  # the clip is what it says
    with av.open(str(dst)) as c:
        assert chapters(c) == CHAPTERS
        assert described(c) == (as_mp4_keeps(want) if dst.suffix == ".mp4" else want)
        attachments = [(s.metadata["filename"], s.mimetype, s.data) for s in c.streams if s.type == "attachment"]
        assert attachments == ([("Font.ttf", "font/ttf", FONT)] if src.suffix == dst.suffix == ".mkv" else [])
        texts = [r.dialogue.decode() for p in c.demux(c.streams.subtitles[0]) if p.size
                 for cue in [p.stream.decode2(p)] if cue is not None for r in cue]
        assert [re.sub(r"\{[^}]*\}", "", t).split(",", 8)[-1] for t in texts] == ["Hello"]  # without ASS overrides


def expected_notes(src_ext: str, dst_ext: str) -> list[str]:
    if src_ext == ".mkv" and dst_ext == ".mp4":
        return ["mp4 cannot hold subtitle stream #3 (ssa); converting it to mov_text",
                "attachment stream #4 (attachment) dropped: mp4 holds no attachments"]
    if src_ext == ".mp4" and dst_ext == ".mkv":
        return ["matroska cannot hold subtitle stream #3 (mov_text); converting it to subrip"]
    return []


@pytest.mark.parametrize("src_ext, dst_ext", [(".mkv", ".mkv"), (".mkv", ".mp4"), (".mp4", ".mkv"), (".mp4", ".mp4")])
def test_chapters_tags_dispositions_attachments_single_pass(tmp_path, src_ext, dst_ext):
    src = rich_clip(tmp_path / f"in{src_ext}")
    notes = []
    upscale_video(src, tmp_path / f"out{dst_ext}", engine=NearestEngine(2), warn=notes.append)
    assert notes == expected_notes(src_ext, dst_ext)
    assert_metadata_kept(tmp_path / f"out{dst_ext}", src)


@pytest.mark.parametrize("src_ext, dst_ext", [(".mkv", ".mkv"), (".mkv", ".mp4"), (".mp4", ".mkv"), (".mp4", ".mp4")])
def test_chapters_tags_dispositions_attachments_segmented(tmp_path, tiny_weights, src_ext, dst_ext):
    src = rich_clip(tmp_path / f"in{src_ext}")
    notes = []
    report = segmented(src, tmp_path / f"out{dst_ext}", tiny_weights, notes=notes)
    assert "3 segment(s)" in report.pipeline and notes == expected_notes(src_ext, dst_ext)
    assert_metadata_kept(tmp_path / f"out{dst_ext}", src)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, f"out{dst_ext}"])


def test_chapters_dropped_with_a_note_where_the_container_has_none(tmp_path):
    src = rich_clip(tmp_path / "in.mkv")
    notes = []
    upscale_video(src, tmp_path / "out.avi", engine=NearestEngine(2), warn=notes.append)
    assert "2 chapter(s) dropped: avi holds no chapters" in notes


# --- encoder options ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def info(tmp_path_factory) -> media.VideoInfo:
    return media.probe(make_clip(tmp_path_factory.mktemp("clip") / "in.mkv", frames=2))


def plan(info, **kw) -> encode.VideoPlan:
    return encode.plan_video(info, width=128, height=96, **kw)


@pytest.mark.parametrize("codec, crf, message", [
    ("libx264", 52, "crf 52 is out of range for libx264 (0-51)"),
    ("libx265", -1, "crf -1 is out of range for libx265 (0-51)"),
    ("libsvtav1", 64, "crf 64 is out of range for libsvtav1 (0-63)"),
    ("libsvtav1", 20.5, "libsvtav1 takes a whole-number crf, not 20.5"),
    ("libvpx-vp9", 70, "crf 70 is out of range for libvpx-vp9 (0-63)"),
])
def test_crf_checked_against_the_encoder_range(info, codec, crf, message):
    if not has_encoder(codec):
        pytest.skip(f"this FFmpeg build has no {codec}")
    with pytest.raises(EncoderError) as err:
        plan(info, codec=codec, crf=crf)
    assert str(err.value) == message
    assert plan(info, codec=codec, crf=20).options["crf"] == "20"


@pytest.mark.parametrize("codec, preset, valid", [
    ("libx264", "fastest", f"{X26X_PRESETS} (or 0-9)"),
    ("libx265", "10", f"{X26X_PRESETS} (or 0-9)"),
    ("libsvtav1", "14", "0-13"),
    ("libsvtav1", "fast", "0-13"),
    ("hevc_nvenc", "p8", "slow, medium, fast, p1, p2, p3, p4, p5, p6, p7"),
])
def test_unknown_preset_is_one_line_naming_the_valid_ones(info, codec, preset, valid):
    if not has_encoder(codec):
        pytest.skip(f"this FFmpeg build has no {codec}")
    with pytest.raises(EncoderError) as err:
        plan(info, codec=codec, preset=preset)
    assert str(err.value) == f"unknown preset {preset!r} for {codec}; valid: {valid}"


def test_x26x_preset_index_means_its_name(info):
    assert plan(info, preset="0").options["preset"] == "ultrafast"
    assert plan(info, preset="veryslow").options["preset"] == "veryslow"


def test_bad_preset_fails_before_any_work_and_prints_nothing(tmp_path, capfd):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    with pytest.raises(EncoderError, match="unknown preset 'fastest' for libx264"):
        upscale_video(src, tmp_path / "out.mp4", engine=NearestEngine(2), preset="fastest")
    assert capfd.readouterr().err == "" and not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_bitrate_parsed_checked_and_exclusive_with_crf(info):
    assert plan(info, bitrate="2500k").bit_rate == 2_500_000
    assert plan(info, bitrate="1.5M").bit_rate == 1_500_000 and plan(info, bitrate=800000).bit_rate == 800000
    for bad, message in (("8X", "bitrate '8X' not understood; give bits per second like 8M, 2500k or 800000"),
                         ("8", "bitrate '8' is 8 bit/s; too low for video (did you mean 8M?)")):
        with pytest.raises(EncoderError) as err:
            plan(info, bitrate=bad)
        assert str(err.value) == message
    with pytest.raises(EncoderError, match="give crf or bitrate, not both"):
        plan(info, crf=20, bitrate="2M")
    with pytest.raises(EncoderError, match="give crf or bitrate, not both"):
        plan(info, bitrate="2M", encoder_options={"crf": "20"})


def test_encoder_option_keys_and_values_checked(info):
    with pytest.raises(EncoderError) as err:
        plan(info, encoder_options={"x264-parms": "keyint=4"})
    assert str(err.value) == "libx264 has no option 'x264-parms'; did you mean x264-params, x264opts?"
    with pytest.raises(EncoderError, match=r"no option 'zzz' \(see: ffmpeg -h encoder=libx264\)"):
        plan(info, encoder_options={"zzz": "1"})
    with pytest.raises(EncoderError, match="libx264 option g takes a number, not 'five'"):
        plan(info, encoder_options={"g": "five"})
    with pytest.raises(EncoderError, match="preset given twice"):
        plan(info, preset="fast", encoder_options={"preset": "slow"})
    with pytest.raises(EncoderError, match="unknown preset 'quick'"):  # -x preset= is checked as --preset
        plan(info, encoder_options={"preset": "quick"})
    assert plan(info, encoder_options={"g": "5", "tune": "grain"}).options == {"g": "5", "tune": "grain"}


def x264_settings(path: Path) -> str:
    """The option string x264 writes into its SEI (first frame's unregistered user data)."""
    data = side(decoded(path)[0], T.SEI_UNREGISTERED)
    return data[16:].decode(errors="replace")


def keyframes(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = sorted((p.pts, p.is_keyframe) for p in c.demux(s) if p.size)
    return [i for i, (_, key) in enumerate(pts) if key]


def encode_with(src: Path, dst: Path, **options) -> None:
    """One pass with a plan of these options (the route `upscale_video` takes once it passes them on)."""
    with media.Source(src) as source:
        plan = encode.plan_video(source.info, width=128, height=96, **options)
        transcode_into(source, dst, plan, NearestEngine(2))


@pytest.mark.parametrize("options, interval", [({"g": "5"}, 5),
                                                ({"x264-params": "keyint=4:min-keyint=4:scenecut=0"}, 4)])
def test_encoder_options_reach_the_encoder(tmp_path, options, interval):
    src = make_clip(tmp_path / "in.mkv", frames=12)
    encode_with(src, tmp_path / "out.mkv", encoder_options={**options, "sc_threshold": "0"})
    assert keyframes(tmp_path / "out.mkv") == list(range(0, 12, interval))


def test_bitrate_reaches_the_encoder(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=4)
    encode_with(src, tmp_path / "out.mkv", bitrate="300k", preset="ultrafast")
    settings = x264_settings(tmp_path / "out.mkv")
    assert " rc=abr " in settings and " bitrate=300 " in settings


def test_segmented_runs_get_bitrate_and_options(tmp_path, tiny_weights):
    src = make_clip(tmp_path / "in.mkv", frames=12, options={"g": "6", "sc_threshold": "0"})
    settings = dict(bitrate="300k", encoder_options={"x264-params": "keyint=3:min-keyint=3:scenecut=0"})
    report = segmented(src, tmp_path / "out.mkv", tiny_weights, **settings)
    assert "2 segment(s)" in report.pipeline and " bitrate=300 " in x264_settings(tmp_path / "out.mkv")
    assert keyframes(tmp_path / "out.mkv") == [0, 3, 6, 9]  # segments of 6 frames, a keyframe every 3


def test_encode_settings_pickle_and_fingerprint_hold_the_new_options(tiny_weights):
    s = EncodeSettings(scale=2, weights=str(tiny_weights), bitrate="2M", encoder_options={"g": "5", "bf": "0"})
    assert pickle.loads(pickle.dumps(s)) == s and hash(s) == hash(pickle.loads(pickle.dumps(s)))
    assert s.encoder_options == (("bf", "0"), ("g", "5"))
    fp = s.fingerprint()
    assert fp["bitrate"] == 2_000_000 and fp["encoder_options"] == {"bf": "0", "g": "5"}
    assert fp != replace(s, encoder_options={"g": "6"}).fingerprint()
    plain = EncodeSettings(scale=2, weights=str(tiny_weights)).fingerprint()
    assert plain["bitrate"] is None and plain["encoder_options"] is None  # older manifests still match
