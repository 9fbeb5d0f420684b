"""rlfn-video: video super-resolution with RLFN.

    import rlfn_video
    rlfn_video.upscale_video("in.mp4", "out.mp4", scale=4)
"""

from .engine import Engine
from .errors import (CheckpointError, EncoderError, OutputError, RlfnError, TruncatedInputError, UnknownModelError,
                     UnsupportedInputError, UnsupportedScaleError)
from .image import upscale_image
from .models import load_model
from .transcode import upscale_video

__all__ = ["CheckpointError", "EncoderError", "Engine", "OutputError", "RlfnError", "TruncatedInputError",
           "UnknownModelError", "UnsupportedInputError", "UnsupportedScaleError", "load_model", "upscale_image",
           "upscale_video"]
