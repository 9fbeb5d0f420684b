"""vsrlfn: the VapourSynth filter through a real VapourSynth core and a real vspipe.

References are computed with rlfn_video's own API (`Engine`, `colour`, `media`) on the same input;
the model is RLFN-S x2 with random weights written by the test (output biased to mid-grey, so
frames differ and little is clamped). Clips are tiny and short: the whole file runs on a CPU.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

vs = pytest.importorskip("vapoursynth", reason="VapourSynth is not installed (bash scripts/setup.sh dev)")
import vsrlfn  # noqa: E402
from rlfn_video import colour, lane, media  # noqa: E402
from rlfn_video.backends import Backend  # noqa: E402
from rlfn_video.colour import ColourSpec, Matrix  # noqa: E402
from rlfn_video.engine import Engine  # noqa: E402
from rlfn_video.models import RLFN, arch_for, load_model, save_checkpoint, zoo  # noqa: E402

from .conftest import pattern  # noqa: E402
from .shared import VIDEOS, needs_videos  # noqa: E402

core = vs.core
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "rlfn.vpy"
VSPIPE = Path(sys.executable).with_name("vspipe")
CARPHONE = VIDEOS / "carphone_pristine.mp4"
needs_bestsource = pytest.mark.skipif(not hasattr(core, "bs"), reason="vapoursynth-bestsource is not installed")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = RLFN(arch_for("rlfn_s", 2))
    with torch.no_grad():
        net.upsampler[0].bias.add_(0.5)
    path = tmp_path_factory.mktemp("weights") / "rlfn_s_x2.pth"
    save_checkpoint(path, net, value_range=1.0, meta={})
    return path


@pytest.fixture(autouse=True)
def threads():
    before = core.num_threads
    yield
    core.num_threads = before


def engine_for(weights, device, fast: bool | None) -> Engine:
    """The engine rlfn uses: fast=False for RGBS, None (fp16 CUDA / bf16 on bf16 CPUs) otherwise."""
    return Engine.from_options(scale=2, model="rlfn_s", weights=weights, device=device, fast=fast)


def rgb_clip(fmt=vs.RGBS, width=40, height=32, length=3) -> vs.VideoNode:
    """Distinct colourful frames (conftest.pattern) as RGBS/RGBH."""
    blank = core.std.BlankClip(format=vs.RGBS, width=width, height=height, length=length)

    def fill(n, f):
        out = f.copy()
        for p in range(3):
            np.asarray(out[p])[:] = pattern(n, width, height)[..., p] / 255
        return out

    clip = blank.std.ModifyFrame(blank, fill)
    return clip if fmt == vs.RGBS else core.resize.Point(clip, format=fmt)


def planes(frame: vs.VideoFrame) -> list[np.ndarray]:
    return [np.asarray(frame[p]).copy() for p in range(frame.format.num_planes)]


def assert_close_int(got: list[np.ndarray], want: list, tol: int = 1) -> None:
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype
        assert np.abs(g.astype(np.int64) - w.astype(np.int64)).max() <= tol


def read_y4m(data: bytes) -> tuple[dict[str, str], list[list[np.ndarray]]]:
    """Header fields and 8-bit 4:2:0 frames (Y, U, V) of a YUV4MPEG2 stream."""
    head, _, rest = data.partition(b"\n")
    fields = head.decode().split()
    assert fields[0] == "YUV4MPEG2"
    info = {f[0]: f[1:] for f in fields[1:]}
    w, h = int(info["W"]), int(info["H"])
    assert info.get("C", "420").startswith("420")
    sizes = [(h, w), (h // 2, w // 2), (h // 2, w // 2)]
    frames, pos = [], 0
    while pos < len(rest):
        end = rest.index(b"\n", pos)
        assert rest[pos:end].startswith(b"FRAME")
        pos, frame = end + 1, []
        for sh in sizes:
            n = sh[0] * sh[1]
            frame.append(np.frombuffer(rest, np.uint8, n, pos).reshape(sh))
            pos += n
        frames.append(frame)
    return info, frames


def run_vspipe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """vspipe started in `cwd` (PWD set as a shell sets it)."""
    if not VSPIPE.is_file():
        pytest.skip(f"vspipe not found next to {sys.executable}")
    env = {**os.environ, "PATH": f"{VSPIPE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if cwd is not None:
        env["PWD"] = str(cwd)
    return subprocess.run([str(VSPIPE), *args], capture_output=True, env=env, timeout=300, cwd=cwd)


def vspipe(*args: str) -> bytes:
    run = run_vspipe(*args)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    return run.stdout


# ---------------------------------------------------------------------------------------------
# The example script under vspipe


@pytest.mark.parametrize("fmt", [vs.RGBS, vs.RGBH])
def test_rgb_device_lanes_match_host_lanes(weights, host_kernels, monkeypatch, fmt):
    """RGBS/RGBH through device lanes (emulated on the CPU: pinned planes cast into the model's
    input and its output cast back, no colour maths) equal the host lanes' frames."""
    from .emulated_cuda import emulate

    clip = core.resize.Point(rgb_clip(length=2), format=fmt)
    want = vsrlfn.rlfn(clip, scale=2, weights=weights, device="cpu")
    emulate(monkeypatch, host_kernels)
    got = vsrlfn.rlfn(clip, scale=2, weights=weights, device="cpu", num_streams=2)
    for n in range(2):
        a, b = got.get_frame(n), want.get_frame(n)
        np.testing.assert_allclose(np.stack(planes(a)).astype(np.float32), np.stack(planes(b)).astype(np.float32),
                                   atol=1e-3 if fmt == vs.RGBH else 1e-5)
        assert dict(a.props) == dict(b.props)


@needs_videos
@needs_bestsource
def test_vspipe_yuv_matches_the_engine(weights, tmp_path):
    """YUV straight in: same planes as decode -> colour -> Engine -> colour (the CLI's path), +-1."""
    props = tmp_path / "props.json"
    out = vspipe("-c", "y4m", "-r", "3", "-j", str(props), str(SCRIPT), "-a", f"src={CARPHONE}", "-a", "scale=2",
                 "-a", f"weights={weights}", "-a", "frames=3", "-")
    info, frames = read_y4m(out)
    assert (info["W"], info["H"], info["F"], len(frames)) == ("352", "288", "30000:1001", 3)
    source = core.bs.VideoSource(str(CARPHONE))
    written = json.loads(props.read_text())  # vspipe -j: the props of each output frame
    assert len(written) == 3
    for n, got in enumerate(written):  # untagged source: the matrix and range used are written down
        assert got == {**dict(source.get_frame(n).props), "_Matrix": 6, "_Range": 0}
    engine = engine_for(weights, "cpu", fast=None)
    with media.Source(CARPHONE, max_frames=3) as source:
        spec = source.info.colour
        pics = [p for p in source if isinstance(p, media.Picture)]
    assert len(pics) == 3
    for pic, got in zip(pics, frames):
        rgb = colour.planes_to_rgb([torch.from_numpy(p) for p in pic.planes], spec)[None]
        assert_close_int(got, [p.numpy() for p in colour.rgb_to_planes(engine(rgb)[0], spec)])


@needs_videos
@needs_bestsource
@pytest.mark.parametrize("script", ["absolute", "relative"])
def test_vspipe_takes_a_relative_src_from_the_start_folder(weights, tmp_path, script):
    """vspipe runs the script from the script's folder; `src=clip.mp4` still means the folder the
    user started vspipe in, and a missing src is one clear error."""
    (tmp_path / "clip.mp4").symlink_to(CARPHONE)
    path = str(SCRIPT) if script == "absolute" else os.path.relpath(SCRIPT, tmp_path)
    args = ["-c", "y4m", path, "-a", "scale=2", "-a", f"weights={weights}", "-a", "frames=1"]
    run = run_vspipe(*args, "-a", "src=clip.mp4", "-", cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    info, frames = read_y4m(run.stdout)
    assert (info["W"], info["H"], len(frames)) == ("352", "288", 1)
    run = run_vspipe(*args, "-a", "src=missing.mp4", "-", cwd=tmp_path)
    assert run.returncode != 0 and not run.stdout
    assert f"src={tmp_path / 'missing.mp4'}: no such file" in run.stderr.decode(errors="replace")


def naive_rlfn(clip, scale, model, weights, num_streams):
    """A one-frame-at-a-time stand-in for vsrlfn.rlfn: planes -> Engine -> planes."""
    engine = engine_for(weights, "cpu", fast=False)
    blank = clip.std.BlankClip(width=clip.width * scale, height=clip.height * scale, keep=True)

    def run(n, f):
        out = f[1].copy()
        out.props.clear()
        out.props.update(f[0].props)
        y = engine(torch.from_numpy(np.stack(planes(f[0])).astype(np.float32))[None])[0].numpy()
        for p in range(3):
            np.asarray(out[p])[:] = y[p]
        return out

    return blank.std.ModifyFrame([clip, blank], run)


@needs_videos
@needs_bestsource
def test_vspipe_rgbs_matches_the_engine(weights, monkeypatch):
    """zimg to RGBS and back around rlfn: same as the script run with a naive filter, +-1."""
    args = {"src": str(CARPHONE), "scale": "2", "weights": str(weights), "frames": "2", "via": "rgbs"}
    out = vspipe("-c", "y4m", str(SCRIPT), *[x for k, v in args.items() for x in ("-a", f"{k}={v}")], "-")
    info, frames = read_y4m(out)
    assert (info["W"], info["H"], len(frames)) == ("352", "288", 2)
    monkeypatch.setattr(vsrlfn, "rlfn", naive_rlfn)
    vs.clear_outputs()
    exec(compile(SCRIPT.read_text(), str(SCRIPT), "exec"), {"__name__": "__vapoursynth__", **args})
    ref = vs.get_output(0)
    ref = ref.clip if hasattr(ref, "clip") else ref
    vs.clear_outputs()
    for n, got in enumerate(frames):
        assert_close_int(got, planes(ref.get_frame(n)))


# ---------------------------------------------------------------------------------------------
# Formats and properties in-process


@pytest.mark.parametrize("fmt", [vs.RGBS, vs.RGBH], ids=["RGBS", "RGBH"])
def test_rgb_input(weights, device, fmt):
    clip = rgb_clip(fmt)
    out = vsrlfn.rlfn(clip, scale=2, weights=weights, device=device)
    assert (out.format.id, out.width, out.height, out.num_frames) == (fmt, 80, 64, 3)
    engine = engine_for(weights, device, fast=None if fmt == vs.RGBH else False)
    fast = engine.precision != "fp32"
    for n in range(3):
        x = torch.from_numpy(np.stack(planes(clip.get_frame(n))).astype(np.float32))[None]
        want = engine(x)[0].cpu().numpy().astype(np.float16 if fmt == vs.RGBH else np.float32)
        got = np.stack(planes(out.get_frame(n)))
        assert got.dtype == want.dtype and got.min() >= 0 and got.max() <= 1
        np.testing.assert_allclose(got, want, atol=2e-3 if fast or device == "cuda" else 1e-5)  # cuda: TF32


YUV_CASES = {  # format, frame props, the ColourSpec they mean
    "420P8-709-limited": (vs.YUV420P8, dict(_Matrix=1, _Range=0), dict(matrix=Matrix.BT709, full_range=False)),
    "422P10-601-full": (vs.YUV422P10, dict(_Matrix=6, _Range=1, _ChromaLocation=1),
                        dict(matrix=Matrix.BT601, full_range=True, chroma_loc="center")),
    "444P16-2020": (vs.YUV444P16, dict(_Matrix=9, _Range=0), dict(matrix=Matrix.BT2020, full_range=False)),
    "420P8-topleft": (vs.YUV420P8, dict(_Matrix=1, _ChromaLocation=2),
                      dict(matrix=Matrix.BT709, full_range=False, chroma_loc="topleft")),
    "420P8-untagged": (vs.YUV420P8, dict(_Matrix=2), dict(matrix=Matrix.BT601, full_range=False)),
}


_ACTIVATIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def rounding_step(dtype: torch.dtype) -> float:
    """Spacing of `dtype`'s values in [0.5, 1): one rounding step of R'G'B' near white. fp16 keeps
    11 significant bits: 2^-11, i.e. 32 codes of 65535 at 16 bits, 1/8 code at 8 bits."""
    return torch.finfo(dtype).eps / 2


def code_tolerance(dtype: torch.dtype, bits: int, steps: int) -> int:
    """How many codes apart two `bits`-deep outputs may land when the R'G'B' they were quantised
    from differ by `steps` rounding steps of `dtype`: a matrix row weighs R', G', B' with absolute
    sum 1 (Y' and Pb/Pr alike; chroma filters average), no range spans more than 2^bits - 1 codes,
    and the final rounding to codes adds one."""
    return math.floor(steps * rounding_step(dtype) * (2**bits - 1)) + 1


def yuv_clip(case: str) -> tuple[vs.VideoNode, dict, ColourSpec]:
    """The case's clip with its frame props, the props, and the ColourSpec they mean."""
    fmt, props, spec = YUV_CASES[case]
    clip = core.resize.Bicubic(rgb_clip(), format=fmt, matrix_s="709")
    clip = core.std.RemoveFrameProps(clip, ["_Matrix", "_Range", "_ChromaLocation"]).std.SetFrameProps(**props)
    sub = {(1, 1): "420", (1, 0): "422", (0, 0): "444"}[clip.format.subsampling_w, clip.format.subsampling_h]
    return clip, props, ColourSpec(**spec, bit_depth=clip.format.bits_per_sample, subsampling=sub)


def assert_yuv_frames_match(out: vs.VideoNode, clip: vs.VideoNode, spec: ColourSpec, engine: Engine,
                            monkeypatch, frames: int = 2) -> list[vs.VideoFrame]:
    """rlfn's YUV frames against colour.py with `spec`, step by step on what the model itself was
    given and gave back (an Engine.forward spy), tightly: R'G'B' within one rounding of the model's
    input dtype, planes within 1 code of the model's own output; and end to end against `engine`
    on colour.py's R'G'B', within 8 rounding steps of the model's precision (code_tolerance): the
    kernels' fp16 input may round a value one step the other way than torch's, and the model carries
    that on (about one step, ~30 codes, at 16 bits). A wrong matrix or range is off by far more."""
    bits = spec.bit_depth
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []  # (model input, model output) of each forward
    forward = Engine.forward

    def spy(self, x, **kwargs):
        y = forward(self, x, **kwargs)
        seen.append((x.cpu().clone(), y.cpu().clone()))  # copies on the current stream: after decode and model
        return y

    monkeypatch.setattr(Engine, "forward", spy)
    done = []
    try:
        for n in range(frames):
            src = [torch.from_numpy(p.astype(np.int32)) for p in planes(clip.get_frame(n))]
            seen.clear()
            frame = out.get_frame(n)
            got = planes(frame)
            assert len(seen) == 1, "one forward per frame"
            x, y = seen[0]
            assert x.shape == (1, 3, clip.height, clip.width) and x.dtype == engine.dtype
            rgb = colour.planes_to_rgb(src, spec, dtype=torch.float64)
            assert (x[0].double() - rgb).abs().max().item() <= max(rounding_step(x.dtype), 1e-5), "planes -> RGB"
            assert_close_int(got, [p.numpy() for p in colour.rgb_to_planes(y[0].float(), spec)], tol=1)
            want = colour.rgb_to_planes(engine(colour.planes_to_rgb(src, spec)), spec)
            assert_close_int(got, [w.cpu().numpy() for w in want],
                             tol=code_tolerance(_ACTIVATIONS[engine.precision], bits, steps=8))
            done.append(frame)
    finally:
        monkeypatch.setattr(Engine, "forward", forward)
    return done


@pytest.mark.parametrize("case", YUV_CASES)
def test_yuv_input(weights, device, case, monkeypatch):
    """YUV in, YUV out, against colour.py with the spec the frame props mean (on CUDA: the kernel
    path, planes -> RGB at the engine's fp16 -> model -> planes)."""
    clip, props, spec = yuv_clip(case)
    out = vsrlfn.rlfn(clip, scale=2, weights=weights, device=device)
    assert (out.format.id, out.width, out.height) == (clip.format.id, 80, 64)
    engine = engine_for(weights, device, fast=None)
    for frame in assert_yuv_frames_match(out, clip, spec, engine, monkeypatch):
        assert frame.props["_Matrix"] == (6 if props["_Matrix"] == 2 else props["_Matrix"])  # untagged: as used
        assert frame.props["_Range"] == props.get("_Range", 0)


@pytest.mark.parametrize("case", ["444P16-2020", "422P10-601-full", "420P8-709-limited"])
def test_fp16_kernel_path_within_the_tolerance_and_a_wrong_matrix_is_not(weights, emulated_cuda, monkeypatch, case):
    """test_yuv_input's CUDA case on the CPU: device lanes (tests/emulated_cuda.py) with the kernels'
    host build around an fp16 engine. Its tolerances hold; the same checks with another matrix
    than the frames' fail."""

    def fp16_engine(weights, scale, model, dev, fast, tile, tile_overlap, backend="auto"):  # torch: CUDA's backend
        return Engine(load_model(scale=scale, model=model, weights=weights), device="cpu", precision="fp16",
                      backend="torch")

    monkeypatch.setattr(vsrlfn, "_engine", fp16_engine)
    clip, _, spec = yuv_clip(case)
    out = vsrlfn.rlfn(clip, scale=2, weights=weights, device="cpu")
    engine = fp16_engine(weights, 2, "rlfn_s", None, None, None, None)
    assert_yuv_frames_match(out, clip, spec, engine, monkeypatch, frames=1)
    wrong = replace(spec, matrix=Matrix.BT601 if spec.matrix is not Matrix.BT601 else Matrix.BT709)
    out = vsrlfn.rlfn(clip, scale=2, weights=weights, device="cpu")  # a new node: frame 0 runs again
    with pytest.raises(AssertionError, match="planes -> RGB"):
        assert_yuv_frames_match(out, clip, wrong, engine, monkeypatch, frames=1)


def test_code_tolerance_is_in_codes_of_the_output():
    assert code_tolerance(torch.float16, 16, steps=1) == 31 + 1  # 65535 / 2048 = 31.99 codes, then rounding
    assert code_tolerance(torch.float16, 16, steps=8) == 255 + 1
    assert code_tolerance(torch.float16, 10, steps=8) == 3 + 1
    assert code_tolerance(torch.float16, 8, steps=8) == 0 + 1  # 8 steps of 1/8 code stay below one code
    assert code_tolerance(torch.float32, 16, steps=8) == 1
    assert code_tolerance(torch.bfloat16, 8, steps=1) == 1  # 255 / 256


@pytest.mark.parametrize("case", YUV_CASES)
def test_yuv_kernel_path_matches_torch_colour(weights, host_kernels, monkeypatch, case):
    """The CUDA path for YUV clips (device lanes: planes in one pinned buffer, the fused colour
    kernels) on the CPU with the kernels' host build: same frames as the host lanes, same props."""
    from .emulated_cuda import emulate

    fmt, props, _ = YUV_CASES[case]
    clip = core.resize.Bicubic(rgb_clip(), format=fmt, matrix_s="709")
    clip = core.std.RemoveFrameProps(clip, ["_Matrix", "_Range", "_ChromaLocation"]).std.SetFrameProps(**props)
    want = vsrlfn.rlfn(clip, scale=2, weights=weights, device="cpu")
    emulate(monkeypatch, host_kernels)
    got = vsrlfn.rlfn(clip, scale=2, weights=weights, device="cpu", num_streams=2)
    for n in range(2):
        a, b = got.get_frame(n), want.get_frame(n)
        assert_close_int(planes(a), planes(b), tol=1)
        assert dict(a.props) == dict(b.props)


@needs_videos
@needs_bestsource
def test_all_frame_properties_copied(weights):
    src = core.bs.VideoSource(str(CARPHONE))[:2].std.CropAbs(width=32, height=24)
    tags = dict(_Matrix=1, _Primaries=1, _Transfer=1, _Range=1, _ChromaLocation=2, _SARNum=12, _SARDen=11,
                _SceneChangeNext=1, _SceneChangePrev=0, _FieldBased=0, Custom="kept", Numbers=[1, 2, 3])
    for clip, filled in ((src.std.SetFrameProps(**tags), {}), (src, {"_Matrix": 6, "_Range": 0}),
                         (core.resize.Point(src, format=vs.RGBS, matrix_in_s="170m"), {})):
        out = vsrlfn.rlfn(clip, scale=2, weights=weights, device="cpu")
        for n in range(2):
            want = {**dict(clip.get_frame(n).props), **filled}
            assert dict(out.get_frame(n).props) == want


# ---------------------------------------------------------------------------------------------
# Wrong input


def variable(kind: str) -> vs.VideoNode:
    a = core.std.BlankClip(format=vs.RGBS, width=32, height=32, length=2)
    b = core.std.BlankClip(format=vs.RGBH if kind == "format" else vs.RGBS, width=32 if kind == "format" else 48,
                           height=32, length=2)
    return core.std.Splice([a, b], mismatch=True)


WRONG = [  # clip, keyword arguments, what the message must say
    ("gray", {}, r"Gray8 is not supported .*ShufflePlanes"),
    ("rgb24", {}, r"RGB24 is not supported.*core.resize.Point\(clip, format=vs.RGBS\)"),
    ("yuvfloat", {}, r"float YUV \(YUV444PS\).*matrix_in_s"),
    ("yuv410", {}, r"YUV410P8: only 4:2:0, 4:2:2 and 4:4:4"),
    ("varformat", {}, r"the clip must have a constant format and size"),
    ("varsize", {}, r"the clip must have a constant format and size"),
    ("rgbs", {"scale": 5}, r"unsupported scale 5; choose one of 2, 3, 4"),
    ("rgbs", {"scale": None, "weights": None}, r"scale=None needs a weights file"),
    ("rgbs", {"model": "nope"}, r"unknown model 'nope'; choose one of rlfn, rlfn_s, rlfn_ntire"),
    ("rgbs", {"scale": 4}, r".*rlfn_s_x2.pth holds rlfn_s x2, not rlfn_s x4"),
    ("rgbs", {"weights": "/no/such/file.pth"}, r"weights file '/no/such/file.pth' not found"),
    ("rgbs", {"num_streams": 0}, r"num_streams must be an integer >= 1"),
    ("rgbs", {"tile": [16, 8]}, r'tile must be "auto", None or a positive integer'),
    ("rgbs", {"tile_overlap": -6}, r"tile_overlap must be an integer >= 0"),
    ("rgbs", {"tile_overlap": 12, "tile_pad": 12}, r"pass tile_overlap or tile_pad, not both"),
    ("rgbs", {"device": "cuda:7"}, r"device 'cuda:7' requested but"),
    ("rgbs", {"device": "tpu"}, r"unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
    ("rgbs", {"device": None, "device_index": -1}, r"device_index must be a GPU number >= 0"),
    ("rgbs", {"device": "meta"}, r"unsupported device 'meta'; use auto, cpu, cuda or cuda:N"),
    ("rgbs", {"device": "cpu", "device_index": 0}, r"pass device_index or device, not both"),
    ("none", {}, r"clip must be a video clip"),
    ("rgbs", {"backend": "tpu"}, r"unknown backend 'tpu'; use auto, torch, torch-compile, openvino"),
]
CLIPS = {
    "gray": lambda: core.std.BlankClip(format=vs.GRAY8), "rgb24": lambda: core.std.BlankClip(format=vs.RGB24),
    "yuvfloat": lambda: core.std.BlankClip(format=vs.YUV444PS),
    "yuv410": lambda: core.std.BlankClip(format=vs.YUV410P8), "varformat": lambda: variable("format"),
    "varsize": lambda: variable("size"), "rgbs": lambda: rgb_clip(), "none": lambda: None,
}


@pytest.mark.parametrize("name, kwargs, message", WRONG, ids=[f"{c}-{'-'.join(k) or 'clip'}" for c, k, _ in WRONG])
def test_wrong_input_says_how_to_fix(weights, name, kwargs, message):
    with pytest.raises(vs.Error, match=r"^vsrlfn: " + message):
        vsrlfn.rlfn(CLIPS[name](), **{"scale": 2, "weights": weights, "device": "cpu", **kwargs})


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")
def test_openvino_backend_matches_torch(weights):
    """RGBS: fp32 on both, 1e-4; YUV: the fast precision on both (bf16 here), within +-1 nearly everywhere."""
    rgb = rgb_clip()
    yuv = core.resize.Bicubic(rgb, format=vs.YUV420P8, matrix_s="709")
    for clip, close in ((rgb, 1e-4), (yuv, None)):
        ov = vsrlfn.rlfn(clip, scale=2, weights=weights, backend="openvino")  # on the CPU unless told
        ref = vsrlfn.rlfn(clip, scale=2, weights=weights, device="cpu", backend=Backend.Torch())
        for n in range(3):
            got, want = planes(ov.get_frame(n)), planes(ref.get_frame(n))
            if close:
                np.testing.assert_allclose(np.stack(got), np.stack(want), atol=close)
            else:
                diff = np.concatenate([np.abs(g.astype(int) - w.astype(int)).ravel() for g, w in zip(got, want)])
                assert diff.max() <= 3 and (diff <= 1).mean() >= 0.99
    engines = [e for e in vsrlfn._ENGINES.values() if e.backend == Backend.OpenVINO()]
    assert engines and all(e.device == torch.device("cpu") for e in engines)


def test_device_choice_follows_resolve_device(monkeypatch):
    """The filter's device_index/device mean what the CLI's --device means: indexed, and a bare
    "cuda" or no choice is torch's current GPU (faked here: 3 GPUs, GPU 2 current)."""
    from rlfn_video.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    cuda = torch.device("cuda", 2)
    assert vsrlfn._device(None, None) == vsrlfn._device(None, "cuda") == resolve_device("auto") == cuda
    assert vsrlfn._device(1, None) == vsrlfn._device(None, "cuda:1") == torch.device("cuda", 1)
    assert vsrlfn._device(None, "cpu") == torch.device("cpu")
    with pytest.raises(vs.Error, match=r"^vsrlfn: device 'cuda:3' requested but only 3 GPU\(s\) are visible$"):
        vsrlfn._device(3, None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert vsrlfn._device(None, None) == torch.device("cpu")
    with pytest.raises(vs.Error, match=r'sees no CUDA GPU; leave device_index unset or pass device="cpu"$'):
        vsrlfn._device(0, None)


def test_missing_embedded_weights_name_the_parameter(monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(vs.Error, match=r'^vsrlfn: no embedded weights for rlfn_s x2 \(shipped: none\); pass weights='):
        vsrlfn.rlfn(rgb_clip(), scale=2, device="cpu")


def test_video_model_by_name_and_the_video_default(monkeypatch, tmp_path):
    """model="rlfn_s_video" takes its embedded weights (stand-ins here); the default stays rlfn_s
    (DEFAULT_MODEL, not the video default); a scale without video weights is one line."""
    from .sr_models import standin_zoo

    monkeypatch.setattr(zoo, "WEIGHTS_DIR", standin_zoo(tmp_path, clean=(2, 3), video=(2,)))

    def run(**kw):
        return np.asarray(vsrlfn.rlfn(rgb_clip(length=1), device="cpu", **kw).get_frame(0)[0])

    video, clean = run(scale=2, model="rlfn_s_video"), run(scale=2, model="rlfn_s")
    assert video.shape == (64, 80) and not np.array_equal(video, clean)
    assert np.array_equal(run(scale=2), clean)
    monkeypatch.setattr(zoo, "DEFAULT_VIDEO_MODEL", "rlfn_s_video")
    assert np.array_equal(run(scale=2), clean)
    with pytest.raises(vs.Error, match=r"^vsrlfn: no embedded weights for rlfn_s_video x3 \(shipped: rlfn_s_video_x2, "
                                       r"rlfn_s_x2, rlfn_s_x3\); pass weights="):
        vsrlfn.rlfn(rgb_clip(), scale=3, model="rlfn_s_video", device="cpu")


def test_unsupported_matrix_fails_the_frame(weights):
    clip = core.std.BlankClip(format=vs.YUV420P8, width=32, height=32, length=1).std.SetFrameProps(_Matrix=8)
    out = vsrlfn.rlfn(clip, scale=2, weights=weights, device="cpu")
    with pytest.raises(vs.Error, match=r"vsrlfn: unsupported colour matrix \(H.273 MatrixCoefficients 8\)"):
        out.get_frame(0)


@pytest.mark.skipif(not zoo.available(), reason="no embedded weights shipped yet (rlfn_video/weights/ is empty)")
def test_embedded_weights_need_no_download():
    scale = int(zoo.available()[0].stem[-1])
    out = vsrlfn.rlfn(rgb_clip(length=1), scale=scale, device="cpu")
    assert (out.width, out.height) == (40 * scale, 32 * scale) and out.get_frame(0)


# ---------------------------------------------------------------------------------------------
# Concurrency, sharing, tiles, silence


def test_parallel_reverse_requests_give_the_right_frames(weights, device, monkeypatch):
    core.num_threads = 4
    clip = rgb_clip(length=6)
    seq = vsrlfn.rlfn(clip, scale=2, weights=weights, device=device)
    want = [np.stack(planes(seq.get_frame(n))) for n in range(6)]  # one request at a time
    active, peak, lock = [0], [0], threading.Lock()
    real = lane.Lane.launch

    def counted(*args):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)  # lets other callbacks in, if any may run now
        try:
            return real(*args)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(lane.Lane, "launch", counted)
    for streams in (1, 3):
        peak[0] = 0
        out = vsrlfn.rlfn(clip, scale=2, weights=weights, device=device, num_streams=streams)
        futures = {n: out.get_frame_async(n) for n in reversed(range(6))}
        for n, fut in futures.items():
            np.testing.assert_allclose(np.stack(planes(fut.result())), want[n], atol=1e-3 if device == "cuda" else 1e-5)
        if streams == 1:
            assert peak[0] == 1, "num_streams=1 let callbacks overlap"
        else:
            assert peak[0] >= 2, f"num_streams={streams} ran one frame at a time"


def test_engine_loaded_once_and_shared(weights):
    count = len(vsrlfn._ENGINES)
    vsrlfn.rlfn(rgb_clip(), scale=2, weights=weights, device="cpu")
    vsrlfn.rlfn(rgb_clip(width=24, height=16), scale=2, weights=weights, device="cpu")
    assert len(vsrlfn._ENGINES) <= count + 1  # two RGBS clips, one fp32 engine
    count = len(vsrlfn._ENGINES)
    vsrlfn.rlfn(core.std.BlankClip(format=vs.RGBH, width=16, height=16), scale=2, weights=weights, device="cpu")
    vsrlfn.rlfn(core.std.BlankClip(format=vs.YUV420P8, width=16, height=16), scale=2, weights=weights, device="cpu")
    assert len(vsrlfn._ENGINES) <= count + 1  # RGBH and YUV: the same fast-precision engine


def test_tiles(weights, device):
    clip = rgb_clip(length=1)
    whole = np.stack(planes(vsrlfn.rlfn(clip, scale=2, weights=weights, device=device).get_frame(0)))
    wide = vsrlfn.rlfn(clip, scale=2, weights=weights, device=device, tile=12, tile_overlap=48)  # tiles see all
    np.testing.assert_allclose(np.stack(planes(wide.get_frame(0))), whole, atol=1e-5)
    tight = vsrlfn.rlfn(clip, scale=2, weights=weights, device=device, tile=12, tile_overlap=6)
    got = np.stack(planes(tight.get_frame(0)))
    assert got.shape == whole.shape and np.abs(got - whole).mean() < 0.02
    old = vsrlfn.rlfn(clip, scale=2, weights=weights, device=device, tile=12, tile_pad=6)  # the old name
    np.testing.assert_array_equal(np.stack(planes(old.get_frame(0))), got)


def test_nothing_on_stdout_and_no_global_side_effects(weights, tmp_path):
    code = ("import os, warnings, numpy, torch, rlfn_video, vapoursynth as vs  # these set filters themselves\n"
            "env, filters = dict(os.environ), list(warnings.filters)\n"
            "import vsrlfn\n"
            "assert dict(os.environ) == env and list(warnings.filters) == filters, 'import changed globals'\n"
            "c = vs.core.std.BlankClip(format=vs.YUV420P8, width=16, height=16, length=2)\n"
            f"out = vsrlfn.rlfn(c, scale=2, weights={str(weights)!r}, device='cpu')\n"
            "[out.get_frame(n) for n in range(2)]\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert run.stdout == b""
