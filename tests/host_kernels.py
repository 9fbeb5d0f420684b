"""The colour kernels' C source built with the host C compiler and called through ctypes: the
same index maths, filters and argument lists as on the GPU, runnable on any machine."""

from __future__ import annotations

import ctypes
import itertools
import shutil
import subprocess
from pathlib import Path

import torch

from rlfn_video import colour_cuda
from rlfn_video.colour_cuda import TO_RGB_ARGS, TO_PLANES_ARGS

RGB_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_CTYPES = {colour_cuda.I64: ctypes.c_longlong, colour_cuda.I32: ctypes.c_int, colour_cuda.F32: ctypes.c_float}


def build(folder: Path) -> dict:
    """(plane itemsize, RGB dtype) -> ctypes library; raises RuntimeError when it cannot be built."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler")
    libs = {}
    for itemsize, dtype in itertools.product((1, 2), RGB_DTYPES):
        name = f"k{itemsize}_{str(dtype).split('.')[-1]}"
        (folder / f"{name}.c").write_text(colour_cuda.kernel_source(itemsize, dtype))
        cmd = [cc, "-O1", "-ffp-contract=off", "-fPIC", "-shared", "-o", str(folder / f"{name}.so"),
               str(folder / f"{name}.c"), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"the host C compiler cannot build the kernels (_Float16 needs GCC >= 12): "
                               f"{done.stderr[:300]}")
        libs[itemsize, dtype] = ctypes.CDLL(str(folder / f"{name}.so"))
    return libs


def function(lib, name: str):
    spec = TO_RGB_ARGS if name == "planes_to_rgb" else TO_PLANES_ARGS
    fn = getattr(lib, name)
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p if t.endswith("*") else _CTYPES[t] for _, t in spec]
    return fn


def call(lib, name: str, values: dict) -> None:
    """Run a kernel over its whole range, from the named values (checked like the CUDA launch)."""
    spec = TO_RGB_ARGS if name == "planes_to_rgb" else TO_PLANES_ARGS
    colour_cuda.pack(spec, values)
    function(lib, name)(*(values[n] for n, _ in spec))


def call_packed(lib, name: str, packed: tuple) -> None:
    """Run a kernel from the tuple `colour_cuda.pack` made for CuPy (numpy scalars)."""
    function(lib, name)(*(a.item() for a in packed))


class HostColour:
    """Stands in for `colour_cuda.CudaColour`: same `launcher`/`run` API, kernels run on the host."""

    def __init__(self, libs: dict):
        self.libs = libs

    def launcher(self, name, itemsize, rgb_dtype, values):
        return colour_cuda.Launch(self, (self.libs[itemsize, rgb_dtype], name), colour_cuda.kernel_args(name), values)

    def run(self, launch, stream):
        lib, name = launch.kernel
        call_packed(lib, name, launch.args)
