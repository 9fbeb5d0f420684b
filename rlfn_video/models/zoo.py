"""Weights shipped inside the package, by model name and scale."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from .rlfn import SCALES, arch_for

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = "rlfn_s"


def embedded_weights(model: str, scale: int) -> Path:
    arch_for(model, scale)  # validates name and scale
    path = WEIGHTS_DIR / f"{model}_x{scale}.pth"
    if not path.is_file():
        shipped = ", ".join(p.stem for p in available()) or "none"
        raise CheckpointError(f"no embedded weights for {model} x{scale} (shipped: {shipped}); pass --weights FILE")
    return path


def available() -> list[Path]:
    return sorted(p for p in WEIGHTS_DIR.glob("*_x[0-9].pth") if int(p.stem[-1]) in SCALES)
