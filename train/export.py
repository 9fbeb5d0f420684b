"""Turn a training run into shipped weights: our checkpoint format with a model card in its metadata."""

from __future__ import annotations

from pathlib import Path

import torch

from rlfn_video.engine import Engine
from rlfn_video.evaluate import evaluate, mean
from rlfn_video.models import RLFN, ModelDescriptor, read_checkpoint, save_checkpoint
from rlfn_video.models.checkpoint import detect_arch
from rlfn_video.models.rlfn import variant_name

from .trainer import Runtime, describe_device

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"


def score_sets(engine: Engine, scale: int, sets: list[Path]) -> dict:
    out = {}
    for folder in sets:
        if folder.is_dir():
            p, s = mean(evaluate(engine, folder, scale))
            out[folder.name] = {"psnr": round(p, 3), "ssim": round(s, 4)}
    return out


def _history(init: str | None) -> tuple[list[dict], list[str]]:
    """Stages and data behind a warm start from one of our weights files (empty for a run's last.pt)."""
    if not init or not Path(init).is_file() or Path(init).suffix != ".pth":
        return [], []
    try:
        meta = read_checkpoint(init).meta
    except Exception:  # an official checkpoint or a foreign file: no history to carry
        return [], []
    return list(meta.get("stages", [])), list(meta.get("training_data", []))


def _scores(net: RLFN, value_range: float = 1.0) -> dict:
    """Set5/Set14 scores at fp32 on the CPU, by `rlfn-video eval`'s protocol."""
    desc = ModelDescriptor(net, value_range=value_range, name=f"{variant_name(net.arch) or 'rlfn-custom'}_x{net.arch.scale}")
    return score_sets(Engine(desc, device="cpu", fast=False), net.arch.scale, [BENCHMARKS / "Set5", BENCHMARKS / "Set14"])


def _mean_psnr(scores: dict) -> float:
    return sum(v["psnr"] for v in scores.values()) / max(1, len(scores))


def export(run_dirs: list[Path], out: Path, *, device_note: str | None = None) -> dict:
    """Weights of the last run; metadata summing up every stage that led to them (including the
    history stored in a shipped weights file the first run warm-started from)."""
    stages, inherited_data = None, []
    for run in run_dirs:
        ck = torch.load(Path(run) / "last.pt", map_location="cpu", weights_only=True)
        cfg = ck["config"]
        if stages is None:
            stages, inherited_data = _history(cfg.get("init"))
        stages.append({"run": f"{Path(run).parent.name}/{Path(run).name}", "loss": cfg.get("loss", "l1"),
                       "prune_to": cfg.get("prune_to"), "steps": ck["step"], "minutes": round(ck["elapsed"] / 60, 1),
                       "patch": cfg["patch"], "batch": cfg["batch"], "lr": cfg["lr"], "init": cfg["init"],
                       "data": [Path(d).name for d in cfg["data"]], "device": device_note or ck.get("device") or describe_device(Runtime()),  # this CPU: runs from before 2026-12-02
                       **({"degrade": cfg["degrade"]} if cfg.get("degrade") else {})})
    net = RLFN(detect_arch(ck["model"]))  # the width of the last stage (it may be pruned)
    net.load_state_dict(ck["model"])
    scores = _scores(net)
    choice = None
    if ck.get("ema"):  # the EMA of the weights ships when it scores higher on Set5 + Set14
        ema = RLFN(detect_arch(ck["ema"]))
        ema.load_state_dict(ck["ema"])
        ema_scores = _scores(ema)
        better = _mean_psnr(ema_scores) > _mean_psnr(scores)
        choice = {"shipped": "ema" if better else "raw", "decay": ck["config"].get("ema"), "raw": scores,
                  "ema": ema_scores}
        if better:
            net, scores = ema, ema_scores
    meta = {
        "training_data": sorted({d for s in stages for d in s["data"]} | set(inherited_data)),
        "steps": sum(s["steps"] for s in stages),
        "minutes": round(sum(s["minutes"] for s in stages), 1),
        "stages": stages,
        "eval": scores,
        **({"ema": choice} if choice else {}),
    }
    save_checkpoint(out, net, value_range=1.0, meta=meta)
    read_checkpoint(out)  # round trip: what we ship must load
    return meta


def rescore(path: Path) -> dict:
    """Re-evaluate shipped weights by today's protocol and rewrite the scores in their metadata
    (tensors and the rest of the metadata unchanged). Returns {set: {psnr, ssim}}."""
    ck = read_checkpoint(path)
    net = RLFN(ck.arch)
    net.load_state_dict(ck.state_dict)
    scores = _scores(net, ck.value_range)
    store_meta(path, eval=scores)
    return scores


def store_meta(path: Path, **entries) -> None:
    """Add or replace metadata entries (e.g. eval_video, the compressed-video scores) of shipped
    weights; tensors and the rest of the metadata unchanged."""
    ck = read_checkpoint(path)
    net = RLFN(ck.arch)
    net.load_state_dict(ck.state_dict)
    meta = {k: v for k, v in ck.meta.items() if k not in ("value_range", "variant")}
    save_checkpoint(path, net, value_range=ck.value_range, meta={**meta, **entries})
    read_checkpoint(path)
