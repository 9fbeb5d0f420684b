"""The named models and the weights shipped inside the package.

A *model name* (what `--model`, `load_model(model=...)`, `Engine.from_options`, `upscale_video`
and `vsrlfn.rlfn(model=...)` take) is one entry of `MODELS`: an architecture (a key of
`rlfn.VARIANTS`) and what its weights are for. Its embedded weights, when shipped, are
`weights/{name}_x{scale}.pth`. The bare architecture names (`rlfn`, `rlfn_s`, `rlfn_ntire`) stay
valid names, so `--model rlfn --weights official.pth` checks the file's architecture as before.

Defaults: `DEFAULT_MODEL` for images, `eval` and `bench`; `DEFAULT_VIDEO_MODEL` for the video
front ends (`rlfn-video video`/`batch`, `upscale_video`, segmented runs, `vsrlfn`), falling back
to `DEFAULT_MODEL` at scales where it has no weights (`video_default`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, UnknownModelError
from .rlfn import SCALES, Arch, arch_for

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    arch: str  # a key of rlfn.VARIANTS
    purpose: str


# The one registry of model names. Order: the architectures first (the names error messages have
# always listed), then the presets trained for a purpose.
MODELS: dict[str, ModelInfo] = {m.name: m for m in (
    ModelInfo("rlfn", "rlfn", "architecture only (52 ch, 6 blocks): official RLFN weights via --weights"),
    ModelInfo("rlfn_s", "rlfn_s", "clean photos: MATLAB-bicubic downscaled (the SR benchmarks' degradation)"),
    ModelInfo("rlfn_ntire", "rlfn_ntire", "architecture only (46/48 ch, 4 blocks): NTIRE 2022 weights via --weights"),
    ModelInfo("rlfn_s_video", "rlfn_s", "compressed video: H.264/HEVC at CRF 18-35, 4:2:0 chroma, noise, blur"),
)}

DEFAULT_MODEL = "rlfn_s"  # images, eval, bench
DEFAULT_VIDEO_MODEL = "rlfn_s"  # video, batch, upscale_video, vsrlfn (see video_default)
CLEAN_MODEL = "rlfn_s"
VIDEO_MODEL = "rlfn_s_video"

_STEM = re.compile(r"^(?P<name>.+)_x(?P<scale>\d)$")


def model_info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def arch_of(name: str, scale: int) -> Arch:
    """The architecture of model `name` at `scale` (validates both)."""
    return arch_for(model_info(name).arch, scale)


def weights_path(name: str, scale: int) -> Path:
    return WEIGHTS_DIR / f"{name}_x{scale}.pth"


def has_weights(name: str, scale: int) -> bool:
    return name in MODELS and weights_path(name, scale).is_file()


def parse_stem(stem: str) -> tuple[str, int] | None:
    """`rlfn_s_video_x4` -> ("rlfn_s_video", 4); None for a name that is not NAME_xS."""
    m = _STEM.match(stem)
    return (m["name"], int(m["scale"])) if m else None


def shipped() -> list[tuple[str, int, Path]]:
    """(model name, scale, path) of every embedded weights file, sorted by name then scale."""
    out = []
    for p in WEIGHTS_DIR.glob("*_x[0-9].pth"):
        parsed = parse_stem(p.stem)
        if parsed and parsed[1] in SCALES:
            out.append((*parsed, p))
    return sorted(out, key=lambda t: (t[0], t[1]))


def available() -> list[Path]:
    """Paths of every embedded weights file (any model name), sorted by file name."""
    return sorted(p for _, _, p in shipped())


def shipped_text() -> str:
    return ", ".join(p.stem for p in available()) or "none"


def embedded_weights(model: str, scale: int) -> Path:
    """The shipped weights file of `model` at `scale`, or a one-line `CheckpointError` naming what is shipped."""
    arch_of(model, scale)  # validates name and scale
    path = weights_path(model, scale)
    if not path.is_file():
        raise CheckpointError(f"no embedded weights for {model} x{scale} (shipped: {shipped_text()}); "
                              f"pass --weights FILE")
    return path


def video_default(scale: int) -> str:
    """The model the video front ends use when none is named: `DEFAULT_VIDEO_MODEL` where it has
    weights at `scale`, else the clean `DEFAULT_MODEL` (video weights exist for x2 and x4 only)."""
    return DEFAULT_VIDEO_MODEL if has_weights(DEFAULT_VIDEO_MODEL, scale) else DEFAULT_MODEL


def video_model_for(model: str | None, weights, scale: int | None) -> str | None:
    """What a video front end passes on as `model`: the name given, or (no name, no weights file)
    `video_default(scale)`; None with a weights file (its architecture is read from the file)."""
    if model is not None or weights is not None or scale is None:
        return model
    return video_default(scale)
