"""The CLI is a thin layer: options reach the library unchanged, errors become exit codes."""

import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
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
                              "slow", "--pix-fmt", "yuv420p10le", "--device", "cpu", "--no-fast", "-y", "-q"])
    assert res.exit_code == 0, res.output
    (src, dst, kw), = fake_upscale
    assert (str(src), str(dst)) == ("in.mp4", "out.mkv")
    assert {k: kw[k] for k in ("scale", "model", "weights", "device", "fast", "codec", "crf", "preset", "pix_fmt",
                               "overwrite")} == dict(scale=2, model=None, weights=None, device="cpu", fast=False,
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


# ---------------------------------------------------------------------------------------------
# Named models (stand-in weights for the video model) and `compare`


@pytest.fixture
def video_zoo(tmp_path, monkeypatch):
    from rlfn_video.models import zoo

    from .sr_models import standin_zoo

    ev = {"clean": {"psnr": 31.0, "ssim": 0.81}, "crf": {"18": {"psnr": 30.0, "ssim": 0.8}, "33": {"psnr": 26.0, "ssim": 0.6}},
          "mean": {"psnr": 29.0, "ssim": 0.7367}}
    folder = standin_zoo(tmp_path / "weights", clean=(2, 3), video=(2,), eval_video=ev)
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", folder)
    return folder


def test_image_and_models_know_the_video_model(video_zoo, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(src)
    outs = {}
    for name in ("rlfn_s_video", "rlfn_s"):
        res = runner.invoke(app, ["image", str(src), str(tmp_path / f"{name}.png"), "-s", "2", "--model", name,
                                  "--device", "cpu"])
        assert res.exit_code == 0, res.output
        outs[name] = np.asarray(Image.open(tmp_path / f"{name}.png"))
    assert outs["rlfn_s"].shape == (40, 48, 3) and not np.array_equal(outs["rlfn_s"], outs["rlfn_s_video"])
    res = runner.invoke(app, ["image", str(src), str(tmp_path / "x3.png"), "-s", "3", "--model", "rlfn_s_video"])
    assert res.exit_code == 1
    assert res.output.strip() == ("error: no embedded weights for rlfn_s_video x3 (shipped: rlfn_s_video_x2, "
                                  "rlfn_s_x2, rlfn_s_x3); pass --weights FILE")
    res = runner.invoke(app, ["models"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    video_row = next(ln for ln in res.output.splitlines() if "rlfn_s_video_x2" in ln)
    assert "29.00 / 0.7367" in video_row
    name_row = next(ln for ln in res.output.splitlines() if ln.startswith("│ rlfn_s_video "))
    assert "compressed video" in name_row and "x2" in name_row
    assert "30.00 / 0.9000" in next(ln for ln in res.output.splitlines() if "rlfn_s_x2" in ln)


def test_batch_passes_no_model_so_the_video_default_applies(monkeypatch, tmp_path):
    import rlfn_video.cli as cli

    seen = []
    monkeypatch.setattr(cli, "_segmented", lambda src, dst, pool, options, *a: seen.append(options) or
                        SimpleNamespace(frames_out=1, seconds=1.0))
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "out").mkdir()
    res = runner.invoke(app, ["batch", str(tmp_path / "a.mp4"), str(tmp_path / "out"), "--workers", "1", "--devices",
                              "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert seen[0]["model"] is None and seen[0]["weights"] is None and seen[0]["backend"] == "auto"
    res = runner.invoke(app, ["batch", str(tmp_path / "a.mp4"), str(tmp_path / "out"), "--workers", "1", "--devices",
                              "cpu", "--backend", "torch", "-q", "-y"])
    assert res.exit_code == 0, res.output
    assert seen[1]["backend"] == "torch"


def test_backend_reaches_video_and_image(fake_upscale, monkeypatch):
    import rlfn_video.image

    assert runner.invoke(app, ["in.mp4", "out.mp4", "-q"]).exit_code == 0
    res = runner.invoke(app, ["in.mp4", "out.mp4", "--backend", "openvino", "-q"])
    assert res.exit_code == 0, res.output
    assert [kw["backend"] for _, _, kw in fake_upscale] == ["auto", "openvino"]
    images = []
    monkeypatch.setattr(rlfn_video.image, "upscale_image", lambda src, dst, **kw: images.append(kw))
    res = runner.invoke(app, ["image", "in.png", "out.png", "--backend", "torch-compile"])
    assert res.exit_code == 0, res.output
    assert images[0]["backend"] == "torch-compile"


@pytest.fixture
def clip(tmp_path):
    from .conftest import make_clip

    return make_clip(tmp_path / "clip.mp4", size=(64, 48), frames=8, rate=10)  # 0.8 s


def _panels(path, count, w, h):
    from rlfn_video.compare import GAP, LABEL_HEIGHT

    with Image.open(path) as im:
        assert im.size == (count * w + (count - 1) * GAP, h + LABEL_HEIGHT)
        arr = np.asarray(im.convert("RGB"))
    return [arr[LABEL_HEIGHT:, i * (w + GAP): i * (w + GAP) + w] for i in range(count)]


def test_compare_writes_labelled_panels(video_zoo, clip, tmp_path):
    out = tmp_path / "compare.png"
    res = runner.invoke(app, ["compare", str(clip), "--at", "0.35", "-o", str(out), "--crop", "8,4,24,16", "-s", "2",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "frame 3 at 0.300 s" in res.output and "rlfn_s, rlfn_s_video" in res.output
    panels = _panels(out, 4, 48, 32)  # nearest, bicubic, rlfn_s, rlfn_s_video; 24x16 crop at x2
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(panels[i], panels[j]), (i, j)
    # the nearest panel is the decoded frame itself, 2x2 pixel blocks
    assert np.array_equal(panels[0][::2, ::2], panels[0][1::2, 1::2])
    # the crop is the same region as upscaling the whole frame and cropping afterwards
    whole = tmp_path / "whole.png"
    res = runner.invoke(app, ["compare", str(clip), "--at", "00:00:00.350", "-o", str(whole), "-s", "2",
                              "--model", "rlfn_s", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    full = _panels(whole, 3, 128, 96)
    assert np.array_equal(full[0][8:40, 16:64], panels[0]) and np.array_equal(full[1][8:40, 16:64], panels[1])
    assert np.abs(full[2][8:40, 16:64].astype(int) - panels[2]).max() <= 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    res = runner.invoke(app, ["compare", str(clip), "--at", "0.79", "-o", str(out), "-s", "2", "--device", "cpu"])
    assert res.exit_code == 1 and "already exists" in res.output
    res = runner.invoke(app, ["compare", str(clip), "--at", "0.79", "-o", str(out), "-s", "2", "--device", "cpu", "-y",
                              "--model", "rlfn_s_video", "--crop", "0,0,16,16"])
    assert res.exit_code == 0 and "frame 7 at 0.700 s" in res.output, res.output
    _panels(out, 3, 32, 32)
    res = runner.invoke(app, ["compare", str(clip), "--at", "0.3", "-o", str(out), "-s", "2", "--device", "cpu", "-y"])
    assert res.exit_code == 0 and "frame 3 at 0.300 s" in res.output, res.output  # 0.3 s is frame 3's start


@pytest.mark.parametrize("args, message", [
    (["--at", "0.8"], "time 0.8 s is past the end of the video (0.800 s)"),
    (["--at", "00:01:00"], "time 60 s is past the end of the video"),
    (["--at", "soon"], "bad time 'soon': use seconds (12.5) or HH:MM:SS.mmm"),
    (["--at", "-1"], "bad time '-1'"),
    (["--at", "0", "--crop", "50,10,20,10"], "crop 50,10,20,10 is outside the 64x48 frame"),
    (["--at", "0", "--crop", "1,2,3"], "bad crop '1,2,3': use X,Y,W,H"),
    (["--at", "0", "--crop", "0,0,0,5"], "W and H >= 1"),
])
def test_compare_refuses_bad_times_and_crops(video_zoo, clip, tmp_path, args, message):
    out = tmp_path / "c.png"
    res = runner.invoke(app, ["compare", str(clip), "-o", str(out), "-s", "2", "--device", "cpu", *args])
    assert res.exit_code == 1, res.output
    assert res.output.count("\n") == 1 and message in res.output, res.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".png"] == []  # nothing written


def test_parse_time():
    from rlfn_video.compare import parse_time

    assert parse_time("12.5") == 12.5 and parse_time("1:02") == 62 and parse_time("01:00:01.250") == 3601.25
    for bad in ("1:60:00", "0:61", "1:2:3:4", ""):
        with pytest.raises(UnsupportedInputError):
            parse_time(bad)


def test_compare_seeks_late_frames_to_the_same_frame(tmp_path, monkeypatch):
    import rlfn_video.compare as cmp

    from .conftest import make_clip

    src = make_clip(tmp_path / "long.mp4", size=(32, 24), frames=125, rate=10, options={"g": "30"})  # 12.5 s
    seeked = cmp.grab_frame(src, 11.05)
    assert seeked.index is None and seeked.time == pytest.approx(11.0)
    monkeypatch.setattr(cmp, "SEEK_AFTER", 1e9)
    decoded = cmp.grab_frame(src, 11.05)
    assert decoded.index == 110 and decoded.time == pytest.approx(11.0)
    assert torch.equal(seeked.rgb, decoded.rgb)
    with pytest.raises(UnsupportedInputError, match="past the end"):
        cmp.grab_frame(src, 12.5)


# --- the command line as users type it ---------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--scale", "2", "in.mp4", "out.mp4"],  # options first, as with ffmpeg
    ["in.mp4", "--scale", "2", "out.mp4"],  # between
    ["in.mp4", "out.mp4", "--scale", "2"],  # after
    ["video", "-s", "2", "in.mp4", "out.mp4"],
])
def test_options_anywhere(fake_upscale, args):
    res = runner.invoke(app, [*args, "-q"])
    assert res.exit_code == 0, res.output
    (src, dst, kw), = fake_upscale
    assert (str(src), str(dst), kw["scale"]) == ("in.mp4", "out.mp4", 2)


def _help(*command: str) -> str:
    return runner.invoke(app, [*command, "--help"], prog_name="rlfn-video").output


def test_help_reads_as_users_type():
    main = _help()
    assert "Usage: rlfn-video IN OUT [OPTIONS]" in main and "rlfn-video COMMAND [ARGS]..." in main
    assert "..." not in main.split("Commands:")[1].replace("[ARGS]...", "")  # descriptions uncut
    assert "keeping audio, subtitles, timing and colour." in " ".join(main.split())
    for command in ("video", "batch", "image", "eval", "compare", "bench", "models", "export"):
        text = _help(command)
        assert "{" not in text.split("\n\n")[0], text  # usage without {IN} {OUT}
        assert "<" not in text and "list[" not in text, text  # no Python type names
    video = _help("video")
    assert "Usage: rlfn-video video IN OUT [OPTIONS]" in video and "-s, --scale N" in video
    assert "Usage: rlfn-video batch IN... OUT_DIR [OPTIONS]" in _help("batch")
    fast = " ".join(_help("eval").split())
    assert "instead of fp32" in fast and "[default: no-fast]" in fast  # the help agrees with the default


def _params(command: str, args: list[str]) -> dict:
    """What `command` parses `args` into (no work done)."""
    import typer.main

    return typer.main.get_command(app).commands[command].make_context(command, args).params


def test_old_option_names_still_work_and_only_the_new_ones_are_shown():
    """--half/--no-half (now --fast/--no-fast) and bench's --batch (now --frames-per-call)."""
    for command, base in (("video", ["a.mp4", "b.mp4"]), ("eval", []), ("compare", ["a.mp4", "--at", "1"]),
                          ("image", ["a.png", "b.png"]), ("bench", [])):
        assert [_params(command, [*base, flag])["fast"] for flag in ("--fast", "--half", "--no-fast", "--no-half")] \
            == [True, True, False, False], command
        text = _help(command)
        assert "--fast / --no-fast" in text and "--half" not in text, text
    assert _params("video", ["a.mp4", "b.mp4"])["fast"] is None and _params("eval", [])["fast"] is False
    assert _params("bench", ["--batch", "2", "--frames-per-call", "3"])["frames_per_call"] == [2, 3]
    assert "--frames-per-call N" in _help("bench") and "--batch" not in _help("bench")


def test_existing_output_names_the_flag(tmp_path):
    from .conftest import make_clip

    src = make_clip(tmp_path / "a.mp4", size=(32, 24), frames=2)
    (tmp_path / "b.mp4").write_bytes(b"keep")
    res = runner.invoke(app, [str(src), str(tmp_path / "b.mp4"), "-s", "2", "--device", "cpu"])
    assert res.exit_code == 1
    assert res.output.strip() == f"error: {tmp_path / 'b.mp4'}: already exists (pass -y/--overwrite to replace it)"
    assert (tmp_path / "b.mp4").read_bytes() == b"keep"


def test_long_errors_are_not_wrapped_in_logs(monkeypatch):
    long = "x" * 150

    def boom(src, dst, **kw):
        raise UnsupportedInputError(f"{src}: {long}")

    monkeypatch.setattr(rlfn_video.transcode, "upscale_video", boom)
    res = runner.invoke(app, ["in.mp4", "out.mp4"])
    assert res.output == f"error: in.mp4: {long}\n"


def test_ctrl_c_stops_the_progress_bar_before_the_message(monkeypatch):
    import io
    import re

    from rich.console import Console
    from rich.progress import Progress

    import rlfn_video.cli as cli

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(cli, "err", console)
    monkeypatch.setattr(cli, "_progress_bar", lambda quiet: Progress(console=console))

    def interrupted(src, dst, *, progress, **kw):
        progress(1, 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(rlfn_video.transcode, "upscale_video", interrupted)
    assert runner.invoke(app, ["a.mp4", "b.mp4"]).exit_code == 130
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert text.rstrip().endswith("interrupted; nothing written"), repr(text[-300:])


def test_segmented_interrupt_says_what_is_kept(tmp_path, monkeypatch):
    import rlfn_video.cli as cli
    from rlfn_video.manifest import Manifest, SegmentRecord
    from rlfn_video.segmented import manifest_path

    dst = tmp_path / "out.mp4"
    records = [SegmentRecord(i, None, None, 0, 1, f"{i:05d}.mp4") for i in range(2)]
    manifest = Manifest(manifest_path(dst), {}, {}, records)

    def interrupted(*a, **kw):
        manifest.save()
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_segmented", interrupted)
    res = runner.invoke(app, ["in.mp4", str(dst), "--segment", "1", "--devices", "cpu"])
    assert res.exit_code == 130 and "before the first segment was committed; nothing kept" in res.output
    records[0].sha256 = "0" * 64
    res = runner.invoke(app, ["in.mp4", str(dst), "--segment", "1", "--devices", "cpu"])
    assert res.exit_code == 130 and f"1 committed segment(s) kept in {manifest_path(dst)}" in res.output


def test_new_video_options_reach_the_library(fake_upscale):
    res = runner.invoke(app, ["in.mp4", "out.mp4", "--height", "2160", "--tile", "256", "--bitrate", "8M", "-x",
                              "tune=film", "-x", "x264-params=keyint=48", "--deinterlace", "field", "--start",
                              "00:01:02.5", "--duration", "10", "-q"])
    assert res.exit_code == 0, res.output
    (_, _, kw), = fake_upscale
    assert {k: kw[k] for k in ("size", "tile", "bitrate", "encoder_options", "deinterlace", "start", "duration")} == \
        dict(size=(None, 2160), tile=256, bitrate="8M", encoder_options={"tune": "film", "x264-params": "keyint=48"},
             deinterlace="field", start=62.5, duration=10.0)
    assert "frames" not in kw
    runner.invoke(app, ["in.mp4", "out.mp4", "--size", "3840x2160", "--tile", "off", "-q"])
    assert fake_upscale[1][2]["size"] == (3840, 2160) and fake_upscale[1][2]["tile"] is None


@pytest.mark.parametrize("args, message", [
    (["--crf", "99"], "crf 99 is out of range for libx264 (0-51)"),
    (["--preset", "turbo"], "unknown preset 'turbo' for libx264; valid: ultrafast"),
    (["-x", "fooo=1"], "libx264 has no option 'fooo'"),
    (["-x", "tune"], "-x tune: give KEY=VALUE"),
    (["--bitrate", "5M", "--crf", "20"], "give crf or bitrate, not both"),
    (["--size", "4k"], "give WIDTHxHEIGHT"),
    (["--size", "100x100", "--height", "200"], "--size or --width/--height, not both"),
    (["--tile", "big"], "--tile big: give auto, off or a size"),
    (["--deinterlace", "yes"], "--deinterlace yes: give auto, off, frame, field"),
    (["--frames", "0"], "--frames 0: must be at least 1"),
    (["--frames", "5", "--duration", "2"], "--frames or --duration, not both"),
    (["--start", "soon"], "bad time 'soon'"),
    (["--start", "3", "--segment", "10"], "take a piece in one pass"),
    (["--backend", "tpu"], "unknown backend 'tpu'; use auto, torch, torch-compile, openvino"),
])
def test_bad_option_values_fail_before_any_work(fake_upscale, args, message):
    res = runner.invoke(app, ["in.mp4", "out.mp4", *args])
    assert res.exit_code != 0 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not fake_upscale


def test_model_and_weights_given_equally_often_pair_up_in_order(tmp_path):
    from rlfn_video.cli import _engine_specs

    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    assert _engine_specs(["rlfn_s", "rlfn"], [a, b]) == [("rlfn_s", a), ("rlfn", b)]
    assert _engine_specs(["rlfn_s"], [a]) == [("rlfn_s", a)]
    assert _engine_specs([], []) == [(None, None)]
    # unequal counts: one engine per name and one per file, as before
    assert _engine_specs(["rlfn_s", "rlfn_s_video"], [a]) == [("rlfn_s", None), ("rlfn_s_video", None), (None, a)]
    assert _engine_specs([], [a, b]) == [(None, a), (None, b)]


def test_compare_names_an_upscaler_of_another_scale():
    from rlfn_video.compare import panels
    from rlfn_video.evaluate import bicubic_upscaler

    with pytest.raises(UnsupportedInputError, match=r"an upscaler returned \(3, 64, 96\) for a \(3, 16, 24\) crop "
                                                    r"\(is it x2\?\), not \(3, 32, 48\)"):
        panels(torch.rand(3, 16, 24), {"x4": bicubic_upscaler(4)}, 2)
