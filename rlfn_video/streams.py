"""Container metadata carried to the output: chapters, stream tags (language, title), dispositions.

Tags that describe the old encode (encoder, bit rates, durations, MP4 brands) are left behind.
MP4/MOV track titles read back as "name"; they are carried as "title", which each muxer stores
its own way. QuickTime chapter text tracks are hidden by the demuxer and come back as chapters,
not as a stream. Attachments are `encode.Sink`'s (they are streams there).
"""

from __future__ import annotations

from collections.abc import Callable

import av

# Tags that describe the old encode, not the new one.
_STALE_TAGS = ("encoder", "duration", "bps", "number_of_frames", "number_of_bytes", "_statistics",
               "major_brand", "minor_version", "compatible_brands")
# Muxers that write chapters (FFmpeg has no flag that says so).
_CHAPTER_FORMATS = {"matroska", "webm", "mp4", "mov", "ipod", "ismv", "3gp", "3g2", "psp", "f4v", "ogg", "nut",
                    "ffmetadata"}


def clean_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.lower().startswith(_STALE_TAGS)}


def stream_tags(stream: av.stream.Stream) -> dict[str, str]:
    """The stream's tags worth keeping, a MOV/MP4 "name" as "title"."""
    tags = clean_tags(stream.metadata)
    if "title" not in tags and "name" in tags and "mov" in stream.container.format.name.split(","):
        tags["title"] = tags.pop("name")
    return tags


def copy_identity(src: av.stream.Stream, dst: av.stream.Stream) -> None:
    """Language, title and the other tags, and the disposition (default, forced, comment, ...)."""
    dst.metadata.update(stream_tags(src))
    dst.disposition = src.disposition


def hidden(stream: av.stream.Stream) -> bool:
    """A track the demuxer keeps out of sight (discard=all): a QuickTime chapter text track."""
    return stream.type == "data" and stream.discard == av.stream.Discard.all


def copy_chapters(src: av.container.Container, out: av.container.OutputContainer,
                  warn: Callable[[str], None]) -> None:
    """Chapters (times and titles) into `out`, before its header is written."""
    chapters = src.chapters()
    if not chapters:
        return
    if out.format.name not in _CHAPTER_FORMATS:
        warn(f"{len(chapters)} chapter(s) dropped: {out.format.name} holds no chapters")
        return
    out.set_chapters([{**c, "metadata": clean_tags(c["metadata"])} for c in chapters])
