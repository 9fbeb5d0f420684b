"""ONNX export: onnxruntime against torch, the shipped model against `rlfn-video image`, the
fp16 precision gate, the model record, official weights, and the CLI."""

import hashlib
import json
from importlib.metadata import version

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

for _name in ("onnx", "onnxscript", "onnxruntime"):  # the onnx extra; onnxscript: torch's exporter
    pytest.importorskip(_name, exc_type=ImportError)

import onnx  # noqa: E402

from rlfn_video import onnx_export  # noqa: E402
from rlfn_video.cli import app  # noqa: E402
from rlfn_video.errors import RlfnError, UnsupportedInputError  # noqa: E402
from rlfn_video.image import upscale_image  # noqa: E402
from rlfn_video.models import RLFN, Arch, load_model, read_checkpoint, save_checkpoint  # noqa: E402
from rlfn_video.models.zoo import embedded_weights  # noqa: E402
from rlfn_video.onnx_export import GATE_PSNR, GATE_WITHIN_ONE, export_onnx, read_metadata, run  # noqa: E402

from .shared import ANCHORS, BENCHMARKS, needs_anchors, needs_shared  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for torch and (following it) onnxruntime: the test machine is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The default shipped model (rlfn_s x4), exported in fp32, and its torch descriptor."""
    path = tmp_path_factory.mktemp("onnx") / "rlfn_s_x4.onnx"
    export_onnx(path, scale=4)
    return path, load_model(scale=4)


@pytest.fixture
def tiny(tmp_path):
    """A small random RLFN x2 in our format: quick to export."""
    torch.manual_seed(0)
    path = tmp_path / "tiny_x2.pth"
    save_checkpoint(path, RLFN(Arch(channels=8, mid_channels=8, blocks=1, scale=2)), value_range=1.0,
                    meta={"steps": 1})
    return path


def _lr_images(set_name: str, scale: int) -> list:
    return sorted((BENCHMARKS / set_name / "LR_bicubic" / f"X{scale}").glob("*.png"))


def _torch(desc, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return desc(x).numpy()


@pytest.mark.parametrize("shape", [(1, 3, 15, 15), (1, 3, 37, 23), (2, 3, 64, 48)])
def test_onnxruntime_matches_torch(shipped, shape):
    path, desc = shipped
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    got = run(path, x.numpy())
    assert got.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
    assert np.abs(got - _torch(desc, x)).max() <= 1e-4


def test_graph_contract(shipped):
    """One input and output, named as vs-mlrt expects, NCHW float, dynamic batch/height/width, opset 18."""
    proto = onnx.load(str(shipped[0]))
    onnx.checker.check_model(proto, full_check=True)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input", "output")
    for t in (inp, out):
        assert t.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        dims = t.type.tensor_type.shape.dim
        assert dims[1].dim_value == 3 and all(dims[i].dim_param for i in (0, 2, 3))
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 18)]
    assert proto.ir_version == onnx_export.IR_VERSION
    assert b"/work" not in shipped[0].read_bytes()  # no stack traces with local paths
    assert not any(n.metadata_props for n in proto.graph.node)


def test_below_min_size_is_not_safe(shipped):
    """The documented hazard: at 14x14 onnxruntime either refuses or answers wrongly (no padding in
    the graph, unlike ModelDescriptor), so callers must pad to 15."""
    path, desc = shipped
    x = torch.rand(1, 3, 14, 14, generator=torch.Generator().manual_seed(2))
    try:
        got = run(path, x.numpy())
    except Exception:
        return
    assert np.abs(got - _torch(desc, x)).max() > 1e-2


def test_metadata(shipped):
    meta = read_metadata(shipped[0])
    weights = embedded_weights("rlfn_s", 4)
    ckpt = read_checkpoint(weights)
    assert meta["model"] == "rlfn_s_x4" and meta["scale"] == 4 and meta["precision"] == "fp32"
    assert meta["arch"] == {"variant": "rlfn_s", **ckpt.arch.to_dict()}
    assert meta["weights"] == "rlfn_s_x4.pth"
    assert meta["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert meta["meta"] == json.loads(json.dumps(ckpt.meta)) and "Set14" in meta["meta"]["eval"]
    assert (meta["value_range"], meta["weights_value_range"], meta["layout"]) == ("0-1", "1", "NCHW RGB")
    assert (meta["min_size"], meta["opset"]) == (15, 18)
    assert meta["rlfn_video_version"] == version("rlfn-video")
    assert "precision_gate" not in meta


def test_read_metadata_refuses_foreign_files(tmp_path):
    foreign = tmp_path / "other.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), str(foreign))
    with pytest.raises(UnsupportedInputError, match="not written by rlfn-video"):
        read_metadata(foreign)
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00junk")
    with pytest.raises(UnsupportedInputError, match="not a readable ONNX file"):
        read_metadata(tmp_path / "junk.onnx")


@needs_shared
def test_shipped_model_reproduces_image_command(shipped, tmp_path):
    """8-bit output of the exported file vs `upscale_image` (what `rlfn-video image --no-fast` writes)."""
    files = _lr_images("Set5", 4)
    assert files
    for f in files:
        dst = tmp_path / f"{f.stem}.png"
        upscale_image(f, dst, scale=4, device="cpu", fast=False)
        want = np.asarray(Image.open(dst), dtype=np.int16)
        x = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None] / 255
        got = (run(shipped[0], x)[0].transpose(1, 2, 0) * 255).round().clip(0, 255).astype(np.int16)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1, f.name


@needs_shared
def test_fp16_export_passes_the_gate(tmp_path):
    path = tmp_path / "rlfn_s_x4_fp16.onnx"
    result = export_onnx(path, scale=4, fp16=True)
    gate = result.gate
    assert gate["passed"] and gate["images"] == 14 and gate["folder"] == "Set14/LR_bicubic/X4"
    assert result.metadata["precision"] == "fp16" and result.metadata["precision_gate"] == gate
    proto = onnx.load(str(path))
    assert {t.type.tensor_type.elem_type for t in (*proto.graph.input, *proto.graph.output)} == {
        onnx.TensorProto.FLOAT16}
    assert {t.data_type for t in proto.graph.initializer if t.dims} == {onnx.TensorProto.FLOAT16}
    # An independent check on other images (Set5), same thresholds.
    desc = load_model(scale=4)
    for f in _lr_images("Set5", 4):
        x = torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None] / 255
        want = np.round(_torch(desc, x) * 255)
        got = np.round(run(path, x.numpy()) * 255)
        mse = np.mean((want - got) ** 2)
        assert mse == 0 or 10 * np.log10(255**2 / mse) >= GATE_PSNR, f.name
        assert np.mean(np.abs(want - got) <= 1) >= GATE_WITHIN_ONE, f.name


def test_fp16_gate_failure_writes_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "GATE_PSNR", 1000.0)
    (tmp_path / "gate").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
        tmp_path / "gate" / "a.png")
    dst = tmp_path / "out.onnx"
    with pytest.raises(RlfnError, match=r"fp16 export refused: worst of 1 images .* dB"):
        export_onnx(dst, scale=2, weights=tiny, fp16=True, gate_images=tmp_path / "gate")
    assert not dst.exists() and not list(tmp_path.glob(".out.onnx*"))


def test_fp16_gate_skipped_without_images(tiny, tmp_path):
    result = export_onnx(tmp_path / "out.onnx", scale=2, weights=tiny, fp16=True, gate_images=tmp_path / "absent")
    assert "skipped" in result.gate and result.metadata["precision_gate"] == result.gate
    x = np.random.default_rng(0).random((1, 3, 16, 20), dtype=np.float32)
    assert run(tmp_path / "out.onnx", x).shape == (1, 3, 32, 40)


@needs_anchors
def test_official_checkpoint_has_the_same_contract(tmp_path):
    """Official weights work in 0-255; the file still takes and gives [0, 1], scaling inside."""
    weights = ANCHORS / "rlfn_s_x4.pth"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    path = tmp_path / "official.onnx"
    meta = export_onnx(path, scale=4, weights=weights).metadata
    assert meta["weights"] == "rlfn_s_x4.pth" and meta["meta"] == {"source": "official"}
    assert meta["value_range"] == "0-1" and meta["weights_value_range"].startswith("255")
    desc = load_model(scale=4, model=None, weights=weights)
    x = torch.rand(2, 3, 37, 23, generator=torch.Generator().manual_seed(3))
    got = run(path, x.numpy())
    assert 0 <= got.min() and got.max() <= 1
    with torch.inference_mode():
        raw = (desc.net(x * 255) / 255).clamp(0, 1).numpy()
    assert np.abs(got - _torch(desc, x)).max() <= 1e-4 and np.abs(got - raw).max() <= 1e-4


def test_cli_end_to_end(tiny, tmp_path):
    out = tmp_path / "tiny.onnx"
    res = runner.invoke(app, ["export", "--scale", "2", "--weights", str(tiny), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}: rlfn-custom_x2 fp32, opset 18, input at least 15x15" in res.output
    assert read_metadata(out)["weights"] == "tiny_x2.pth"
    before = out.read_bytes()
    res = runner.invoke(app, ["export", "-s", "2", "--weights", str(tiny), "-o", str(out)])
    assert res.exit_code == 1 and "already exists (pass -y/--overwrite to replace it)" in res.output
    assert out.read_bytes() == before
    res = runner.invoke(app, ["export", "-s", "2", "--weights", str(tiny), "-o", str(out), "-y"])
    assert res.exit_code == 0, res.output


def test_cli_errors(tmp_path):
    res = runner.invoke(app, ["export", "--scale", "5", "-o", str(tmp_path / "x.onnx")])
    assert res.exit_code == 1 and "unsupported scale 5; choose one of 2, 3, 4" in res.output
    res = runner.invoke(app, ["export", "-o", str(tmp_path / "x.pth")])
    assert res.exit_code == 1 and "name the output FILE.onnx" in res.output
    assert not list(tmp_path.iterdir())
    res = runner.invoke(app, ["export", "--help"])
    assert res.exit_code == 0 and "--fp16" in res.output and "RGBH" in res.output
