"""rlfn-video: video super-resolution with RLFN.

    import rlfn_video
    rlfn_video.upscale_video("in.mp4", "out.mp4", scale=4)

    # keyframe segments on two CPU worker processes (or GPUs, or Ray), resumable
    with rlfn_video.make_workers("cpu", 2) as workers:
        settings = rlfn_video.EncodeSettings.create(device_kind=workers.device_kind, scale=4)
        rlfn_video.upscale_segmented("in.mp4", "out.mp4", settings=settings, workers=workers)
"""

from .backends import Backend
from .engine import Engine
from .errors import (CheckpointError, EncoderError, OutputError, OutputExistsError, RlfnError, TruncatedInputError,
                     UnknownModelError, UnsupportedInputError, UnsupportedScaleError)
from .image import upscale_image
from .manifest import ManifestMismatch
from .models import load_model
from .segment_job import EncodeSettings
from .segmented import upscale_segmented
from .transcode import upscale_video
from .workers import make_workers

__all__ = ["Backend", "CheckpointError", "EncodeSettings", "EncoderError", "Engine", "ManifestMismatch",
           "OutputError", "OutputExistsError", "RlfnError", "TruncatedInputError", "UnknownModelError",
           "UnsupportedInputError", "UnsupportedScaleError", "load_model", "make_workers", "upscale_image",
           "upscale_segmented", "upscale_video"]
