"""`rlfn-video`: a thin typer layer over the Python API.

`rlfn-video IN OUT --scale 4` upscales a video (the default command); `image`, `eval` and
`models` are subcommands. Library errors become one red line on stderr and exit code 1;
Ctrl-C exits 130 with nothing left under OUT.
"""

from __future__ import annotations

import copy
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from .atomic import write_atomic
from .errors import OutputExistsError, RlfnError

err = Console(stderr=True, highlight=False, soft_wrap=True)  # no hard wraps in logs


# Old option names, still accepted but left out of the help: --half/--no-half (now --fast/--no-fast)
# and bench's --batch (now --frames-per-call).
_OLD_NAMES = frozenset({"--half", "--no-half", "--batch"})


def _shown(p):
    """`p` as its help shows it: without the old names of _OLD_NAMES."""
    if _OLD_NAMES.isdisjoint([*p.opts, *p.secondary_opts]):
        return p
    shown = copy.copy(p)
    shown.opts = [o for o in p.opts if o not in _OLD_NAMES]
    shown.secondary_opts = [o for o in p.secondary_opts if o not in _OLD_NAMES]
    return shown


_TYPE_NAME = re.compile(r" <(?:list\[)?([^<>\[\]]*)\]?>(\.\.\.)?")
_VALUE_LABELS = {"int": "N", "float": "X", "path": "PATH", "Path": "PATH", "str": "TEXT"}


class _Command(TyperCommand):
    """Help as users read it: `IN OUT [OPTIONS]` (options go anywhere), no braces, and value
    placeholders (N, PATH, TEXT) instead of Python type names."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = []
        for p in self.get_params(ctx):
            if p.param_type_name == "argument":
                name = p.metavar or p.name.upper()
                pieces.append(name if p.required else f"[{name}]")
        return [*pieces, self.options_metavar]

    def format_options(self, ctx, formatter) -> None:
        args, opts = [], []
        for p in self.get_params(ctx):
            record = _shown(p).get_help_record(ctx)
            if record is None:
                continue
            name, text = record
            if p.param_type_name == "argument":
                args.append((_TYPE_NAME.sub("", name), text))
            else:
                opts.append((_TYPE_NAME.sub(lambda m: f" {_VALUE_LABELS.get(m[1], m[1].upper())}", name), text))
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class _VideoByDefault(TyperGroup):
    """`rlfn-video IN OUT [OPTIONS]` (options anywhere, as with ffmpeg) means `rlfn-video video ...`."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "--version"):
            args = ["video", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx, formatter) -> None:
        formatter.write_usage(ctx.command_path, "IN OUT [OPTIONS]        upscale a video (the video command)")
        formatter.write_usage(ctx.command_path, "COMMAND [ARGS]...       see the commands below", prefix=" " * 7)

    def format_commands(self, ctx, formatter) -> None:
        rows = [(name, cmd.get_short_help_str(limit=1000)) for name, cmd in self.commands.items() if not cmd.hidden]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(cls=_VideoByDefault, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_show_locals=False, rich_markup_mode=None)


def _check_scale(value: int) -> int:
    """--scale of every command, checked as it is parsed (models.rlfn.check_scale)."""
    from .models.rlfn import check_scale

    return _run(check_scale, value)


Scale = Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor: 2, 3 or 4.", callback=_check_scale)]
_MODEL_NAMES = ("rlfn_s (clean photos), rlfn_s_video (compressed video, when shipped), or an architecture (rlfn, "
                "rlfn_ntire) to check --weights against")
# The defaults live in models/zoo.py (DEFAULT_MODEL, DEFAULT_VIDEO_MODEL; `rlfn-video models` prints them);
# not imported here, so that `--help` needs no torch.
Model = Annotated[Optional[str], typer.Option(help=f"{_MODEL_NAMES} (default: the image model, see `rlfn-video "
                                              f"models`; with --weights, what the file holds).")]
VideoModel = Annotated[Optional[str], typer.Option("--model", help=f"{_MODEL_NAMES} (default: the video model, see "
                                                   f"`rlfn-video models`, or the image model at scales it has no "
                                                   f"weights for; with --weights, what the file holds).")]
Weights = Annotated[Optional[Path], typer.Option(help="Weights file (ours or official RLFN); default: the embedded model.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
# --half/--no-half: the old names of --fast/--no-fast, still accepted (not shown in the help: _OLD_NAMES).
Fast = Annotated[Optional[bool], typer.Option("--fast/--no-fast", "--half/--no-half",
                                              help="The device's fast precision: fp16 on CUDA, bf16 on CPUs with "
                                                   "native bf16 (default: on there, else fp32; --fast on another "
                                                   "CPU: bf16 anyway).")]
# eval and compare: fp32 unless asked (scores and comparisons are made at full precision).
Fp32Fast = Annotated[bool, typer.Option("--fast/--no-fast", "--half/--no-half",
                                        help="The device's fast precision: fp16 on CUDA, bf16 on CPUs with native "
                                             "bf16, instead of fp32, the precision published scores use.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", "-y", help="Replace OUT if it exists.")]
Bitrate = Annotated[Optional[str], typer.Option(help="Target bitrate, e.g. 8M or 2500k (instead of --crf).")]
EncoderOption = Annotated[Optional[list[str]], typer.Option("--encoder-option", "-x", metavar="KEY=VALUE",
                                                           help="An encoder option (repeatable), e.g. -x tune=film "
                                                                "-x x265-params=aq-mode=3; keys are checked.")]
Size = Annotated[Optional[str], typer.Option(metavar="WxH", help="Target size: the smallest model scale that "
                                             "reaches it, then a Lanczos downscale; the picture keeps its shape "
                                             "(fits inside WxH), the sample aspect ratio is kept.")]
Width = Annotated[Optional[int], typer.Option(help="Target width (height follows the aspect); as --size.")]
Height = Annotated[Optional[int], typer.Option(help="Target height (width follows the aspect); as --size.")]
_BACKENDS = ("auto (CUDA: torch; CPU: OpenVINO when installed, at fp32 or with native bf16, else torch), torch, "
             "torch-compile (torch.compile, inductor; meant for CUDA) or openvino (the openvino extra; runs on "
             "the CPU)")
BackendOpt = Annotated[str, typer.Option("--backend", help=f"What runs the network: {_BACKENDS}.")]
Tile = Annotated[str, typer.Option(help="auto (whole frames unless the GPU runs short of memory), off, or a tile "
                                        "size in input pixels (aligned, overlapping tiles).")]
Deinterlace = Annotated[str, typer.Option(help="auto (interlaced frames through bwdif, one frame each; "
                                               "progressive untouched), frame, field (one frame per field: double "
                                               "rate) or off.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or notes; errors only.")]
Codec = Annotated[str, typer.Option(help="Video encoder: libx264, libx265, libsvtav1, ffv1, ...")]
Crf = Annotated[Optional[int], typer.Option(help="Constant rate factor (encoder default if unset).")]
Preset = Annotated[Optional[str], typer.Option(help="Encoder preset, e.g. medium, slow.")]
PixFmt = Annotated[Optional[str], typer.Option(help="Output pixel format (default: follows the input).")]
Segment = Annotated[Optional[float], typer.Option(help="Split at keyframes into segments of about this many "
                                                  "seconds, encoded separately and resumable (default 30 when "
                                                  "segmenting; 0: one segment).")]
Devices = Annotated[Optional[str], typer.Option(help="Segment workers: all (every GPU), cuda:0,cuda:1,..., or cpu "
                                                "(with --workers N).")]
Workers = Annotated[Optional[int], typer.Option(help="Worker processes (CPU: they share the cores).")]
Ray = Annotated[Optional[str], typer.Option(help="Run segments on Ray: local (a private instance), auto (the running "
                                            "cluster) or its ADDRESS. Needs the ray extra and shared storage.")]
Resume = Annotated[bool, typer.Option("--resume/--no-resume", help="Continue an interrupted segmented run "
                                      "(its manifest next to OUT); --no-resume starts over.")]
KeepSegments = Annotated[bool, typer.Option(help="Keep the segment files and manifest after joining.")]


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


def _run(fn, *args, interrupted: str | Callable[[], str] = "interrupted; nothing written", **kwargs):
    """Call the library; turn its errors, Ctrl-C (130) and SIGTERM (143) into exit codes."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return fn(*args, **kwargs)
    except OutputExistsError as e:  # the library says what is wrong; the flag is ours to name
        _fail(f"{e} (pass -y/--overwrite to replace it)".replace("[", r"\["))
    except RlfnError as e:
        _fail(str(e).replace("[", r"\["))
    except KeyboardInterrupt as e:
        for bar in _LIVE:  # stop the progress bar first, or it is drawn again below the message
            bar.stop()
        err.print(interrupted() if callable(interrupted) else interrupted, markup=False)
        raise typer.Exit(143 if isinstance(e, _Terminated) else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stdout() -> Console:
    """stdout for tables and reports: a terminal's width, or wide enough in a log or a pipe (rich
    would wrap and cut columns at 80)."""
    out = Console(highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out.width = 200
    return out


_LIVE: list = []  # the progress bar on screen, if any (one at a time)


def _progress_bar(quiet: bool):
    """A rich progress bar on a terminal, else None."""
    if quiet or not err.is_terminal:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[fps]:>6.1f} fps"), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), console=err, transient=False)


@app.command(cls=_Command)
def video(
    src: Annotated[Path, typer.Argument(metavar="IN", help="Input video.")],
    dst: Annotated[Path, typer.Argument(metavar="OUT", help="Output video (container from its extension).")],
    scale: Scale = 4,
    model: VideoModel = None,
    weights: Weights = None,
    device: Device = "auto",
    fast: Fast = None,
    backend: BackendOpt = "auto",
    codec: Codec = "libx264",
    crf: Crf = None,
    preset: Preset = None,
    pix_fmt: PixFmt = None,
    bitrate: Bitrate = None,
    encoder_option: EncoderOption = None,
    size: Size = None,
    width: Width = None,
    height: Height = None,
    tile: Tile = "auto",
    deinterlace: Deinterlace = "auto",
    start: Annotated[Optional[str], typer.Option(help="Start here: seconds (12.5) or HH:MM:SS.mmm; the output "
                                                 "starts at 0.")] = None,
    frames: Annotated[Optional[int], typer.Option(help="Stop after this many frames.")] = None,
    duration: Annotated[Optional[str], typer.Option(help="Stop after this long (seconds or HH:MM:SS.mmm).")] = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    segment: Segment = None,
    devices: Devices = None,
    workers: Workers = None,
    ray: Ray = None,
    resume: Resume = True,
    keep_segments: KeepSegments = False,
) -> None:
    """Upscale every frame of IN into OUT, keeping audio, subtitles, timing and colour.

    With --segment, --devices, --workers or --ray (or a manifest left by an interrupted
    segmented run) IN is split at keyframes into segments that are encoded separately, resumed
    after an interruption, and joined by stream copy. --start/--frames/--duration take a piece
    for trying settings (not with segments)."""
    from .segmented import manifest_path
    from .transcode import upscale_video

    segmented = any(x is not None for x in (segment, devices, workers, ray)) or manifest_path(dst).exists()
    options = _video_options(scale=scale, model=model, weights=weights, fast=fast, backend=backend, codec=codec,
                             crf=crf, preset=preset, pix_fmt=pix_fmt, bitrate=bitrate, encoder_option=encoder_option,
                             size=size, width=width, height=height, tile=tile, deinterlace=deinterlace,
                             overwrite=overwrite)
    piece = _piece(start, frames, duration)
    if segmented and piece:
        _fail("--start/--frames/--duration take a piece in one pass; drop --segment/--devices/--workers/--ray "
              "(or the manifest of an interrupted run)")
    with _Feedback(quiet) as fb:
        if not segmented:
            report = _run(upscale_video, src, dst, device=device, progress=fb.progress(src.name), warn=fb.warn,
                          **options, **piece)
        else:
            with _workers(devices or (None if device == "auto" else device), workers, ray) as pool:
                report = _run(_segmented, src, dst, pool, options, segment, resume, keep_segments, fb,
                              interrupted=lambda: _segments_kept(dst))
    if not quiet:
        extra = f", {report.pipeline}" if segmented else ""
        err.print(f"{dst}: {report.frames_out} frames in {report.seconds:.1f} s ({report.fps:.2f} fps{extra})",
                  markup=False)


_DEINTERLACE = ("auto", "off", "frame", "field")


def _video_options(*, codec: str, crf: int | None, preset: str | None, bitrate: str | None,
                   encoder_option: list[str] | None, size: str | None, width: int | None, height: int | None,
                   tile: str, deinterlace: str, backend: str, **options) -> dict:
    """The video/batch options as library arguments, every value checked before any work."""
    from .backends import parse_backend
    from .codec_options import check
    from .target_size import parse_size

    _run(parse_backend, backend)
    extra = {}
    for item in encoder_option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"-x {item}: give KEY=VALUE, e.g. -x tune=film")
        extra[key] = value
    _run(check, codec, crf=crf, preset=preset, bitrate=bitrate, extra=extra)
    if size is not None and (width or height):
        _fail("give --size or --width/--height, not both")
    target = _run(parse_size, size) if size is not None else (width, height) if width or height else None
    if target is not None and any(v is not None and v < 2 for v in target):
        _fail(f"target size {target[0] or '-'}x{target[1] or '-'}: sides must be at least 2")
    if tile not in ("auto", "off") and not (tile.isdigit() and int(tile) > 0):
        _fail(f"--tile {tile}: give auto, off or a size in pixels")
    if deinterlace not in _DEINTERLACE:
        _fail(f"--deinterlace {deinterlace}: give {', '.join(_DEINTERLACE)}")
    return dict(codec=codec, crf=crf, preset=preset, bitrate=bitrate, encoder_options=extra or None, size=target,
                tile=None if tile == "off" else int(tile) if tile.isdigit() else "auto", deinterlace=deinterlace,
                backend=backend, **options)


def _piece(start: str | None, frames: int | None, duration: str | None) -> dict:
    from .compare import parse_time

    if frames is not None and duration is not None:
        _fail("give --frames or --duration, not both")
    if frames is not None and frames < 1:
        _fail(f"--frames {frames}: must be at least 1")
    piece = dict(start=_run(parse_time, start) if start is not None else None, frames=frames,
                 duration=_run(parse_time, duration) if duration is not None else None)
    if piece["duration"] == 0:
        _fail("--duration must be more than 0")
    return {k: v for k, v in piece.items() if v is not None}


def _segments_kept(dst: Path) -> str:
    """What an interrupted segmented run leaves: committed segments, or nothing yet."""
    from .manifest import Manifest
    from .segmented import manifest_path

    path = manifest_path(dst)
    try:
        done = sum(s.sha256 is not None for s in Manifest.load(path).segments)
    except (OSError, RlfnError):
        done = 0
    if not done:
        return "interrupted before the first segment was committed; nothing kept"
    return f"interrupted; {done} committed segment(s) kept in {path} (rerun the same command to resume)"


class _Feedback:
    """Progress bar (on a terminal) and notes, shared by `video` and `batch`."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = _progress_bar(quiet)

    def __enter__(self) -> "_Feedback":
        if self.bar is not None:
            self.bar.__enter__()
            _LIVE.append(self.bar)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            _LIVE.remove(self.bar)
            self.bar.__exit__(*exc)

    def progress(self, name: str):
        import time

        task, t0, first = None, time.perf_counter(), None

        def update(done: int, total: int | None) -> None:
            nonlocal task, first
            if self.bar is None:
                return
            if task is None:
                task, first = self.bar.add_task(name, total=total, fps=0.0), done  # resumed work is not timed
            elapsed = time.perf_counter() - t0
            self.bar.update(task, completed=done, fps=(done - first) / elapsed if elapsed > 0 else 0.0)

        return update

    def warn(self, message: str) -> None:
        if not self.quiet:
            console = self.bar.console if self.bar else err
            console.print(f"[yellow]note:[/yellow] {message}", markup=True, soft_wrap=True)

    def say(self, message: str) -> None:
        if not self.quiet:
            (self.bar.console if self.bar else err).print(message, markup=False, soft_wrap=True)


def _workers(devices: str | None, workers: int | None, ray: str | None):
    from .workers import make_workers

    return _run(make_workers, devices, workers, ray)


def _segmented(src: Path, dst: Path, pool, options: dict, segment: float | None, resume: bool, keep: bool,
               fb: _Feedback):
    from .segment_job import EncodeSettings
    from .segmented import DEFAULT_SEGMENT_SECONDS, upscale_segmented

    settings = EncodeSettings.create(device_kind=pool.device_kind, **{k: v for k, v in options.items()
                                                                     if k != "overwrite"})
    return upscale_segmented(src, dst, settings=settings, workers=pool, overwrite=options["overwrite"],
                             segment_seconds=DEFAULT_SEGMENT_SECONDS if segment is None else segment,
                             resume=resume, keep_segments=keep, progress=fb.progress(src.name),
                             warn=fb.warn)


@app.command(cls=_Command)
def batch(
    paths: Annotated[list[Path], typer.Argument(metavar="IN... OUT_DIR",
                                                help="Input videos and/or folders of videos, then the output folder.")],
    scale: Scale = 4,
    model: VideoModel = None,
    weights: Weights = None,
    fast: Fast = None,
    backend: BackendOpt = "auto",
    codec: Codec = "libx264",
    crf: Crf = None,
    preset: Preset = None,
    pix_fmt: PixFmt = None,
    bitrate: Bitrate = None,
    encoder_option: EncoderOption = None,
    size: Size = None,
    width: Width = None,
    height: Height = None,
    tile: Tile = "auto",
    deinterlace: Annotated[str, typer.Option(help="auto (interlaced frames through bwdif, one frame each; "
                                                  "progressive untouched), frame or off.")] = "auto",
    ext: Annotated[Optional[str], typer.Option(help="Output container extension (default: the input's).")] = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    segment: Segment = None,
    devices: Devices = None,
    workers: Workers = None,
    ray: Ray = None,
    resume: Resume = True,
    keep_segments: KeepSegments = False,
) -> None:
    """Upscale many videos into OUT_DIR (same names), segmented and resumable like `video`;
    finished outputs are skipped, and one failing input does not stop the others (exit 1)."""
    from .batch import upscale_batch

    if len(paths) < 2:
        _fail("give at least one input and the output folder")
    *inputs, out_dir = paths
    options = _video_options(scale=scale, model=model, weights=weights, fast=fast, backend=backend, codec=codec,
                             crf=crf, preset=preset, pix_fmt=pix_fmt, bitrate=bitrate, encoder_option=encoder_option,
                             size=size, width=width, height=height, tile=tile, deinterlace=deinterlace,
                             overwrite=overwrite)
    failed = 0
    with _Feedback(quiet) as fb, _workers(devices, workers, ray) as pool:

        def one(src: Path, dst: Path):
            return _segmented(src, dst, pool, options, segment, resume, keep_segments, fb)

        items = upscale_batch(inputs, out_dir, one, ext=ext, overwrite=overwrite)
        while True:
            item = _run(next, items, None, interrupted="interrupted; committed segments kept next to the "
                                                       "outputs (rerun the same command to resume)")
            if item is None:
                break
            if item.status == "done":
                fb.say(f"{item.dst}: {item.report.frames_out} frames in {item.report.seconds:.1f} s")
            elif item.status == "skipped":
                fb.say(f"{item.dst}: exists, skipped")
            else:
                failed += 1
                message = item.error if item.error.startswith(str(item.src)) else f"{item.src}: {item.error}"
                err.print(f"failed: {message}", markup=False, style="red", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command(cls=_Command)
def image(
    src: Annotated[Path, typer.Argument(metavar="IN", help="Input image (PNG, JPEG, ...).")],
    dst: Annotated[Path, typer.Argument(metavar="OUT", help="Output image; format from its extension.")],
    scale: Scale = 4,
    model: Model = None,
    weights: Weights = None,
    device: Device = "auto",
    fast: Fast = None,
    backend: BackendOpt = "auto",
    overwrite: Overwrite = False,
) -> None:
    """Upscale one image."""
    from .image import upscale_image

    _run(upscale_image, src, dst, scale=scale, model=model, weights=weights, device=device, fast=fast,
         overwrite=overwrite, backend=backend)


Models = Annotated[Optional[list[str]], typer.Option("--model", help="Model name (repeatable): rlfn_s, rlfn_s_video "
                                                  "(when shipped), or an architecture for --weights.")]
WeightsList = Annotated[Optional[list[Path]], typer.Option("--weights", help="Weights file (repeatable; ours or "
                                                           "official RLFN). Given as often as --model, they pair up in "
                                                           "order: each name checks its file.")]


def _engine_specs(models: list[str], weights: list[Path]) -> list[tuple[str | None, Path | None]]:
    """(model, weights) per engine: --model and --weights given equally often pair up in order (each
    name checks its file; one of each is one engine); otherwise one engine per --model and one per
    --weights."""
    if models and len(models) == len(weights):
        return list(zip(models, weights))
    if len(weights) <= 1 and len(models) <= 1:
        return [(models[0] if models else None, weights[0] if weights else None)]
    return [(m, None) for m in models] + [(None, w) for w in weights]


def _label(model: str | None, weights: Path | None, engine) -> str:
    return weights.stem if weights is not None else model or engine.name


@app.command("eval", cls=_Command)
def eval_(
    data: Annotated[Optional[list[Path]], typer.Option(help="Benchmark set folder(s) with HR/ (and LR_bicubic/X{s}/); "
                                                       "required unless --compressed (default there: Set14 and Kodak "
                                                       "from ../shared; video files also, for real motion).")] = None,
    scale: Scale = 4,
    model: Models = None,
    weights: WeightsList = None,
    device: Device = "auto",
    fast: Fp32Fast = False,
    bicubic: Annotated[bool, typer.Option(help="Also score MATLAB-bicubic upscaling (always on with --compressed).")] = False,
    round_y: Annotated[bool, typer.Option(help="Round Y to 8 bits before scoring (MATLAB rgb2ycbcr on uint8; "
                                                "about 0.02-0.09 dB lower than the published tables).")] = False,
    compressed: Annotated[bool, typer.Option(help="The compressed-video benchmark: slow pans of each image, LR "
                                                  "through libx264 4:2:0 at each --crf (and clean); one column per "
                                                  "upscaler (default: rlfn_s, and rlfn_s_video when shipped).")] = False,
    crf: Annotated[Optional[list[int]], typer.Option(help="--compressed: CRF rows (repeatable; default 18 23 28 33).")] = None,
    frames: Annotated[Optional[int], typer.Option(help="--compressed: frames per pan (default 8).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="--compressed: also write the scores as JSON: "
                                                     "{upscaler: its eval_video metadata}.")] = None,
) -> None:
    """Y-PSNR / SSIM per image and mean, by the SR literature's protocol.

    SR output rounded to 8 bits; Y of BT.601 studio swing (MATLAB rgb2ycbcr) computed in float from
    the 8-bit SR and HR, not rounded; SCALE pixels cropped at every border; SSIM on the same Y.
    Official RLFN checkpoints reproduce the published numbers this way (within 0.01 dB).

    With --compressed: the same scores on compressed video made from the images (rlfn_video/eval_video.py):
    rows clean and CRF ..., a mean row (over clean and the CRFs), a PSNR and an SSIM column per upscaler."""
    from .engine import Engine
    from .evaluate import bicubic_upscaler, evaluate, mean

    models, files = list(model or []), list(weights or [])
    if compressed:
        if round_y:
            _fail("--round-y applies to the plain benchmark, not --compressed")
        return _eval_compressed(data, scale, models, files, device, fast, crf, frames, json_out)
    extra_opts = [name for name, v in (("--crf", crf), ("--frames", frames), ("--json", json_out)) if v not in (None, [])]
    if extra_opts:
        _fail(f"{', '.join(extra_opts)}: only with --compressed")
    if not data:
        raise typer.BadParameter("required unless --compressed", param_hint="'--data'")
    engines = [_run(Engine.from_options, scale=scale, model=m, weights=w, device=device, fast=fast)
               for m, w in _engine_specs(models, files)]
    out = _stdout()
    for engine in engines:
        for folder in data:
            rows = _run(evaluate, engine, folder, scale, round_y=round_y)
            base = {s.name: s for s in _run(evaluate, bicubic_upscaler(scale), folder, scale, round_y=round_y)} \
                if bicubic else {}
            table = Table(title=f"{folder.name} x{scale} - {engine.name}" + (" (Y rounded)" if round_y else ""))
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


def _compared_models(scale: int, models: list[str], files: list[Path]) -> list[tuple[str | None, Path | None]]:
    """What `eval --compressed` and `compare` run: as named, or the clean model and (when shipped
    at this scale) the video model."""
    from .models import zoo

    if models or files:
        return _engine_specs(models, files)
    return [(m, None) for m in (zoo.CLEAN_MODEL, zoo.VIDEO_MODEL) if m == zoo.CLEAN_MODEL or zoo.has_weights(m, scale)]


def _engines(scale: int, models: list[str], files: list[Path], device: str, fast: bool | None) -> dict:
    from .engine import Engine

    out = {}
    for m, w in _compared_models(scale, models, files):
        engine = _run(Engine.from_options, scale=scale, model=m, weights=w, device=device, fast=fast)
        label = _label(m, w, engine)
        while label in out or label in ("bicubic", "input (nearest)"):
            label += "'"
        out[label] = engine
    return out


def _eval_compressed(data: list[Path] | None, scale: int, models: list[str], files: list[Path], device: str,
                     fast: bool | None, crfs: list[int] | None, frames: int | None, json_out: Path | None) -> None:
    import json

    from . import eval_video

    engines = _engines(scale, models, files, device, fast)
    sets = data or _run(eval_video.default_sets)
    crfs = list(crfs) if crfs else list(eval_video.CRFS)
    frames = eval_video.FRAMES if frames is None else frames
    bar, task = None, None
    if err.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("compressed benchmark, sequences"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("eta"), TimeRemainingColumn(), console=err)

    def progress(done: int, total: int) -> None:
        nonlocal task
        if bar is not None:
            if task is None:
                task = bar.add_task("", total=total)
            bar.update(task, completed=done)

    if bar is not None:
        bar.__enter__()
    try:
        result = _run(eval_video.evaluate_compressed, eval_video.with_bicubic(engines, scale), scale, sets=sets,
                      crfs=crfs, frames=frames, progress=progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    out = _stdout()
    table = Table(title=f"compressed video x{scale}: {result.images} sequences ({', '.join(result.sets)}), "
                        f"{frames} frames each, {eval_video.CODEC} {eval_video.PRESET} 4:2:0")
    table.add_column("input")
    for name in result.upscalers:
        table.add_column(f"{name} PSNR", justify="right")
        table.add_column(f"{name} SSIM", justify="right")
    for row in result.rows:
        cells = [c for u in result.upscalers for c in (f"{result.scores[u][row][0]:.2f}", f"{result.scores[u][row][1]:.4f}")]
        table.add_row(eval_video.row_label(row), *cells)
    cells = [c for u in result.upscalers for c in (f"{result.mean(u)[0]:.2f}", f"{result.mean(u)[1]:.4f}")]
    table.add_row("mean", *cells, style="bold")
    out.print(table)
    if json_out:
        doc = {u: result.as_meta(u) for u in result.upscalers}  # upscaler -> its "eval_video" metadata
        write_atomic(json_out, json.dumps(doc, indent=2) + "\n")


@app.command(cls=_Command)
def compare(
    src: Annotated[Path, typer.Argument(metavar="IN", help="Input video.")],
    at: Annotated[str, typer.Option("--at", help="Time of the frame: seconds (12.5) or HH:MM:SS.mmm.")],
    dst: Annotated[Path, typer.Option("--output", "-o", help="Output image (PNG).")] = Path("compare.png"),
    crop: Annotated[Optional[str], typer.Option(help="X,Y,W,H in input pixels: the region every panel shows.")] = None,
    scale: Scale = 4,
    model: Models = None,
    weights: WeightsList = None,
    device: Device = "auto",
    fast: Fp32Fast = False,
    overwrite: Overwrite = False,
) -> None:
    """One frame of IN side by side: input (nearest), bicubic, and each model (default: rlfn_s, and
    rlfn_s_video when shipped), each with a caption; decoded and colour-converted as the video
    command does."""
    from .compare import Crop, compare as write_compare, parse_time

    seconds = _run(parse_time, at)
    region = _run(Crop.parse, crop) if crop is not None else None
    engines = _engines(scale, list(model or []), list(weights or []), device, fast)
    path, grab = _run(write_compare, src, dst, engines, at=seconds, scale=scale, crop=region, overwrite=overwrite)
    frame = f"frame {grab.index}" if grab.index is not None else "frame"
    err.print(f"{path}: {frame} at {grab.time:.3f} s, panels: input (nearest), bicubic, {', '.join(engines)}",
              markup=False)


@app.command(cls=_Command)
def bench(
    mode: Annotated[list[str], typer.Option(help="model, pipeline, e2e and/or scaleout (repeat the option).")] = ["model", "pipeline", "e2e"],  # noqa: B006
    res: Annotated[list[str], typer.Option(help="Input sizes: 270p, 540p, 720p, 1080p or WxH (repeatable).")] = ["270p"],  # noqa: B006
    frames: Annotated[int, typer.Option(help="Frames per measurement.")] = 10,
    clip: Annotated[Optional[Path], typer.Option(help="Real clip for the e2e mode (default: a synthetic one).")] = None,
    codec: Annotated[str, typer.Option(help="Encoder of the e2e mode.")] = "libx264",
    scale: Scale = 4,
    model: Model = None,
    weights: Weights = None,
    device: Device = "auto",
    fast: Fast = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32, fp16 or bf16 (overrides --fast).")] = None,
    backend: Annotated[list[str], typer.Option(help=f"What runs the network (repeatable: each one measured "
                                               f"in the same run, beside one naive loop): {_BACKENDS}.")] = ["auto"],  # noqa: B006
    gate: Annotated[bool, typer.Option(help="First check each backend against fp32 torch on Set14 crops (>= 50 dB, "
                                       ">= 97 % within +-1 in 8 bits); measure only those that pass.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON (rewritten after "
                                                      "every measurement, so an interrupted run keeps its rows).")] = None,
    jsonl: Annotated[Optional[Path], typer.Option(help="Append one JSON line per measurement (several runs may "
                                                  "share one file).")] = None,
    frames_per_call: Annotated[list[int], typer.Option("--frames-per-call", "--batch",  # --batch: its old name
                                                       help="pipeline: frames per model call to measure, 0 = "
                                                            "chosen by the pipeline (repeatable).")] = [0],  # noqa: B006
    graphs: Annotated[list[str], typer.Option(help="pipeline on CUDA: auto, on or off (CUDA graphs vs eager; "
                                              "repeatable).")] = ["auto"],  # noqa: B006
    workers: Annotated[list[int], typer.Option(help="scaleout: worker counts to measure (repeatable).")] = [1, 2],  # noqa: B006
    segment: Annotated[float, typer.Option(help="scaleout: segment length in seconds.")] = 2.0,
) -> None:
    """Throughput of the engine against the naive per-frame loop, measured in the same run.

    Each measurement is printed (and written to --json/--jsonl) as soon as it is made; one that
    fails is reported and skipped; Ctrl-C or SIGTERM keeps every row already measured."""
    from .backends import parse_backend
    from .bench import (Failure, Report, append_jsonl, check_options, gate_engines, measure, parse_resolution,
                        write_json)
    from .engine import Engine

    try:
        for r in res:
            parse_resolution(r)
        check_options(mode, graphs)
    except ValueError as e:
        _fail(str(e))
    for b in backend:
        _run(parse_backend, b)
    engines = []
    for b in backend:  # one engine per backend; two names for the same one ("auto", "openvino") measure it once
        engine = _run(Engine.from_options, scale=scale, model=model, weights=weights, device=device, fast=fast,
                      precision=precision, backend=b)
        if all((e.backend, e.precision) != (engine.backend, engine.precision) for e in engines):
            engines.append(engine)
    report = Report(engines, mode, codec)
    out = _stdout()
    out.print(" | ".join(f"{k} {v}" for k, v in report.environment.items()))
    if jsonl:
        append_jsonl({"kind": "environment", "scale": report.scale, **report.environment}, jsonl)

    def record(item) -> None:
        report.add(item)
        if json_out:
            write_json(report.to_dict(complete=False), json_out)
        if jsonl:
            append_jsonl({"kind": "failure" if isinstance(item, Failure) else "result", "scale": report.scale,
                          "device": report.environment["device"], "precision": report.environment["precision"],
                          **asdict(item)}, jsonl)

    if gate:
        from .precision_gate import gate_crops

        crops = gate_crops()
        if not crops:
            out.print("gate skipped: no gate images (Set14 not found under ../shared)", markup=False)
        else:
            engines, lines, refused = _run(gate_engines, engines, crops)
            for line in lines:
                out.print(line, markup=False)
            for item in refused:
                record(item)
            if not engines:
                _fail("every backend was refused by the precision gate; nothing measured")

    def collect() -> None:
        for item in measure(engines, modes=mode, resolutions=res, frames=frames, clip=clip, codec=codec,
                            workers=workers, segment_seconds=segment, model=model, weights=weights,
                            frames_per_call=frames_per_call, graphs=graphs):
            if isinstance(item, Failure):
                out.print(f"{item.mode} {item.resolution} {item.variant}: FAILED, skipped: {item.error}", markup=False)
            else:
                out.print(f"{item.mode} {item.resolution} {item.variant}: {item.fps:.2f} fps (median "
                          f"{item.ms_median:.1f} ms, p95 {item.ms_p95:.1f} ms, peak {item.peak_mem_mb:.0f} MB)",
                          markup=False)
            record(item)

    def kept() -> str:
        where = ", ".join(str(p) for p in (json_out, jsonl) if p)
        n = len(report.results)
        return f"interrupted; {n} measurement(s) kept" + (f" in {where}" if where and n else "")

    complete = False
    try:
        _run(collect, interrupted=kept)
        complete = True
    finally:
        _bench_summary(out, report.to_dict(complete))
        if json_out:
            write_json(report.to_dict(complete), json_out)
    if report.failures:
        _fail(f"{len(report.failures)} measurement(s) failed: "
              + "; ".join(f"{f.mode} {f.resolution} {f.variant}" for f in report.failures))


def _bench_summary(out: Console, report: dict) -> None:
    from .bench import speedups

    table = Table(title=f"x{report['scale']} throughput" + ("" if report["complete"] else " (interrupted)"))
    for col in ("mode", "input", "variant", "fps", "ms median", "ms p95", "peak MB"):
        table.add_column(col, justify="right" if col not in ("mode", "input", "variant") else "left")
    for r in report["results"]:
        table.add_row(r["mode"], r["resolution"], r["variant"], f"{r['fps']:.2f}", f"{r['ms_median']:.1f}",
                      f"{r['ms_p95']:.1f}", f"{r['peak_mem_mb']:.0f}")
    for f in report["failures"]:
        table.add_row(f["mode"], f["resolution"], f["variant"], "failed", "-", "-", "-")
    out.print(table)
    for m, r, v, x in speedups(report):
        out.print(f"{m} {r}{'' if v == 'ours' else f' ({v})'}: {x:.2f}x the naive baseline")


@app.command(cls=_Command)
def models() -> None:
    """List the model names (architecture, purpose, shipped scales) and the embedded weights with
    their scores: Set5/Set14 by `eval`, and the compressed-video benchmark (`eval --compressed`,
    mean over clean and CRF 18-33) where the weights store it."""
    from .eval_video import summary
    from .models import read_checkpoint, zoo

    out = _stdout()
    files = zoo.shipped()
    names = Table(title="models")
    for col in ("name", "arch", "purpose", "shipped"):
        names.add_column(col)
    for name, info in zoo.MODELS.items():
        scales = [f"x{s}" for n, s, _ in files if n == name]
        names.add_row(name, info.arch, info.purpose, " ".join(scales) or "-")
    out.print(names)
    table = Table(title="embedded weights")
    for col in ("weights", "arch", "steps", "Set5 PSNR/SSIM", "Set14 PSNR/SSIM", "video PSNR/SSIM"):
        table.add_column(col)
    for name, scale, path in files:
        ck = read_checkpoint(path)
        m = ck.meta
        ev = m.get("eval", {})
        fmt = lambda k: f"{ev[k]['psnr']:.2f} / {ev[k]['ssim']:.4f}" if k in ev else "-"  # noqa: E731
        video = summary(m.get("eval_video"))
        a = ck.arch
        table.add_row(path.stem, f"{a.channels}/{a.mid_channels} ch x {a.blocks}", str(m.get("steps", "?")),
                      fmt("Set5"), fmt("Set14"), f"{video[0]:.2f} / {video[1]:.4f}" if video else "-")
    out.print(table)
    out.print(f"defaults: {zoo.DEFAULT_MODEL} for image, eval and bench; {zoo.DEFAULT_VIDEO_MODEL} for video and "
              f"batch ({zoo.DEFAULT_MODEL} at scales it has no weights for). video PSNR/SSIM: rlfn-video eval "
              f"--compressed, mean of clean and CRF 18/23/28/33.")


Fp16 = Annotated[bool, typer.Option("--fp16", help="fp16 weights and compute, and fp16 input and output, which "
                                    "is what vs-mlrt's fp16 path (an RGBH clip) and TensorRT take; written only if "
                                    "it matches fp32 on Set14 where found (>= 50 dB, >= 97 % within +-1 in 8 bits).")]


@app.command(cls=_Command)
def export(
    output: Annotated[Path, typer.Option("--output", "-o", metavar="OUT", help="The .onnx file to write.")],
    scale: Scale = 4,
    model: Model = None,
    weights: Weights = None,
    fp16: Fp16 = False,
    overwrite: Overwrite = False,
) -> None:
    """Write the model as ONNX for vs-mlrt, chaiNNer, onnxruntime, TensorRT or OpenVINO: input `input`, NCHW
    RGB in [0, 1] (dynamic batch and size, at least 15x15); output `output`, clamped [0, 1]. Needs the onnx
    extra."""
    from .onnx_export import export_onnx, gate_summary

    result = _run(export_onnx, output, scale=scale, model=model, weights=weights, fp16=fp16, overwrite=overwrite)
    m = result.metadata
    typer.echo(f"wrote {result.path}: {m['model']} {m['precision']}, opset {m['opset']}, input at least "
               f"{m['min_size']}x{m['min_size']}")
    if result.gate:
        typer.echo(gate_summary(result.gate))


def run() -> None:
    app(prog_name="rlfn-video")


if __name__ == "__main__":
    sys.exit(run())
