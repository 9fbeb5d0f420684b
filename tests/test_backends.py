"""Backends: OpenVINO equals torch fp32, compiles once per shape and is safe from several threads;
every backend and precision passes the precision gate on Set14 crops and a noisy one is refused;
"auto" follows its rule; names, errors, settings and manifests carry the backend."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rlfn_video import backends, precision_gate
from rlfn_video.backends import Backend, native_bf16_cpu
from rlfn_video.engine import Engine
from rlfn_video.errors import RlfnError
from rlfn_video.models import load_model
from rlfn_video.segment_job import EncodeSettings
from rlfn_video.transcode import upscale_video

from .conftest import make_clip, pattern
from .shared import needs_shared
from .sr_models import reference_model
from .test_transcode import frames_of

needs_openvino = pytest.mark.skipif(not backends.openvino_installed(),
                                    reason="OpenVINO is not installed (pip install 'rlfn-video[openvino]')")
needs_bf16 = pytest.mark.skipif(not native_bf16_cpu(), reason="this CPU has no native bf16")


def engine(backend, precision: str = "fp32", scale: int = 2, **kw) -> Engine:
    return Engine(reference_model(scale), device="cpu", precision=precision, backend=backend, **kw)


# --- OpenVINO against torch ---------------------------------------------------------------------


@needs_openvino
def test_openvino_fp32_equals_torch_at_odd_sizes_and_batch_2():
    x = torch.rand(2, 3, 23, 37, generator=torch.Generator().manual_seed(0))
    ov, ref = engine("openvino"), engine("torch")
    got, want = ov(x), ref(x)
    assert got.shape == want.shape == (2, 3, 46, 74) and got.dtype == torch.float32
    assert (got - want).abs().max().item() <= 1e-4
    small = torch.rand(1, 3, 9, 12)  # below ESA's 15 px: the engine pads around the backend
    assert (ov(small) - ref(small)).abs().max().item() <= 1e-4
    assert ov.backend == Backend.OpenVINO() and ov.backend_label == "openvino fp32"


@needs_openvino
def test_one_compile_per_shape_and_a_small_lru(monkeypatch):
    ov = engine("openvino")
    run = ov._run
    a, b, c = torch.rand(1, 3, 20, 24), torch.rand(1, 3, 18, 30), torch.rand(2, 3, 20, 24)
    first = ov(a)
    for x in (a, b, a, b, c, a):
        ov(x)
    assert run.compiles == 3 and torch.equal(ov(a), first)  # (N, H, W) each compiled once
    monkeypatch.setattr(backends, "COMPILED_SHAPES", 2)
    ov(torch.rand(1, 3, 16, 16))  # a fourth shape keeps it and the most recent one (a)
    ov(a)
    assert run.compiles == 4 and len(run._compiled) == 2
    ov(b)  # pushed out: compiled again
    assert run.compiles == 5


@needs_openvino
def test_engines_of_the_same_weights_share_one_conversion(monkeypatch):
    engine("openvino")(torch.rand(1, 3, 16, 16))
    calls = []
    monkeypatch.setattr("openvino.convert_model", lambda *a, **k: calls.append(a))
    engine("openvino")(torch.rand(1, 3, 16, 16))
    assert calls == []


@needs_openvino
def test_openvino_from_several_threads_gives_the_sequential_result():
    ov = engine("openvino")
    inputs = [torch.rand(1, 3, 20 + 2 * (k % 2), 24) for k in range(8)]
    want = [ov(x) for x in inputs]
    got: dict[int, torch.Tensor] = {}

    def work(k):
        got[k] = ov(inputs[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(got[k], want[k]) for k in range(8))


@needs_openvino
def test_tiles_through_openvino_match_tiles_through_torch():
    x = torch.rand(1, 3, 40, 60)
    got, want = engine("openvino", tile=24)(x), engine("torch", tile=24)(x)
    assert (got - want).abs().max().item() <= 1e-4


# --- the precision gate ---------------------------------------------------------------------------


class _Memo:
    """The fp32 reference computed once per crop, shared by every gate test."""

    def __init__(self, reference):
        self.reference, self.out = reference, {}

    def __call__(self, x):
        if id(x) not in self.out:
            self.out[id(x)] = self.reference(x)
        return self.out[id(x)]


@pytest.fixture(scope="module")
def gate_setup():
    crops = precision_gate.gate_crops()
    if not crops:
        pytest.skip("Set14 not found under ../shared: the gate's crops")
    model = load_model(scale=4)
    return crops, model, _Memo(precision_gate.reference_engine(Engine(model, device="cpu", backend="torch")))


GATED = [("torch", "bf16"), ("torch", "fp16"),
         pytest.param("openvino", "fp32", marks=needs_openvino),
         pytest.param("openvino", "bf16", marks=[needs_openvino, needs_bf16])]


@needs_shared
@pytest.mark.parametrize("backend, precision", GATED)
def test_every_backend_and_precision_passes_the_gate_on_set14(gate_setup, backend, precision):
    crops, model, reference = gate_setup
    candidate = Engine(model, device="cpu", precision=precision, backend=backend)
    score = precision_gate.check_engine(candidate, crops, reference)
    assert score.passed and score.images == 3 and score.label == f"{backend} {precision}"
    assert score.psnr_min_db >= 50 and score.within_1_min >= 0.97
    assert [tuple(c.shape) for c in crops] == [(1, 3, 120, 160)] * 3


def test_gate_refuses_a_backend_that_adds_noise():
    crops = [torch.from_numpy(pattern(k, 40, 30)).permute(2, 0, 1).float().div(255)[None] for k in range(3)]
    good = engine("torch")
    reference = precision_gate.reference_engine(good)
    assert precision_gate.check_engine(good, crops, reference).passed
    noisy = engine("torch")
    run = noisy._run
    noise = torch.Generator().manual_seed(0)
    noisy._run = lambda x, capturing=False: run(x) + torch.randn(x.shape[0], 3, x.shape[2] * 2, x.shape[3] * 2,
                                                                 generator=noise) * 2 / 255
    with pytest.raises(RlfnError) as e:
        precision_gate.check_engine(noisy, crops, reference)
    message = str(e.value)
    assert message.startswith("torch fp32 refused by the precision gate: worst of 3 crops") and "\n" not in message
    assert "needs >= 50 dB and >= 97%" in message
    with pytest.raises(RlfnError, match="needs images"):
        precision_gate.score(good, reference, [])


# --- auto, names and errors -------------------------------------------------------------------------


@pytest.mark.parametrize("device, precision, installed, native, want", [
    ("cuda", "fp16", True, True, Backend.Torch()),
    ("cuda", "fp32", True, True, Backend.Torch()),
    ("cpu", "fp32", True, False, Backend.OpenVINO()),
    ("cpu", "bf16", True, True, Backend.OpenVINO()),
    ("cpu", "bf16", True, False, Backend.Torch()),  # emulated bf16: OpenVINO would refuse it
    ("cpu", "fp16", True, True, Backend.Torch()),
    ("cpu", "fp32", False, True, Backend.Torch()),
    ("cpu", "bf16", False, True, Backend.Torch()),
])
def test_auto_follows_its_rule(monkeypatch, device, precision, installed, native, want):
    monkeypatch.setattr(backends, "openvino_installed", lambda: installed)
    monkeypatch.setattr("rlfn_video.backends.native_bf16_cpu", lambda: native)
    assert backends.choose_backend(torch.device(device), precision) == want


def test_auto_engine_on_this_cpu(monkeypatch):
    monkeypatch.setattr(backends, "openvino_installed", lambda: False)
    assert engine("auto").backend == Backend.Torch()
    monkeypatch.undo()
    want = Backend.OpenVINO() if backends.openvino_installed() else Backend.Torch()
    assert engine("auto").backend == want and Engine(reference_model(2), device="cpu", precision="fp32").backend == want


def test_fast_and_its_old_name_half():
    """`fast`: the device's fast precision (bf16 on a CPU, fp16 on CUDA), False: fp32; `half=`: its old name."""
    from rlfn_video.engine import choose_precision

    for kw, want in (({"fast": False}, "fp32"), ({"half": False}, "fp32"), ({"fast": True}, "bf16"),
                     ({"half": True}, "bf16")):
        assert Engine(reference_model(2), device="cpu", backend="torch", **kw).precision == want, kw
    assert choose_precision(torch.device("cuda"), True, None) == "fp16"
    assert EncodeSettings.create(device_kind="cpu", half=False, backend="torch").precision == "fp32"
    assert EncodeSettings.create(device_kind="cpu", fast=True, backend="torch").precision == "bf16"


def test_names_and_configs():
    assert backends.parse_backend("auto") is None and backends.parse_backend(None) is None
    assert backends.parse_backend("Torch") == Backend.Torch()
    assert backends.parse_backend("torch-compile") == Backend.Torch(compile=True)
    assert backends.parse_backend("openvino") == Backend.OpenVINO()
    assert Backend.OpenVINO(device="gpu").device == "GPU" and Backend.OpenVINO(device="gpu").label == "openvino GPU"
    for bad, message in (("tensorrt", "unknown backend 'tensorrt'; use auto, torch, torch-compile, openvino"),
                         (Backend.Torch, "unknown backend")):
        with pytest.raises(RlfnError, match=message):
            backends.parse_backend(bad)
    with pytest.raises(RlfnError, match="graphs='sometimes'"):
        Backend.Torch(graphs="sometimes")
    with pytest.raises(RlfnError, match="precision='int8'"):
        Backend.OpenVINO(precision="int8")
    assert engine(Backend.Torch(graphs="off")).graphs is False and engine("torch").graphs is None
    assert engine(Backend.Torch(graphs="on")).graphs is True


def test_openvino_settings_that_cannot_run_say_why(monkeypatch):
    cpu = torch.device("cpu")
    with pytest.raises(RlfnError, match="OpenVINO runs on the CPU or an Intel GPU"):
        backends.resolve_backend("openvino", torch.device("cuda", 0), "fp16")
    with pytest.raises(RlfnError, match="runs fp32 or bf16, not fp16"):
        backends.resolve_backend("openvino", cpu, "fp16")
    with pytest.raises(RlfnError, match=r"precision='bf16'\) and the precision asked, fp32, disagree"):
        Engine(reference_model(2), device="cpu", precision="fp32", backend=Backend.OpenVINO(precision="bf16"))
    monkeypatch.setattr(backends, "openvino_installed", lambda: False)
    with pytest.raises(RlfnError) as e:
        engine("openvino")
    assert str(e.value) == "the OpenVINO backend needs openvino: pip install 'rlfn-video[openvino]'"


@needs_openvino
def test_openvino_precision_decides_the_engines():
    ov = Engine(reference_model(2), device="cpu", backend=Backend.OpenVINO(precision="fp32"))
    assert ov.precision == "fp32" and ov.dtype == torch.float32 and ov.device == torch.device("cpu")
    assert engine("openvino", "fp32").backend_label == "openvino fp32"
    if native_bf16_cpu():
        assert Engine(reference_model(2), device="cpu", backend="openvino").precision == "bf16"


def test_importing_the_package_needs_no_openvino():
    code = "import sys, rlfn_video, rlfn_video.backends, rlfn_video.cli; assert 'openvino' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="no C++ compiler")
def test_torch_compile_on_the_cpu_equals_eager():
    """Inductor on a CPU (allowed, not the default): tens of seconds to compile, once."""
    x = torch.rand(1, 3, 16, 20)
    compiled = engine("torch-compile")
    assert compiled.backend == Backend.Torch(compile=True) and compiled.backend_label == "torch compile fp32"
    assert (compiled(x) - engine("torch")(x)).abs().max().item() <= 1e-4


# --- settings, manifests, workers, files ----------------------------------------------------------


def test_encode_settings_carry_the_backend(monkeypatch):
    s = EncodeSettings(scale=2, backend="openvino")
    assert s.backend == Backend.OpenVINO() and pickle.loads(pickle.dumps(s)) == s and hash(s)
    assert s.fingerprint()["backend"] == "openvino"
    for plain in (EncodeSettings(scale=2), EncodeSettings(scale=2, backend="torch"),
                  EncodeSettings(scale=2, backend=Backend.Torch(graphs="off"))):
        assert plain.fingerprint()["backend"] is None  # manifests from before backends still resume
    assert EncodeSettings(scale=2, backend="torch-compile").fingerprint()["backend"] == "torch compile"
    with pytest.raises(RlfnError, match="unknown backend"):
        EncodeSettings(backend="tpu")
    monkeypatch.setattr(backends, "openvino_installed", lambda: True)
    monkeypatch.setattr("rlfn_video.backends.native_bf16_cpu", lambda: True)
    assert EncodeSettings.create(device_kind="cpu", scale=2).backend == Backend.OpenVINO()
    assert EncodeSettings.create(device_kind="cpu", scale=2, backend="torch").backend == Backend.Torch()
    assert EncodeSettings(scale=2).resolved("cpu").backend == Backend.OpenVINO()
    assert EncodeSettings(scale=2, precision="fp16").resolved("cuda").backend == Backend.Torch()


def test_workers_build_the_engine_with_the_settings_backend(monkeypatch):
    from rlfn_video import workers

    seen = []
    monkeypatch.setattr(Engine, "from_options", classmethod(lambda cls, **kw: seen.append(kw) or object()))
    monkeypatch.setattr(workers, "_ENGINES", {})
    settings = EncodeSettings(scale=2, model="rlfn_s", backend="openvino")
    workers.engine_for(settings, "cpu")
    workers.engine_for(replace(settings, backend="torch"), "cpu")
    assert [kw["backend"] for kw in seen] == [Backend.OpenVINO(), Backend.Torch()]


@needs_openvino
def test_a_clip_through_openvino_matches_the_torch_path(tmp_path):
    src = make_clip(tmp_path / "in.mkv", codec="ffv1", size=(40, 30), frames=3, matrix="bt709")
    outs = {}
    for backend in ("torch", "openvino"):
        dst = tmp_path / f"{backend}.mkv"
        report = upscale_video(src, dst, scale=2, model="rlfn_s", device="cpu", fast=False, codec="ffv1",
                               backend=backend)
        assert f"({backend})" in report.pipeline
        outs[backend] = [f.to_ndarray(format="yuv444p").astype(int) for f in frames_of(dst)]
    assert len(outs["torch"]) == len(outs["openvino"]) == 3
    assert max(np.abs(a - b).max() for a, b in zip(outs["torch"], outs["openvino"])) <= 1


@needs_openvino
def test_openvino_runs_without_forking():
    """OpenVINO's telemetry forks a child per event, which deadlocks in this multi-threaded process
    and, under the CLI's SIGTERM handler, hangs the exit: imported through backends, it is stubbed."""
    code = ("import os, sys, time, torch\n"
            "forks = []\n"
            "real = os.fork\n"
            "os.fork = lambda: forks.append(1) or real()\n"
            "from rlfn_video.engine import Engine\n"
            "from tests.sr_models import reference_model\n"
            "Engine(reference_model(2), device='cpu', precision='fp32', backend='openvino')(torch.rand(1, 3, 16, 16))\n"
            "time.sleep(1)\n"
            "assert not forks and 'openvino_telemetry' not in sys.modules, forks\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
