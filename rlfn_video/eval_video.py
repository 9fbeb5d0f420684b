"""Compressed-video benchmark: how upscalers hold up on what real video looks like after a codec.

Protocol (`rlfn-video eval --compressed`; `evaluate_compressed`, `score_video_model`):

1. Sequences. Each HR image of the sets (default: Set14 and Kodak from ../shared) becomes a slow
   pan of `frames` frames (default 8): an HR window moving `PAN` = 2 px right and 1 px down per
   frame, as large as fits the whole pan, cropped to a multiple of 2 x scale (so the LR frames
   have even sizes, as 4:2:0 needs). A video file among the sets gives real motion instead:
   `CLIP_WINDOWS` runs of `frames` consecutive frames, evenly spaced through it, each decoded
   frame (RGB by `colour.py` with the file's own matrix and range, rounded to 8 bits, centre
   crop to a multiple of 2 x scale) the HR. Such a source is itself lossy, so its HR carries the
   source's artifacts: good for comparing upscalers on real content, not as absolute quality.
2. LR. Each HR frame is downscaled by MATLAB bicubic and rounded to 8 bits (`resize.downscale`,
   as `evaluate.py` makes benchmark LR).
3. Codec. The LR frames are encoded as one clip with libx264, preset medium, 4:2:0, BT.709
   limited range, at each CRF (default 18, 23, 28, 33), and decoded again
   (`codec_roundtrip.roundtrip`: deterministic, colour by `colour.py` both ways). The "clean"
   row skips the codec. The decoded float RGB goes to the upscalers unrounded, as in the video
   pipeline.
4. Scores. Each upscaled frame is scored against its own HR frame by `evaluate.score` (SR rounded
   to 8 bits; Y of BT.601 studio swing in float; `scale` px border cropped; Y-PSNR and SSIM),
   averaged over the frames of a sequence, then over all sequences of all sets (pooled). The "mean"
   row averages the clean row and the CRF rows: the single number the video default is chosen by.

Upscalers are MATLAB bicubic (`evaluate.bicubic_upscaler`) and any `Engine` (or callable
(3, H, W) [0, 1] -> (3, sH, sW)); every upscaler sees the very same decoded frames.

Stored format (checkpoint metadata key "eval_video", what `score_video_model` returns)::

    {"clean": {"psnr": ..., "ssim": ...},                 # no codec
     "crf":   {"18": {"psnr": ..., "ssim": ...}, "23": {...}, "28": {...}, "33": {...}},
     "mean":  {"psnr": ..., "ssim": ...},                 # over clean and the CRFs
     "protocol": {"version": 1, "scale": 4, "sets": ["Set14", "kodak"], "images": 38, "frames": 8,
                  "pan": [2, 1], "codec": "libx264", "preset": "medium"}}

("images" counts sequences: one per image, up to `CLIP_WINDOWS` per video file; "pan" applies to
the images only.)

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

from . import media
from .codec_roundtrip import roundtrip
from .compare import picture_rgb
from .errors import RlfnError, UnsupportedInputError, check_output_shape
from .evaluate import Upscaler, bicubic_upscaler, pairs, read_rgb, score
from .resize import downscale

CRFS = (18, 23, 28, 33)
FRAMES = 8
CLIP_WINDOWS = 4  # sequences per video file
PAN = (2, 1)  # HR pixels per frame: right, down
CODEC = "libx264"
PRESET = "medium"
VERSION = 1
CLEAN = "clean"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_SETS = (SHARED_DATA / "benchmarks" / "Set14", SHARED_DATA / "train" / "kodak")

Progress = Callable[[int, int], None]  # (sequences done, sequences in all)


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


def _crop_to(hr: torch.Tensor, unit: int) -> torch.Tensor:
    """The centre of (..., H, W), each side cut to a multiple of `unit`."""
    h, w = hr.shape[-2] // unit * unit, hr.shape[-1] // unit * unit
    y, x = (hr.shape[-2] - h) // 2, (hr.shape[-1] - w) // 2
    return hr[..., y:y + h, x:x + w]


def _frame_count(path: Path) -> int:
    """Frames that decode (counted: a container's index may promise one more, as box.mp4's does)."""
    with media.Source(path) as source:
        return sum(isinstance(p, media.Picture) for p in source)


def clip_windows(path: Path, frames: int = FRAMES, windows: int = CLIP_WINDOWS) -> list[int]:
    """First frame index of each window: as many as fit without overlap (at most `windows`),
    evenly spaced from the first frame to the last."""
    total = _frame_count(path)
    if total < frames:
        raise UnsupportedInputError(f"{path}: {total} frame(s), fewer than the {frames} of one sequence")
    n = min(windows, total // frames)
    return [round(k * (total - frames) / (n - 1)) if n > 1 else (total - frames) // 2 for k in range(n)]


def clip_sequences(path: str | Path, scale: int, frames: int = FRAMES, windows: int = CLIP_WINDOWS, *,
                   starts: Sequence[int] | None = None) -> list[VideoSequence]:
    """The real-motion sequences of a video file (module docstring, step 1); `starts`: the
    windows' first frames when already known (`clip_windows`, which decodes the file to count)."""
    path = Path(path)
    starts = clip_windows(path, frames, windows) if starts is None else list(starts)
    wanted = {s + i for s in starts for i in range(frames)}
    got: dict[int, torch.Tensor] = {}
    with media.Source(path) as source:
        for pic in source:
            if isinstance(pic, media.Picture) and pic.index in wanted:
                got[pic.index] = picture_rgb(pic).double().mul(255).round()
                if len(got) == len(wanted):
                    break
    if len(got) < len(wanted):
        raise UnsupportedInputError(f"{path}: decoded {len(got)} of the {len(wanted)} frames its sequences need")
    unit = 2 * scale
    out = []
    for s in starts:
        hr = _crop_to(torch.stack([got[s + i] for i in range(frames)]), unit)
        if min(hr.shape[-2:]) < unit:
            raise UnsupportedInputError(f"{path}: frames too small for x{scale}")
        lr = downscale(hr, scale, quantize=True)
        out.append(VideoSequence(f"{path.stem}@{s}", hr, (lr / 255.0).float()))
    return out


def _plan(entries: Sequence[Path], scale: int, frames: int) -> list[tuple[int, Callable[[], list[VideoSequence]]]]:
    """(sequences it gives, loader) per image of a folder and per video file."""
    plan: list[tuple[int, Callable[[], list[VideoSequence]]]] = []
    for entry in entries:
        if entry.is_file():
            starts = clip_windows(entry, frames)
            plan.append((len(starts), lambda e=entry, s=starts: clip_sequences(e, scale, frames, starts=s)))
        else:
            plan += [(1, lambda n=name, p=path: [make_sequence(n, read_rgb(p), scale, frames)])
                     for name, path, _ in pairs(entry, scale)]
    return plan


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
    images: int  # sequences: one per image, up to CLIP_WINDOWS per video file
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
        check_output_shape(sr, tuple(target.shape), what="the upscaler", given=f"a {tuple(lr.shape)} frame")
        p, s = score(sr, target, scale)
        ps.append(p)
        ss.append(s)
    return float(np.mean(ps)), float(np.mean(ss))


def evaluate_compressed(upscalers: Mapping[str, Upscaler], scale: int, *, sets: Iterable[str | Path] | None = None,
                        crfs: Sequence[int] = CRFS, frames: int = FRAMES,
                        progress: Progress | None = None) -> VideoScores:
    """Score each upscaler (name -> callable) on the compressed sequences of `sets`: image folders
    and video files (None: Set14 and Kodak from ../shared, those present). Rows: "clean", then each
    CRF in the order given."""
    crfs = list(dict.fromkeys(crfs))  # a CRF named twice is one row
    _check(crfs, frames)
    if not upscalers:
        raise RlfnError("nothing to score: no upscalers given")
    folders = [Path(p) for p in sets] if sets is not None else default_sets()
    plan = _plan(folders, scale, frames)
    total = sum(n for n, _ in plan)
    rows: list[int | None] = [None, *crfs]
    per_seq: dict[str, dict[str, list[tuple[float, float]]]] = {u: {row_key(r): [] for r in rows} for u in upscalers}
    done = 0
    for _, load in plan:
        for seq in load():
            for crf in rows:
                decoded = degrade(seq.lr, crf)
                for label, up in upscalers.items():
                    per_seq[label][row_key(crf)].append(_score_frames(up, decoded, seq.hr, scale))
            done += 1
            if progress is not None:
                progress(done, total)
    result = VideoScores(scale=scale, rows=[row_key(r) for r in rows], upscalers=list(upscalers),
                         sets=[f.name for f in folders], images=total, frames=frames)
    for label, by_row in per_seq.items():
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
