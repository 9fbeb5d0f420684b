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
