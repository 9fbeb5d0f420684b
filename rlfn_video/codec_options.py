"""Encoder options checked against this FFmpeg build before any work: crf, preset, bitrate, -x KEY=VALUE.

A refused option would otherwise surface only when the encoder opens, as "avcodec_open2(...)
returned 22" after the encoder's own log line on stderr; here it is one `EncoderError` naming
what the encoder takes. Ranges and named values come from the encoder's AVOptions where they
say something, from a small table where they do not (x264/x265 declare crf up to FLT_MAX and
take their presets as free strings).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

import av
from av.codec.context import OptionFlags, OptionType

from .errors import EncoderError

_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                 "placebo")
_PRESETS = {"libx264": _X26X_PRESETS, "libx264rgb": _X26X_PRESETS, "libx265": _X26X_PRESETS}
_CRF = {"libx264": (0, 51), "libx264rgb": (0, 51), "libx265": (0, 51)}  # their AVOption says -1..FLT_MAX
# libx265 (this PyAV wheel's) writes different bytes for the same frames when they are 64 px wide or
# less, and corrupted the heap at 48 px (measured 2026-12-02; height does not matter): narrower
# frames are refused for it (`check_size`), or padded where only the decoded pixels count.
MIN_WIDTH = {"libx265": 66}
_NUMERIC = {OptionType.INT, OptionType.INT64, OptionType.UINT64, OptionType.UINT, OptionType.DOUBLE,
            OptionType.FLOAT, OptionType.BOOL}
_SI = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}
_NUMBER = re.compile(r"\s*([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)\s*([kmg]?)\s*", re.IGNORECASE)
_BOOLS = ("true", "false", "yes", "no", "on", "off", "y", "n", "enable", "disable", "auto")


def _number(text: str) -> float | None:
    m = _NUMBER.fullmatch(text)
    return float(m[1]) * _SI[m[2].lower()] if m else None


def parse_bitrate(value: str | int | float) -> int:
    """Bits per second from "8M", "2500k", "1.5M" or a plain number."""
    bits = _number(str(value).removesuffix("bps").removesuffix("b/s"))
    if bits is None:
        raise EncoderError(f"bitrate {value!r} not understood; give bits per second like 8M, 2500k or 800000")
    if bits < 1000:
        raise EncoderError(f"bitrate {value!r} is {bits:g} bit/s; too low for video (did you mean {value}M?)")
    return round(bits)


def _encoding_options(cc: av.CodecContext) -> dict[str, av.codec.context.CodecOption]:
    """The encoder's private options and the generic ones that apply to video encoding."""
    supported = cc.supported_options
    found = {o.name: o for o in supported.private}
    for o in supported.generic:
        if o.flags & OptionFlags.ENCODING_PARAM and (o.flags & OptionFlags.VIDEO_PARAM or not o.flags & (
                OptionFlags.AUDIO_PARAM | OptionFlags.SUBTITLE_PARAM)):
            found.setdefault(o.name, o)
    return found


def _range(o: av.codec.context.CodecOption) -> tuple[float, float] | None:
    """The AVOption's min..max, None where it says nothing (a 0..0 string, a FLT_MAX top)."""
    if o.min >= o.max or o.max > 1e30:
        return None
    return o.min, o.max


def _check_crf(codec: str, o: av.codec.context.CodecOption, crf: float) -> str:
    low, high = _CRF.get(codec) or _range(o) or (0, float("inf"))
    low = max(low, 0)  # -1 is the "unset" sentinel of several encoders
    if not low <= crf <= high:
        span = f"{low:g}-{high:g}" if high != float("inf") else f"at least {low:g}"
        raise EncoderError(f"crf {crf:g} is out of range for {codec} ({span})")
    if o.type in (OptionType.INT, OptionType.INT64) and crf != int(crf):
        raise EncoderError(f"{codec} takes a whole-number crf, not {crf:g}")
    return str(int(crf)) if crf == int(crf) else str(crf)


def _check_preset(codec: str, o: av.codec.context.CodecOption, preset: str) -> str:
    if codec in _PRESETS:  # x264 and x265 also take a preset's index
        names = _PRESETS[codec]
        if preset.isdigit() and int(preset) < len(names):
            return names[int(preset)]
        if preset not in names:
            raise EncoderError(f"unknown preset {preset!r} for {codec}; valid: {', '.join(names)} (or 0-9)")
        return preset
    names = tuple(c.name for c in o.choices)
    if names:
        if preset not in names:
            raise EncoderError(f"unknown preset {preset!r} for {codec}; valid: {', '.join(names)}")
        return preset
    if o.type in _NUMERIC:
        low, high = _range(o) or (0, 0)
        low = max(low, 0)  # libsvtav1's -2 means "its default"
        n = _number(preset)
        if n is None or n != int(n) or not low <= n <= high:
            raise EncoderError(f"unknown preset {preset!r} for {codec}; valid: {low:g}-{high:g}")
        return str(int(n))
    return preset  # a free string the encoder checks itself


def _check_value(codec: str, o: av.codec.context.CodecOption, value: str) -> None:
    """Numbers, booleans and named constants, where the option is one; free strings pass."""
    if o.type not in _NUMERIC or value in {c.name for c in o.choices}:
        return
    if o.type == OptionType.BOOL and value.lower() in _BOOLS:
        return
    n = _number(value)
    names = [c.name for c in o.choices]
    if n is None:
        raise EncoderError(f"{codec} option {o.name} takes a number{' or ' + ', '.join(names) if names else ''}, "
                           f"not {value!r}")
    span = _range(o)
    if span and not span[0] <= n <= span[1]:
        raise EncoderError(f"{codec} option {o.name}={value} is out of range ({span[0]:g}-{span[1]:g})")


def video_encoder(codec: str) -> av.codec.Codec:
    try:
        enc = av.codec.Codec(codec, "w")
    except ValueError:
        raise EncoderError(f"encoder {codec!r} is not in this FFmpeg build") from None
    if enc.type != "video":
        raise EncoderError(f"{codec!r} is a {enc.type} encoder, not a video one")
    return enc


def check_size(codec: str, width: int, height: int) -> None:
    """Refuse frames the encoder is known to mishandle (`MIN_WIDTH`)."""
    least = MIN_WIDTH.get(codec)
    if least and width < least:
        raise EncoderError(f"{codec} is unreliable on frames under {least} px wide (corrupt output or a crash); "
                           f"the output is {width}x{height}: use libx264 or a larger scale")


def check(codec: str, *, crf: float | None = None, preset: str | None = None, bitrate: str | int | None = None,
          extra: Mapping[str, str] | None = None) -> None:
    """Refuse a bad encoder request before any input is opened (front ends, batches)."""
    encoder_options(codec, video_encoder(codec).create("video"), crf=crf, preset=preset, bitrate=bitrate, extra=extra)


def encoder_options(codec: str, cc: av.CodecContext, *, crf: float | None = None, preset: str | None = None,
                    bitrate: str | int | None = None,
                    extra: Mapping[str, str] | None = None) -> tuple[dict[str, str], int | None]:
    """(options for the encoder, bit_rate or None), every key and value checked as far as the
    AVOptions allow. `extra`: what `-x KEY=VALUE` passes; it may hold crf/preset/b itself."""
    known = _encoding_options(cc)
    extra = dict(extra or {})
    for key, given in (("crf", crf), ("preset", preset), ("b", bitrate)):
        if given is not None and key in extra:
            raise EncoderError(f"{key} given twice (as an option and as -x {key}={extra[key]})")
    crf = crf if crf is not None else (_number(extra["crf"]) if "crf" in extra else None)
    if "crf" in extra and crf is None:
        raise EncoderError(f"crf {extra['crf']!r} is not a number")
    preset = preset if preset is not None else extra.pop("preset", None)
    bitrate = bitrate if bitrate is not None else extra.pop("b", None)
    extra.pop("crf", None)
    options: dict[str, str] = {}
    for key, value in (("crf", crf), ("preset", preset)):
        if value is None:
            continue
        if key not in known:
            raise EncoderError(f"encoder {codec} has no {key!r} option")
        check = _check_crf if key == "crf" else _check_preset
        options[key] = check(codec, known[key], value if key == "crf" else str(value))
    bit_rate = parse_bitrate(bitrate) if bitrate is not None else None
    if bit_rate is not None and crf is not None:
        raise EncoderError("give crf or bitrate, not both (crf is constant quality, bitrate a target size)")
    for key, value in extra.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f" (see: ffmpeg -h encoder={codec})"
            raise EncoderError(f"{codec} has no option {key!r}{hint}")
        _check_value(codec, known[key], str(value))
        options[key] = str(value)
    return options, bit_rate


def merge_params(current: str | None, ours: Mapping[str, str]) -> str:
    """x265-params style "k=v:k=v": `current` (the user's -x value) wins over `ours` key by key."""
    pairs = [p for p in (current or "").split(":") if p]
    given = {p.split("=", 1)[0] for p in pairs}
    return ":".join(pairs + [f"{k}={v}" for k, v in ours.items() if k not in given])
