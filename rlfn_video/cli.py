"""`rlfn-video`: a thin typer layer over the Python API.

`rlfn-video IN OUT --scale 4` upscales a video (the default command); `image`, `eval` and
`models` are subcommands. Library errors become one red line on stderr and exit code 1;
Ctrl-C exits 130 with nothing left under OUT.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from .errors import RlfnError

err = Console(stderr=True, highlight=False)


class _VideoByDefault(TyperGroup):
    """`rlfn-video IN OUT ...` means `rlfn-video video IN OUT ...`."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["video", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_VideoByDefault, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_show_locals=False, rich_markup_mode=None)

Scale = Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor: 2, 3 or 4.")]
Model = Annotated[Optional[str], typer.Option(help="rlfn, rlfn_s or rlfn_ntire (default: rlfn_s, or what --weights holds).")]
Weights = Annotated[Optional[Path], typer.Option(help="Weights file (ours or official RLFN); default: the embedded model.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Half = Annotated[Optional[bool], typer.Option("--half/--no-half", help="Low precision: fp16 on CUDA, bf16 on CPU "
                                              "(default: on for CUDA and for CPUs with native bf16).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", "-y", help="Replace OUT if it exists.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or notes; errors only.")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"rlfn-video {version('rlfn-video')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Real-time video super-resolution with RLFN."""


def _fail(message: str, code: int = 1):
    err.print(f"[red]error:[/red] {message}", soft_wrap=True, markup=True)
    raise typer.Exit(code)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same clean-up runs (temp output removed, threads joined)."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _run(fn, *args, **kwargs):
    """Call the library; turn its errors, Ctrl-C (130) and SIGTERM (143) into exit codes."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return fn(*args, **kwargs)
    except RlfnError as e:
        _fail(str(e).replace("[", r"\["))
    except KeyboardInterrupt as e:
        err.print("interrupted; nothing written", markup=False)
        raise typer.Exit(143 if isinstance(e, _Terminated) else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress_bar(quiet: bool):
    """A rich progress bar on a terminal, else None."""
    if quiet or not err.is_terminal:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[fps]:>6.1f} fps"), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), console=err, transient=False)


@app.command()
def video(
    src: Annotated[Path, typer.Argument(metavar="IN", help="Input video.")],
    dst: Annotated[Path, typer.Argument(metavar="OUT", help="Output video (container from its extension).")],
    scale: Scale = 4,
    model: Model = None,
    weights: Weights = None,
    device: Device = "auto",
    half: Half = None,
    codec: Annotated[str, typer.Option(help="Video encoder: libx264, libx265, libsvtav1, ffv1, ...")] = "libx264",
    crf: Annotated[Optional[int], typer.Option(help="Constant rate factor (encoder default if unset).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Encoder preset, e.g. medium, slow.")] = None,
    pix_fmt: Annotated[Optional[str], typer.Option(help="Output pixel format (default: follows the input).")] = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Upscale every frame of IN into OUT, keeping audio, subtitles, timing and colour."""
    import time

    from .transcode import upscale_video

    bar = _progress_bar(quiet)
    task = None
    t0 = time.perf_counter()

    def progress(done: int, total: int | None) -> None:
        nonlocal task
        if bar is None:
            return
        if task is None:
            task = bar.add_task(src.name, total=total, fps=0.0)
        elapsed = time.perf_counter() - t0
        bar.update(task, completed=done, fps=done / elapsed if elapsed > 0 else 0.0)

    def warn(message: str) -> None:
        if not quiet:
            (bar.console if bar else err).print(f"[yellow]note:[/yellow] {message}", markup=True, soft_wrap=True)

    kwargs = dict(scale=scale, model=model, weights=weights, device=device, half=half, codec=codec, crf=crf,
                  preset=preset, pix_fmt=pix_fmt, overwrite=overwrite, progress=progress, warn=warn)
    if bar is not None:
        with bar:
            report = _run(upscale_video, src, dst, **kwargs)
    else:
        report = _run(upscale_video, src, dst, **kwargs)
    if not quiet:
        err.print(f"{dst}: {report.frames_out} frames in {report.seconds:.1f} s ({report.fps:.2f} fps)", markup=False)


@app.command()
def image(
    src: Annotated[Path, typer.Argument(metavar="IN", help="Input image (PNG, JPEG, ...).")],
    dst: Annotated[Path, typer.Argument(metavar="OUT", help="Output image; format from its extension.")],
    scale: Scale = 4,
    model: Model = None,
    weights: Weights = None,
    device: Device = "auto",
    half: Half = None,
    overwrite: Overwrite = False,
) -> None:
    """Upscale one image."""
    from .image import upscale_image

    _run(upscale_image, src, dst, scale=scale, model=model, weights=weights, device=device, half=half,
         overwrite=overwrite)


@app.command("eval")
def eval_(
    data: Annotated[list[Path], typer.Option(help="Benchmark set folder(s) with HR/ (and LR_bicubic/X{s}/).")],
    scale: Scale = 4,
    model: Model = None,
    weights: Weights = None,
    device: Device = "auto",
    half: Half = False,
    bicubic: Annotated[bool, typer.Option(help="Also score MATLAB-bicubic upscaling.")] = False,
) -> None:
    """Y-PSNR / SSIM per image and mean, by the standard SR protocol."""
    from .engine import Engine
    from .evaluate import bicubic_upscaler, evaluate, mean

    engine = _run(Engine.from_options, scale=scale, model=model, weights=weights, device=device, half=half)
    out = Console(highlight=False)
    for folder in data:
        rows = _run(evaluate, engine, folder, scale)
        base = {s.name: s for s in _run(evaluate, bicubic_upscaler(scale), folder, scale)} if bicubic else {}
        table = Table(title=f"{folder.name} x{scale} - {engine.name}")
        table.add_column("image")
        table.add_column("PSNR (dB)", justify="right")
        table.add_column("SSIM", justify="right")
        if bicubic:
            table.add_column("bicubic PSNR", justify="right")
            table.add_column("bicubic SSIM", justify="right")
        for r in rows:
            extra = [f"{base[r.name].psnr:.2f}", f"{base[r.name].ssim:.4f}"] if bicubic else []
            table.add_row(r.name, f"{r.psnr:.2f}", f"{r.ssim:.4f}", *extra)
        p, s = mean(rows)
        extra = [f"{mean(list(base.values()))[0]:.2f}", f"{mean(list(base.values()))[1]:.4f}"] if bicubic else []
        table.add_row("mean", f"{p:.2f}", f"{s:.4f}", *extra, style="bold")
        out.print(table)


@app.command()
def bench(
    mode: Annotated[list[str], typer.Option(help="model, pipeline and/or e2e (repeat the option).")] = ["model", "pipeline", "e2e"],  # noqa: B006
    res: Annotated[list[str], typer.Option(help="Input sizes: 270p, 540p, 720p, 1080p or WxH (repeatable).")] = ["270p"],  # noqa: B006
    frames: Annotated[int, typer.Option(help="Frames per measurement.")] = 10,
    clip: Annotated[Optional[Path], typer.Option(help="Real clip for the e2e mode (default: a synthetic one).")] = None,
    codec: Annotated[str, typer.Option(help="Encoder of the e2e mode.")] = "libx264",
    scale: Scale = 4,
    model: Model = None,
    weights: Weights = None,
    device: Device = "auto",
    half: Half = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32, fp16 or bf16 (overrides --half).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON.")] = None,
) -> None:
    """Throughput of the engine against the naive per-frame loop, measured in the same run."""
    from .bench import parse_resolution, run, speedups, write_json
    from .engine import Engine

    for r in res:
        try:
            parse_resolution(r)
        except ValueError as e:
            _fail(str(e))
    engine = _run(Engine.from_options, scale=scale, model=model, weights=weights, device=device, half=half,
                  precision=precision)
    report = _run(run, engine, modes=mode, resolutions=res, frames=frames, clip=clip, codec=codec)
    out = Console(highlight=False)
    env = report["environment"]
    out.print(" | ".join(f"{k} {v}" for k, v in env.items()))
    table = Table(title=f"x{report['scale']} throughput")
    for col in ("mode", "input", "variant", "fps", "ms median", "ms p95", "peak MB"):
        table.add_column(col, justify="right" if col not in ("mode", "input", "variant") else "left")
    for r in report["results"]:
        table.add_row(r["mode"], r["resolution"], r["variant"], f"{r['fps']:.2f}", f"{r['ms_median']:.1f}",
                      f"{r['ms_p95']:.1f}", f"{r['peak_mem_mb']:.0f}")
    out.print(table)
    for m, r, x in speedups(report):
        out.print(f"{m} {r}: {x:.2f}x the naive baseline")
    if json_out:
        write_json(report, json_out)


@app.command()
def models() -> None:
    """List the embedded weights and their model cards."""
    from .models import read_checkpoint
    from .models.zoo import available

    table = Table(title="embedded weights")
    for col in ("name", "arch", "steps", "Set5 PSNR/SSIM", "Set14 PSNR/SSIM"):
        table.add_column(col)
    for path in available():
        ck = read_checkpoint(path)
        m = ck.meta
        ev = m.get("eval", {})
        fmt = lambda k: f"{ev[k]['psnr']:.2f} / {ev[k]['ssim']:.4f}" if k in ev else "-"  # noqa: E731
        a = ck.arch
        table.add_row(path.stem, f"{a.channels}/{a.mid_channels} ch x {a.blocks}", str(m.get("steps", "?")),
                      fmt("Set5"), fmt("Set14"))
    Console(highlight=False).print(table)


def run() -> None:
    app(prog_name="rlfn-video")


if __name__ == "__main__":
    sys.exit(run())
