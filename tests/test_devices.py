"""resolve_device: what each --device spelling means, with torch.cuda's answers faked (no GPU needed)."""

from __future__ import annotations

import pytest
import torch

from rlfn_video import devices
from rlfn_video.devices import resolve_device
from rlfn_video.errors import RlfnError


@pytest.fixture
def gpus(monkeypatch):
    """Pretend torch sees `count` GPUs with `current` the current one."""

    def fake(count: int, current: int = 0) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: current)

    return fake


@pytest.mark.parametrize("spec", ["cuda", "CUDA ", torch.device("cuda"), "auto", None, ""])
def test_bare_cuda_and_auto_mean_the_current_gpu_with_its_index(gpus, spec):
    gpus(3, current=2)
    dev = resolve_device(spec)
    assert dev == torch.device("cuda", 2) and dev.index == 2


@pytest.mark.parametrize("spec, index", [("cuda:0", 0), ("cuda:1", 1), (torch.device("cuda", 1), 1)])
def test_explicit_index_is_kept(gpus, spec, index):
    gpus(2, current=1 - index)
    assert resolve_device(spec) == torch.device("cuda", index)


@pytest.mark.parametrize("spec", ["cpu", "auto", None, torch.device("cpu")])
def test_cpu_without_a_gpu(gpus, spec):
    gpus(0)
    assert resolve_device(spec) == torch.device("cpu")


def test_cpu_stays_cpu_with_gpus(gpus):
    gpus(2, current=1)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("count, spec, message", [
    (0, "cuda", r"^device 'cuda' requested but torch sees no CUDA GPU; use --device cpu$"),
    (0, torch.device("cuda", 0), r"^device 'cuda:0' requested but torch sees no CUDA GPU"),
    (2, "cuda:2", r"^device 'cuda:2' requested but only 2 GPU\(s\) are visible$"),
    (2, "tpu", r"^unknown device 'tpu'; use auto, cpu, cuda or cuda:N$"),
    (2, "cuda:x", r"^unknown device 'cuda:x'"),
    (2, "meta", r"^unsupported device 'meta'; use auto, cpu, cuda or cuda:N$"),
])
def test_errors_say_what_to_do(gpus, count, spec, message):
    gpus(count)
    with pytest.raises(RlfnError, match=message):
        resolve_device(spec)


def test_front_ends_name_their_own_cpu_option(gpus):
    gpus(0)
    with pytest.raises(RlfnError, match=r'sees no CUDA GPU; pass device="cpu"$'):
        resolve_device("cuda:0", advice='pass device="cpu"')


def test_every_cuda_consumer_gets_the_same_index(gpus):
    """A bare "cuda" becomes one number here, so CuPy (Device(index)), NVENC (gpu=index) and torch
    cannot disagree about which GPU it is."""
    gpus(4, current=3)
    assert {resolve_device(s).index for s in ("cuda", "auto", torch.device("cuda"), "cuda:3")} == {3}
    assert devices.resolve_device(resolve_device("cuda")) == torch.device("cuda", 3)  # idempotent


def test_cupy_colour_kernels_compile_and_launch_on_the_resolved_gpu(gpus, monkeypatch):
    """CudaColour with a bare "cuda" while GPU 1 is current: CuPy is told 1, never None or 0 (a
    stand-in CuPy records which device each step ran under)."""
    import sys
    import types

    from rlfn_video import colour_cuda
    from rlfn_video.colour import ColourSpec, Matrix

    gpus(2, current=1)
    log: list[tuple[str, int]] = []
    current: list[int] = []

    class Device:
        def __init__(self, index):
            assert isinstance(index, int), f"CuPy got device {index!r}"
            self.index = index

        def __enter__(self):
            current.append(self.index)

        def __exit__(self, *exc):
            current.pop()

    class Module:
        def __init__(self, **kwargs):
            pass

        def compile(self):
            log.append(("compile", current[-1]))

        def get_function(self, name):
            return lambda grid, block, args: log.append((f"launch {name}", current[-1]))

    class ExternalStream:
        def __init__(self, ptr, device_id):
            log.append(("stream", device_id))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    cuda = types.SimpleNamespace(Device=Device, ExternalStream=ExternalStream, Stream=types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=cuda, RawModule=Module))
    kernels = colour_cuda.CudaColour("cuda")
    assert kernels.device == torch.device("cuda", 1) and kernels.index == 1
    spec = ColourSpec(matrix=Matrix.BT709, full_range=False, bit_depth=8, subsampling="420")
    layout = colour_cuda.PlaneLayout.for_spec(spec, 8, 6)
    launch = kernels.launcher("planes_to_rgb", 1, torch.float32,
                              colour_cuda.to_rgb_args(spec, layout, 0, torch.zeros(1, 3, 6, 8), 1))
    stream = types.SimpleNamespace(cuda_stream=1234, device=torch.device("cuda", 1))
    launch(stream)
    assert log == [("compile", 1), ("stream", 1), ("launch planes_to_rgb", 1)]
    with pytest.raises(RlfnError, match="a stream of cuda:0 cannot run the colour kernels of cuda:1"):
        launch(types.SimpleNamespace(cuda_stream=99, device=torch.device("cuda", 0)))
