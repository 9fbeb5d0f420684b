"""HDR static metadata: read from the source, handed to the encoder that can write it.

Static metadata is SMPTE ST 2086 (the mastering display's primaries, white point and luminance
range) and CTA-861.3 (MaxCLL / MaxFALL). It describes the content, not the coded pictures, so it
stays valid after upscaling. `read_hdr` takes it from the first frame's side data (in-band SEI /
OBUs) or, failing that, the stream's (Matroska/MP4 boxes). PyAV attaches no side data to frames
we create and none to an encoder's stream parameters (the display matrix aside), so the only
route into the output is the encoder's own parameters: x265-params, x264-params and
svtav1-params. Encoders without one drop it, with a note.

Dynamic metadata (HDR10+, Dolby Vision RPUs, HDR Vivid) describes each source frame as coded;
it cannot survive a re-encode and is dropped with a note. Transfer tags (PQ, HLG) travel in
`ColourSpec`, not here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

_T = av.sidedata.sidedata.Type
PQ, HLG = 16, 18  # H.273 TransferCharacteristics: SMPTE ST 2084, ARIB STD-B67
_MASTERING = struct.Struct("<22i")  # AVMasteringDisplayMetadata: 10 AVRationals, has_primaries, has_luminance
_LIGHT = struct.Struct("<2I")  # AVContentLightMetadata: MaxCLL, MaxFALL
_DYNAMIC_FRAME = {_T.DYNAMIC_HDR_PLUS: "HDR10+", _T.DOVI_RPU_BUFFER: "Dolby Vision", _T.DOVI_METADATA: "Dolby Vision",
                  _T.DYNAMIC_HDR_VIVID: "HDR Vivid"}
_DYNAMIC_STREAM = {"dynamic_hdr10_plus": "HDR10+", "dovi_conf": "Dolby Vision"}
_PARAMS = {"libx265": "x265-params", "libx264": "x264-params", "libx264rgb": "x264-params",
           "libsvtav1": "svtav1-params"}

Point = tuple[Fraction, Fraction]  # CIE 1931 (x, y)


@dataclass(frozen=True)
class MasteringDisplay:
    red: Point
    green: Point
    blue: Point
    white: Point
    max_luminance: Fraction  # cd/m²
    min_luminance: Fraction


@dataclass(frozen=True)
class HdrMetadata:
    """What the source says; `dynamic` names the dynamic metadata found (dropped on output)."""

    mastering: MasteringDisplay | None = None
    light_level: tuple[int, int] | None = None  # (MaxCLL, MaxFALL), cd/m²
    dynamic: tuple[str, ...] = ()
    dovi_base: str | None = None  # Dolby Vision: what the base layer is, when the stream says


def _fraction(num: int, den: int) -> Fraction | None:
    return Fraction(num, den) if den > 0 and num >= 0 else None


def parse_mastering(data: bytes) -> MasteringDisplay | None:
    """AVMasteringDisplayMetadata (frame or packet side data); None unless primaries and luminance are both set."""
    if len(data) < _MASTERING.size:
        return None
    v = _MASTERING.unpack_from(data)
    if not (v[20] and v[21]):
        return None
    values = [_fraction(v[i], v[i + 1]) for i in range(0, 20, 2)]
    if None in values:
        return None
    r, g, b, w = ((values[i], values[i + 1]) for i in range(0, 8, 2))
    return MasteringDisplay(red=r, green=g, blue=b, white=w, min_luminance=values[8], max_luminance=values[9])


def parse_light_level(data: bytes) -> tuple[int, int] | None:
    return _LIGHT.unpack_from(data) if len(data) >= _LIGHT.size else None


_DOVI_BASE = {0: "not backward compatible (the output's colours will be wrong)", 1: "HDR10", 2: "SDR",
              4: "HLG", 6: "BT.2100 PQ"}


def read_hdr(frame: av.VideoFrame, stream: av.VideoStream) -> HdrMetadata | None:
    """The static and dynamic HDR metadata of a decoded frame and its stream (None: there is none)."""
    side = {t: bytes(d) for t, d in frame.side_data.items()}
    cc = stream.codec_context
    coded: dict[str, bytes] = dict(cc.coded_side_data) if cc is not None else {}
    decoded: dict[Any, bytes] = dict(cc.decoded_side_data) if cc is not None else {}

    def pick(frame_type: Any, packet_type: str) -> bytes | None:
        return side.get(frame_type) or decoded.get(frame_type) or coded.get(packet_type)

    mastering = pick(_T.MASTERING_DISPLAY_METADATA, "mastering_display_metadata")
    light = pick(_T.CONTENT_LIGHT_LEVEL, "content_light_level")
    dynamic = {name for t, name in _DYNAMIC_FRAME.items() if t in side}
    dynamic |= {name for t, name in _DYNAMIC_STREAM.items() if t in coded}
    dovi = coded.get("dovi_conf")
    # AVDOVIDecoderConfigurationRecord: version major, minor, profile, level, rpu/el/bl flags, compatibility id
    base = _DOVI_BASE.get(dovi[7], f"compatibility id {dovi[7]}") if dovi and len(dovi) >= 8 else None
    info = HdrMetadata(mastering=parse_mastering(mastering) if mastering else None,
                       light_level=parse_light_level(light) if light else None,
                       dynamic=tuple(sorted(dynamic)), dovi_base=base)
    return info if info != HdrMetadata() else None


def _units(value: Fraction, per_unit: int) -> int:
    return round(value * per_unit)


def _x26x_mastering(m: MasteringDisplay) -> str:
    """G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min) in the SEI's units: chromaticity 0.00002, luminance 0.0001 cd/m²."""
    xy = "".join(f"{k}({_units(p[0], 50000)},{_units(p[1], 50000)})"
                 for k, p in (("G", m.green), ("B", m.blue), ("R", m.red), ("WP", m.white)))
    return f"{xy}L({_units(m.max_luminance, 10000)},{_units(m.min_luminance, 10000)})"


def _svt_mastering(m: MasteringDisplay) -> str:
    """The same in decimals, as SVT-AV1 parses it (it quantises to AV1's fixed-point fields)."""
    xy = "".join(f"{k}({float(p[0]):.5f},{float(p[1]):.5f})"
                 for k, p in (("G", m.green), ("B", m.blue), ("R", m.red), ("WP", m.white)))
    return f"{xy}L({float(m.max_luminance):.4f},{float(m.min_luminance):.4f})"


def encoder_params(codec: str, hdr: HdrMetadata | None, *, transfer: int, bit_depth: int) -> dict[str, str]:
    """key -> value for the encoder's own parameter string (`params_option`: x265-params, ...) that
    write `hdr`; for libx265 also log-level=error. Empty where the codec has no such option."""
    params: dict[str, str] = {}
    if codec == "libx265":
        params["log-level"] = "error"  # x265 logs to stderr itself, not through FFmpeg
    if hdr is None or (hdr.mastering is None and hdr.light_level is None) or codec not in _PARAMS:
        return params
    m, cll = hdr.mastering, hdr.light_level
    if codec == "libsvtav1":
        if m:
            params["mastering-display"] = _svt_mastering(m)
        if cll:
            params["content-light"] = f"{cll[0]},{cll[1]}"
        return params
    if m:
        params["master-display" if codec == "libx265" else "mastering-display"] = _x26x_mastering(m)
    if cll:
        params["max-cll" if codec == "libx265" else "cll"] = f"{cll[0]},{cll[1]}"
    if codec == "libx265":
        params["hdr10"] = "1"
        if transfer == PQ and bit_depth >= 10:
            params["hdr10-opt"] = "1"  # x265's block-level QP tuning for PQ
    return params


def params_option(codec: str) -> str | None:
    """The option holding the encoder's own key=value:... parameters."""
    return _PARAMS.get(codec)


def notes(codec: str, hdr: HdrMetadata | None, *, transfer: int, bit_depth: int, warn: Callable[[str], None]) -> None:
    """Say what of the source's HDR the output loses."""
    if transfer in (PQ, HLG) and bit_depth < 10:
        name = "PQ" if transfer == PQ else "HLG"
        warn(f"{name} video encoded at {bit_depth} bits: expect banding; a 10-bit format (yuv420p10le, "
             f"libx265) keeps it smooth")
    if hdr is None:
        return
    if hdr.dynamic:
        kinds = " and ".join(hdr.dynamic)
        base = f"; the Dolby Vision base layer is {hdr.dovi_base}" if hdr.dovi_base and "Dolby Vision" in kinds else ""
        kept = (hdr.mastering or hdr.light_level) and codec in _PARAMS
        static = " (the static HDR10 metadata is kept)" if kept else ""
        warn(f"{kinds} dynamic metadata dropped: it describes the source's frames and cannot survive "
             f"re-encoding{static}{base}")
    if (hdr.mastering or hdr.light_level) and codec not in _PARAMS:
        warn(f"HDR mastering display / content light level metadata dropped: {codec} takes none here "
             f"(libx265, libx264 and libsvtav1 do)")
