"""A segment job: the contract between the segment orchestrator and the workers that run them.

One job (`SegmentTask`) is one keyframe segment of one input: the source path and the span of
it to decode, the input's colour and HDR metadata (a segment's first frame may be tagged
otherwise), the `EncodeSettings` that decide the output's bits, the pipeline options, and the
path of the segment file to commit. `run_segment` runs it with an engine the caller loaded:
decode the span, upscale, encode by the same code as a single pass (`transcode.transcode_into`)
into a temporary name, rename it onto the segment path, and return a `SegmentResult` (frames,
checksum, size, seconds). Everything here is picklable, for worker processes and Ray actors.

Workers of every kind (workers.py: in process, one process per device, Ray actors) run jobs;
the orchestrator (segmented.py) plans them, commits their results in the manifest and joins the
segments. This module sits below both and imports neither.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import backends, encode, media, target_size
from .atomic import atomic_output
from .backends import Backend
from .codec_options import parse_bitrate
from .colour import ColourSpec
from .deinterlace import check_mode as check_deinterlace
from .errors import RlfnError, UnsupportedInputError
from .hdr import HdrMetadata
from .manifest import sha256_file
from .pipeline import PipelineOptions
from .transcode import transcode_into


@dataclass(frozen=True)
class EncodeSettings:
    """What decides the output's bits: model, numerics, encoder. Picklable (workers, Ray)."""

    scale: int = 4
    model: str | None = None  # None with no weights: the video default (zoo.video_default)
    weights: str | None = None
    precision: str = "fp32"
    tile: int | str | None = "auto"
    codec: str = "libx264"
    crf: float | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    bitrate: str | int | None = None  # "8M", "2500k", bits/s (not with crf)
    encoder_options: tuple[tuple[str, str], ...] = ()  # -x KEY=VALUE; a dict (or None) is accepted, stored sorted
    deinterlace: str = "auto"  # as in upscale_video; "field" is refused (see __post_init__)
    size: tuple[int | None, int | None] | None = None  # a target size, as in upscale_video; see `fitted`
    out_size: tuple[int, int] | None = None  # the encoded size `fitted` chose (None: scale x the input)
    backend: str | Backend.Torch | Backend.OpenVINO = "auto"  # names stored as configs; see `resolved`

    def __post_init__(self) -> None:
        config = backends.parse_backend(self.backend)  # a wrong name fails here, not in a worker
        object.__setattr__(self, "backend", "auto" if config is None else config)
        if self.encoder_options is None:
            object.__setattr__(self, "encoder_options", ())
        if isinstance(self.encoder_options, Mapping):  # kept hashable and in a stable order
            object.__setattr__(self, "encoder_options", tuple(sorted((str(k), str(v))
                                                                     for k, v in self.encoder_options.items())))
        # One frame per field would double each segment's frames and time base, which the manifest's
        # per-segment frame counts and the join do not allow for.
        if check_deinterlace(self.deinterlace) == "field":
            raise UnsupportedInputError("deinterlace='field' cannot run in segments (it doubles the frame rate); "
                                        "use deinterlace='frame' or run without segments")

    def resolved(self, device_kind: str) -> EncodeSettings:
        """With "auto" decided for the workers' device kind, so that every worker runs the same
        backend (and the manifest records it)."""
        if self.backend != "auto":
            return self
        import torch

        return replace(self, backend=backends.resolve_backend("auto", torch.device(device_kind), self.precision))

    def fitted(self, info: media.VideoInfo, note: Callable[[str], None] = lambda m: None) -> EncodeSettings:
        """These settings for this input: with a target `size`, its model scale and exact output size."""
        if self.size is None:
            return self
        fit = target_size.fit(info.width, info.height, target_width=self.size[0], target_height=self.size[1])
        note(fit.note(info.width, info.height))
        return replace(self, scale=fit.scale, out_size=(fit.width, fit.height))

    def plan(self, info: media.VideoInfo, warn: Callable[[str], None] = lambda m: None) -> encode.VideoPlan:
        """The encoder plan for this input (after `fitted`)."""
        model_size = (info.width * self.scale, info.height * self.scale)
        width, height = self.out_size or model_size
        return encode.plan_video(info, width=width, height=height, model_size=model_size, warn=warn,
                                 **self.video_options)

    @property
    def video_options(self) -> dict[str, Any]:
        """The encoder arguments of `encode.plan_video`."""
        return dict(codec=self.codec, crf=self.crf, preset=self.preset, pix_fmt=self.pix_fmt, bitrate=self.bitrate,
                    encoder_options=dict(self.encoder_options))

    @classmethod
    def create(cls, *, device_kind: str, fast: bool | None = None, precision: str | None = None,
               weights: str | os.PathLike | None = None, backend: Any = "auto", half: bool | None = None,
               **kwargs: Any) -> EncodeSettings:
        """Settings with the precision and backend the engine will choose on `device_kind` ("cpu"/"cuda");
        `fast` as in `Engine` (`half`: its old name)."""
        import torch

        from .engine import choose_precision

        device = torch.device(device_kind)
        precision = choose_precision(device, half if fast is None else fast, precision, backend)
        backend = backends.resolve_backend(backend, device, precision)
        return cls(precision=precision, weights=str(Path(weights).resolve()) if weights else None, backend=backend,
                   **kwargs)

    @property
    def model_name(self) -> str | None:
        """The model the workers load: `model`, or with neither model nor weights the video default."""
        from .models.zoo import video_model_for

        return video_model_for(self.model, self.weights, self.scale)

    def fingerprint(self) -> dict[str, Any]:
        from .models.zoo import embedded_weights

        weights = Path(self.weights) if self.weights else embedded_weights(self.model_name, self.scale)
        return {"scale": self.scale, "model": self.model, "weights_sha256": sha256_file(weights),
                "precision": self.precision, "tile": self.tile, "codec": self.codec, "crf": self.crf,
                "preset": self.preset, "pix_fmt": self.pix_fmt,
                # None when unset: manifests written before these existed still match
                "bitrate": parse_bitrate(self.bitrate) if self.bitrate is not None else None,
                "encoder_options": dict(self.encoder_options) or None,
                "deinterlace": None if self.deinterlace == "off" else self.deinterlace,  # None: as before it existed
                "size": list(self.out_size) if self.out_size else None,
                "backend": backends.fingerprint(self.backend)}  # None for torch, as before backends existed


@dataclass(frozen=True)
class SegmentTask:
    src: str
    dst: str  # the committed segment file
    index: int
    span: media.Span
    colour: ColourSpec  # of the whole input (a segment's first frame might be tagged otherwise)
    settings: EncodeSettings
    pipeline: PipelineOptions | None = None
    hdr: HdrMetadata | None = None  # of the whole input: every segment writes the same


@dataclass(frozen=True)
class SegmentResult:
    index: int
    frames: int
    sha256: str
    bytes: int
    seconds: float
    worker: str = ""


def run_segment(task: SegmentTask, engine: Any,
                   progress: Callable[[int, int | None], None] | None = None) -> SegmentResult:
    """Decode, upscale and encode one segment into a temporary file, then rename it into place.
    `progress(done, total)`: frames of this segment, as in `upscale_video`."""
    dst = Path(task.dst)
    s = task.settings
    with media.Source(task.src, span=task.span, deinterlace=s.deinterlace, colour=task.colour,
                      hdr=task.hdr) as source:
        info = source.info
        plan = s.plan(info)
        with atomic_output(dst, overwrite=True) as tmp:  # a segment left uncommitted is redone in place
            _, frames, seconds, _ = transcode_into(source, tmp, plan, engine, pipeline=task.pipeline,
                                                   progress=progress, total=task.span.frames, name=str(dst))
            if task.span.frames is not None and frames != task.span.frames:
                raise RlfnError(f"{dst.name}: encoded {frames} frames, the segment has {task.span.frames}")
    return SegmentResult(task.index, frames, sha256_file(dst), dst.stat().st_size, seconds)

