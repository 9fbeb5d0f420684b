"""Training data: an image folder held in memory, random HR patches, MATLAB-bicubic LR on the fly.

All randomness comes from one `torch.Generator`, so a run resumed from a checkpoint (which
stores the generator state) draws exactly the batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rlfn_video.resize import imresize

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def list_images(folders: list[Path]) -> list[Path]:
    files = sorted(p for f in folders for p in Path(f).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images found in {', '.join(map(str, folders))}")
    return files


def load_images(folders: list[Path], min_size: int) -> list[torch.Tensor]:
    """uint8 (3, H, W) tensors; images smaller than `min_size` on either side are skipped."""
    images = []
    for path in list_images(folders):
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if min(arr.shape[:2]) >= min_size:
            images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
    if not images:
        raise ValueError(f"no training image is at least {min_size}x{min_size}")
    return images


class PatchSampler:
    """Draws batches of (LR, HR) float patches in [0, 1].

    An image is picked with probability proportional to its area, then a random crop, a random
    flip/rot90 (8 dihedral transforms), and the LR is the MATLAB-bicubic downscale quantized to
    8 bits, like the benchmark LR files.
    """

    def __init__(self, images: list[torch.Tensor], patch: int, scale: int, batch: int):
        self.images = images
        self.hr_patch = patch * scale
        self.scale = scale
        self.batch = batch
        areas = torch.tensor([im.shape[1] * im.shape[2] for im in images], dtype=torch.float64)
        self.weights = areas / areas.sum()

    def sample(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.hr_patch
        idx = torch.multinomial(self.weights, self.batch, replacement=True, generator=gen)
        hrs = []
        for i in idx.tolist():
            im = self.images[i]
            _, h, w = im.shape
            y = int(torch.randint(0, h - p + 1, (1,), generator=gen))
            x = int(torch.randint(0, w - p + 1, (1,), generator=gen))
            crop = im[:, y : y + p, x : x + p]
            t = int(torch.randint(0, 8, (1,), generator=gen))
            if t & 1:
                crop = crop.flip(-1)
            if t & 2:
                crop = crop.flip(-2)
            if t & 4:
                crop = crop.transpose(-1, -2)
            hrs.append(crop)
        hr = torch.stack(hrs).float()
        lr = imresize(hr, 1 / self.scale, quantize=True)
        return lr / 255.0, hr / 255.0
