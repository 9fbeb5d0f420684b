"""The CLI is a thin layer: options reach the library unchanged, errors become exit codes."""

import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import rlfn_video.transcode
from rlfn_video.cli import app
from rlfn_video.errors import UnsupportedInputError
from rlfn_video.models import RLFN, arch_for, save_checkpoint

runner = CliRunner()


@pytest.fixture
def fake_upscale(monkeypatch):
    calls = []

    def fake(src, dst, **kw):
        calls.append((src, dst, kw))
        return SimpleNamespace(frames_out=3, seconds=1.0, fps=3.0)

    monkeypatch.setattr(rlfn_video.transcode, "upscale_video", fake)
    return calls


def test_video_is_the_default_command(fake_upscale, tmp_path):
    res = runner.invoke(app, ["in.mp4", "out.mkv", "--scale", "2", "--codec", "libx265", "--crf", "20", "--preset",
                              "slow", "--pix-fmt", "yuv420p10le", "--device", "cpu", "--no-half", "-y", "-q"])
    assert res.exit_code == 0, res.output
    (src, dst, kw), = fake_upscale
    assert (str(src), str(dst)) == ("in.mp4", "out.mkv")
    assert {k: kw[k] for k in ("scale", "model", "weights", "device", "half", "codec", "crf", "preset", "pix_fmt",
                               "overwrite")} == dict(scale=2, model=None, weights=None, device="cpu", half=False,
                                                     codec="libx265", crf=20, preset="slow", pix_fmt="yuv420p10le",
                                                     overwrite=True)
    assert runner.invoke(app, ["video", "a.mp4", "b.mp4", "-q"]).exit_code == 0
    assert fake_upscale[1][2]["scale"] == 4 and fake_upscale[1][2]["codec"] == "libx264"


def test_library_error_is_one_line_and_exit_1(monkeypatch):
    def boom(src, dst, **kw):
        raise UnsupportedInputError(f"{src}: no video stream")

    monkeypatch.setattr(rlfn_video.transcode, "upscale_video", boom)
    res = runner.invoke(app, ["song.m4a", "out.mp4"])
    assert res.exit_code == 1
    assert res.output.strip() == "error: song.m4a: no video stream"


def test_ctrl_c_exits_130(monkeypatch):
    def interrupted(src, dst, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(rlfn_video.transcode, "upscale_video", interrupted)
    assert runner.invoke(app, ["a.mp4", "b.mp4"]).exit_code == 130


def test_bad_scale_and_model_are_clear(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (20, 20)).save(img)
    res = runner.invoke(app, ["image", str(img), str(tmp_path / "b.png"), "--scale", "5"])
    assert res.exit_code == 1 and "unsupported scale 5" in res.output
    res = runner.invoke(app, ["image", str(img), str(tmp_path / "b.png"), "--model", "esrgan"])
    assert res.exit_code == 1 and "unknown model 'esrgan'" in res.output
    assert not (tmp_path / "b.png").exists()


def test_image_command_end_to_end(tmp_path):
    weights = tmp_path / "w.pth"
    save_checkpoint(weights, RLFN(arch_for("rlfn_s", 3)), value_range=1.0, meta={})
    src = tmp_path / "in.png"
    rgba = np.random.default_rng(0).integers(0, 255, (17, 23, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(src)
    res = runner.invoke(app, ["image", str(src), str(tmp_path / "out.png"), "-s", "3", "--weights", str(weights),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (69, 51) and out.mode == "RGBA"
    res = runner.invoke(app, ["image", str(src), str(tmp_path / "out.png"), "-s", "3", "--weights", str(weights)])
    assert res.exit_code == 1 and "already exists" in res.output
    res = runner.invoke(app, ["image", str(tmp_path / "nope.png"), str(tmp_path / "o.png"), "--weights", str(weights),
                              "-s", "3"])
    assert res.exit_code == 1 and "no such file" in res.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_eval_command_prints_table(tmp_path):
    from .shared import BENCHMARKS

    if not BENCHMARKS.is_dir():
        pytest.skip(f"benchmark sets not found at {BENCHMARKS}")
    weights = tmp_path / "w.pth"
    save_checkpoint(weights, RLFN(arch_for("rlfn_ntire", 4)), value_range=1.0, meta={})
    res = runner.invoke(app, ["eval", "--data", str(BENCHMARKS / "Set5"), "--scale", "4", "--weights", str(weights),
                              "--device", "cpu", "--bicubic"])
    assert res.exit_code == 0, res.output
    for name in ("baby", "bird", "butterfly", "head", "woman", "mean", "28.4"):
        assert name in res.output


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_real_signal_mid_run_leaves_nothing(tmp_path, sig, code):
    """A real Ctrl-C / kill on the running command: exit code, no OUT, no temp file."""
    from .conftest import make_clip

    src = make_clip(tmp_path / "in.mp4", size=(96, 64), frames=200, rate=25)
    weights = tmp_path / "w.pth"
    save_checkpoint(weights, RLFN(arch_for("rlfn", 4)), value_range=1.0, meta={})
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "rlfn_video.cli", str(src), str(out), "--weights", str(weights), "--device", "cpu"]
    # Background jobs of a non-interactive shell inherit SIGINT ignored; a terminal's Ctrl-C does not.
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.mp4.part-*")):  # started writing
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == code
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "w.pth"]
