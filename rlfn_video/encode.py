"""PyAV output side: pick the encoder's pixel format and colour (`plan_video`), then write the
upscaled frames and carry the other streams over (`Sink`).

Other streams are copied packet for packet (`add_stream_from_template`); when the output
container cannot hold their codec, audio is re-encoded (AAC, else the container's default) and
text subtitles converted (mov_text for MP4, subrip for Matroska, ...); what cannot be carried is
dropped. Chapters, tags and dispositions follow (`streams.py`), HDR static metadata goes through
the encoder's parameters (`hdr.py`), options are checked first (`codec_options.py`). Each
decision that loses something goes to the `warn` callback. `Sink` is created in the caller's thread
and then written by the encode thread of `transcode.py`, never by two threads at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

from . import codec_options, hdr, streams
from .colour import ColourSpec, Matrix, default_matrix, format_layout, jpeg_range, sample_dtype
from .errors import EncoderError, OutputError
from .media import PLANAR_DEPTHS, Picture, Source, VideoInfo, planar_depth, planar_format, plane_view

Warn = Callable[[str], None]

_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# Packed/semi-planar formats with the same samples as a planar one (swscale repacks losslessly).
_PACKED_TWINS = {"gbrp": ("bgr0", "rgb24", "bgr24", "rgb0"), "yuv420p": ("nv12",), "yuv420p10le": ("p010le",),
                 "yuv420p16le": ("p016le",)}
_TEXT_SUBS = ("mov_text", "subrip", "ass", "webvtt")  # what a text subtitle may be converted to
# Used when a text subtitle decoder supplies no ASS header (mov_text and subrip encoders need one).
_ASS_HEADER = (b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
               b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, "
               b"Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, "
               b"Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\nStyle: Default,Arial,16,&Hffffff,"
               b"&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n[Events]\nFormat: Layer, Start, "
               b"End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n")


def _fits(subsampling: str, width: int, height: int) -> bool:
    return subsampling == "444" or (width % 2 == 0 and (subsampling == "422" or height % 2 == 0))


def _audio_layout(stream: av.audio.AudioStream) -> str:
    """The stream's channel layout; FFmpeg's default order for the count when it is unspecified
    (Matroska PCM, WAV), which MP4 refuses to write."""
    layout = stream.codec_context.layout
    if any(c.name != "NONE" for c in layout.channels):
        return layout.name
    return _DEFAULT_LAYOUTS.get(layout.nb_channels, layout.name)


@dataclass(frozen=True)
class VideoPlan:
    codec: str
    pix_fmt: str  # what the encoder gets
    fill_format: str  # planar format the planes are written in (== pix_fmt unless that one is packed)
    options: dict[str, str]  # checked AVOptions: crf, preset, -x KEY=VALUE, the HDR parameters
    colour: ColourSpec  # how the output planes are computed, and the tags written
    width: int
    height: int
    bit_rate: int | None = None  # bits/s target (None: the encoder's rate control, crf or default)
    model_size: tuple[int, int] | None = None  # the planes' size when a target size resizes them (Lanczos)


def plan_video(info: VideoInfo, *, width: int, height: int, codec: str = "libx264", crf: float | None = None,
               preset: str | None = None, pix_fmt: str | None = None, bitrate: str | int | None = None,
               encoder_options: dict[str, str] | None = None, model_size: tuple[int, int] | None = None,
               warn: Warn = lambda m: None) -> VideoPlan:
    """Check encoder and options against this FFmpeg build; pick the pixel format and colour spec.

    `bitrate`: bits/s, "8M" or "2500k" (not with `crf`); `encoder_options`: KEY=VALUE AVOptions
    of the encoder (what `-x` passes), each key checked, unknown ones refused with close matches.
    `model_size`: the upscaled planes' size, when it differs from the encoded `width` x `height`
    (a target size, target_size.py): each frame is resized with swscale's Lanczos before encoding."""
    enc = codec_options.video_encoder(codec)
    codec_options.check_size(codec, width, height)
    available = [f.name for f in enc.video_formats or []]
    options, bit_rate = codec_options.encoder_options(codec, enc.create("video"), crf=crf, preset=preset,
                                                      bitrate=bitrate, extra=encoder_options)
    src = info.colour
    src_rgb = src.matrix is Matrix.RGB
    if pix_fmt is not None:
        if available and pix_fmt not in available:
            raise EncoderError(f"{codec} cannot encode {pix_fmt}; it takes: {', '.join(available)}")
        rgb, depth, sub = format_layout(av.VideoFormat(pix_fmt))
        if not _fits(sub, width, height):
            raise EncoderError(f"{pix_fmt} needs even dimensions; the output is {width}x{height}")
        if rgb and not src_rgb:
            raise EncoderError(f"{pix_fmt} is RGB; encoding a Y'CbCr source as RGB is not supported")
        if jpeg_range(pix_fmt):
            src = replace(src, full_range=True)
    else:
        (rgb, depth, sub), pix_fmt = _choose_layout(available, src_rgb, src.bit_depth, src.subsampling, width,
                                                    height, codec)
        wanted = planar_format(src_rgb, src.bit_depth, src.subsampling)
        if planar_format(rgb, depth, sub) != wanted:
            odd = not _fits(src.subsampling, width, height)
            warn(f"{codec} cannot encode {wanted}{f' at odd size {width}x{height}' if odd else ''}; encoding "
                 f"{pix_fmt}" + (" (fewer players decode 4:2:2/4:4:4; an even scale keeps 4:2:0)" if odd else ""))
    colour = replace(src, bit_depth=depth, subsampling=sub)
    if src_rgb and not rgb:  # RGB into a Y'CbCr-only encoder: choose and tag a matrix
        m = default_matrix(width, height)
        code = 1 if m is Matrix.BT709 else 6
        colour = ColourSpec(matrix=m, full_range=False, primaries=src.primaries, transfer=src.transfer,
                            bit_depth=depth, subsampling=sub, chroma_loc="left", colorspace=code)
        warn(f"RGB input encoded as Y'CbCr ({m.value}, limited range): {codec} takes no planar RGB")
    hdr.notes(codec, info.hdr, transfer=colour.transfer, bit_depth=depth, warn=warn)
    ours = hdr.encoder_params(codec, info.hdr, transfer=colour.transfer, bit_depth=depth)
    if ours:
        key = hdr.params_option(codec)
        options[key] = codec_options.merge_params(options.get(key), ours)
    return VideoPlan(codec=codec, pix_fmt=pix_fmt, fill_format=planar_format(rgb, depth, sub), options=options,
                     colour=colour, width=width, height=height, bit_rate=bit_rate,
                     model_size=model_size if model_size != (width, height) else None)


def _choose_layout(available: list[str], rgb: bool, depth: int, sub: str, width: int, height: int,
                   codec: str) -> tuple[tuple[bool, int, str], str]:
    """((rgb, depth, subsampling), pix_fmt): the source's depth and subsampling where the encoder
    has them; else less subsampling (odd sizes), then more; else lower depths down to 8-bit; RGB
    falls back to Y'CbCr. A packed twin (bgr0, nv12, p010le) stands in for a missing planar format."""
    depths = [d for d in reversed(PLANAR_DEPTHS) if d <= planar_depth(depth)]
    order = {"420": ("420", "422", "444"), "422": ("422", "444", "420"), "444": ("444", "422", "420")}[sub]
    subs = [s for s in order if _fits(s, width, height)]
    layouts = [(True, d, "444") for d in depths] if rgb else []
    layouts += [(False, d, s) for d in depths for s in subs]
    for layout in layouts:
        planar = planar_format(*layout)
        for name in (planar, *_PACKED_TWINS.get(planar, ())):
            if not available or name in available:
                return layout, name
    raise EncoderError(f"{codec} has no pixel format for a {width}x{height} output (it takes: "
                       f"{', '.join(available)}); try --pix-fmt or another codec")


@dataclass(frozen=True)
class FrameBuffer:
    """A frame a Sink allocated before its planes were filled: the upscaler writes its output
    straight into `planes` (views of `frame`), and `Sink.write_frame` encodes it without a copy."""

    frame: av.VideoFrame
    planes: tuple[np.ndarray, ...]
    sink: Sink


class Sink:
    """The output being written (to a temporary path): the encoded video plus the other streams,
    copied packet for packet, or converted when the container cannot hold their codec."""

    def __init__(self, path: Path, source: Source, plan: VideoPlan, *, warn: Warn = lambda m: None,
                 name: str | None = None, video_template: av.VideoStream | None = None):
        """`video_template`: the video is already encoded (segments being joined): its packets
        come through `write_video_packet` and are copied, as the other streams are."""
        self.name = name or str(path)
        self.plan = plan
        self.frames = 0
        try:
            self._out = av.open(str(path), "w")
        except (ValueError, av.FFmpegError) as e:
            raise OutputError(f"{self.name}: cannot write this container ({e})") from None
        try:
            if video_template is None:
                self._video = self._add_video(source)
                self._flush: list[av.stream.Stream] = [self._video]
            else:
                self._video = self._copy_video(source, video_template)
                self._flush = []
            self._routes: dict[int, Callable[[av.Packet], None]] = {}
            for stream in source.carry:
                self._add_carried(stream, warn)
            self._out.metadata.update(streams.clean_tags(source.container.metadata))
            if source.span is None:  # a segment holds the video alone; the join adds the rest
                streams.copy_chapters(source.container, self._out, warn)
        except BaseException:
            self.close()
            raise
        try:  # open the encoders and write the header now: a refusal comes before any decoding
            self._out.start_encoding()
        except av.FFmpegError as e:
            self.close()
            raise EncoderError(f"{self.name}: cannot start encoding ({e})") from None

    def _add_video(self, source: Source) -> av.VideoStream:
        out, plan, info = self._out, self.plan, source.info
        if plan.codec not in out.supported_codecs:
            raise EncoderError(f"{self.name}: {out.format.name} cannot hold {plan.codec} video; try .mkv")
        vs = out.add_stream(plan.codec, options=plan.options)
        cc, spec = vs.codec_context, plan.colour
        cc.width, cc.height, cc.pix_fmt = plan.width, plan.height, plan.pix_fmt
        if plan.bit_rate:
            cc.bit_rate = plan.bit_rate
        vs.time_base = cc.time_base = info.time_base  # same pts in, same pts out (VFR stays VFR)
        if info.rate:
            cc.framerate = info.rate
        if info.sample_aspect_ratio:
            cc.sample_aspect_ratio = info.sample_aspect_ratio
        cc.colorspace, cc.color_range = spec.colorspace, spec.color_range
        cc.color_primaries, cc.color_trc = spec.primaries, spec.transfer
        if spec.subsampling != "444":
            cc.chroma_sample_location = spec.chroma_loc_code
        if info.display_matrix:
            vs.set_display_matrix(info.display_matrix)
        streams.copy_identity(source.video, vs)
        return vs

    def _copy_video(self, source: Source, template: av.VideoStream) -> av.VideoStream:
        vs = self._out.add_stream_from_template(template)
        vs.time_base = template.time_base
        if source.info.display_matrix:
            vs.set_display_matrix(source.info.display_matrix)
        streams.copy_identity(source.video, vs)
        return vs

    def write_video_packet(self, packet: av.Packet) -> None:
        """An already encoded video packet (joining segments); counts the frames."""
        packet.stream = self._video
        self._mux(packet)
        self.frames += 1

    def _add_carried(self, s: av.stream.Stream, warn: Warn) -> None:
        out = self._out
        name = s.codec_context.name if s.codec_context else s.type
        label = f"{s.type} stream #{s.index} ({name})"
        if streams.hidden(s):
            return  # a QuickTime chapter track: its chapters are copied as chapters
        if s.type == "attachment":
            if out.format.name.startswith("matroska"):
                a = out.add_attachment(s.metadata.get("filename", f"attachment{s.index}"),
                                       s.mimetype or "application/octet-stream", s.data)
                tags = streams.stream_tags(s)
                a.metadata.update({k: v for k, v in tags.items() if k not in ("filename", "mimetype")})
            else:
                warn(f"{label} dropped: {out.format.name} holds no attachments")
            return
        try:
            o = out.add_stream_from_template(s)
            route = functools.partial(self._copy, o)
            if s.type == "audio":
                o.codec_context.layout = _audio_layout(s)
        except (ValueError, av.FFmpegError):  # the container cannot hold this codec
            o = None
        if o is None and s.type == "audio":
            target = "aac" if "aac" in out.supported_codecs else out.default_audio_codec
            o = out.add_stream(target, rate=s.codec_context.sample_rate, layout=_audio_layout(s))
            route = functools.partial(self._reencode, o)
            self._flush.append(o)
            warn(f"{out.format.name} cannot hold {label}; re-encoding it to {target}")
        elif o is None and s.type == "subtitle" and av.codec.Codec(name, "r").text_sub:
            target = next((c for c in _TEXT_SUBS if c in out.supported_codecs), None)
            if target is None:
                return warn(f"{label} dropped: {out.format.name} holds no text subtitles")
            s.codec_context.open()  # the decoder's ASS header seeds the encoder
            o = out.add_stream(target)
            o.codec_context.subtitle_header = s.codec_context.subtitle_header or _ASS_HEADER
            route = functools.partial(self._convert_subtitle, o)
            warn(f"{out.format.name} cannot hold {label}; converting it to {target}")
        elif o is None:
            return warn(f"{label} dropped: {out.format.name} cannot hold it")
        streams.copy_identity(s, o)
        self._routes[s.index] = route

    def _mux(self, packets: av.Packet | list[av.Packet]) -> None:
        try:
            self._out.mux(packets)
        except (av.FFmpegError, OSError) as e:
            raise OutputError(f"{self.name}: writing failed ({e})") from None

    def _copy(self, o: av.stream.Stream, packet: av.Packet) -> None:
        packet.stream = o  # mux() rescales the timestamps to o's time base
        self._mux(packet)

    def _reencode(self, o: av.audio.AudioStream, packet: av.Packet) -> None:
        for frame in packet.decode():
            self._mux(o.encode(frame))

    def _convert_subtitle(self, o: av.subtitles.stream.SubtitleStream, packet: av.Packet) -> None:
        subtitle = packet.stream.decode2(packet)
        if subtitle is None:
            return
        new = o.codec_context.encode_subtitle(subtitle)
        new.pts, new.dts, new.duration, new.time_base = packet.pts, packet.dts, packet.duration, packet.time_base
        new.stream = o
        self._mux(new)

    def write_packet(self, packet: av.Packet) -> None:
        route = self._routes.get(packet.stream.index)
        if route is not None:
            route(packet)

    def new_frame(self) -> FrameBuffer:
        """An empty frame of the upscaler's output size and planar format, for `write_frame`."""
        plan = self.plan
        frame = av.VideoFrame(*(plan.model_size or (plan.width, plan.height)), plan.fill_format)
        dtype = sample_dtype(plan.colour.bit_depth)
        return FrameBuffer(frame, tuple(plane_view(p, dtype) for p in frame.planes[:3]), self)

    def write_frame(self, pic: Picture) -> None:
        """Encode an upscaled picture: its planes as they are when it holds a frame of ours
        (`new_frame`, filled in place), else copied into a new one. Its colour must be the plan's."""
        plan, spec = self.plan, pic.colour
        if spec != plan.colour:
            raise EncoderError(f"frame {pic.index} is {spec.describe()}, the encoder was set up for "
                               f"{plan.colour.describe()}")
        buffer = pic.storage
        if not (isinstance(buffer, FrameBuffer) and buffer.sink is self):
            buffer = self.new_frame()
            for dst, data in zip(buffer.planes, pic.planes):
                dst[:] = data
        frame = buffer.frame
        pts, time_base = pic.pts, pic.time_base
        if plan.model_size is not None:  # same format and range: swscale only resamples
            frame = frame.reformat(plan.width, plan.height, plan.pix_fmt, src_color_range=spec.color_range,
                                   dst_color_range=spec.color_range, interpolation="LANCZOS", threads=1)
        elif plan.fill_format != plan.pix_fmt:
            frame = frame.reformat(format=plan.pix_fmt, src_color_range=spec.color_range,
                                   dst_color_range=spec.color_range, threads=1)
        frame.pts, frame.time_base = pts, time_base
        frame.colorspace, frame.color_range = spec.colorspace, spec.color_range
        frame.color_primaries, frame.color_trc = spec.primaries, spec.transfer
        try:
            packets = self._video.encode(frame)
        except av.FFmpegError as e:
            raise EncoderError(f"{plan.codec} refused frame {self.frames} ({e})") from None
        self._mux(packets)
        self.frames += 1

    def finish(self) -> None:
        """Flush the encoders and write the trailer."""
        for stream in self._flush:
            try:
                packets = stream.encode(None)
            except av.FFmpegError as e:
                raise EncoderError(f"{stream.codec_context.name}: flushing failed ({e})") from None
            self._mux(packets)
        try:
            self._out.close()
        except (av.FFmpegError, OSError) as e:
            raise OutputError(f"{self.name}: finishing the file failed ({e})") from None

    def close(self) -> None:
        """Release without finishing (after an error; the file is discarded)."""
        try:
            self._out.close()
        except (av.FFmpegError, OSError):
            pass
