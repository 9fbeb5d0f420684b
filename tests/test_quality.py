"""Video SR quality end to end: a real clip downscaled by the scale, upscaled by the CLI's path
with the shipped weights, must beat bicubic against the original frames."""

import numpy as np
import pytest
import torch

from rlfn_video import colour, media
from rlfn_video.engine import Engine
from rlfn_video.evaluate import score
from rlfn_video.resize import downscale, imresize
from rlfn_video.transcode import upscale_video

from .shared import VIDEOS, needs_videos

FRAMES = 3


def _rgb_frames(path, limit=None) -> list[torch.Tensor]:
    """Decoded frames as (3, H, W) 0-255 float64, through our own colour path."""
    out = []
    with media.Source(path, max_frames=limit) as src:
        for item in src:
            if isinstance(item, media.Picture):
                planes = [torch.from_numpy(p.astype(np.int32)) for p in item.planes]
                out.append(colour.planes_to_rgb(planes, src.info.colour, dtype=torch.float64).mul(255).round())
    return out


def _write_rgb_clip(path, frames: list[torch.Tensor]) -> None:
    """Lossless RGB clip (FFV1, bgr0) so the test measures SR, not compression."""
    import av

    h, w = frames[0].shape[1:]
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=25)
        s.codec_context.width, s.codec_context.height, s.codec_context.pix_fmt = w, h, "bgr0"
        for f in frames:
            rgb = f.permute(1, 2, 0).to(torch.uint8).numpy()
            out.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="bgr0")))
        out.mux(s.encode())


@needs_videos
@pytest.mark.parametrize("scale", [2, 4])
def test_video_sr_beats_bicubic(tmp_path, scale):
    hr = [f[:, : f.shape[1] // scale * scale, : f.shape[2] // scale * scale]
          for f in _rgb_frames(VIDEOS / "bikes.mp4", FRAMES)]
    lr = [downscale(f, scale, quantize=True) for f in hr]
    _write_rgb_clip(tmp_path / "lr.mkv", lr)
    engine = Engine.from_options(scale=scale, device="cpu")
    upscale_video(tmp_path / "lr.mkv", tmp_path / "sr.mkv", engine=engine, codec="ffv1")
    sr = _rgb_frames(tmp_path / "sr.mkv")
    assert len(sr) == FRAMES and sr[0].shape == hr[0].shape
    ours = np.mean([score(s, h, scale)[0] for s, h in zip(sr, hr)])
    bicubic = np.mean([score(imresize(l, scale, quantize=True), h, scale)[0] for l, h in zip(lr, hr)])  # noqa: E741
    assert ours > bicubic + 0.3, f"x{scale}: ours {ours:.2f} dB vs bicubic {bicubic:.2f} dB"
