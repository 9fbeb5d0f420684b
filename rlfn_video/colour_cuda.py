"""The colour conversions of `colour.py` as two fused CUDA kernels (CuPy), same contract.

`planes_to_rgb`: integer planes (Y, U, V or G, B, R) -> R'G'B' in [0, 1] as float32 or fp16,
chroma upsampled bilinearly at its sited position, one thread per output pixel.
`rgb_to_planes`: R'G'B' (float32, fp16 or bf16) -> integer planes, chroma averaged with the
2-tap box / [1, 2, 1] / 4 filter of its siting, rounded half to even (like `torch.round`) and
clamped to the nominal range; one thread per chroma sample, which also writes the luma block
(2x2 at 4:2:0) it covers.

Both kernels only evaluate `out = M @ in + b` around the resampling; M, b and the clamps are
derived here in float64 from colour.py's own tables (`_KR_KB`, `_levels`), so the numbers live in
one place. The C source compiles for the GPU with NVRTC and, unchanged, as plain C on the host:
the tests run that host build against colour.py on machines without a GPU. Argument lists are
declared once (`TO_RGB_ARGS`, `TO_PLANES_ARGS`) and the C signatures are generated from them.

CuPy is imported only when a kernel is built (`CudaColour`); nothing here needs a GPU otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .colour import _COSITED, ColourSpec, Matrix, _kr_kb, _levels, _subsampled_axes, sample_dtype
from .devices import resolve_device
from .errors import RlfnError

I64, I32, F32 = "long long", "int", "float"
_M = tuple((f"m{i}{j}", F32) for i in range(3) for j in range(3)) + (("b0", F32), ("b1", F32), ("b2", F32))

# (name, C type). Offsets, pitches and steps count samples, not bytes.
TO_RGB_ARGS: tuple[tuple[str, str], ...] = (
    ("src", "const PLANE_T*"), ("frame_stride", I64),
    ("off0", I64), ("pitch0", I64), ("off1", I64), ("pitch1", I64), ("step1", I64),
    ("off2", I64), ("pitch2", I64), ("step2", I64),
    ("height", I32), ("width", I32), ("c_height", I32), ("c_width", I32), ("site_y", F32), ("site_x", F32),
    *_M,
    ("dst", "RGB_T*"), ("d_n", I64), ("d_c", I64), ("d_y", I64), ("d_x", I64), ("total", I64),
)
TO_PLANES_ARGS: tuple[tuple[str, str], ...] = (
    ("src", "const RGB_T*"), ("s_n", I64), ("s_c", I64), ("s_y", I64), ("s_x", I64),
    ("height", I32), ("width", I32), ("c_height", I32), ("c_width", I32), ("block_y", I32), ("block_x", I32),
    ("ty0", F32), ("ty1", F32), ("ty2", F32), ("tx0", F32), ("tx1", F32), ("tx2", F32),
    *_M, ("lo0", F32), ("hi0", F32), ("lo1", F32), ("hi1", F32),
    ("dst", "PLANE_T*"), ("frame_stride", I64),
    ("off0", I64), ("pitch0", I64), ("off1", I64), ("pitch1", I64), ("off2", I64), ("pitch2", I64),
    ("total", I64),
)

_PREAMBLE = r"""
#if defined(__CUDACC__)
#define KERNEL extern "C" __global__
#define DEVICE __device__ __forceinline__
/* One thread per work item; the body follows as a block. */
#define FOR_EACH(i, n) const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; if (i < (n))
DEVICE float h2f(unsigned short h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
DEVICE unsigned short f2h(float f) { unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
DEVICE float bf2f(unsigned short h) { return __uint_as_float(((unsigned int)h) << 16); }
DEVICE unsigned int f2u(float f) { return __float_as_uint(f); }
#else  /* host build for the tests: the same bodies in a sequential loop */
#include <math.h>
#include <string.h>
#define KERNEL
#define DEVICE static inline
#define FOR_EACH(i, n) for (long long i = 0; i < (n); ++i)
DEVICE float h2f(unsigned short h) { _Float16 v; memcpy(&v, &h, 2); return (float)v; }
DEVICE unsigned short f2h(float f) { _Float16 v = (_Float16)f; unsigned short h; memcpy(&h, &v, 2); return h; }
DEVICE float bf2f(unsigned short h) { unsigned int u = ((unsigned int)h) << 16; float f; memcpy(&f, &u, 4); return f; }
DEVICE unsigned int f2u(float f) { unsigned int u; memcpy(&u, &f, 4); return u; }
#endif
/* float -> bf16, round to nearest even (finite values; NaN never reaches here after clamping) */
DEVICE unsigned short f2bf(float f) { unsigned int u = f2u(f); return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16); }
DEVICE int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
DEVICE float clamp01(float v) { return fminf(fmaxf(v, 0.0f), 1.0f); }
/* colour._quantize: round half to even, then clamp */
DEVICE float quantize(float v, float lo, float hi) { return fminf(fmaxf(rintf(v), lo), hi); }
"""

_BODY = r"""
/* colour._upsample_axis for one output index: chroma taps i0, i1 and weight w. */
DEVICE void site(int i, int n_luma, int n_chroma, float offset, int* i0, int* i1, float* w) {
    if (n_chroma == n_luma) { *i0 = i; *i1 = i; *w = 0.0f; return; }
    float pos = fminf(fmaxf((float)i * 0.5f + offset, 0.0f), (float)(n_chroma - 1));
    int a = (int)floorf(pos);
    *i0 = a; *i1 = a + 1 < n_chroma ? a + 1 : n_chroma - 1; *w = pos - (float)a;
}

DEVICE float tap(const PLANE_T* p, long long pitch, long long step, int y, int x) {
    return (float)p[(long long)y * pitch + (long long)x * step];
}

/* Bilinear, vertical first as in colour.yuv_to_rgb. */
DEVICE float upsample(const PLANE_T* p, long long pitch, long long step, int y0, int y1, float wy,
                      int x0, int x1, float wx) {
    float a0 = tap(p, pitch, step, y0, x0), b0 = tap(p, pitch, step, y1, x0);
    float a1 = tap(p, pitch, step, y0, x1), b1 = tap(p, pitch, step, y1, x1);
    float c0 = a0 + (b0 - a0) * wy, c1 = a1 + (b1 - a1) * wy;
    return c0 + (c1 - c0) * wx;
}

KERNEL void planes_to_rgb(TO_RGB_SIGNATURE) {
    FOR_EACH(i, total) {
        const long long plane = (long long)height * width;
        const long long n = i / plane;
        const long long r = i - n * plane;
        const int y = (int)(r / width);
        const int x = (int)(r - (long long)y * width);
        const PLANE_T* f = src + n * frame_stride;
        int y0, y1, x0, x1;
        float wy, wx;
        site(y, height, c_height, site_y, &y0, &y1, &wy);
        site(x, width, c_width, site_x, &x0, &x1, &wx);
        const float p0 = (float)f[off0 + (long long)y * pitch0 + x];
        const float p1 = upsample(f + off1, pitch1, step1, y0, y1, wy, x0, x1, wx);
        const float p2 = upsample(f + off2, pitch2, step2, y0, y1, wy, x0, x1, wx);
        RGB_T* d = dst + n * d_n + (long long)y * d_y + (long long)x * d_x;
        STORE_RGB(d, 0, clamp01(m00 * p0 + m01 * p1 + m02 * p2 + b0));
        STORE_RGB(d, d_c, clamp01(m10 * p0 + m11 * p1 + m12 * p2 + b1));
        STORE_RGB(d, 2 * d_c, clamp01(m20 * p0 + m21 * p1 + m22 * p2 + b2));
    }
}

KERNEL void rgb_to_planes(TO_PLANES_SIGNATURE) {
    FOR_EACH(i, total) {
        const long long cplane = (long long)c_height * c_width;
        const long long n = i / cplane;
        const long long r = i - n * cplane;
        const int cy = (int)(r / c_width);
        const int cx = (int)(r - (long long)cy * c_width);
        const RGB_T* s = src + n * s_n;
        PLANE_T* f = dst + n * frame_stride;
        /* the luma (plane 0) samples of this chroma sample's block */
        for (int dy = 0; dy < block_y; ++dy) {
            const int y = cy * block_y + dy;
            if (y >= height) break;
            for (int dx = 0; dx < block_x; ++dx) {
                const int x = cx * block_x + dx;
                if (x >= width) break;
                const RGB_T* p = s + (long long)y * s_y + (long long)x * s_x;
                const float v = m00 * LOAD_RGB(p, 0) + m01 * LOAD_RGB(p, s_c) + m02 * LOAD_RGB(p, 2 * s_c) + b0;
                f[off0 + (long long)y * pitch0 + x] = (PLANE_T)quantize(v, lo0, hi0);
            }
        }
        /* chroma: taps at -1, 0, +1 around the block origin (colour._downsample_axis); the
           matrix is linear, so filtering R'G'B' first equals filtering Pb/Pr */
        const float ty[3] = {ty0, ty1, ty2};
        const float tx[3] = {tx0, tx1, tx2};
        float cr = 0.0f, cg = 0.0f, cb = 0.0f;
        for (int a = 0; a < 3; ++a) {
            if (ty[a] == 0.0f) continue;
            const int y = clampi(cy * block_y + a - 1, 0, height - 1);
            for (int c = 0; c < 3; ++c) {
                if (tx[c] == 0.0f) continue;
                const int x = clampi(cx * block_x + c - 1, 0, width - 1);
                const RGB_T* p = s + (long long)y * s_y + (long long)x * s_x;
                const float w = ty[a] * tx[c];
                cr += w * LOAD_RGB(p, 0);
                cg += w * LOAD_RGB(p, s_c);
                cb += w * LOAD_RGB(p, 2 * s_c);
            }
        }
        f[off1 + (long long)cy * pitch1 + cx] = (PLANE_T)quantize(m10 * cr + m11 * cg + m12 * cb + b1, lo1, hi1);
        f[off2 + (long long)cy * pitch2 + cx] = (PLANE_T)quantize(m20 * cr + m21 * cg + m22 * cb + b2, lo1, hi1);
    }
}
"""

# torch dtype of the RGB side -> (C storage type, load, store)
_RGB_TYPES = {
    torch.float32: ("float", "((float)(p)[k])", "((p)[k] = (v))"),
    torch.float16: ("unsigned short", "h2f((p)[k])", "((p)[k] = f2h(v))"),
    torch.bfloat16: ("unsigned short", "bf2f((p)[k])", "((p)[k] = f2bf(v))"),
}


def _signature(args: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{ctype} {name}" for name, ctype in args)


def kernel_source(plane_itemsize: int, rgb_dtype: torch.dtype) -> str:
    """C source of both kernels for one plane sample size (1 or 2 bytes) and RGB dtype."""
    if plane_itemsize not in (1, 2) or rgb_dtype not in _RGB_TYPES:
        raise ValueError(f"no colour kernel for {plane_itemsize}-byte planes and {rgb_dtype} RGB")
    ctype, load, store = _RGB_TYPES[rgb_dtype]
    defines = (f"#define PLANE_T {'unsigned char' if plane_itemsize == 1 else 'unsigned short'}\n"
               f"#define RGB_T {ctype}\n#define LOAD_RGB(p, k) {load}\n#define STORE_RGB(p, k, v) {store}\n"
               f"#define TO_RGB_SIGNATURE {_signature(TO_RGB_ARGS)}\n"
               f"#define TO_PLANES_SIGNATURE {_signature(TO_PLANES_ARGS)}\n")
    return defines + _PREAMBLE + _BODY


# ---------------------------------------------------------------------------------------------
# Coefficients, from colour.py's tables


def _ycbcr_from_rgb(matrix: Matrix) -> np.ndarray:
    """E with (Y', Pb, Pr) = E @ (R', G', B'), the H.273 encoding equations."""
    kr, kb = _kr_kb(matrix)
    kg = 1 - kr - kb
    return np.array([[kr, kg, kb],
                     [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
                     [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))]])


# plane order of RGB sources is G, B, R: P[:, (r, g, b)] picks the plane of each of R', G', B'
_GBR = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float64)


def to_rgb_coefficients(spec: ColourSpec) -> tuple[np.ndarray, np.ndarray]:
    """(M, b) with R'G'B' = M @ planes + b (then clamped to [0, 1]), as colour.planes_to_rgb."""
    if spec.matrix is Matrix.RGB:
        return _GBR / (2**spec.bit_depth - 1), np.zeros(3)
    y0, ys, c0, cs = _levels(spec.full_range, spec.bit_depth)
    m = np.linalg.inv(_ycbcr_from_rgb(spec.matrix)) @ np.diag([1 / ys, 1 / cs, 1 / cs])
    return m, -m @ np.array([y0, c0, c0])


def to_planes_coefficients(spec: ColourSpec) -> tuple[np.ndarray, np.ndarray, tuple[float, float], tuple[float, float]]:
    """(M, b, (lo, hi) of plane 0, (lo, hi) of planes 1-2) with planes = clamp(round(M @ rgb + b)),
    as colour.rgb_to_planes."""
    if spec.matrix is Matrix.RGB:
        top = float(2**spec.bit_depth - 1)
        return _GBR.T * top, np.zeros(3), (0.0, top), (0.0, top)
    y0, ys, c0, cs = _levels(spec.full_range, spec.bit_depth)
    c_lo, c_hi = (0.0, ys) if spec.full_range else (c0 - cs / 2, c0 + cs / 2)
    return np.diag([ys, cs, cs]) @ _ycbcr_from_rgb(spec.matrix), np.array([y0, c0, c0]), (y0, y0 + ys), (c_lo, c_hi)


def _matrix_args(m: np.ndarray, b: np.ndarray) -> dict[str, float]:
    out = {f"m{i}{j}": float(m[i, j]) for i in range(3) for j in range(3)}
    out.update(b0=float(b[0]), b1=float(b[1]), b2=float(b[2]))
    return out


def _taps(subsampled: bool, cosited: bool) -> tuple[float, float, float]:
    """Weights of samples -1, 0, +1 around 2j (colour._downsample_axis), or j itself."""
    if not subsampled:
        return 0.0, 1.0, 0.0
    return (0.25, 0.5, 0.25) if cosited else (0.0, 0.5, 0.5)


# ---------------------------------------------------------------------------------------------
# Plane layout and launch arguments


@dataclass(frozen=True)
class PlaneLayout:
    """Three planes packed back to back per frame, frames back to back, rows without padding.

    Integer planes (Y, U, V or G, B, R; uint8 or uint16) for the kernels, or float R, G, B planes
    (VapourSynth RGBS/RGBH), which a lane only casts."""

    shapes: tuple[tuple[int, int], ...]  # (height, width) of each plane
    dtype: np.dtype

    @classmethod
    def for_spec(cls, spec: ColourSpec, width: int, height: int) -> "PlaneLayout":
        vert, horiz = _subsampled_axes(spec.subsampling)
        ch, cw = (math.ceil(height / 2) if vert else height), (math.ceil(width / 2) if horiz else width)
        return cls(((height, width), (ch, cw), (ch, cw)), sample_dtype(spec.bit_depth))

    @classmethod
    def rgb(cls, width: int, height: int, dtype: np.dtype) -> "PlaneLayout":
        return cls(((height, width),) * 3, np.dtype(dtype))

    @classmethod
    def of(cls, planes: Sequence[np.ndarray]) -> "PlaneLayout":
        """The layout of these three planes."""
        return cls(tuple(tuple(p.shape) for p in planes[:3]), planes[0].dtype)

    @property
    def is_float(self) -> bool:
        return self.dtype.kind == "f"

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def offsets(self) -> tuple[int, int, int]:
        sizes = [h * w for h, w in self.shapes]
        return 0, sizes[0], sizes[0] + sizes[1]

    @property
    def frame(self) -> int:
        """Samples per frame."""
        return sum(h * w for h, w in self.shapes)

    def views(self, buffer, k: int) -> tuple:
        """The planes of frame k inside `buffer` (1-D numpy array or tensor of this layout's dtype)."""
        base = k * self.frame
        return tuple(buffer[base + o: base + o + h * w].reshape(h, w) for o, (h, w) in zip(self.offsets, self.shapes))


def to_rgb_args(spec: ColourSpec, layout: PlaneLayout, src: int, dst: torch.Tensor, count: int) -> dict[str, Any]:
    """Arguments of planes_to_rgb: frames at `src` (a device address) -> dst (N, 3, H, W), any strides."""
    (h, w), (ch, cw), _ = layout.shapes
    h_cosited, v_cosited = _COSITED[spec.chroma_loc]
    o = layout.offsets
    sn, sc, sy, sx = dst.stride()
    return dict(src=src, frame_stride=layout.frame, off0=o[0], pitch0=w, off1=o[1], pitch1=cw, step1=1, off2=o[2],
                pitch2=cw, step2=1, height=h, width=w, c_height=ch, c_width=cw,
                site_y=0.0 if v_cosited else -0.25, site_x=0.0 if h_cosited else -0.25,
                **_matrix_args(*to_rgb_coefficients(spec)), dst=dst.data_ptr(), d_n=sn, d_c=sc, d_y=sy, d_x=sx,
                total=count * h * w)


def to_planes_args(spec: ColourSpec, layout: PlaneLayout, src: torch.Tensor, dst: int, count: int) -> dict[str, Any]:
    """Arguments of rgb_to_planes: src (N, 3, H, W), any strides -> frames at `dst` (a device address)."""
    (h, w), (ch, cw), _ = layout.shapes
    vert, horiz = _subsampled_axes(spec.subsampling)
    h_cosited, v_cosited = _COSITED[spec.chroma_loc]
    m, b, (lo0, hi0), (lo1, hi1) = to_planes_coefficients(spec)
    ty, tx = _taps(vert, v_cosited), _taps(horiz, h_cosited)
    sn, sc, sy, sx = src.stride()
    o = layout.offsets
    return dict(src=src.data_ptr(), s_n=sn, s_c=sc, s_y=sy, s_x=sx, height=h, width=w, c_height=ch, c_width=cw,
                block_y=2 if vert else 1, block_x=2 if horiz else 1, ty0=ty[0], ty1=ty[1], ty2=ty[2], tx0=tx[0],
                tx1=tx[1], tx2=tx[2], **_matrix_args(m, b), lo0=lo0, hi0=hi0, lo1=lo1, hi1=hi1, dst=dst,
                frame_stride=layout.frame, off0=o[0], pitch0=w, off1=o[1], pitch1=cw, off2=o[2], pitch2=cw,
                total=count * ch * cw)


_NP_TYPES = {I64: np.int64, I32: np.int32, F32: np.float32}


def pack(args: Sequence[tuple[str, str]], values: dict[str, Any]) -> tuple:
    """Values in signature order, as the exact C types (pointers as 64-bit addresses)."""
    if set(values) != {n for n, _ in args}:
        raise ValueError(f"kernel arguments differ: {sorted(set(values) ^ {n for n, _ in args})}")
    return tuple(np.uint64(values[n]) if t.endswith("*") else _NP_TYPES[t](values[n]) for n, t in args)


# ---------------------------------------------------------------------------------------------
# Launching with CuPy

_BLOCK = 256
NVRTC_OPTIONS = ("--fmad=false",)  # no fused multiply-add: rounding as colour.py's separate steps


class CudaColour:
    """Compiled kernels of one device, by (plane itemsize, RGB dtype); launches on torch streams."""

    def __init__(self, device: str | torch.device):
        import cupy  # deferred: the CPU path never needs CuPy

        self._cp = cupy
        # One explicit index for CuPy and torch alike: a bare "cuda" is torch's current device,
        # while CuPy would take its own current device (see Note [indexed CUDA devices]).
        self.device = resolve_device(device)
        if self.device.type != "cuda":
            raise RlfnError(f"the CuPy colour kernels run on a CUDA device, not {self.device}")
        self.index: int = self.device.index
        self._modules: dict[tuple[int, torch.dtype], Any] = {}
        self._streams: dict[int, Any] = {}

    def _kernel(self, name: str, itemsize: int, rgb_dtype: torch.dtype) -> Any:
        key = (itemsize, rgb_dtype)
        if key not in self._modules:
            try:
                with self._cp.cuda.Device(self.index):
                    module = self._cp.RawModule(code=kernel_source(itemsize, rgb_dtype), options=NVRTC_OPTIONS)
                    module.compile()
            except Exception as e:  # NVRTC missing or refusing: say what failed, keep the cause
                raise RlfnError(f"CuPy could not build the colour kernels ({type(e).__name__}: {e})") from e
            self._modules[key] = module
        return self._modules[key].get_function(name)

    def stream(self, stream: torch.cuda.Stream) -> Any:
        """CuPy's view of a torch stream (same CUstream), made once per stream."""
        if stream.cuda_stream not in self._streams:
            if stream.device != self.device:
                raise RlfnError(f"a stream of {stream.device} cannot run the colour kernels of {self.device}")
            cp = self._cp
            try:
                wrapped = cp.cuda.Stream.from_external(stream)
            except (AttributeError, TypeError, ValueError):  # torch without the CUDA stream protocol
                wrapped = cp.cuda.ExternalStream(stream.cuda_stream, self.index)
            self._streams[stream.cuda_stream] = wrapped
        return self._streams[stream.cuda_stream]

    def launcher(self, name: str, itemsize: int, rgb_dtype: torch.dtype, values: dict[str, Any]) -> "Launch":
        return Launch(self, self._kernel(name, itemsize, rgb_dtype), kernel_args(name), values)

    def run(self, launch: "Launch", stream: torch.cuda.Stream) -> None:
        with self._cp.cuda.Device(self.index), self.stream(stream):
            launch.kernel(launch.grid, (_BLOCK,), launch.args)


def kernel_args(name: str) -> tuple[tuple[str, str], ...]:
    return TO_RGB_ARGS if name == "planes_to_rgb" else TO_PLANES_ARGS


class Launch:
    """One kernel with its arguments packed once; calling it enqueues it on a torch stream.
    `owner.run` launches it (CudaColour; the tests' host build stands in with the same call)."""

    def __init__(self, owner: Any, kernel: Any, spec: tuple[tuple[str, str], ...], values: dict[str, Any]):
        self.owner, self.kernel, self.spec = owner, kernel, spec
        self.args = pack(spec, values)
        self.values = values
        self.grid = ((int(values["total"]) + _BLOCK - 1) // _BLOCK,)

    def rebind(self, **pointers: int) -> "Launch":
        """The same launch on other buffers of the same shapes and strides: only the packed
        addresses are replaced (nothing else is packed again; the eager model's output moves per frame)."""
        new = object.__new__(Launch)
        new.__dict__.update(self.__dict__)
        args = list(self.args)
        names = [n for n, _ in self.spec]
        for name, ptr in pointers.items():
            args[names.index(name)] = np.uint64(ptr)
        new.args, new.values = tuple(args), {**self.values, **pointers}
        return new

    def __call__(self, stream: torch.cuda.Stream) -> None:
        self.owner.run(self, stream)
