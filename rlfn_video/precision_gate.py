"""The precision gate: a backend and precision may serve only if its 8-bit output matches fp32 torch.

Both outputs are rounded to 8 bits and compared on crops of real images: the worst crop's PSNR
must reach `GATE_PSNR` (50 dB) and its share of values within +-1 `GATE_WITHIN_ONE` (97 %).
The crops: `CROP` (160x120) input pixels from the centre of Set14's baboon, comic and ppt3
(texture, line art, flat graphics with text) under ../shared, or of any folder given.

Where it runs: the tests, for every backend and precision (tests/test_backends.py), and
`rlfn-video bench --gate`, which refuses to measure a setting that fails. Not at run time:
users have no Set14, and a gate on synthetic frames would say little. The same thresholds gate
the fp16 ONNX export (onnx_export.py).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import RlfnError

GATE_PSNR = 50.0  # dB, worst crop
GATE_WITHIN_ONE = 0.97  # share of 8-bit values within +-1, worst crop
CROP = (160, 120)  # width, height in input pixels
IMAGES = ("baboon", "comic", "ppt3")

Upscale = Callable[[torch.Tensor], torch.Tensor]  # (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW) in [0, 1]


@dataclass(frozen=True)
class GateScore:
    label: str
    images: int
    psnr_min_db: float
    within_1_min: float

    @property
    def passed(self) -> bool:
        return self.psnr_min_db >= GATE_PSNR and self.within_1_min >= GATE_WITHIN_ONE

    def summary(self) -> str:
        return (f"{self.label}: worst of {self.images} crops {self.psnr_min_db:.2f} dB, "
                f"{self.within_1_min:.2%} within +-1 ({'passed' if self.passed else 'refused'})")


def default_folder() -> Path | None:
    from .eval_video import SHARED_DATA

    folder = SHARED_DATA / "benchmarks" / "Set14" / "HR"
    return folder if folder.is_dir() else None


def gate_crops(folder: str | os.PathLike | None = None, names: Sequence[str] = IMAGES,
               size: tuple[int, int] = CROP) -> list[torch.Tensor]:
    """(1, 3, h, w) [0, 1] centre crops of `names` in `folder` (default Set14 HR; any images
    there when none of the names is); [] when there is no folder."""
    from .evaluate import read_rgb

    folder = Path(folder) if folder is not None else default_folder()
    if folder is None or not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    chosen = [p for p in files if p.stem in names] or files[:len(names)]
    w, h = size
    crops = []
    for path in chosen:
        img = read_rgb(path).float().div(255)
        top, left = max(0, (img.shape[1] - h) // 2), max(0, (img.shape[2] - w) // 2)
        crops.append(img[:, top:top + h, left:left + w][None].contiguous())
    return crops


def score(candidate: Upscale, reference: Upscale, crops: Sequence[torch.Tensor], label: str = "") -> GateScore:
    """The worst crop's PSNR and share within +-1, both outputs rounded to 8 bits."""
    from .evaluate import psnr

    if not crops:
        raise RlfnError("the precision gate needs images (Set14 not found); give a folder of images")
    worst_psnr, worst_within = float("inf"), 1.0
    with torch.inference_mode():
        for x in crops:
            want = (reference(x).float().cpu() * 255).round().double()
            got = (candidate(x).float().cpu() * 255).round().double()
            if got.shape != want.shape:
                raise RlfnError(f"{label or 'candidate'}: output {tuple(got.shape)}, reference {tuple(want.shape)}")
            worst_psnr = min(worst_psnr, psnr(want, got))
            worst_within = min(worst_within, ((want - got).abs() <= 1).double().mean().item())
    return GateScore(label, len(crops), round(worst_psnr, 2), round(worst_within, 5))


def check(candidate: Upscale, reference: Upscale, crops: Sequence[torch.Tensor], label: str) -> GateScore:
    """`score`, raising a one-line RlfnError when the setting fails the gate."""
    result = score(candidate, reference, crops, label)
    if not result.passed:
        raise RlfnError(f"{label} refused by the precision gate: worst of {result.images} crops "
                        f"{result.psnr_min_db:.2f} dB, {result.within_1_min:.2%} within +-1 (needs >= "
                        f"{GATE_PSNR:g} dB and >= {GATE_WITHIN_ONE:.0%})")
    return result


def reference_engine(engine):
    """fp32 torch on the CPU with `engine`'s weights (on CUDA, fp32 convolutions may run in TF32)."""
    from .engine import Engine

    model = copy.deepcopy(engine.model).to(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format)
    return Engine(model, device="cpu", precision="fp32", backend="torch", tile=None)


def check_engine(engine, crops: Sequence[torch.Tensor], reference=None) -> GateScore:
    """`engine` (its backend at its precision) against fp32 torch: the score, or a one-line RlfnError."""
    return check(engine, reference or reference_engine(engine), crops, engine.backend_label)
