"""RLFN network (Kong et al., "Residual Local Feature Network for Efficient Super-Resolution").

Parameter names follow the official release (`conv_1`, `block_{i}`, `conv_2`, `upsampler.0`) so
official checkpoints load strictly. The module works in the official 0-255 RGB convention;
`ModelDescriptor` (descriptor.py) adapts it to the [0, 1] contract the rest of the package uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.05
ESA_CHANNELS = 16
MIN_SIZE = 15  # ESA's conv(stride 2) + max-pool(7, stride 3) needs at least 15x15 input


@dataclass(frozen=True)
class Arch:
    """Hyper-parameters of one RLFN variant; everything a checkpoint needs to be rebuilt."""

    channels: int
    mid_channels: int
    blocks: int
    scale: int
    esa_channels: int = ESA_CHANNELS

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


# Named variants; `scale` is filled in by `arch_for`.
VARIANTS: dict[str, tuple[int, int, int]] = {
    "rlfn": (52, 52, 6),
    "rlfn_s": (48, 48, 6),
    "rlfn_ntire": (46, 48, 4),
}
SCALES = (2, 3, 4)  # the factors a model can have: the one list every front end checks against


def check_scale(scale: object) -> int:
    """`scale` if it is one of `SCALES` (an int, not a bool), else `UnsupportedScaleError`."""
    from ..errors import UnsupportedScaleError

    if isinstance(scale, bool) or scale not in SCALES:
        raise UnsupportedScaleError(f"unsupported scale {scale!r}; choose one of {', '.join(map(str, SCALES))}")
    return int(scale)


def output_size(width: int, height: int, scale: int) -> tuple[int, int]:
    """(width, height) the model produces from a `width` x `height` input at `scale`."""
    return width * scale, height * scale


def arch_for(model: str, scale: int) -> Arch:
    from ..errors import UnknownModelError

    if model not in VARIANTS:
        raise UnknownModelError(f"unknown model {model!r}; choose one of {', '.join(VARIANTS)}")
    scale = check_scale(scale)
    c, m, b = VARIANTS[model]
    return Arch(channels=c, mid_channels=m, blocks=b, scale=scale)


def variant_name(arch: Arch) -> str | None:
    for name, dims in VARIANTS.items():
        if dims == (arch.channels, arch.mid_channels, arch.blocks):
            return name
    return None


def _conv(cin: int, cout: int, k: int, **kw) -> nn.Conv2d:
    kw.setdefault("padding", k // 2)
    return nn.Conv2d(cin, cout, k, **kw)


class ESA(nn.Module):
    """Enhanced spatial attention: a strided, pooled branch gates the features."""

    def __init__(self, channels: int, esa_channels: int):
        super().__init__()
        f = esa_channels
        self.conv1 = _conv(channels, f, 1)
        self.conv_f = _conv(f, f, 1)
        self.conv2 = _conv(f, f, 3, stride=2, padding=0)
        self.conv3 = _conv(f, f, 3)
        self.conv4 = _conv(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.conv1(x)
        pooled = F.max_pool2d(self.conv2(c1), kernel_size=7, stride=3)
        c3 = F.interpolate(self.conv3(pooled), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(c3 + self.conv_f(c1)))


class RLFB(nn.Module):
    """Residual local feature block: three 3x3 convs with a local skip, a 1x1 conv, then ESA."""

    def __init__(self, channels: int, mid_channels: int, esa_channels: int):
        super().__init__()
        self.c1_r = _conv(channels, mid_channels, 3)
        self.c2_r = _conv(mid_channels, mid_channels, 3)
        self.c3_r = _conv(mid_channels, channels, 3)
        self.c5 = _conv(channels, channels, 1)
        self.esa = ESA(channels, esa_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.c1_r(x), LRELU_SLOPE)
        out = F.leaky_relu(self.c2_r(out), LRELU_SLOPE)
        out = F.leaky_relu(self.c3_r(out), LRELU_SLOPE)
        return self.esa(self.c5(out + x))


class RLFN(nn.Module):
    """RGB 0-255 in, RGB 0-255 out (unclamped), `arch.scale` times larger."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        c = arch.channels
        self.conv_1 = _conv(3, c, 3)
        for i in range(1, arch.blocks + 1):
            self.add_module(f"block_{i}", RLFB(c, arch.mid_channels, arch.esa_channels))
        self.conv_2 = _conv(c, c, 3)
        self.upsampler = nn.Sequential(_conv(c, 3 * arch.scale**2, 3), nn.PixelShuffle(arch.scale))

    def blocks(self) -> list[RLFB]:
        return [getattr(self, f"block_{i}") for i in range(1, self.arch.blocks + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_1(x)
        out = feat
        for block in self.blocks():
            out = block(out)
        return self.upsampler(self.conv_2(out) + feat)
