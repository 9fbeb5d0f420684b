"""Losses of the RLFN recipe: L1, MSE, and the paper's contrastive loss.

Contrastive loss (RLFN paper, sec. 3.3): a frozen, randomly initialised shallow extractor
phi = Conv3x3 -> Tanh -> Conv3x3 keeps high-frequency detail that deep pretrained features
lose. With anchor = SR output, positive = HR, negative = the bicubic-upsampled LR:

    CL = sum_i lambda_i * d(phi_i(anchor), phi_i(pos)) / d(phi_i(anchor), phi_i(neg)),  d = L1

phi_1 is the Tanh output, phi_2 the second conv's output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ShallowExtractor(nn.Module):
    def __init__(self, channels: int = 64, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)  # the same "random" extractor in every run
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        for conv in (self.conv1, self.conv2):
            bound = 1 / (conv.in_channels * 9) ** 0.5
            with torch.no_grad():
                conv.weight.uniform_(-bound, bound, generator=gen)
                conv.bias.uniform_(-bound, bound, generator=gen)
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = torch.tanh(self.conv1(x))
        return [f1, self.conv2(f1)]


class ContrastiveLoss(nn.Module):
    def __init__(self, weights: tuple[float, ...] = (0.0, 1.0), eps: float = 1e-8, seed: int = 0,
                 channels: int = 64):
        super().__init__()
        self.extractor = ShallowExtractor(channels, seed=seed)
        self.weights = weights
        self.eps = eps

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        fa = self.extractor(anchor)
        with torch.no_grad():
            fp, fn = self.extractor(positive), self.extractor(negative)
        loss = anchor.new_zeros(())
        for w, a, p, n in zip(self.weights, fa, fp, fn):
            if w:
                loss = loss + w * F.l1_loss(a, p) / (F.l1_loss(a, n) + self.eps)
        return loss


def make_loss(name: str, device: torch.device | str = "cpu", *, contrastive_channels: int = 64,
              contrastive_weight: float = 1.0):
    """`l1`, `mse` or `l1+contrastive`; f(sr, hr, lr_up) on [0, 1] images.

    `contrastive_weight` w: L1 + w x CL. w = 1 is the paper's setting; warm-started from our
    models it costs PSNR here (an SR output sits closer to the bicubic negative than to HR in the
    random extractor's space, ratio ~2.7, so the push away from the negative dominates); smaller
    weights keep the term a regulariser. `contrastive_channels`: width of the extractor; it runs at HR size on three images, so at
    64 channels it costs several times the RLFN-S step itself (x4, 48 px patches); 16 is ~14x cheaper.

    The paper weights L1 + 255 x CL with L1 in 0-255 units; on [0, 1] images that is
    255 x (L1 + CL), and Adam does not care about the overall factor, so we drop it."""
    if name == "l1":
        return lambda sr, hr, neg: F.l1_loss(sr, hr)
    if name == "mse":
        return lambda sr, hr, neg: F.mse_loss(sr, hr)
    if name == "l1+contrastive":
        cl = ContrastiveLoss(channels=contrastive_channels).to(device)
        return lambda sr, hr, neg: F.l1_loss(sr, hr) + contrastive_weight * cl(sr, hr, neg)
    raise ValueError(f"unknown loss {name!r}; choose l1, mse or l1+contrastive")
