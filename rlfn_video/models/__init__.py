"""RLFN networks, checkpoint loading and the shipped weights."""

from __future__ import annotations

import os

import torch

from ..devices import resolve_device
from ..errors import CheckpointError
from .checkpoint import Checkpoint, build_model, read_checkpoint, save_checkpoint
from .descriptor import ModelDescriptor
from .rlfn import RLFN, SCALES, VARIANTS, Arch, arch_for, check_scale, output_size
from .zoo import DEFAULT_MODEL, DEFAULT_VIDEO_MODEL, MODELS, arch_of, embedded_weights

__all__ = ["DEFAULT_MODEL", "DEFAULT_VIDEO_MODEL", "MODELS", "RLFN", "Arch", "Checkpoint", "ModelDescriptor", "SCALES",
           "VARIANTS", "arch_for", "build_model", "check_scale", "load_model", "output_size", "read_checkpoint",
           "save_checkpoint"]


def load_model(
    scale: int | None = 4,
    model: str | None = DEFAULT_MODEL,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    half: bool = False,
) -> ModelDescriptor:
    """A ready, eval-mode model: [0, 1] RGB in, clamped [0, 1] out.

    `model` is a name of `zoo.MODELS` (an architecture such as rlfn_s, or a preset such as
    rlfn_s_video). `weights=None` takes the embedded weights for `model` (default rlfn_s) at
    `scale`. With a weights file, `model`/`scale` may be None to take them from the file; if
    given, the file's architecture must match them, or a `CheckpointError` says what differs.
    `half`: fp16 weights (an `Engine` sets its own dtype from its precision, `Engine(fast=)`).
    """
    embedded = weights is None
    if weights is None:
        model = model or DEFAULT_MODEL
        if scale is None:
            raise CheckpointError("scale is required when using the embedded weights")
        weights = embedded_weights(model, scale)
    ckpt = read_checkpoint(weights)
    if model is not None:
        want = arch_of(model, ckpt.arch.scale if scale is None else scale)
        got = ckpt.arch
        diffs = [f"{f} {getattr(got, f)} (asked {getattr(want, f)})"
                 for f in ("channels", "mid_channels", "blocks", "scale") if getattr(got, f) != getattr(want, f)]
        if diffs:
            name = ckpt.variant or "a custom RLFN"
            raise CheckpointError(f"{weights} holds {name} x{got.scale}, not {model} x{want.scale}: {', '.join(diffs)}")
    elif scale is not None and scale != ckpt.arch.scale:
        raise CheckpointError(f"{weights} is a x{ckpt.arch.scale} model, asked for x{scale}")
    net = build_model(ckpt)
    label = model if embedded else ckpt.variant or "rlfn-custom"
    desc = ModelDescriptor(net, value_range=ckpt.value_range, name=f"{label}_x{ckpt.arch.scale}", meta=ckpt.meta)
    dev = resolve_device(device)
    return desc.to(device=dev, dtype=torch.float16 if half else torch.float32).eval().requires_grad_(False)
