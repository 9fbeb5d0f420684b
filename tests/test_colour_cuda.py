"""colour_cuda.py against colour.py: the kernels' C source built for the host (any machine with a
C compiler), compiled by NVRTC (where CuPy finds it), and run on the GPU (cuda tests)."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch

from rlfn_video import colour, colour_cuda
from rlfn_video.colour import ColourSpec, Matrix
from rlfn_video.colour_cuda import TO_RGB_ARGS, TO_PLANES_ARGS, PlaneLayout

from . import host_kernels as host
from .conftest import all_devices

MATRICES = [m for m in Matrix]
DEPTHS = (8, 10, 12, 16)
LAYOUTS = [(s, loc) for s in ("420", "422", "444") for loc in ("left", "center", "topleft", "top")]
RGB_DTYPES = host.RGB_DTYPES
SIZE = (23, 41)  # odd both ways: the last chroma sample repeats the edge
CUDA = all_devices()[1]  # skipped without a GPU unless FAIL_WITHOUT_CUDA is set


def spec_of(matrix: Matrix, full: bool, depth: int, subsampling: str = "420", loc: str = "left") -> ColourSpec:
    if matrix is Matrix.RGB:
        subsampling = "444"
    return ColourSpec(matrix=matrix, full_range=full, bit_depth=depth, subsampling=subsampling, chroma_loc=loc)


def random_frames(layout: PlaneLayout, depth: int, frames: int, seed: int) -> np.ndarray:
    """Packed frames, codes over the whole depth (out-of-range codes exercise the clamps)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**depth, frames * layout.frame, dtype=np.int64).astype(layout.dtype)


def reference_rgb(buffer: np.ndarray, layout: PlaneLayout, spec: ColourSpec, frames: int) -> torch.Tensor:
    """colour.py in float64."""
    return torch.stack([colour.planes_to_rgb([torch.from_numpy(p.astype(np.int64)) for p in layout.views(buffer, k)],
                                             spec, dtype=torch.float64) for k in range(frames)])


def reference_planes(rgb: torch.Tensor, spec: ColourSpec) -> list[np.ndarray]:
    """colour.py in float64 on the same (possibly fp16/bf16) values."""
    return [p.numpy().astype(np.int64) for p in colour.rgb_to_planes(rgb.double(), spec)]


def check_codes(ours: list[np.ndarray], ref: list[np.ndarray]) -> None:
    """float32 may round a value within ~1e-7 of a tie the other way (~0.2% of 16-bit codes,
    fewer at lower depths); anything more is a wrong index, filter or matrix."""
    assert [o.shape for o in ours] == [r.shape for r in ref]
    diff = np.concatenate([np.abs(o.astype(np.int64) - r).ravel() for o, r in zip(ours, ref)])
    assert diff.max() <= 1, diff.max()
    assert (diff == 0).mean() >= 0.99


# ---------------------------------------------------------------------------------------------
# Coefficients: float64, every matrix, range and depth


@pytest.mark.parametrize("matrix", MATRICES)
@pytest.mark.parametrize("full", [False, True], ids=["limited", "full"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_coefficients_are_colour_py_in_float64(matrix, full, depth):
    spec = spec_of(matrix, full, depth, "444")
    gen = torch.Generator().manual_seed(depth)
    planes = torch.randint(0, 2**depth, (3, 5, 6), generator=gen, dtype=torch.float64)
    m, b = colour_cuda.to_rgb_coefficients(spec)
    ours = (np.einsum("ij,jhw->ihw", m, planes.numpy()) + b[:, None, None]).clip(0, 1)
    ref = colour.planes_to_rgb(list(planes), spec, dtype=torch.float64)
    assert np.allclose(ours, ref.numpy(), atol=1e-12)
    rgb = torch.rand(3, 5, 6, generator=gen, dtype=torch.float64)
    m, b, (lo0, hi0), (lo1, hi1) = colour_cuda.to_planes_coefficients(spec)
    codes = np.einsum("ij,jhw->ihw", m, rgb.numpy()) + b[:, None, None]
    codes = np.round(codes)
    codes[0], codes[1:] = codes[0].clip(lo0, hi0), codes[1:].clip(lo1, hi1)
    assert np.array_equal(codes.astype(np.int64), np.stack(reference_planes(rgb, spec)))


# ---------------------------------------------------------------------------------------------
# The kernels' C source, built for the host


def call_host(lib, name: str, values: dict) -> None:
    host.call(lib, name, values)


@pytest.mark.parametrize("matrix", MATRICES)
@pytest.mark.parametrize("full", [False, True], ids=["limited", "full"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_host_build_of_kernels_matches_colour_py(host_kernels, matrix, full, depth):
    h, w = SIZE
    frames = 2
    layouts = LAYOUTS if matrix is not Matrix.RGB else [("444", "left")]
    for (subsampling, loc), dtype in itertools.product(layouts, RGB_DTYPES):
        spec = spec_of(matrix, full, depth, subsampling, loc)
        layout = PlaneLayout.for_spec(spec, w, h)
        lib = host_kernels[layout.itemsize, dtype]
        label = f"{subsampling} {loc} {dtype}"
        # planes -> RGB, into a channels_last batch (the model's layout)
        if dtype is not torch.bfloat16:  # the model's input is never bf16
            src = random_frames(layout, depth, frames, seed=depth)
            dst = torch.full((frames, 3, h, w), -1.0, dtype=dtype).contiguous(memory_format=torch.channels_last)
            call_host(lib, "planes_to_rgb", colour_cuda.to_rgb_args(spec, layout, src.ctypes.data, dst, frames))
            ref = reference_rgb(src, layout, spec, frames)
            tol = 1e-5 if dtype is torch.float32 else 1e-3
            assert torch.allclose(dst.double(), ref, atol=tol), label
        # RGB -> planes, from a contiguous batch with values outside [0, 1] too
        gen = torch.Generator().manual_seed(depth + 1)
        rgb = (torch.rand(frames, 3, h, w, generator=gen) * 1.2 - 0.1).to(dtype)
        out = np.full(frames * layout.frame, 7, dtype=layout.dtype)
        call_host(lib, "rgb_to_planes", colour_cuda.to_planes_args(spec, layout, rgb, out.ctypes.data, frames))
        for k in range(frames):
            check_codes(list(layout.views(out, k)), reference_planes(rgb[k], spec))


def test_layout_shapes():
    spec = spec_of(Matrix.BT709, False, 10, "420")
    layout = PlaneLayout.for_spec(spec, 11, 7)
    assert layout.shapes == ((7, 11), (4, 6), (4, 6)) and layout.itemsize == 2
    assert layout.offsets == (0, 77, 101) and layout.frame == 125
    assert PlaneLayout.for_spec(spec_of(Matrix.BT709, False, 8, "422"), 11, 7).shapes[1] == (7, 6)


def test_rebind_replaces_only_the_addresses():
    spec = spec_of(Matrix.BT709, False, 8)
    values = colour_cuda.to_planes_args(spec, PlaneLayout.for_spec(spec, 4, 4), torch.zeros(1, 3, 4, 4), 4096, 1)
    launch = colour_cuda.Launch(None, "kernel", TO_PLANES_ARGS, values)
    moved = launch.rebind(src=8192)
    assert moved.args == colour_cuda.pack(TO_PLANES_ARGS, {**values, "src": 8192}) and moved.grid == launch.grid
    assert launch.args == colour_cuda.pack(TO_PLANES_ARGS, values)  # the prepared launch is untouched


def test_pack_refuses_missing_or_extra_arguments():
    values = colour_cuda.to_planes_args(spec_of(Matrix.BT601, False, 8), PlaneLayout.for_spec(
        spec_of(Matrix.BT601, False, 8), 4, 4), torch.zeros(1, 3, 4, 4), 0, 1)
    packed = colour_cuda.pack(TO_PLANES_ARGS, values)
    assert len(packed) == len(TO_PLANES_ARGS) and packed[0].dtype == np.uint64
    with pytest.raises(ValueError, match="differ"):
        colour_cuda.pack(TO_PLANES_ARGS, {**values, "extra": 1})


# ---------------------------------------------------------------------------------------------
# NVRTC: the CUDA build compiles, and its parameters are the sizes `pack` sends


def nvrtc_ptx(source: str) -> str:
    nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    try:
        prog = nvrtc.createProgram(source, "colour.cu", [], [])
    except Exception as e:  # noqa: BLE001 - libnvrtc missing
        pytest.skip(f"NVRTC not usable: {e}")
    try:
        nvrtc.compileProgram(prog, ["--gpu-architecture=compute_90", *colour_cuda.NVRTC_OPTIONS])
    except nvrtc.NVRTCError:
        pytest.fail(nvrtc.getProgramLog(prog))
    return nvrtc.getPTX(prog).decode()


_PTX_SIZES = {".u64": 8, ".u32": 4, ".f32": 4, ".s64": 8, ".s32": 4, ".b64": 8, ".b32": 4}


@pytest.mark.parametrize("itemsize", [1, 2])
@pytest.mark.parametrize("dtype", RGB_DTYPES)
def test_nvrtc_compiles_and_parameters_match(itemsize, dtype):
    ptx = nvrtc_ptx(colour_cuda.kernel_source(itemsize, dtype))
    for name, spec in (("planes_to_rgb", TO_RGB_ARGS), ("rgb_to_planes", TO_PLANES_ARGS)):
        entry = re.search(rf"\.entry {name}\((.*?)\)", ptx, re.S).group(1)
        sizes = [_PTX_SIZES[t] for t in re.findall(r"\.param (\.\w+)", entry)]
        want = [8 if t.endswith("*") or t == colour_cuda.I64 else 4 for _, t in spec]
        assert sizes == want, name


# ---------------------------------------------------------------------------------------------
# On the GPU (cuda only): the same comparisons through CuPy


def launch_on(side: torch.cuda.Stream, launch) -> None:
    """`launch` on the side stream, ordered after everything already queued on the current stream
    (the torch ops that made its inputs) and before everything queued there afterwards (the
    reads of its output, and the allocator's reuse of its tensors' memory once they are freed)."""
    current = torch.cuda.current_stream(side.device)
    side.wait_stream(current)
    launch(side)
    current.wait_stream(side)


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize("depth", [8, 10, 16])
def test_cuda_kernels_match_colour_py(device, depth):
    dev = torch.device("cuda", torch.cuda.current_device())  # one index for torch and CuPy
    kernels = colour_cuda.CudaColour(dev)
    side = torch.cuda.Stream(dev)
    h, w = 37, 50
    for matrix, full in itertools.product(MATRICES, (False, True)):
        layouts = LAYOUTS if matrix is not Matrix.RGB else [("444", "left")]
        for (subsampling, loc), dtype in itertools.product(layouts, RGB_DTYPES):
            spec = spec_of(matrix, full, depth, subsampling, loc)
            layout = PlaneLayout.for_spec(spec, w, h)
            label = f"{matrix.value} {full} {subsampling} {loc} {dtype}"
            if dtype is not torch.bfloat16:
                host = random_frames(layout, depth, 3, seed=depth)
                src = torch.from_numpy(host.view(np.uint8)).to(dev)
                dst = torch.empty(3, 3, h, w, dtype=dtype, device=dev).contiguous(memory_format=torch.channels_last)
                values = colour_cuda.to_rgb_args(spec, layout, src.data_ptr(), dst, 3)
                launch_on(side, kernels.launcher("planes_to_rgb", layout.itemsize, dtype, values))
                ref = reference_rgb(host, layout, spec, 3)
                assert torch.allclose(dst.double().cpu(), ref, atol=1e-5 if dtype is torch.float32 else 1e-3), label
            rgb = (torch.rand(3, 3, h, w, device=dev) * 1.2 - 0.1).to(dtype)
            out = torch.zeros(3 * layout.frame * layout.itemsize, dtype=torch.uint8, device=dev)
            values = colour_cuda.to_planes_args(spec, layout, rgb, out.data_ptr(), 3)
            launch_on(side, kernels.launcher("rgb_to_planes", layout.itemsize, dtype, values))
            planes = out.cpu().numpy().view(layout.dtype)
            for k in range(3):
                check_codes(list(layout.views(planes, k)), reference_planes(rgb[k].cpu(), spec))
    side.synchronize()
