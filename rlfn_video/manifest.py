"""The record of a segmented job: which input, which settings, which segments are committed.

It lives next to the output as `OUT.rlfn.json` (the segments in the folder `OUT.rlfn/`), is
rewritten atomically after every committed segment, and is what `--resume` trusts: a segment
counts as done only when the manifest lists its checksum and the file still has it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_atomic
from .errors import RlfnError
from .media import Span

FORMAT = "rlfn-video-segments"
VERSION = 1
_SAMPLE = 1 << 20  # bytes hashed at each end of the input for its fingerprint


class ManifestMismatch(RlfnError):
    """The manifest next to the output belongs to another input or other settings."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def input_fingerprint(path: Path, frames: int, keyframes: tuple[int, ...]) -> dict[str, Any]:
    """Size, a hash of its first and last MiB, frame count and keyframe positions: cheap for a
    film, independent of timestamps on the file (a copy to shared storage still matches)."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(_SAMPLE))
        f.seek(max(0, size - _SAMPLE))
        h.update(f.read(_SAMPLE))
    h.update(json.dumps(keyframes).encode())
    return {"bytes": size, "sha256_ends": h.hexdigest(), "frames": frames}


@dataclass
class SegmentRecord:
    index: int
    start: int | None  # pts range [start, end) in the input's video time base; None: open
    end: int | None
    first: int  # index of the first frame in the input
    frames: int | None  # None: not known before it is encoded (input without timestamps)
    file: str  # name inside the segment folder
    sha256: str | None = None  # set when committed
    bytes: int | None = None

    @property
    def span(self) -> Span:
        return Span(self.start, self.end, self.first, self.frames)


@dataclass
class Manifest:
    path: Path
    input: dict[str, Any]
    settings: dict[str, Any]
    segments: list[SegmentRecord] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.path.with_suffix("")  # OUT.rlfn.json -> OUT.rlfn

    def segment_path(self, record: SegmentRecord) -> Path:
        return self.folder / record.file

    def save(self) -> None:
        data = {"format": FORMAT, "version": VERSION, "input": self.input, "settings": self.settings,
                "segments": [asdict(s) for s in self.segments]}
        write_atomic(self.path, json.dumps(data, indent=1))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                raise ValueError("not a manifest of this version")
            return cls(path, data["input"], data["settings"], [SegmentRecord(**s) for s in data["segments"]])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ManifestMismatch(f"{path}: unreadable segment manifest ({e}); delete it or pass --no-resume") from None

    def check_matches(self, input_: dict[str, Any], settings: dict[str, Any]) -> None:
        """Refuse to resume work done for another input or with other settings."""
        changed = [f"input {k} {self.input.get(k)!r} -> {v!r}" for k, v in input_.items() if self.input.get(k) != v]
        changed += [f"{k} {self.settings.get(k)!r} -> {v!r}" for k, v in settings.items()
                    if self.settings.get(k) != v]
        if changed:
            raise ManifestMismatch(f"{self.path} was written for another job ({'; '.join(changed)}); "
                                   f"pass --no-resume to start over")

    def committed(self, record: SegmentRecord) -> bool:
        """Listed with a checksum, and the file is there with that size and checksum."""
        if record.sha256 is None:
            return False
        path = self.segment_path(record)
        try:
            if path.stat().st_size != record.bytes:
                return False
        except OSError:
            return False
        return sha256_file(path) == record.sha256
