"""How the network runs: backend settings, the rule behind "auto", and the one call they funnel into.

vs-mlrt's pattern: a backend is a small frozen dataclass, and every caller goes through one call.

    Engine(model, backend=Backend.OpenVINO())        # or "openvino", "torch", "torch-compile", "auto"

`runner(backend, net, device, precision)` returns `run(x)`: the bare network (RLFN, in its
weights' value range) on an (N, 3, H, W) float tensor on the engine's device. The Engine keeps
the rest (value range, the 15-px minimum, clamping, tiling, the precision rule), and
pipeline_cuda keeps its pinned ring and CUDA graphs above the backend.

- `Backend.Torch`: eager torch, channels_last, bf16 by autocast, fp16 weights on CUDA.
- `Backend.OpenVINO`: the network converted in memory by OpenVINO and compiled once per input
  shape; the engine's tensors stay on the CPU. Needs the `openvino` extra, imported on first use.
  Any thread may call it: one lock serialises compile and infer (VapourSynth's callbacks).
- "auto": `choose_backend`.

Leaves out: padding, tiling, colour, files; where a backend may serve is the precision gate's
business (precision_gate.py).
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

import torch

from .errors import RlfnError

_GRAPHS = ("auto", "on", "off")
_OV_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_OV_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # INFERENCE_PRECISION_HINT values
NAMES = ("auto", "torch", "torch-compile", "openvino")
INSTALL = "pip install 'rlfn-video[openvino]'"


class Backend:
    """Backend settings; `Backend.Torch()` and `Backend.OpenVINO()` are what "torch" and "openvino" mean."""

    @dataclass(frozen=True)
    class Torch:
        """`compile`: wrap the network in torch.compile (inductor). Meant for CUDA, where the
        pipeline still captures it in CUDA graphs; allowed on a CPU (needs a C++ compiler); never
        chosen by "auto" until the GPU check has measured it. The first frames of each shape
        pay the compilation (tens of seconds).
        `graphs`: the CUDA pipeline's default for capturing the model: "auto" (whenever it does
        not tile), "on" or "off"; `PipelineOptions.graphs` (bench --graphs) overrides it."""

        compile: bool = False
        graphs: str = "auto"

        def __post_init__(self) -> None:
            if not isinstance(self.compile, bool):
                raise RlfnError(f"Backend.Torch(compile=...) takes True or False, not {self.compile!r}")
            if self.graphs not in _GRAPHS:
                raise RlfnError(f"Backend.Torch(graphs={self.graphs!r}): use {', '.join(_GRAPHS)}")

        @property
        def label(self) -> str:
            return "torch compile" if self.compile else "torch"

    @dataclass(frozen=True)
    class OpenVINO:
        """`device`: OpenVINO's device name, "CPU" (default) or "GPU"/"GPU.N" for an Intel GPU
        (untested here: no Intel GPU in this project's CI; the engine's tensors stay on the CPU).
        `precision`: "auto" (the engine's rule: bf16 on CPUs with native bf16, else fp32; fp16 on
        a GPU), "fp32", "bf16" (CPUs with native bf16 only) or "fp16" (GPU). Compiled with
        PERFORMANCE_HINT=LATENCY (one stream) and, on the CPU, torch.get_num_threads() threads."""

        device: str = "CPU"
        precision: str = "auto"

        def __post_init__(self) -> None:
            if not isinstance(self.device, str) or not self.device.strip():
                raise RlfnError(f"Backend.OpenVINO(device={self.device!r}): give an OpenVINO device, e.g. 'CPU'")
            object.__setattr__(self, "device", self.device.strip().upper())
            if self.precision not in _OV_PRECISIONS:
                raise RlfnError(f"Backend.OpenVINO(precision={self.precision!r}): use {', '.join(_OV_PRECISIONS)}")

        @property
        def label(self) -> str:
            return "openvino" if self.device == "CPU" else f"openvino {self.device}"


Config = Union[Backend.Torch, Backend.OpenVINO]
Spec = Union[str, Config, None]  # a name of NAMES, a config, or None ("auto")


def parse_backend(spec: Spec) -> Config | None:
    """A config, or None for "auto" (resolved once device and precision are known)."""
    if isinstance(spec, (Backend.Torch, Backend.OpenVINO)):
        return spec
    name = spec.strip().lower() if isinstance(spec, str) else spec
    if name in (None, "auto"):
        return None
    if name == "torch":
        return Backend.Torch()
    if name == "torch-compile":
        return Backend.Torch(compile=True)
    if name == "openvino":
        return Backend.OpenVINO()
    raise RlfnError(f"unknown backend {spec!r}; use {', '.join(NAMES)} or a Backend.Torch/Backend.OpenVINO")


def openvino_installed() -> bool:
    """Without importing it (importing OpenVINO starts its telemetry)."""
    return importlib.util.find_spec("openvino") is not None


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16/AMX): decides "auto" here and the
    default precision in the engine (`engine.choose_precision`)."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe and probe())


def choose_backend(device: torch.device, precision: str) -> Config:
    """What "auto" runs; the rule in one place, to change once the quiet-machine benchmark says so.

    CUDA: torch, eager, captured in CUDA graphs by the pipeline (torch.compile stays opt-in until
    the GPU check has measured it). CPU: OpenVINO when it is installed and the precision is fp32,
    or bf16 on a CPU with native bf16 (AVX512-BF16/AMX); otherwise torch (bf16 emulated, fp16).
    Measured before (2-core EPYC with AVX512-BF16, RLFN-S x4 at 480x270): torch bf16 +
    channels_last 3.0-3.1 fps, OpenVINO bf16 3.1-3.3 fps, torch fp32 1.3-1.4 fps; OpenVINO fp32
    was ahead of torch fp32 in a shared-machine sanity check only (to be confirmed)."""
    if device.type == "cpu" and openvino_installed() and (
            precision == "fp32" or (precision == "bf16" and native_bf16_cpu())):
        return Backend.OpenVINO()
    return Backend.Torch()


def precision_hint(spec: Spec) -> str | None:
    """The precision a backend asks for when the caller chose none: OpenVINO's own, fp16 on a GPU."""
    config = parse_backend(spec)
    if isinstance(config, Backend.OpenVINO):
        if config.precision != "auto":
            return config.precision
        return None if config.device == "CPU" else "fp16"
    return None


def resolve_backend(spec: Spec, device: torch.device, precision: str) -> Config:
    """The config that will run (auto resolved), checked against the device and precision."""
    config = parse_backend(spec) or choose_backend(device, precision)
    if isinstance(config, Backend.OpenVINO):
        if device.type != "cpu":
            raise RlfnError(f"OpenVINO runs on the CPU or an Intel GPU (Backend.OpenVINO(device='GPU')), not "
                            f"{device}; use device cpu or another backend")
        if config.precision not in ("auto", precision):
            raise RlfnError(f"Backend.OpenVINO(precision={config.precision!r}) and the precision asked, {precision}, "
                            f"disagree; give one of them")
        if config.device == "CPU" and precision == "fp16":
            raise RlfnError("OpenVINO on the CPU runs fp32 or bf16, not fp16; use fp32 or bf16")
        if not openvino_installed():
            raise RlfnError(f"the OpenVINO backend needs openvino: {INSTALL}")
    return config


def label(config: Config, precision: str) -> str:
    """E.g. "openvino bf16", "torch fp16": what ran, for reports."""
    return f"{config.label} {precision}"


def fingerprint(spec: Spec) -> str | None:
    """What of the backend decides the output's bits, for segment manifests: None for plain torch
    (and for "auto" not yet resolved), so manifests written before backends existed still match."""
    config = parse_backend(spec)
    if config is None or (isinstance(config, Backend.Torch) and not config.compile):  # graphs replay the same kernels
        return None
    return config.label


Run = Callable[..., torch.Tensor]  # run(x, *, capturing=False) -> the network's output


def runner(config: Config, net: torch.nn.Module, device: torch.device, precision: str) -> Run:
    """The one inference call: `config` running `net` (already on `device`, in the engine's dtype)."""
    if isinstance(config, Backend.OpenVINO):
        return _OpenVINORun(net, config, precision)
    return _TorchRun(net, device, precision, config.compile)


class _TorchRun:
    def __init__(self, net: torch.nn.Module, device: torch.device, precision: str, compile: bool):
        self.net = torch.compile(net) if compile else net
        self.device_type = device.type
        self.bf16 = precision == "bf16"

    def __call__(self, x: torch.Tensor, *, capturing: bool = False) -> torch.Tensor:
        """`capturing`: inside CUDA graph capture, where autocast must not cache its casts."""
        if not self.bf16:
            return self.net(x)
        with torch.autocast(self.device_type, dtype=torch.bfloat16, cache_enabled=not capturing):
            return self.net(x)


# --- OpenVINO ---------------------------------------------------------------------------------

COMPILED_SHAPES = 8  # compiled models kept per engine (LRU): a video has one shape, tiles up to 9
_CONVERTED: collections.OrderedDict[str, object] = collections.OrderedDict()  # weights digest -> ov.Model
_CONVERTED_KEEP = 4
_CONVERT_LOCK = threading.Lock()
_CORE = None


def _openvino():
    """OpenVINO, imported with its own telemetry stub (ovc's fallback when openvino_telemetry
    does not import). openvino_telemetry sends each event (one on import, a dozen per conversion)
    from a child forked off this multi-threaded process; those children deadlock, and where a
    Python SIGTERM handler was installed (the CLI's) they outlive terminate() and hang the
    interpreter's exit. An openvino the caller imported first keeps its telemetry."""
    if "openvino" not in sys.modules and "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # makes `import openvino_telemetry` fail: ovc takes its stub
        try:
            return _import_openvino()
        finally:
            del sys.modules["openvino_telemetry"]
    return _import_openvino()


def _import_openvino():
    try:
        import openvino
    except ImportError:
        raise RlfnError(f"the OpenVINO backend needs openvino: {INSTALL}") from None
    return openvino


def _core():
    global _CORE
    if _CORE is None:
        _CORE = _openvino().Core()
    return _CORE


def _digest(net: torch.nn.Module) -> str:
    """Architecture and weights: engines of the same weights share one conversion."""
    h = hashlib.blake2b(repr(getattr(net, "arch", type(net).__name__)).encode(), digest_size=16)
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def convert(net: torch.nn.Module):
    """`net` as an OpenVINO model with dynamic batch, height and width (cached by weights)."""
    ov = _openvino()
    key = _digest(net)
    with _CONVERT_LOCK:
        if key in _CONVERTED:
            _CONVERTED.move_to_end(key)
            return _CONVERTED[key]
        # Traced outside inference mode (TorchScript tracing needs ordinary tensors); the engine keeps
        # an OpenVINO net in fp32, the precision hint decides the compute.
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.trace's deprecation, fork() notes
            model = ov.convert_model(net, example_input=torch.zeros(1, 3, 32, 32), input=[(-1, 3, -1, -1)])
        _CONVERTED[key] = model
        while len(_CONVERTED) > _CONVERTED_KEEP:
            _CONVERTED.popitem(last=False)
        return model


class _OpenVINORun:
    """One lock around compile and infer: VapourSynth calls from several threads, and with
    LATENCY (one stream) concurrent requests would only queue inside OpenVINO anyway."""

    def __init__(self, net: torch.nn.Module, config: Backend.OpenVINO, precision: str):
        ov = _openvino()
        if config.device == "CPU" and precision == "bf16" and \
                "BF16" not in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise RlfnError("OpenVINO on this CPU has no native bf16; use fp32 (--no-fast) or the torch backend")
        self._ov = ov
        self.net = net
        self.config = config
        self.hint = _OV_HINTS[precision]
        self.compiles = 0  # compiled shapes so far (tests: one per shape)
        self._model = None  # converted on the first call: an engine that never runs costs nothing
        self._compiled: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _request(self, shape: tuple[int, ...]):
        """(infer request, output shape) of the model compiled for `shape`."""
        if shape in self._compiled:
            self._compiled.move_to_end(shape)
            return self._compiled[shape]
        if self._model is None:
            self._model = convert(self.net)
        model = self._model.clone()
        model.reshape(list(shape))  # static shapes: faster kernels than a dynamic-shape compile
        options = {"INFERENCE_PRECISION_HINT": self.hint, "PERFORMANCE_HINT": "LATENCY"}
        if self.config.device == "CPU":
            options["INFERENCE_NUM_THREADS"] = torch.get_num_threads()
        try:
            compiled = _core().compile_model(model, self.config.device, options)
        except RuntimeError as e:
            raise RlfnError(f"OpenVINO cannot compile for {self.config.device}: {str(e).strip().splitlines()[0]}") \
                from None
        self.compiles += 1
        entry = compiled.create_infer_request(), tuple(compiled.output(0).get_shape())
        self._compiled[shape] = entry
        while len(self._compiled) > COMPILED_SHAPES:
            self._compiled.popitem(last=False)
        return entry

    def __call__(self, x: torch.Tensor, *, capturing: bool = False) -> torch.Tensor:
        if x.device.type != "cpu":
            raise RlfnError(f"the OpenVINO backend takes CPU tensors, not {x.device}")
        x = x.float().contiguous()  # NCHW, as converted (the engine hands over channels_last)
        with self._lock:
            request, out_shape = self._request(tuple(x.shape))
            out = torch.empty(out_shape)
            request.set_input_tensor(self._ov.Tensor(x.numpy(), shared_memory=True))
            request.set_output_tensor(self._ov.Tensor(out.numpy(), shared_memory=True))  # written in place
            request.infer()
        return out
