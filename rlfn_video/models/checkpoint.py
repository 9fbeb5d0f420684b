"""Reading and writing RLFN weights.

Two kinds of file load here:
- official checkpoints (a bare state dict, 0-255 RGB), in either naming: the RLFN repo's
  (`conv_1`, `block_i`, `conv_2`) or the NTIRE 2022 repo's (`fea_conv`, `B1..B4`, `LR_conv`);
- our own format: `{"format": "rlfn-video", "version": 1, "arch": {...}, "meta": {...},
  "state_dict": {...}}` with metadata (value range, training data, steps, measured PSNR/SSIM).
Variant and scale are read from tensor shapes, then the load is strict, so a wrong guess fails
loudly. Everything loads with `weights_only=True`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..atomic import atomic_output
from ..errors import CheckpointError
from .rlfn import RLFN, Arch, variant_name

FORMAT = "rlfn-video"
VERSION = 1

_NTIRE_NAMES = [(re.compile(r"^fea_conv\."), "conv_1."), (re.compile(r"^B(\d+)\."), r"block_\1."),
                (re.compile(r"^LR_conv\."), "conv_2.")]


@dataclass
class Checkpoint:
    arch: Arch
    state_dict: dict[str, torch.Tensor]
    value_range: float = 255.0  # the network's input/output scale: 255 (official) or 1
    meta: dict = field(default_factory=dict)

    @property
    def variant(self) -> str | None:
        return variant_name(self.arch)


def canonicalize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Unwrap `params`/`state_dict` containers and `module.` prefixes; map NTIRE names."""
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        for pattern, repl in _NTIRE_NAMES:
            k = pattern.sub(repl, k)
        out[k] = v
    return out


def detect_arch(state: dict[str, torch.Tensor]) -> Arch:
    """Read channels, inner channels, block count and scale from tensor shapes."""
    need = ["conv_1.weight", "block_1.c1_r.weight", "block_1.esa.conv1.weight", "upsampler.0.weight"]
    missing = [k for k in need if k not in state]
    if missing:
        found = ", ".join(sorted(state)[:6]) + (", ..." if len(state) > 6 else "")
        raise CheckpointError(f"not an RLFN checkpoint: missing {', '.join(missing)} (found keys: {found})")
    blocks = len({m.group(1) for k in state if (m := re.match(r"block_(\d+)\.", k))})
    up = state["upsampler.0.weight"].shape[0]
    scale = round((up / 3) ** 0.5)
    if 3 * scale * scale != up:
        raise CheckpointError(f"upsampler.0.weight has {up} output channels, not 3*scale^2")
    return Arch(channels=state["conv_1.weight"].shape[0], mid_channels=state["block_1.c1_r.weight"].shape[0],
                blocks=blocks, scale=scale, esa_channels=state["block_1.esa.conv1.weight"].shape[0])


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated zip, foreign objects refused by weights_only
        raise CheckpointError(f"cannot read weights {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    if obj.get("format") == FORMAT:
        if obj.get("version") != VERSION:
            raise CheckpointError(f"{path}: format version {obj.get('version')} is not supported (expected {VERSION})")
        arch = Arch(**obj["arch"])
        return Checkpoint(arch, obj["state_dict"], float(obj["meta"].get("value_range", 1.0)), dict(obj["meta"]))
    state = canonicalize(obj)
    return Checkpoint(detect_arch(state), state, 255.0, {"source": "official"})


def build_model(ckpt: Checkpoint) -> RLFN:
    """The network with the checkpoint's weights, loaded strictly; names what differs on failure."""
    model = RLFN(ckpt.arch)
    own = model.state_dict()
    missing = sorted(set(own) - set(ckpt.state_dict))
    unexpected = sorted(set(ckpt.state_dict) - set(own))
    shapes = [f"{k} {tuple(ckpt.state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in ckpt.state_dict and ckpt.state_dict[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"shape mismatch {'; '.join(shapes[:3])}")
        raise CheckpointError(f"weights do not fit {ckpt.arch}: {'; '.join(parts)}")
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model


def save_checkpoint(path: str | os.PathLike, model: RLFN, *, value_range: float, meta: dict) -> None:
    """Write our format (fp32 tensors, metadata), atomically."""
    path = Path(path)
    obj = {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.arch.to_dict(),
        "meta": {**meta, "value_range": float(value_range), "variant": variant_name(model.arch)},
        "state_dict": {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(obj, tmp)
