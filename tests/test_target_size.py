"""Target sizes: the smallest model scale that covers the target, the picture's shape kept."""

import pytest

from rlfn_video.errors import RlfnError
from rlfn_video.target_size import Fit, fit, parse_size


@pytest.mark.parametrize("src, kw, want", [
    ((960, 540), dict(size=(3840, 2160)), Fit(4, 3840, 2160)),  # exactly x4: no resize
    ((1920, 1080), dict(target_height=2160), Fit(2, 3840, 2160)),
    ((640, 360), dict(target_height=1080), Fit(3, 1920, 1080)),
    ((1280, 720), dict(target_height=2160), Fit(3, 3840, 2160)),
    ((1440, 1080), dict(size=(3840, 2160)), Fit(2, 2880, 2160)),  # 4:3 in a 16:9 box: pillarbox size, no stretch
    ((720, 576), dict(target_width=1921), Fit(3, 1920, 1536)),  # even sides, within the limit
    ((720, 480), dict(size=(3840, 2160)), Fit(4, 3240, 2160, beyond=True)),  # DVD storage size: past x4
])
def test_fit(src, kw, want):
    got = fit(*src, **kw)
    assert got == want
    assert got.width % 2 == 0 and got.height % 2 == 0
    assert abs(got.width / got.height - src[0] / src[1]) < 2 / got.height * src[0] / src[1] + 1e-9  # shape kept


def test_fit_notes_the_resize():
    assert fit(960, 540, size=(3840, 2160)).note(960, 540) == "target size 3840x2160: x4 model"
    assert "downscaled (Lanczos)" in fit(1000, 560, target_height=2160).note(1000, 560)
    assert "resized up" in fit(720, 480, size=(3840, 2160)).note(720, 480)


@pytest.mark.parametrize("kw, message", [
    (dict(size=(1280, 720)), "not larger than the 1920x1080 input"),
    (dict(size=(3840, 2160), target_height=2160), "not both"),
    (dict(), "no target size"),
    (dict(target_width=-4), "must be positive"),
])
def test_fit_refuses(kw, message):
    with pytest.raises(RlfnError, match=message):
        fit(1920, 1080, **kw)


def test_parse_size():
    assert parse_size("3840x2160") == (3840, 2160) == parse_size(" 3840 × 2160 ")
    for bad in ("3840", "0x100", "axb", "3840x"):
        with pytest.raises(RlfnError, match="WIDTHxHEIGHT"):
            parse_size(bad)


# --- end to end ---------------------------------------------------------------------------------


def _frames(path):
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return (v.codec_context.width, v.codec_context.height), [f.to_ndarray(format="rgb24") for f in c.decode(v)]


def test_upscale_video_to_a_target_height(tmp_path):
    """x4 by the model, then Lanczos down to the target: the picture is the input's, resized."""
    import numpy as np
    from PIL import Image

    from rlfn_video.transcode import upscale_video

    from .conftest import NearestEngine, make_clip

    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=4, codec="ffv1", pix_fmt="yuv444p")
    notes = []
    report = upscale_video(src, tmp_path / "out.mkv", engine=NearestEngine(4), size=(None, 150), codec="ffv1",
                           warn=notes.append)
    assert report.size_out == (200, 150) and report.frames_out == 4
    assert "target size 200x150: x4 model, downscaled (Lanczos)" in notes
    size, got = _frames(tmp_path / "out.mkv")
    _, ref = _frames(src)
    assert size == (200, 150) and len(got) == 4
    for g, r in zip(got, ref):
        want = np.asarray(Image.fromarray(r).resize((256, 192), Image.NEAREST).resize((200, 150), Image.LANCZOS))
        mse = np.mean((g.astype(float) - want) ** 2)
        assert 10 * np.log10(255 ** 2 / mse) > 30


def test_segmented_run_to_a_target_size(tmp_path):
    """Segments are fitted the same way: the embedded model at the smallest scale that covers it."""
    from rlfn_video.segment_job import EncodeSettings
    from rlfn_video.segmented import upscale_segmented
    from rlfn_video.workers import InProcess

    from .conftest import make_clip

    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=6, rate=10, options={"g": "3"})
    settings = EncodeSettings(scale=4, precision="fp32", size=(130, None))  # x3 covers 130 (192 wide)
    with InProcess("cpu") as pool:
        report = upscale_segmented(src, tmp_path / "out.mp4", settings=settings, workers=pool, segment_seconds=0.3)
    assert report.size_out == (130, 98) and report.frames_out == 6
    size, got = _frames(tmp_path / "out.mp4")
    assert size == (130, 98) and len(got) == 6
    assert settings.fitted(__import__("rlfn_video.media").media.probe(src)).scale == 3
