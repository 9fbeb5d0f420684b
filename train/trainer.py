"""One training stage: a loss, Adam with a cosine schedule, checkpoints that resume bit-exactly.

The run directory holds `last.pt` (weights, optimizer, scheduler, the loss scaler under
`--amp fp16`, step, generator state, config) and `log.jsonl`. Starting a stage whose `last.pt`
exists resumes it; a different config is refused so a resumed run is always the run that was
started.

`StageConfig` is what defines the result; `Runtime` is how fast it gets there (device, mixed
precision, channels_last, torch.compile, prefetching) and may change between resumes.
"""

from __future__ import annotations

import json
import platform
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from rlfn_video.atomic import atomic_output
from rlfn_video.models.checkpoint import detect_arch
from rlfn_video.models.rlfn import RLFN, arch_for, check_scale
from rlfn_video.resize import imresize

from .data import PatchSampler, load_images
from .degrade import DegradedSampler, Degradation
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
    contrastive_channels: int = 64  # width of the contrastive loss's frozen extractor
    contrastive_weight: float = 1.0  # L1 + w x CL; 1 is the paper's 255 (L1 in 0-255 units), see losses.py
    prune_to: list[int] | None = None  # [channels, mid_channels]: prune the init weights first (prune.py)
    degrade: dict | None = None  # a recipe's [degrade] table (degrade.py); None: clean MATLAB-bicubic LR
    ema: float = 0.0  # decay of an exponential moving average of the weights (e.g. 0.999); 0: none
    checkpoint_every: int = 200
    log_every: int = 50


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Runtime:
    device: str = "cpu"
    amp: str | None = None  # "bf16" (CPU or CUDA) or "fp16" (CUDA, with a GradScaler) autocast; None: fp32
    channels_last: bool = False
    compile: bool = False
    prefetch: int = 2  # batches drawn ahead by a worker thread; 0: draw in the training loop


def describe_device(rt: Runtime) -> str:
    """Where a stage runs, as the model card states it: chip or CPU, threads, precision, torch."""
    dev = torch.device(rt.device)
    if dev.type == "cuda":
        where = torch.cuda.get_device_name(dev)
    else:
        where = f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".replace("  ", " ")
    extras = [x for x in (rt.amp, "channels_last" if rt.channels_last else None) if x]
    return f"{where}{', ' + ' + '.join(extras) if extras else ''}, torch {torch.__version__}"


def check_amp(amp: str | None, device: torch.device) -> None:
    """Refuse mixed-precision modes this trainer does not support, before anything is loaded."""
    if amp is None:
        return
    if amp not in AMP_DTYPES:
        raise ValueError(f"unknown --amp {amp!r}; use bf16 or fp16 (CUDA only), or leave it out for fp32")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"--amp fp16 trains on CUDA only (fp16 autocast on {device.type} is not a supported "
                         f"training mode here); use --amp bf16 or leave --amp out for fp32")


def _atomic_save(obj, path: Path) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(obj, tmp)


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


class _Batches:
    """Batches in generator order, each with the generator state after it was drawn.

    With `prefetch`, a worker thread draws ahead (crop, augment, bicubic LR) while the model
    trains; the order and the states are the same as drawing inline, so checkpoints store the
    state after the last *consumed* batch and a resume is exact either way.
    """

    def __init__(self, sampler: PatchSampler, gen: torch.Generator, prefetch: int):
        self.sampler, self.gen = sampler, gen
        self.q: queue.Queue | None = None
        if prefetch > 0:
            self.q = queue.Queue(maxsize=prefetch)
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._work, daemon=True, name="train-data")
            self.thread.start()

    def _draw(self):
        lr, hr = self.sampler.sample(self.gen)
        return lr, hr, self.gen.get_state()

    def _work(self) -> None:
        try:
            while not self.stop.is_set():
                item = self._draw()
                while not self.stop.is_set():
                    try:
                        self.q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        pass
        except BaseException as e:  # noqa: BLE001 - re-raised in the training loop
            self.q.put(e)

    def next(self):
        if self.q is None:
            return self._draw()
        item = self.q.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        if self.q is not None:
            self.stop.set()
            self.thread.join()


class Stage:
    def __init__(self, config: StageConfig, run_dir: Path, *, runtime: Runtime | None = None,
                 images: list[torch.Tensor] | None = None):
        self.config = config
        self.rt = runtime or Runtime()
        self.device = torch.device(self.rt.device)
        check_amp(self.rt.amp, self.device)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        c = config
        torch.manual_seed(c.seed)  # deterministic initial weights
        init = _load_weights(c.init) if c.init else None
        # A warm start keeps the width of the weights it starts from (they may be pruned).
        arch = replace(detect_arch(init), scale=check_scale(c.scale)) if init else arch_for(c.model, c.scale)
        model = RLFN(arch)
        self.skipped = _warm_start(model, init) if init else []
        if c.prune_to:
            model = prune(model, *c.prune_to)
        self.model = model.to(self.device)
        if self.rt.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = make_loss(c.loss, self.device, contrastive_channels=c.contrastive_channels,
                                 contrastive_weight=c.contrastive_weight)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=c.lr, betas=(0.9, 0.99))
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=c.steps, eta_min=c.lr_min)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
        # Disabled, the scaler passes the loss through and steps the optimizer as it is.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.rt.amp == "fp16")
        self.gen = torch.Generator().manual_seed(c.seed)
        self.step = 0
        self.elapsed = 0.0
        # EMA of the weights, in fp32, starting from the initial ones; export ships it when it scores higher.
        self.ema = [p.detach().clone().float() for p in self.model.parameters()] if c.ema else None
        if images is None:
            images = load_images([Path(d) for d in c.data], min_size=c.patch * c.scale)
        # On a GPU the whole set stays resident there: crops, flips and the bicubic LR run on it.
        if c.degrade:  # encoders run on the CPU: the cache is made there, then kept on the device
            self.sampler = DegradedSampler(images, c.patch, c.scale, c.batch, Degradation.from_dict(c.degrade),
                                           seed=c.seed, device=self.device, log=self._log)
        else:
            images = [im.to(self.device) for im in images]
            self.sampler = PatchSampler(images, c.patch, c.scale, c.batch)
        self.ckpt_path = self.run_dir / "last.pt"
        if self.ckpt_path.exists():
            self._resume()
        self.forward = torch.compile(self.model) if self.rt.compile else self.model

    def _resume(self) -> None:
        ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        saved = {**asdict(StageConfig()), **ck["config"]}  # fields added since default
        if saved != asdict(self.config):
            raise ValueError(f"{self.ckpt_path} was made with a different config: {ck['config']}")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        if self.scaler.is_enabled() and ck.get("scaler"):  # older checkpoints and non-fp16 runs have none
            self.scaler.load_state_dict(ck["scaler"])
        if self.ema is not None:
            names = [n for n, _ in self.model.named_parameters()]
            for e, n in zip(self.ema, names):
                e.copy_(ck["ema"][n])
        self.gen.set_state(ck["rng"])
        self.step = ck["step"]
        self.elapsed = ck["elapsed"]

    def save(self, rng_state: torch.Tensor | None = None) -> None:
        """Checkpoint; `rng_state` is the generator state where the next unconsumed batch starts."""
        _atomic_save(
            {
                "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                **({"scaler": self.scaler.state_dict()} if self.scaler.is_enabled() else {}),
                **({"ema": self.ema_state()} if self.ema is not None else {}),
                "rng": self.gen.get_state() if rng_state is None else rng_state,
                "step": self.step,
                "elapsed": self.elapsed,
                "config": asdict(self.config),
                "device": describe_device(self.rt),
            },
            self.ckpt_path,
        )

    def _log(self, record: dict) -> None:
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _autocast(self):
        dtype = AMP_DTYPES.get(self.rt.amp or "")
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def train_step(self, lr_img: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        c = self.config
        if self.rt.channels_last:
            lr_img = lr_img.contiguous(memory_format=torch.channels_last)
        neg = imresize(lr_img, c.scale) if c.loss == "l1+contrastive" else None  # bicubic negative
        with self._autocast():
            sr = self.forward(lr_img)
        loss = self.loss_fn(sr.float(), hr, neg)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # fp16: scaled so small gradients survive; else the loss as is
        self.scaler.step(self.opt)  # fp16: unscales, and skips the step if a gradient overflowed
        self.scaler.update()
        self.sched.step()
        if self.ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.ema, [p.detach().float() for p in self.model.parameters()],
                                     1 - self.config.ema)
        return loss.detach()

    def ema_state(self) -> dict[str, torch.Tensor]:
        """The EMA weights as a state dict of the model (contiguous, on the CPU)."""
        names = [n for n, _ in self.model.named_parameters()]
        state = {k: v.cpu() for k, v in self.model.state_dict().items()}
        state.update({n: e.cpu().contiguous() for n, e in zip(names, self.ema)})
        return state

    def run(self, max_steps: int | None = None, on_log=None) -> None:
        """Train until `config.steps` (or `max_steps` more steps); checkpoint on the way and at exit.

        Log records carry iterations/s and the share of wall time spent waiting for data."""
        c = self.config
        stop = c.steps if max_steps is None else min(c.steps, self.step + max_steps)
        if self.step >= stop:
            return
        self.model.train()
        batches = _Batches(self.sampler, self.gen, self.rt.prefetch)
        losses, waited, t0, n0 = [], 0.0, time.perf_counter(), self.step
        rng_after = self.gen.get_state()
        try:
            while self.step < stop:
                tw = time.perf_counter()
                lr_img, hr, rng_after = batches.next()
                waited += time.perf_counter() - tw
                losses.append(self.train_step(lr_img, hr))
                self.step += 1
                if self.step % c.log_every == 0 or self.step == stop:
                    now = time.perf_counter()
                    self.elapsed += now - t0
                    rec = {"step": self.step, "loss": torch.stack(losses).mean().item(),
                           "lr": self.sched.get_last_lr()[0], "it_s": round((self.step - n0) / (now - t0), 3),
                           "data_share": round(waited / (now - t0), 3), "elapsed_s": round(self.elapsed, 1)}
                    losses, waited, t0, n0 = [], 0.0, now, self.step
                    self._log(rec)
                    if on_log:
                        on_log(rec)
                if self.step % c.checkpoint_every == 0:
                    self.save(rng_after)
        finally:
            batches.close()
            self.gen.set_state(rng_after)  # rewind what the prefetcher drew but nobody used
            self.elapsed += time.perf_counter() - t0
            self.save()
