"""Device lanes on the CPU: CUDA streams and events replaced by in-order no-ops, pinned memory by
plain memory, the colour kernels by their host build (host_kernels.py) and a graph replay by an
eager forward into the same output tensor. What this cannot show (real concurrency, graph
capture, CuPy launches) is left to the cuda tests; everything else of a device lane, and of the
CUDA pipeline's ring and the VapourSynth filter that use it, runs here."""

from __future__ import annotations

import contextlib

import torch

from rlfn_video import lane

from . import host_kernels as host


class Stream:
    def __init__(self, *args, **kwargs):
        self.cuda_stream = id(self)

    def wait_event(self, event):
        assert event.recorded, "waiting on an event that was never recorded"

    def wait_stream(self, stream):
        pass


class Event:
    def __init__(self, *args, **kwargs):
        self.recorded = 0

    def record(self, stream=None):
        self.recorded += 1

    def query(self):
        return True

    def synchronize(self):
        assert self.recorded, "synchronizing on an event that was never recorded"


class Graph:
    """Replay = the model again on the same input, into the same output tensor."""

    def __init__(self, engine, rgb):
        self.engine, self.rgb = engine, rgb
        self.out = engine.forward(rgb)
        self.replays = 0

    def replay(self):
        with torch.inference_mode():
            self.out.copy_(self.engine.forward(self.rgb))
        self.replays += 1


def emulate(monkeypatch, libs) -> None:
    @contextlib.contextmanager
    def nothing(*args, **kwargs):
        yield

    cuda = torch.cuda
    for name, value in (("Stream", Stream), ("Event", Event), ("stream", nothing), ("device", nothing),
                        ("current_stream", lambda *a: Stream()), ("synchronize", lambda *a: None),
                        ("empty_cache", lambda: None), ("mem_get_info", lambda *a: (8 << 30, 16 << 30))):
        monkeypatch.setattr(cuda, name, value)
    monkeypatch.setattr(lane, "_pinned", lambda count, dtype: torch.zeros(count, dtype=dtype))
    monkeypatch.setattr(lane, "new_stream", lambda device: Stream())  # device lanes, on the CPU
    monkeypatch.setattr(lane, "colour_kernels", lambda device: host.HostColour(libs))
    monkeypatch.setattr(lane, "capture_graph", lambda engine, rgb, stream: (g := Graph(engine, rgb), g.out))
