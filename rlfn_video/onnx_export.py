"""`export_onnx`: one RLFN model as an ONNX file for vs-mlrt, chaiNNer, onnxruntime, TensorRT, OpenVINO.

Every file has the same contract, whatever the weights: one input `input`, (N, 3, H, W) float
RGB in [0, 1]; one output `output`, (N, 3, sH, sW), clamped to [0, 1] (vs-mlrt's RGBS/RGBH
convention). Official checkpoints work in 0-255: that scaling is inside the graph. Batch,
height and width are dynamic; H and W must be at least `MIN_SIZE` (15). Unlike
`ModelDescriptor`, the graph does not pad smaller input, and onnxruntime does not refuse it:
13-14 px give a wrong picture without an error, smaller sizes fail in MaxPool or kill the
process (SIGFPE). Callers pad (chaiNNer pads tiles to a multiple of 16 by itself).

`fp16=True` stores fp16 weights and computes in fp16 with fp16 input and output; the file is
written only if it passes `precision_gate` against fp32 torch. The model's record (arch, scale,
weights name and sha256, checkpoint meta, value range, min size, version) is in
`metadata_props`; `read_metadata` returns it.

Leaves out: padding, tiling, colour conversion, running exported files (onnxruntime serves only
the checks here). Needs the `onnx` extra (onnx, onnxscript, onnxruntime), imported on use.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import atomic_output, check_output
from .errors import OutputError, RlfnError, UnsupportedInputError
from .models import DEFAULT_MODEL, ModelDescriptor, load_model
from .models.rlfn import MIN_SIZE, RLFN, variant_name
from .models.zoo import embedded_weights
from .precision_gate import GATE_PSNR, GATE_WITHIN_ONE  # fp16 ONNX vs fp32 torch: the backends' thresholds

OPSET = 18  # read by onnxruntime, TensorRT 10 and OpenVINO 2023+
IR_VERSION = 8  # the lowest IR for opset 18: older readers (ORT < 1.17) refuse IR 10
_JSON_KEYS = ("arch", "meta", "precision_gate")
_INT_KEYS = ("scale", "min_size", "opset")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    metadata: dict  # as `read_metadata` returns it
    gate: dict | None  # fp16 only: the precision gate's figures, or {"skipped": reason}


def export_onnx(
    dst: str | os.PathLike,
    *,
    scale: int = 4,
    model: str | None = None,
    weights: str | os.PathLike | None = None,
    fp16: bool = False,
    overwrite: bool = False,
    gate_images: str | os.PathLike | None = None,
) -> ExportResult:
    """Write model (`load_model`'s `scale`/`model`/`weights`) to `dst` (.onnx), atomically.

    fp32 files are checked against torch at the minimum size (max difference 1e-4); fp16 files
    by `precision_gate` on `gate_images` (a folder of images; default Set14 under ../shared,
    the gate is skipped, with the reason in the result and the metadata, when it is absent).
    """
    onnx, _ = _require()
    dst = Path(dst)
    if dst.suffix.lower() != ".onnx":
        raise OutputError(f"{dst}: name the output FILE.onnx")
    if weights is None:
        source = embedded_weights(model or DEFAULT_MODEL, scale)
        desc = load_model(scale=scale, model=model or DEFAULT_MODEL)
    else:
        source = Path(weights)
        desc = load_model(scale=scale, model=model, weights=source)
    check_output(source, dst, overwrite=overwrite)  # before the export's seconds of tracing

    dtype = torch.float16 if fp16 else torch.float32
    proto = _trace(_Graph(copy.deepcopy(desc.net), desc.value_range).to(dtype), dtype, desc.name)
    meta = _record(desc, source, fp16)
    data = _finish(onnx, proto, meta)  # checker and metadata, before any run

    if fp16:
        gate = precision_gate(data, desc, _gate_folder(gate_images, desc.scale))
        if not gate.get("skipped") and not gate["passed"]:
            raise RlfnError(f"fp16 export refused: {gate_summary(gate)} (needs >= {GATE_PSNR:g} dB and "
                            f">= {GATE_WITHIN_ONE:.0%} within +-1); use the fp32 file")
        meta["precision_gate"] = json.dumps(gate)
        data = _finish(onnx, onnx.load_from_string(data), meta)
    else:
        gate = None
        x = torch.rand(1, 3, MIN_SIZE, MIN_SIZE + 4, generator=torch.Generator().manual_seed(0))
        diff = float(np.abs(run(data, x.numpy()) - _reference(desc, x).numpy()).max())
        if diff > 1e-4:
            raise RlfnError(f"exported graph differs from torch by {diff:.2g} (max 1e-4); nothing written")

    with atomic_output(dst, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return ExportResult(dst, read_metadata(dst), gate)


class _Graph(nn.Module):
    """`ModelDescriptor`'s contract as a graph: value range and clamp inside, no padding."""

    def __init__(self, net: RLFN, value_range: float):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.value_range = float(value_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.value_range == 1:
            return self.net(x).clamp(0, 1)
        return (self.net(x * self.value_range) / self.value_range).clamp(0, 1)


def _trace(module: nn.Module, dtype: torch.dtype, name: str):
    """The dynamo exporter's ModelProto, stripped of its per-node records (source paths, stack traces)."""
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=MIN_SIZE),
            3: torch.export.Dim("width", min=MIN_SIZE)}
    x = torch.rand(1, 3, 2 * MIN_SIZE, 2 * MIN_SIZE + 2).to(dtype)
    with _quiet():
        program = torch.onnx.export(module, (x,), None, input_names=["input"], output_names=["output"],
                                    opset_version=OPSET, dynamo=True, dynamic_shapes=(dims,), external_data=False,
                                    verbose=False)
    proto = program.model_proto
    graph = proto.graph
    for items in (graph.node, graph.value_info, graph.input, graph.output, graph.initializer):
        for item in items:
            del item.metadata_props[:]
            item.doc_string = ""
    graph.name = name
    graph.doc_string = ""
    proto.ir_version = IR_VERSION
    return proto


@contextlib.contextmanager
def _quiet():
    """The exporter logs about optional packages (torchvision ops) and warns about its own API."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _record(desc: ModelDescriptor, source: Path, fp16: bool) -> dict[str, str]:
    arch = {"variant": variant_name(desc.arch), **desc.arch.to_dict()}
    vr = desc.value_range
    return {
        "model": desc.name,
        "arch": json.dumps(arch),
        "scale": str(desc.scale),
        "weights": source.name,
        "weights_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "meta": json.dumps(desc.meta, default=str),
        "value_range": "0-1",
        "weights_value_range": f"{vr:g}" + (" (scaled inside the graph)" if vr != 1 else ""),
        "min_size": str(MIN_SIZE),
        "layout": "NCHW RGB",
        "precision": "fp16" if fp16 else "fp32",
        "opset": str(OPSET),
        "rlfn_video_version": _version(),
    }


def _finish(onnx, proto, meta: dict[str, str]) -> bytes:
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta)
    proto.producer_name, proto.producer_version = "rlfn-video", meta["rlfn_video_version"]
    proto.doc_string = (f"{meta['model']} ({meta['precision']}): input 'input' NCHW RGB in [0, 1], H and W >= "
                        f"{MIN_SIZE}; output 'output' clamped [0, 1], {meta['scale']}x larger")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise RlfnError(f"exported graph fails onnx.checker: {str(e).splitlines()[0]}") from None
    return proto.SerializeToString()


def read_metadata(path: str | os.PathLike) -> dict:
    """The model record of an exported file: JSON and integer fields decoded, the rest as strings."""
    onnx, _ = _require()
    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # missing file, not protobuf
        raise UnsupportedInputError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if "rlfn_video_version" not in props:
        raise UnsupportedInputError(f"{path}: not written by rlfn-video export (no model record)")
    for key in _JSON_KEYS:
        if key in props:
            props[key] = json.loads(props[key])
    for key in _INT_KEYS:
        props[key] = int(props[key])
    return props


def session(model: bytes | str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session; `threads` defaults to torch's intra-op thread count."""
    _, ort = _require()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])


def run(model, x: np.ndarray) -> np.ndarray:
    """One run of an exported graph (bytes, path or session) on (N, 3, H, W) in [0, 1]; float32 out."""
    sess = model if hasattr(model, "run") else session(model)
    dtype = np.float16 if sess.get_inputs()[0].type == "tensor(float16)" else np.float32
    return sess.run(["output"], {"input": np.ascontiguousarray(x, dtype=dtype)})[0].astype(np.float32)


@torch.inference_mode()
def _reference(desc: ModelDescriptor, x: torch.Tensor) -> torch.Tensor:
    return desc(x.float())


def precision_gate(model: bytes, desc: ModelDescriptor, folder: Path | None) -> dict:
    """fp16 graph vs fp32 torch on every image of `folder`, both rounded to 8 bits: the worst
    image's PSNR and share of values within +-1, and whether both clear the gate.

    onnxruntime's CPU provider runs fp16 convolutions in fp32 (it inserts casts), so this gates
    the fp16 weights and I/O; fp16 compute (torch half, once, Set14 x4) scored 61.5 dB, 100 %."""
    from .evaluate import psnr, read_rgb

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp")) if folder else []
    if not files:
        return {"skipped": f"no gate images at {folder}" if folder else "no gate images (Set14 not found)"}
    sess = session(model)
    worst_psnr, worst_within = float("inf"), 1.0
    for f in files:
        x = (read_rgb(f) / 255).float()[None]
        want = (_reference(desc, x) * 255).round().double()
        got = (torch.from_numpy(run(sess, x.numpy())) * 255).round().double()
        worst_psnr = min(worst_psnr, psnr(want, got))
        worst_within = min(worst_within, ((want - got).abs() <= 1).double().mean().item())
    return {"images": len(files), "folder": f"{folder.parent.parent.name}/{folder.parent.name}/{folder.name}",
            "psnr_min_db": round(worst_psnr, 2), "within_1_min": round(worst_within, 5),
            "passed": worst_psnr >= GATE_PSNR and worst_within >= GATE_WITHIN_ONE}


def _gate_folder(images: str | os.PathLike | None, scale: int) -> Path | None:
    """`images`, or its LR_bicubic/X{scale} when it is a benchmark set; default Set14 under ../shared."""
    if images is None:
        from .eval_video import SHARED_DATA

        images = SHARED_DATA / "benchmarks" / "Set14"
    folder = Path(images)
    lr = folder / "LR_bicubic" / f"X{scale}"
    folder = lr if lr.is_dir() else folder
    return folder if folder.is_dir() else None


def gate_summary(gate: dict) -> str:
    if gate.get("skipped"):
        return f"precision gate skipped: {gate['skipped']}"
    return (f"worst of {gate['images']} images {gate['psnr_min_db']:.2f} dB, "
            f"{gate['within_1_min']:.2%} within +-1")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rlfn-video")
    except PackageNotFoundError:
        return "unknown"


def _require():
    """onnx and onnxruntime, or one line naming the extra (onnxscript: the exporter imports it)."""
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise RlfnError(f"ONNX export needs {', '.join(missing)}: pip install 'rlfn-video[onnx]'")
    import onnx
    import onnxruntime

    return onnx, onnxruntime
