"""The numba loops of the CPU depthwise conv on contiguous (B, C, T, H, W) tensors, one (b, c) plane at a time.

The caller (``cpu_depthwise``, by torch's strided copies) zero-pads each plane of the input and splits it into its
``S = st * sh * sw`` stride phases (the polyphase form: phase ``(rt, rh, rw)`` holds ``x_pad[rt::st, rh::sh,
rw::sw]``), each phase a (Tq + 1, Hq, Wq) block (one spare zero T-slice at the end), flattened to ``Lq`` values.
In that form every tap ``k = (a, i, j)`` of a strided conv reads its phase at a fixed flat offset ``off_k = (a //
st) Hq Wq + (i // sh) Wq + j // sw`` from the output position ``(to, ho, wo)``, stored at ``to Hq Wq + ho Wq +
wo``. So the forward is K contiguous multiply-adds of length ``L = To Hq Wq``, the weight gradient K dot products of
that length and the input gradient K contiguous multiply-adds into the phases: long unit-stride loops that LLVM
vectorises whatever the channel count, the stride or the size of the plane (the channels-last loops of
``numba_depthwise`` vectorise over the channels, which is slow at X3D's 8 and 18 channels). Positions with
``ho >= Ho`` or ``wo >= Wo`` are computed and dropped by the caller (the forward) or carry a zero ``gy`` (the
backward); the spare T-slice keeps their reads inside the block. Slices, not offset indices, feed the loops: numba
wraps negative indices, and an index it cannot prove non-negative keeps LLVM from vectorising (5x slower).

Arrays are NumPy views of torch tensors (float32 or float64); the loops run over the B * C planes, serially or in
parallel (each plane writes only its own outputs and its own row of the weight-gradient partials). Compiled on
first use and cached on disk by numba (``cache=True``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

__all__ = ["backward", "forward", "geometry", "taps"]

_JIT: dict[str, Any] = {"fastmath": True, "cache": True, "nogil": True}
Triple = tuple[int, int, int]


def geometry(size: Triple, kernel: Triple, stride: Triple, padding: Triple) -> tuple[Triple, Triple]:
    """(output size (To, Ho, Wo), phase block size (Tq, Hq, Wq)) of a conv of an input of ``size`` (T, H, W)."""
    out = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding))
    block = tuple(max(-(-(n + 2 * p) // s), o + (k - 1) // s)
                  for n, k, s, p, o in zip(size, kernel, stride, padding, out))
    return (out[0], out[1], out[2]), (block[0], block[1], block[2])


def taps(kernel: Triple, stride: Triple, block: Triple) -> tuple[Any, Any]:
    """(phase (K,), flat offset (K,)) of each tap k = (a kh + i) kw + j in phase blocks of ``block`` (Tq, Hq, Wq)."""
    kt, kh, kw = kernel
    st, sh, sw = stride
    _, hq, wq = block
    phase = np.empty(kt * kh * kw, dtype=np.int64)
    off = np.empty(kt * kh * kw, dtype=np.int64)
    for a in range(kt):
        for i in range(kh):
            for j in range(kw):
                k = (a * kh + i) * kw + j
                phase[k] = ((a % st) * sh + i % sh) * sw + j % sw
                off[k] = (a // st) * hq * wq + (i // sh) * wq + j // sw
    return phase, off


@numba.njit(**_JIT)  # type: ignore[untyped-decorator]
def _forward_plane(xf: Any, w: Any, phase: Any, off: Any, acc: Any, n: int) -> None:
    """acc[n] (L,) = the conv of plane n (xf[n] (S, Lq)) with its channel's taps w[n % C] (K,), at the flat
    positions of the phase blocks."""
    length = acc.shape[1]
    out = acc[n]
    out[:] = 0.0
    wn = w[n % w.shape[0]]
    for k in range(phase.shape[0]):
        wk = wn[k]
        src = xf[n, phase[k], off[k]:off[k] + length]  # slices: a non-negative index vectorises (no wrap-around)
        for q in range(length):
            out[q] += wk * src[q]


@numba.njit(**_JIT)  # type: ignore[untyped-decorator]
def _backward_plane(xf: Any, ge: Any, w: Any, phase: Any, off: Any, gq: Any, part: Any, need_x: bool,
                    need_w: bool, n: int) -> None:
    """Plane n's gradients from ge[n] (L,), gy at the flat positions (zero elsewhere): gq[n] (S, Lq), the input
    gradient in phase blocks, and part[n] (K,), the weight gradient, summed in the arrays' dtype."""
    length = ge.shape[1]
    g = ge[n]
    zero = np.zeros(1, dtype=ge.dtype)[0]
    if need_x:
        gq[n] = 0.0
    wn = w[n % w.shape[0]]
    for k in range(phase.shape[0]):
        if need_w:
            src = xf[n, phase[k], off[k]:off[k] + length]
            acc = zero
            for q in range(length):
                acc += g[q] * src[q]
            part[n, k] = acc
        if need_x:
            wk = wn[k]
            dst = gq[n, phase[k], off[k]:off[k] + length]
            for q in range(length):
                dst[q] += wk * g[q]


@numba.njit(**_JIT)  # type: ignore[untyped-decorator]
def _forward_serial(xf: Any, w: Any, phase: Any, off: Any, acc: Any) -> None:
    for n in range(acc.shape[0]):
        _forward_plane(xf, w, phase, off, acc, n)


@numba.njit(parallel=True, **_JIT)  # type: ignore[untyped-decorator]
def _forward_parallel(xf: Any, w: Any, phase: Any, off: Any, acc: Any) -> None:
    for n in numba.prange(acc.shape[0]):  # each plane writes only acc[n]
        _forward_plane(xf, w, phase, off, acc, n)


@numba.njit(**_JIT)  # type: ignore[untyped-decorator]
def _backward_serial(xf: Any, ge: Any, w: Any, phase: Any, off: Any, gq: Any, part: Any, need_x: bool,
                     need_w: bool) -> None:
    for n in range(ge.shape[0]):
        _backward_plane(xf, ge, w, phase, off, gq, part, need_x, need_w, n)


@numba.njit(parallel=True, **_JIT)  # type: ignore[untyped-decorator]
def _backward_parallel(xf: Any, ge: Any, w: Any, phase: Any, off: Any, gq: Any, part: Any, need_x: bool,
                       need_w: bool) -> None:
    for n in numba.prange(ge.shape[0]):  # each plane writes only gq[n] and part[n]
        _backward_plane(xf, ge, w, phase, off, gq, part, need_x, need_w, n)


def forward(xf: Any, w: Any, tap: tuple[Any, Any], acc: Any, parallel: bool) -> None:
    """acc (N, L) = each plane n of xf (N, S, Lq) convolved with its channel's taps w[n % C] (w: (C, K))."""
    (_forward_parallel if parallel else _forward_serial)(xf, w, tap[0], tap[1], acc)


def backward(xf: Any, ge: Any, w: Any, tap: tuple[Any, Any], gq: Any, part: Any, need_x: bool, need_w: bool,
             parallel: bool) -> None:
    """gq (N, S, Lq) and part (N, K) from ge (N, L), xf (N, S, Lq) and w (C, K); gq is zeroed here."""
    (_backward_parallel if parallel else _backward_serial)(xf, ge, w, tap[0], tap[1], gq, part, need_x, need_w)
