"""Many inputs, one set of workers: `rlfn-video batch IN... OUT_DIR`.

Each input goes through `segmented.upscale_segmented` with the same workers (models load once)
and the same resume rules, so an interrupted batch rerun skips finished files and finished
segments. One failing input (a missing file included) is reported and the batch goes on with the
next. OUT_DIR must exist, as the folder of `video`'s OUT must: a typo is not a new folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RlfnError
from .manifest import ManifestMismatch

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".ts", ".mts", ".m2ts", ".flv", ".wmv",
                    ".mpg", ".mpeg", ".y4m", ".nut")


@dataclass(frozen=True)
class BatchItem:
    src: Path
    dst: Path
    status: str  # "done", "skipped" (OUT exists), "failed"
    report: Any = None
    error: str = ""


def collect_inputs(inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """(files, missing): files as given, folders contributing their video files (by extension,
    sorted, not recursive); `missing` the paths that name nothing."""
    found: list[Path] = []
    missing: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        elif p.is_file():
            found.append(p)
        else:
            missing.append(p)
    if not found and missing:
        return [], missing
    if not found:
        raise RlfnError(f"no video files in {', '.join(map(str, inputs))} (looked for {' '.join(VIDEO_EXTENSIONS)})")
    found = list({f.resolve(): f for f in found}.values())  # a file named twice counts once
    names = [f.name for f in found]
    twins = sorted({n for n in names if names.count(n) > 1})
    if twins:
        raise RlfnError(f"several inputs are named {', '.join(twins)}; they would share one output name")
    return found, missing


def upscale_batch(inputs: list[Path], out_dir: Path, run: Callable[[Path, Path], Any], *, ext: str | None = None,
                  overwrite: bool = False) -> Iterator[BatchItem]:
    """Yield one `BatchItem` per input, in order; `run(src, dst)` upscales one file (e.g.
    `upscale_segmented` with the batch's workers and settings) and returns its report."""
    files, missing = collect_inputs(inputs)
    if not out_dir.is_dir():
        raise RlfnError(f"{out_dir}: {'not a folder' if out_dir.exists() else 'no such output folder'}")
    for src in missing:
        yield BatchItem(src, out_dir / src.name, "failed", error=f"{src}: no such file or folder")
    for src in files:
        dst = out_dir / (src.name if ext is None else f"{src.stem}.{ext.lstrip('.')}")
        if dst.exists() and not overwrite:
            yield BatchItem(src, dst, "skipped")
            continue
        try:
            report = run(src, dst)
        except ManifestMismatch:
            raise  # a setting changed since the interrupted run: every file would hit it
        except RlfnError as e:
            yield BatchItem(src, dst, "failed", error=str(e))
            continue
        yield BatchItem(src, dst, "done", report=report)
