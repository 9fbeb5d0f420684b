"""Compressed-video benchmark: how upscalers hold up on what real video looks like after a codec.

Protocol (`rlfn-video eval --compressed`; `evaluate_compressed`, `score_video_model`):

1. Sequences. Each HR image of the sets (default: Set14 and Kodak from ../shared) becomes a slow
   pan of `frames` frames (default 8): an HR window moving `PAN` = 2 px right and 1 px down per
   frame, as large as fits the whole pan, cropped to a multiple of 2 x scale (so the LR frames
   have even sizes, as 4:2:0 needs).
2. LR. Each HR frame is downscaled by MATLAB bicubic and rounded to 8 bits (`resize.downscale`,
   as `evaluate.py` makes benchmark LR).
3. Codec. The LR frames are encoded as one clip with libx264, preset medium, 4:2:0, BT.709
   limited range, at each CRF (default 18, 23, 28, 33), and decoded again
   (`codec_roundtrip.roundtrip`: deterministic, colour by `colour.py` both ways). The "clean"
   row skips the codec. The decoded float RGB goes to the upscalers unrounded, as in the video
   pipeline.
4. Scores. Each upscaled frame is scored against its own HR frame by `evaluate.score` (SR rounded
   to 8 bits; Y of BT.601 studio swing in float; `scale` px border cropped; Y-PSNR and SSIM),
   averaged over the frames of a sequence, then over all images of all sets (pooled). The "mean"
   row averages the clean row and the CRF rows: the single number the video default is chosen by.

Upscalers are MATLAB bicubic (`evaluate.bicubic_upscaler`) and any `Engine` (or callable
(3, H, W) [0, 1] -> (3, sH, sW)); every upscaler sees the very same decoded frames.

Stored format (checkpoint metadata key "eval_video", what `score_video_model` returns)::

    {"clean": {"psnr": ..., "ssim": ...},                 # no codec
     "crf":   {"18": {"psnr": ..., "ssim": ...}, "23": {...}, "28": {...}, "33": {...}},
     "mean":  {"psnr": ..., "ssim": ...},                 # over clean and the CRFs
     "protocol": {"version": 1, "scale": 4, "sets": ["Set14", "kodak"], "images": 38, "frames": 8,
                  "pan": [2, 1], "codec": "libx264", "preset": "medium"}}

PSNR in dB rounded to 3 decimals, SSIM to 4 (as the "eval" key of Set5/Set14 scores). CRF keys
are strings (JSON object keys). Scores are comparable only under the same "protocol".
`rlfn-video eval --compressed --json FILE` writes {upscaler name: this dict} for every column.

Run time here, x4 with the defaults (38 images x 5 rows x 8 frames = 1520 frames), one model
(RLFN-S, fp32) plus bicubic, on this project's 2-core CPU while two training jobs and another
benchmark shared it (load average ~4.5): about 70 minutes, extrapolated from 11 Set14 images in
18 min and one Kodak image in 2 min (118 s: the model 58 s, i.e. ~1.45 s per 188x126 LR frame;
scoring 53 s, ~0.67 s per frame and upscaler, float64 SSIM; codec 2 s). A quieter machine takes
about half (baboon: 48 s at load 3.3, 104 s at 4.5). Each further model adds about three quarters; x2 roughly 2.5x (the model
sees 4x the LR pixels); `frames=4` or one set cut it proportionally. With a CUDA engine the
scores are computed on the GPU too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .codec_roundtrip import roundtrip
from .errors import RlfnError, UnsupportedInputError
from .evaluate import Upscaler, bicubic_upscaler, pairs, read_rgb, score
from .resize import downscale

CRFS = (18, 23, 28, 33)
FRAMES = 8
PAN = (2, 1)  # HR pixels per frame: right, down
CODEC = "libx264"
PRESET = "medium"
VERSION = 1
CLEAN = "clean"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_SETS = (SHARED_DATA / "benchmarks" / "Set14", SHARED_DATA / "train" / "kodak")

Progress = Callable[[int, int], None]  # (images done, images in all)


def default_sets() -> list[Path]:
    """The default sets (Set14, Kodak) that exist here; a `RlfnError` when none does."""
    found = [p for p in DEFAULT_SETS if p.is_dir()]
    if not found:
        raise RlfnError(f"no benchmark sets found ({', '.join(map(str, DEFAULT_SETS))}); pass --data DIR")
    return found


def pan(hr: torch.Tensor, scale: int, frames: int = FRAMES, step: tuple[int, int] = PAN) -> torch.Tensor:
    """(F, 3, h, w) windows of a (3, H, W) image, frame i shifted by i * step (x, y) pixels; the
    largest window that fits the whole pan, cropped to a multiple of 2 * scale."""
    dx, dy = step
    unit = 2 * scale
    h = (hr.shape[-2] - dy * (frames - 1)) // unit * unit
    w = (hr.shape[-1] - dx * (frames - 1)) // unit * unit
    if h < unit or w < unit:
        raise UnsupportedInputError(f"a {hr.shape[-1]}x{hr.shape[-2]} image is too small for a {frames}-frame pan at x{scale}")
    return torch.stack([hr[:, i * dy: i * dy + h, i * dx: i * dx + w] for i in range(frames)])


@dataclass(frozen=True)
class VideoSequence:
    name: str
    hr: torch.Tensor  # (F, 3, h, w) float64, 0-255 integers
    lr: torch.Tensor  # (F, 3, h/s, w/s) float32 in [0, 1], 8-bit values


def make_sequence(name: str, hr255: torch.Tensor, scale: int, frames: int = FRAMES) -> VideoSequence:
    windows = pan(hr255, scale, frames)
    lr = downscale(windows, scale, quantize=True)
    return VideoSequence(name, windows, (lr / 255.0).float())


def degrade(lr: torch.Tensor, crf: int | None) -> torch.Tensor:
    """The decoded clip at `crf` (None: the clean frames)."""
    if crf is None:
        return lr
    return roundtrip(lr, codec=CODEC, crf=crf, preset=PRESET)


def row_key(crf: int | None) -> str:
    return CLEAN if crf is None else str(crf)


def row_label(key: str) -> str:
    return key if key in (CLEAN, "mean") else f"CRF {key}"


@dataclass
class VideoScores:
    """Scores of several upscalers on the same sequences: `scores[upscaler][row] = (psnr, ssim)`,
    rows "clean" then the CRFs as strings, in the order asked."""

    scale: int
    rows: list[str]
    upscalers: list[str]
    sets: list[str]
    images: int
    frames: int
    scores: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    def mean(self, upscaler: str) -> tuple[float, float]:
        """Mean over the clean row and the CRF rows."""
        rows = self.scores[upscaler]
        return (float(np.mean([rows[r][0] for r in self.rows])), float(np.mean([rows[r][1] for r in self.rows])))

    def protocol(self) -> dict:
        return {"version": VERSION, "scale": self.scale, "sets": list(self.sets), "images": self.images,
                "frames": self.frames, "pan": list(PAN), "codec": CODEC, "preset": PRESET}

    def as_meta(self, upscaler: str) -> dict:
        """One upscaler's scores in the "eval_video" format (module docstring)."""
        fmt = lambda ps: {"psnr": round(ps[0], 3), "ssim": round(ps[1], 4)}  # noqa: E731
        rows = self.scores[upscaler]
        out: dict = {}
        if CLEAN in rows:
            out[CLEAN] = fmt(rows[CLEAN])
        out["crf"] = {r: fmt(rows[r]) for r in self.rows if r != CLEAN}
        out["mean"] = fmt(self.mean(upscaler))
        out["protocol"] = self.protocol()
        return out


def _check(crfs: Sequence[int], frames: int) -> None:
    if frames < 1:
        raise RlfnError(f"frames must be at least 1, not {frames}")
    bad = [c for c in crfs if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 51]
    if bad:
        raise RlfnError(f"CRF must be an integer 0-51 (libx264), not {', '.join(map(repr, bad))}")


def _score_frames(up: Upscaler, frames: torch.Tensor, hr: torch.Tensor, scale: int) -> tuple[float, float]:
    ps, ss = [], []
    for lr, target in zip(frames, hr):
        sr = up(lr).double().clamp(0, 1).mul(255).round()  # scored where the upscaler left it (a GPU: fast SSIM)
        target = target.to(sr.device)
        want = tuple(target.shape)
        if tuple(sr.shape) != want:
            raise RlfnError(f"the upscaler returned {tuple(sr.shape)} for a {tuple(lr.shape)} frame, not {want}")
        p, s = score(sr, target, scale)
        ps.append(p)
        ss.append(s)
    return float(np.mean(ps)), float(np.mean(ss))


def evaluate_compressed(upscalers: Mapping[str, Upscaler], scale: int, *, sets: Iterable[str | Path] | None = None,
                        crfs: Sequence[int] = CRFS, frames: int = FRAMES,
                        progress: Progress | None = None) -> VideoScores:
    """Score each upscaler (name -> callable) on the compressed sequences of `sets` (None: Set14
    and Kodak from ../shared, those present). Rows: "clean", then each CRF in the order given."""
    crfs = list(dict.fromkeys(crfs))  # a CRF named twice is one row
    _check(crfs, frames)
    if not upscalers:
        raise RlfnError("nothing to score: no upscalers given")
    folders = [Path(p) for p in sets] if sets is not None else default_sets()
    images = [(folder.name, name, hr) for folder in folders for name, hr, _ in pairs(folder, scale)]
    rows: list[int | None] = [None, *crfs]
    per_image: dict[str, dict[str, list[tuple[float, float]]]] = {u: {row_key(r): [] for r in rows} for u in upscalers}
    for done, (_, name, path) in enumerate(images):
        seq = make_sequence(name, read_rgb(path), scale, frames)
        for crf in rows:
            decoded = degrade(seq.lr, crf)
            for label, up in upscalers.items():
                per_image[label][row_key(crf)].append(_score_frames(up, decoded, seq.hr, scale))
        if progress is not None:
            progress(done + 1, len(images))
    result = VideoScores(scale=scale, rows=[row_key(r) for r in rows], upscalers=list(upscalers),
                         sets=[f.name for f in folders], images=len(images), frames=frames)
    for label, by_row in per_image.items():
        result.scores[label] = {r: (float(np.mean([p for p, _ in v])), float(np.mean([s for _, s in v])))
                                for r, v in by_row.items()}
    return result


def with_bicubic(models: Mapping[str, Upscaler], scale: int) -> dict[str, Upscaler]:
    """bicubic first, then the models (the table's column order)."""
    return {"bicubic": bicubic_upscaler(scale), **models}


def score_video_model(engine: Upscaler, scale: int | None = None, *, sets: Iterable[str | Path] | None = None,
                      crfs: Sequence[int] = CRFS, frames: int = FRAMES, progress: Progress | None = None) -> dict:
    """The "eval_video" metadata of one model (module docstring), for the training export:
    `meta["eval_video"] = score_video_model(Engine(desc, device="cpu", fast=False))`."""
    scale = scale if scale is not None else engine.scale
    result = evaluate_compressed({"model": engine}, scale, sets=sets, crfs=crfs, frames=frames, progress=progress)
    return result.as_meta("model")


def summary(eval_video: dict) -> tuple[float, float] | None:
    """(PSNR, SSIM) of the "mean" row of stored "eval_video" metadata (recomputed from the rows
    when absent); None when the metadata has no rows."""
    if not isinstance(eval_video, dict):
        return None
    if isinstance(eval_video.get("mean"), dict):
        return eval_video["mean"]["psnr"], eval_video["mean"]["ssim"]
    rows = ([eval_video[CLEAN]] if isinstance(eval_video.get(CLEAN), dict) else []) + list(eval_video.get("crf", {}).values())
    if not rows:
        return None
    return float(np.mean([r["psnr"] for r in rows])), float(np.mean([r["ssim"] for r in rows]))
