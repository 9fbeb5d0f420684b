"""The compressed-video benchmark (rlfn_video/eval_video.py) on two small synthetic images, 3-frame pans."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from rlfn_video import eval_video, media
from rlfn_video.cli import app
from rlfn_video.engine import Engine
from rlfn_video.errors import UnsupportedInputError
from rlfn_video.evaluate import bicubic_upscaler, read_rgb
from rlfn_video.models import save_checkpoint, zoo
from rlfn_video.resize import imresize

from .conftest import make_clip
from .shared import VIDEOS, needs_videos
from .sr_models import image_like_rlfn, standin_zoo

SCALE, FRAMES, CRFS = 2, 3, (18, 33)


def _image(seed: int, width: int, height: int) -> np.ndarray:
    """Photo-like enough for a codec to hurt: smooth gradients, hard-edged blocks, fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 200 / width + 20, y * 180 / height + 40, (x + y) * 100 / (width + height) + 60], -1)
    for _ in range(8):
        x0, y0 = rng.integers(0, width - 8), rng.integers(0, height - 8)
        img[y0:y0 + rng.integers(4, 16), x0:x0 + rng.integers(4, 16)] = rng.integers(0, 256, 3)
    img += rng.normal(0, 12, img.shape)
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("set") / "Tiny"
    (folder / "HR").mkdir(parents=True)
    Image.fromarray(_image(0, 72, 56)).save(folder / "HR" / "a.png")
    Image.fromarray(_image(1, 64, 64)).save(folder / "HR" / "b.png")
    return folder


class BicubicModel:
    """A 'model' that is exactly MATLAB bicubic, behind the engine's interface (batched NCHW)."""

    scale = SCALE
    device = torch.device("cpu")

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        return imresize(rgb * 255.0, SCALE).div(255.0)  # bicubic_upscaler's arithmetic, here on a batch


@pytest.fixture(scope="module")
def result(small_set):
    return eval_video.evaluate_compressed({"bicubic": bicubic_upscaler(SCALE), "same": BicubicModel()}, SCALE,
                                          sets=[small_set], crfs=CRFS, frames=FRAMES)


def test_bicubic_falls_as_crf_rises(result):
    psnr = {r: result.scores["bicubic"][r][0] for r in result.rows}
    ssim = {r: result.scores["bicubic"][r][1] for r in result.rows}
    assert result.rows == ["clean", "18", "33"] and result.images == 2
    assert psnr["clean"] > psnr["18"] > psnr["33"] + 1, psnr
    assert ssim["clean"] > ssim["18"] > ssim["33"], ssim


def test_a_model_that_is_bicubic_scores_as_bicubic(result):
    for row in result.rows:
        assert result.scores["same"][row] == result.scores["bicubic"][row]


def test_pan_moves_and_fits(small_set):
    hr = read_rgb(small_set / "HR" / "a.png")  # 72x56
    seq = eval_video.make_sequence("a", hr, SCALE, FRAMES)
    f, _, h, w = seq.hr.shape
    dx, dy = eval_video.PAN
    assert f == FRAMES and h % (2 * SCALE) == 0 and w % (2 * SCALE) == 0
    assert (w, h) == ((72 - dx * (FRAMES - 1)) // 4 * 4, (56 - dy * (FRAMES - 1)) // 4 * 4)
    assert seq.lr.shape == (FRAMES, 3, h // SCALE, w // SCALE) and (h // SCALE) % 2 == 0 == (w // SCALE) % 2
    for i in range(FRAMES - 1):
        assert not torch.equal(seq.hr[i], seq.hr[i + 1]) and not torch.equal(seq.lr[i], seq.lr[i + 1])
        assert torch.equal(seq.hr[i + 1][:, : h - dy, : w - dx], seq.hr[i][:, dy:, dx:])  # moved by (dx, dy)
    assert torch.equal(seq.lr * 255, (seq.lr * 255).round())  # 8-bit LR, as the benchmarks' LR


def test_each_frame_is_scored_against_its_own_hr(small_set):
    """Oracles on the clean row: "own" returns the true HR of the frame it is given (a perfect
    score), "first" the HR of the pan's first frame for every frame, "next" that of the next frame
    (never its own): both score worse, "next" even worse than bicubic."""
    own, first, nxt = {}, {}, {}
    for name in ("a", "b"):
        seq = eval_video.make_sequence(name, read_rgb(small_set / "HR" / f"{name}.png"), SCALE, FRAMES)
        for i, (lr, hr) in enumerate(zip(seq.lr, seq.hr)):
            key = lr.numpy().tobytes()
            own[key], first[key], nxt[key] = hr / 255, seq.hr[0] / 255, seq.hr[(i + 1) % FRAMES] / 255
    oracle = lambda table: lambda lr: table[lr.numpy().tobytes()]  # noqa: E731
    res = eval_video.evaluate_compressed({"bicubic": bicubic_upscaler(SCALE), "own": oracle(own),
                                          "first": oracle(first), "next": oracle(nxt)},
                                         SCALE, sets=[small_set], crfs=(), frames=FRAMES)
    assert res.rows == ["clean"]
    scores = {k: v["clean"] for k, v in res.scores.items()}
    assert scores["own"] == (float("inf"), pytest.approx(1.0))
    assert scores["first"][1] < 0.9  # its frame 0 is perfect (PSNR inf), frames 1 and 2 are not
    assert scores["next"][0] < scores["bicubic"][0] - 3 and scores["next"][1] < scores["bicubic"][1]


def test_deterministic_and_stored_format(small_set, result):
    engine = Engine(image_like_rlfn(SCALE), device="cpu", fast=False)
    a = eval_video.score_video_model(engine, sets=[small_set], crfs=CRFS, frames=FRAMES)
    b = eval_video.score_video_model(engine, sets=[small_set], crfs=CRFS, frames=FRAMES)
    assert a == b
    again = eval_video.evaluate_compressed({"bicubic": bicubic_upscaler(SCALE)}, SCALE, sets=[small_set], crfs=CRFS,
                                           frames=FRAMES)
    assert again.scores["bicubic"] == result.scores["bicubic"]
    assert set(a) == {"clean", "crf", "mean", "protocol"} and set(a["crf"]) == {"18", "33"}
    assert a["protocol"] == {"version": 1, "scale": SCALE, "sets": ["Tiny"], "images": 2, "frames": FRAMES,
                             "pan": [2, 1], "codec": "libx264", "preset": "medium"}
    rows = [a["clean"], *a["crf"].values()]
    assert a["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows]), abs=1e-3)
    assert eval_video.summary(a) == (a["mean"]["psnr"], a["mean"]["ssim"])
    assert eval_video.summary({k: v for k, v in a.items() if k != "mean"}) == pytest.approx(
        (a["mean"]["psnr"], a["mean"]["ssim"]), abs=1e-3)
    json.dumps(a)  # storable in checkpoint metadata and JSON as is


def test_bad_requests_are_refused(small_set):
    with pytest.raises(Exception, match="CRF must be an integer 0-51"):
        eval_video.evaluate_compressed({"b": bicubic_upscaler(2)}, 2, sets=[small_set], crfs=(60,), frames=2)
    with pytest.raises(Exception, match="frames must be at least 1"):
        eval_video.evaluate_compressed({"b": bicubic_upscaler(2)}, 2, sets=[small_set], frames=0)
    with pytest.raises(Exception, match="too small"):
        eval_video.pan(torch.zeros(3, 10, 10), 4, 8)
    with pytest.raises(Exception, match=r"the upscaler returned \(3, 104, 136\) for a \(3, 26, 34\) frame, not \(3, 52, 68\)"):
        eval_video.evaluate_compressed({"x4": bicubic_upscaler(4)}, 2, sets=[small_set], crfs=(), frames=2)


def _decoded_hr(path) -> list[torch.Tensor]:
    """Every frame of a clip as 0-255 RGB, decoded independently of eval_video (PyAV's own BT.601 conversion)."""
    with av.open(str(path)) as c:
        return [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1).double() for f in c.decode(video=0)]


def test_a_video_file_gives_windows_of_real_frames(tmp_path):
    """14 frames, 3 per sequence: 4 windows, evenly spaced from the first frame to the last; each
    HR frame is the decoded frame itself (centre crop to a multiple of 2 x scale), in order."""
    clip = make_clip(tmp_path / "moving.mp4", size=(70, 50), frames=14)
    assert eval_video.clip_windows(clip, 3) == [0, 4, 7, 11]
    seqs = eval_video.clip_sequences(clip, SCALE, 3)
    assert [s.name for s in seqs] == ["moving@0", "moving@4", "moving@7", "moving@11"]
    frames = _decoded_hr(clip)
    for seq, start in zip(seqs, (0, 4, 7, 11)):
        assert seq.hr.shape == (3, 3, 48, 68) and seq.lr.shape == (3, 3, 24, 34)
        assert torch.equal(seq.hr, seq.hr.round()) and torch.equal(seq.lr * 255, (seq.lr * 255).round())
        for i in range(3):
            want = frames[start + i][:, 1:49, 1:69]  # centre crop of 70x50 to 68x48
            assert (seq.hr[i] - want).abs().mean() < 5  # our conversion against swscale's (chroma upsampling differs at edges)
            others = [k for k in range(14) if k != start + i]
            assert all((seq.hr[i] - frames[k][:, 1:49, 1:69]).abs().mean() > (seq.hr[i] - want).abs().mean() for k in others)
    assert eval_video.clip_windows(clip, 5) == [0, 9]  # two windows fit without overlap
    assert eval_video.clip_windows(clip, 10) == [2]  # one: the middle
    with pytest.raises(UnsupportedInputError, match="14 frame\\(s\\), fewer than the 15"):
        eval_video.clip_windows(clip, 15)


@needs_videos
def test_windows_come_from_the_frames_that_decode():
    """box.mp4's index promises 456 frames, 455 decode: the last window must end at frame 454."""
    assert media.probe(VIDEOS / "box.mp4").frames == 456
    assert eval_video.clip_windows(VIDEOS / "box.mp4", 3) == [0, 151, 301, 452]


def test_folders_and_clips_together(small_set, tmp_path):
    clip = make_clip(tmp_path / "moving.mp4", size=(70, 50), frames=14)
    seen = []
    res = eval_video.evaluate_compressed({"bicubic": bicubic_upscaler(SCALE)}, SCALE, sets=[small_set, clip], crfs=(33,),
                                         frames=3, progress=lambda done, total: seen.append((done, total)))
    assert res.images == 6 and res.sets == ["Tiny", "moving.mp4"] and seen == [(k, 6) for k in range(1, 7)]
    alone = eval_video.evaluate_compressed({"bicubic": bicubic_upscaler(SCALE)}, SCALE, sets=[clip], crfs=(33,), frames=3)
    assert alone.images == 4 and alone.scores["bicubic"]["clean"][0] > alone.scores["bicubic"]["33"][0]
    assert alone.as_meta("bicubic")["protocol"]["sets"] == ["moving.mp4"]


runner = CliRunner()


def test_cli_table_has_the_asked_rows(small_set, tmp_path, monkeypatch):
    """Default models (clean and video, stand-ins here), bicubic always; rows as asked, then mean."""
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", standin_zoo(tmp_path / "weights", clean=(2,), video=(2,)))
    out = tmp_path / "scores.json"
    res = runner.invoke(app, ["eval", "--compressed", "--data", str(small_set), "--crf", "18", "--crf", "33",
                              "--frames", "3", "-s", "2", "--device", "cpu", "--json", str(out)],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    rows = [ln.split("│")[1].strip() for ln in lines if ln.startswith("│")]
    assert rows == ["clean", "CRF 18", "CRF 33", "mean"], res.output
    header = next(ln for ln in lines if "PSNR" in ln)
    assert [c.strip() for c in header.split("┃")[2:-1]] == ["bicubic PSNR", "bicubic SSIM", "rlfn_s PSNR", "rlfn_s SSIM",
                                                          "rlfn_s_video PSNR", "rlfn_s_video SSIM"], header
    doc = json.loads(out.read_text())  # {upscaler: its eval_video metadata}
    assert list(doc) == ["bicubic", "rlfn_s", "rlfn_s_video"]
    assert set(doc["rlfn_s_video"]["crf"]) == {"18", "33"} and doc["rlfn_s_video"]["protocol"]["scale"] == 2
    mean_row = next(ln for ln in lines if ln.startswith("│ mean"))
    assert f"{doc['bicubic']['mean']['psnr']:.2f}" in mean_row


def test_cli_named_models_and_files(small_set, tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", standin_zoo(tmp_path / "weights", clean=(2, 3), video=(2,)))
    w = tmp_path / "mine.pth"
    save_checkpoint(w, image_like_rlfn(2, seed=3).net, value_range=1.0, meta={})
    res = runner.invoke(app, ["eval", "--compressed", "--data", str(small_set), "--crf", "23", "--frames", "2", "-s", "2",
                              "--model", "rlfn_s_video", "--model", "rlfn", "--weights", str(w), "--device", "cpu"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 1 and "no embedded weights for rlfn x2" in res.output
    res = runner.invoke(app, ["eval", "--compressed", "--data", str(small_set), "--crf", "23", "--frames", "2", "-s", "2",
                              "--model", "rlfn_s_video", "--model", "rlfn_s", "--weights", str(w), "--device", "cpu"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    header = next(ln for ln in res.output.splitlines() if "PSNR" in ln)
    assert [c.strip() for c in header.split("┃")[2:-1:2]] == ["bicubic PSNR", "rlfn_s_video PSNR", "rlfn_s PSNR",
                                                             "mine PSNR"], header
    # one --model with one --weights: the file, checked against the name (as everywhere)
    res = runner.invoke(app, ["eval", "--compressed", "--data", str(small_set), "--crf", "23", "--frames", "1", "-s", "2",
                              "--model", "rlfn", "--weights", str(w), "--device", "cpu"])
    assert res.exit_code == 1 and "holds rlfn_s x2, not rlfn x2" in res.output
    # x3: no video weights; by default only the clean model is compared, named it is an error
    res = runner.invoke(app, ["eval", "--compressed", "--data", str(small_set), "--crf", "23", "--frames", "1", "-s", "3",
                              "--device", "cpu"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "rlfn_s PSNR" in res.output and "rlfn_s_video" not in res.output
    res = runner.invoke(app, ["eval", "--compressed", "--data", str(small_set), "-s", "3", "--model", "rlfn_s_video"])
    assert res.exit_code == 1
    assert res.output.strip() == ("error: no embedded weights for rlfn_s_video x3 (shipped: rlfn_s_video_x2, rlfn_s_x2, "
                                  "rlfn_s_x3); pass --weights FILE")


def test_cli_plain_eval_options_unchanged(small_set):
    res = runner.invoke(app, ["eval", "--crf", "18", "--data", str(small_set)])
    assert res.exit_code == 1 and "--crf: only with --compressed" in res.output
    res = runner.invoke(app, ["eval", "-s", "2"])
    assert res.exit_code == 2 and "--data" in res.output


def test_cli_scores_a_clip_and_refuses_a_file_that_is_no_video(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", standin_zoo(tmp_path / "weights", clean=(2,), video=(2,)))
    clip = make_clip(tmp_path / "moving.mp4", size=(70, 50), frames=14)
    res = runner.invoke(app, ["eval", "--compressed", "--data", str(clip), "--crf", "33", "--frames", "3", "-s", "2",
                              "--device", "cpu"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "4 sequences (moving.mp4), 3 frames each" in res.output
    rows = [ln.split("│")[1].strip() for ln in res.output.splitlines() if ln.startswith("│")]
    assert rows == ["clean", "CRF 33", "mean"], res.output
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    res = runner.invoke(app, ["eval", "--compressed", "--data", str(bad), "-s", "2", "--device", "cpu"])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert res.output.startswith("error: ") and "notes.mp4" in res.output
