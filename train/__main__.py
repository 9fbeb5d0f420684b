"""`python -m train stage ...` runs (or resumes) one training stage; `export` ships its weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from .trainer import Runtime, Stage, StageConfig, check_amp

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"

# Runtime options shared by every command that trains (how fast, not what is learned).
Threads = Annotated[int, typer.Option(help="torch CPU threads (0: torch's default).")]
Device = Annotated[str, typer.Option(help="cpu or cuda[:N]; on CUDA the data set stays on the GPU.")]
Amp = Annotated[Optional[str], typer.Option(help="Mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA).")]
ChannelsLast = Annotated[bool, typer.Option(help="channels_last memory format.")]
Compile = Annotated[bool, typer.Option(help="torch.compile the model.")]
Prefetch = Annotated[int, typer.Option(help="Batches a worker thread prepares ahead (0: inline).")]



def _runtime(threads: int, device: str, amp: str | None, channels_last: bool, compile: bool, prefetch: int) -> Runtime:
    """Apply the thread count and bundle the rest: the one place the runtime options land."""
    try:
        check_amp(amp, torch.device(device))
    except (ValueError, RuntimeError) as e:
        raise typer.BadParameter(str(e), param_hint="--amp / --device") from None
    if threads:
        torch.set_num_threads(threads)
    return Runtime(device, amp, channels_last, compile, prefetch)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.callback()
def main() -> None:
    """Train RLFN models."""


@app.command()
def stage(
    run_dir: Annotated[Path, typer.Argument(help="Run folder; resumes from its last.pt if present.")],
    data: Annotated[list[Path], typer.Option(help="Image folder(s) to train on.")],
    model: str = "rlfn_s",
    scale: int = 4,
    patch: Annotated[int, typer.Option(help="LR patch side in pixels.")] = 32,
    batch: int = 16,
    steps: int = 1000,
    lr: float = 5e-4,
    seed: int = 0,
    init: Annotated[Optional[Path], typer.Option(help="Warm start from these weights.")] = None,
    loss: Annotated[str, typer.Option(help="l1, mse or l1+contrastive.")] = "l1",
    prune_to: Annotated[Optional[str], typer.Option(help="Prune the init weights to C,M channels first.")] = None,
    contrastive_weight: Annotated[float, typer.Option(help="l1+contrastive: weight of the contrastive term "
                                                     "(1 = the paper's 255 with L1 in 0-255 units).")] = 1.0,
    contrastive_channels: Annotated[int, typer.Option(help="l1+contrastive: width of the frozen extractor.")] = 64,
    ema: Annotated[float, typer.Option(help="Decay of an EMA of the weights (e.g. 0.999; 0: none); export "
                                       "ships it when it scores higher.")] = 0.0,
    threads: Threads = 0,
    device: Device = "cpu",
    amp: Amp = None,
    channels_last: ChannelsLast = False,
    compile: Compile = False,
    prefetch: Prefetch = 2,
) -> None:
    """Train one stage."""
    runtime = _runtime(threads, device, amp, channels_last, compile, prefetch)
    cfg = StageConfig(model=model, scale=scale, data=[str(d) for d in data], patch=patch, batch=batch,
                      steps=steps, lr=lr, seed=seed, init=str(init) if init else None, loss=loss,
                      prune_to=[int(v) for v in prune_to.split(",")] if prune_to else None,
                      contrastive_weight=contrastive_weight, contrastive_channels=contrastive_channels, ema=ema)
    st = Stage(cfg, run_dir, runtime=runtime)
    if st.skipped:
        typer.echo(f"warm start: kept initial values for {', '.join(st.skipped)}", err=True)
    st.run(on_log=lambda r: typer.echo(r, err=True))


@app.command()
def recipe(
    path: Annotated[Path, typer.Argument(help="Recipe file, e.g. train/recipes/rlfn_s_x4.toml.")],
    runs: Annotated[Path, typer.Option(help="Folder for the stages' run folders.")] = Path("runs"),
    data_root: Annotated[Path, typer.Option(help="Folder the recipe's `data` entries are relative to.")] = DATA_ROOT,
    stage: Annotated[Optional[str], typer.Option(help="Run only this stage.")] = None,
    threads: Threads = 0,
    device: Device = "cpu",
    amp: Amp = None,
    channels_last: ChannelsLast = False,
    compile: Compile = False,
    prefetch: Prefetch = 2,
) -> None:
    """Run a recipe's stages in order; rerun to resume after an interruption."""
    from .recipe import run_recipe

    runtime = _runtime(threads, device, amp, channels_last, compile, prefetch)
    run_recipe(path, runs, data_root, only=stage, runtime=runtime, on_log=lambda r: typer.echo(r, err=True))


@app.command()
def bench(
    model: str = "rlfn_s",
    scale: int = 4,
    patch: int = 32,
    batch: int = 16,
    steps: Annotated[int, typer.Option(help="Timed steps (after 3 warm-up steps).")] = 20,
    data: Annotated[Optional[list[Path]], typer.Option(help="Image folder(s); default: synthetic images.")] = None,
    degrade: Annotated[Optional[Path], typer.Option(help="Take the [degrade] table of this recipe (degraded "
                                                    "data; the cache build is timed apart).")] = None,
    threads: Threads = 0,
    device: Device = "cpu",
    amp: Amp = None,
    channels_last: ChannelsLast = False,
    compile: Compile = False,
    prefetch: Prefetch = 2,
) -> None:
    """Training iterations/s and the share of time spent waiting for data, at a recipe's batch/patch."""
    import tempfile

    runtime = _runtime(threads, device, amp, channels_last, compile, prefetch)
    images = None
    if not data:
        g = torch.Generator().manual_seed(0)
        images = [torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8, generator=g) for _ in range(8)]
    table = None
    if degrade:
        import tomllib

        table = tomllib.loads(degrade.read_text()).get("degrade")
        if not table:
            raise typer.BadParameter(f"{degrade} has no [degrade] table", param_hint="--degrade")
    cfg = StageConfig(model=model, scale=scale, data=[str(d) for d in data or []], patch=patch, batch=batch,
                      steps=steps + 3, log_every=steps + 3, checkpoint_every=10**9, degrade=table)
    with tempfile.TemporaryDirectory() as tmp:
        st = Stage(cfg, Path(tmp), runtime=runtime, images=images)
        if table:
            typer.echo(f"degraded cache: {len(st.sampler.lr)} crops in {st.sampler.build_seconds:.1f} s, "
                       f"{st.sampler.cache_mib:.0f} MiB, steps {st.sampler.counts}")
        st.run(max_steps=3)
        recs = []
        st.run(on_log=recs.append)
    r = recs[-1]
    typer.echo(f"{model} x{scale} batch {batch} patch {patch} on {device} (amp {amp}, threads {torch.get_num_threads()}): "
               f"{r['it_s']:.2f} it/s, {r['it_s'] * batch:.1f} patches/s, data wait {100 * r['data_share']:.1f}%")


@app.command("export")
def export_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run folders of the stages, first to last.")],
    out: Annotated[Path, typer.Option(help="Weights file to write, e.g. rlfn_video/weights/rlfn_s_x4.pth.")],
    device_note: Annotated[Optional[str], typer.Option(help="Where the stages ran (default: what each stage recorded, else this machine).")] = None,
) -> None:
    """Write shipped weights (our format, metadata, Set5/Set14 scores) from the last stage's run."""
    from .export import export

    meta = export(runs, out, device_note=device_note)
    typer.echo(f"{out}: {meta['steps']} steps, {meta['minutes']} min, {meta['eval']}")


@app.command("rescore")
def rescore_cmd(
    weights: Annotated[Optional[list[Path]], typer.Argument(help="Weights files (default: every shipped one).")] = None,
) -> None:
    """Re-score weights on Set5/Set14 by today's `rlfn-video eval` protocol and store the scores in them."""
    from rlfn_video.models.zoo import available

    from .export import rescore

    for path in weights or available():
        typer.echo(f"{path}: {rescore(path)}")


@app.command("store-eval-video")
def store_eval_video(
    report: Annotated[Path, typer.Argument(help="JSON of `rlfn-video eval --compressed --json`.")],
    weights: Annotated[list[str], typer.Option(help="UPSCALER=FILE: store that column's scores in FILE.")],
) -> None:
    """Store compressed-video benchmark scores in weights files (metadata key eval_video)."""
    import json

    from .export import store_meta

    data = json.loads(report.read_text())
    data = data.get("upscalers", data)  # {upscaler: eval_video}, optionally under "upscalers"
    for item in weights:
        name, _, path = item.partition("=")
        if name not in data:
            raise typer.BadParameter(f"{name!r} is not in {report} (has {', '.join(data)})", param_hint="--weights")
        store_meta(Path(path), eval_video=data[name])
        typer.echo(f"{path}: eval_video from column {name}")


@app.command()
def card() -> None:
    """Regenerate rlfn_video/weights/MODEL_CARD.md from the shipped weights."""
    from .card import write_card

    typer.echo(write_card())


# `data build` / `data report`: the training images rebuilt from Debian packages (train/data_recipe.py).
data_app = typer.Typer(no_args_is_help=True, help="Training images rebuilt from Debian packages.")
app.add_typer(data_app, name="data")
PROJECT = Path(__file__).resolve().parents[1]
DataOut = Annotated[Path, typer.Option(help="Folder of the PNGs: a --data folder; \"./train_data/debian\" in a recipe.")]
Manifest = Annotated[Path, typer.Option(help="The manifest: packages, versions, kept files and their hashes.")]


@data_app.command("build")
def data_build(
    out: DataOut = PROJECT / "train_data" / "debian",
    manifest: Manifest = PROJECT / "train" / "recipes" / "data_debian.toml",
    cache: Annotated[Path, typer.Option(help="Downloaded .debs and unpacked trees.")] = PROJECT / "train_data" / "cache",
    update: Annotated[bool, typer.Option(help="Select again from the versions apt offers; rewrite the manifest.")] = False,
) -> None:
    """Download the packages (apt-get download), make the PNGs not yet in OUT, check every hash, print the report."""
    from . import data_recipe

    try:
        stats = data_recipe.build(manifest, out, cache, update=update, on_log=lambda s: typer.echo(s, err=True))
    except data_recipe.DataRecipeError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{stats['written']} written, {stats['skipped']} already there, {stats['seconds']} s")
    typer.echo(data_recipe.report(manifest, out))


@data_app.command("report")
def data_report(out: DataOut = PROJECT / "train_data" / "debian",
                manifest: Manifest = PROJECT / "train" / "recipes" / "data_debian.toml") -> None:
    """Images and megapixels per license, and how many of them OUT holds."""
    from . import data_recipe

    typer.echo(data_recipe.report(manifest, out))


if __name__ == "__main__":
    app()
