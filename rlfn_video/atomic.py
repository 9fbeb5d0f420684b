"""Writing outputs atomically: a reader, a crash or a Ctrl-C never leaves half a file under OUT.

The one place for it: videos, images, segments, ONNX files, checkpoints and JSON reports are all
written to a temporary name next to their destination (`atomic_output`) and renamed onto it when
complete; `check_output` refuses what must not be written at all (IN == OUT, an existing OUT
without overwrite, a folder). It sits below every writer and imports nothing of the package but
its errors.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError, OutputExistsError


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse IN == OUT, an existing OUT without `overwrite`, and a folder as OUT."""
    src, dst = Path(src), Path(dst)
    if _same_file(src, dst):
        raise OutputError(f"{dst}: output is the input file")
    if dst.is_dir():
        raise OutputError(f"{dst}: is a folder")
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst}: already exists")


@contextmanager
def atomic_output(dst: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path next to `dst` (same extension, so the container format is
    the same); move it onto `dst` when the block completes, delete it when the block raises
    (KeyboardInterrupt included). An unwritable or missing folder fails here, before any work.
    Without `overwrite`, a `dst` that appeared while the block ran is not replaced."""
    dst = Path(dst)
    tmp = dst.parent / f".{dst.name}.part-{secrets.token_hex(4)}{dst.suffix}"
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # 0o666: honours the umask
    except OSError as e:
        raise OutputError(f"{dst}: cannot write in {dst.parent} ({e.strerror})") from None
    try:
        yield tmp
        if dst.exists() and not overwrite:
            raise OutputError(f"{dst}: appeared while writing; not replacing it")
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str, *, overwrite: bool = True) -> None:
    """Write `data` (text as UTF-8) to `path` through `atomic_output`; by default replacing
    what is there, as reports and checkpoints rewritten in place want."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
