"""Exceptions raised by rlfn_video. Front ends catch `RlfnError` and print its message."""


class RlfnError(Exception):
    """Base of every error this package raises on purpose."""


class UnknownModelError(RlfnError, ValueError):
    pass


class UnsupportedScaleError(RlfnError, ValueError):
    pass


class CheckpointError(RlfnError, ValueError):
    """A weights file that cannot be read, or that does not match the requested model."""


class UnsupportedInputError(RlfnError, ValueError):
    """Missing, unreadable or unusable input (no video stream, not a media file, ...)."""


class TruncatedInputError(RlfnError):
    """The input stopped decoding early; the frames before the damage were processed."""


class OutputError(RlfnError, OSError):
    """The output cannot be written (exists, same as input, folder not writable, ...)."""


class OutputExistsError(OutputError):
    """OUT exists and replacing it was not asked for (`overwrite=True`; the CLI's -y/--overwrite)."""


class EncoderError(RlfnError, ValueError):
    """The requested codec, pixel format or option is not available in this FFmpeg build."""


def check_output_shape(out, want: tuple[int, ...], *, what: str, given: str, error: type[RlfnError] = RlfnError) -> None:
    """Raise `error` unless `out` (an upscaler's result) has the shape `want`: a model of another
    scale or a wrapper that drops frames is named, not left to fail later or write garbage."""
    if tuple(out.shape) != tuple(want):
        raise error(f"{what} returned {tuple(out.shape)} for {given}, not {tuple(want)}")
