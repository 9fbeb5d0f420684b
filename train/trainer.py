"""One training stage: L1 + Adam + cosine schedule, checkpoints that resume bit-exactly.

The run directory holds `last.pt` (weights, optimizer, scheduler, step, generator state,
config) and `log.jsonl`. Starting a stage whose `last.pt` exists resumes it; a different
config is refused so a resumed run is always the run that was started.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from rlfn_video.models.checkpoint import detect_arch
from rlfn_video.models.rlfn import RLFN, arch_for
from rlfn_video.resize import imresize

from .data import PatchSampler, load_images
from .losses import make_loss
from .prune import prune


@dataclass
class StageConfig:
    model: str = "rlfn_s"
    scale: int = 4
    data: list[str] = field(default_factory=list)
    patch: int = 32  # LR patch side
    batch: int = 16
    steps: int = 1000
    lr: float = 5e-4
    lr_min: float = 1e-6
    seed: int = 0
    init: str | None = None  # warm start: weights of an earlier run (upsampler skipped if scale differs)
    loss: str = "l1"  # l1, mse or l1+contrastive (losses.py)
    prune_to: list[int] | None = None  # [channels, mid_channels]: prune the init weights first (prune.py)
    checkpoint_every: int = 200
    log_every: int = 50


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_weights(path: str) -> dict[str, torch.Tensor]:
    """Weights of a run's last.pt or of a shipped checkpoint."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model") or state.get("state_dict") or state


def _warm_start(model: RLFN, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every tensor whose name and shape match; returns the names left at their init."""
    own = model.state_dict()
    skipped = [k for k in own if k not in state or state[k].shape != own[k].shape]
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in skipped}, strict=False)
    return skipped


class Stage:
    def __init__(self, config: StageConfig, run_dir: Path, *, images: list[torch.Tensor] | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        c = config
        torch.manual_seed(c.seed)  # deterministic initial weights
        init = _load_weights(c.init) if c.init else None
        # A warm start keeps the width of the weights it starts from (they may be pruned).
        arch = replace(detect_arch(init), scale=c.scale) if init else arch_for(c.model, c.scale)
        self.model = RLFN(arch)
        self.skipped = _warm_start(self.model, init) if init else []
        if c.prune_to:
            self.model = prune(self.model, *c.prune_to)
        self.loss_fn = make_loss(c.loss)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=c.lr, betas=(0.9, 0.99))
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=c.steps, eta_min=c.lr_min)
        self.gen = torch.Generator().manual_seed(c.seed)
        self.step = 0
        self.elapsed = 0.0
        if images is None:
            images = load_images([Path(d) for d in c.data], min_size=c.patch * c.scale)
        self.sampler = PatchSampler(images, c.patch, c.scale, c.batch)
        self.ckpt_path = self.run_dir / "last.pt"
        if self.ckpt_path.exists():
            self._resume()

    def _resume(self) -> None:
        ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        saved = {**asdict(StageConfig()), **ck["config"]}  # fields added since default
        if saved != asdict(self.config):
            raise ValueError(f"{self.ckpt_path} was made with a different config: {ck['config']}")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.gen.set_state(ck["rng"])
        self.step = ck["step"]
        self.elapsed = ck["elapsed"]

    def save(self) -> None:
        _atomic_save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "rng": self.gen.get_state(),
                "step": self.step,
                "elapsed": self.elapsed,
                "config": asdict(self.config),
            },
            self.ckpt_path,
        )

    def _log(self, record: dict) -> None:
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def run(self, max_steps: int | None = None, on_log=None) -> None:
        """Train until `config.steps` (or `max_steps` more steps); checkpoint on the way and at exit."""
        c = self.config
        stop = c.steps if max_steps is None else min(c.steps, self.step + max_steps)
        self.model.train()
        running, t0 = 0.0, time.perf_counter()
        try:
            while self.step < stop:
                lr_img, hr = self.sampler.sample(self.gen)
                neg = imresize(lr_img, c.scale) if c.loss == "l1+contrastive" else None  # bicubic negative
                loss = self.loss_fn(self.model(lr_img), hr, neg)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.sched.step()
                self.step += 1
                running += loss.item()
                if self.step % c.log_every == 0 or self.step == stop:
                    now = time.perf_counter()
                    self.elapsed += now - t0
                    t0 = now
                    n = c.log_every if self.step % c.log_every == 0 else (self.step % c.log_every)
                    rec = {"step": self.step, "loss": running / n, "lr": self.sched.get_last_lr()[0],
                           "elapsed_s": round(self.elapsed, 1)}
                    running = 0.0
                    self._log(rec)
                    if on_log:
                        on_log(rec)
                if self.step % c.checkpoint_every == 0:
                    self.save()
        finally:
            self.elapsed += time.perf_counter() - t0
            self.save()
