"""The numba loops of the CPU depthwise conv (``piumr.kernels.cpu_depthwise``), on channels-last arrays.

Imported only when the ``"numba"`` implementation runs (importing numba takes ~0.3 s). Every array is a contiguous
float32 (or float64) NumPy view of a torch tensor laid out (B, T, H, W, C): the innermost loop runs over the contiguous channels,
so LLVM vectorises it whatever the stride or the size of the spatial plane. ``xp`` is the input zero-padded on
(T, H, W); ``w`` is the kernel as (K, C) with tap ``k = (a * kh + i) * kw + j``. The loops run over the batch,
serially in the calling thread (1 thread) or in parallel with ``set_threads`` threads (each sample writes only its
own output).
Compiled on first use and cached on disk by numba (``cache=True``), so later processes load them in ~1 s.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

__all__ = ["forward", "grad_input", "grad_weight", "set_threads"]


def set_threads(n: int) -> None:
    """Use ``n`` numba threads (capped by numba's pool, which has one per core); 1 runs the serial loops in the
    calling thread (no hand-off to a pool thread, which waits for the scheduler on a busy machine)."""
    global _THREADS
    _THREADS = max(1, min(n, int(getattr(numba.config, "NUMBA_NUM_THREADS"))))
    if _THREADS > 1:
        numba.set_num_threads(_THREADS)


_THREADS = 1


def threads() -> int:
    """The number of numba threads the loops run on (1: serial, in the calling thread)."""
    return _THREADS
_JIT: dict[str, Any] = {"fastmath": True, "cache": True, "nogil": True}


@numba.njit(**_JIT)  # type: ignore[untyped-decorator]
def _forward_sample(xp: Any, w: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, y: Any, b: int) -> None:
    """y[b] (To, Ho, Wo, C) = sum over taps k of xp[b] (Tp, Hp, Wp, C) shifted by k, times w[k] (C,)."""
    _, nt, nh, nw, nc = y.shape
    for t in range(nt):
        for h in range(nh):
            for x in range(nw):
                out = y[b, t, h, x]
                out[:] = 0.0
                for a in range(kt):
                    for i in range(kh):
                        for j in range(kw):
                            src = xp[b, t * st + a, h * sh + i, x * sw + j]
                            wk = w[(a * kh + i) * kw + j]
                            for c in range(nc):
                                out[c] += src[c] * wk[c]


@numba.njit(**_JIT)  # type: ignore[untyped-decorator]
def _grad_input_sample(gy: Any, w: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, pt: int, ph: int,
                       pw: int, gx: Any, b: int) -> None:
    """gx[b] (T, H, W, C) = sum over taps k of gy[b] (To, Ho, Wo, C) at the output position that read this input
    position through tap k, times w[k] (C,): a gather, so each element is written once (no zero fill)."""
    _, nt, nh, nw, nc = gx.shape
    to_n, ho_n, wo_n = gy.shape[1], gy.shape[2], gy.shape[3]
    for t in range(nt):
        for h in range(nh):
            for x in range(nw):
                dst = gx[b, t, h, x]
                dst[:] = 0.0
                for a in range(kt):
                    ut = t + pt - a
                    if ut < 0 or ut % st != 0 or ut // st >= to_n:
                        continue
                    for i in range(kh):
                        uh = h + ph - i
                        if uh < 0 or uh % sh != 0 or uh // sh >= ho_n:
                            continue
                        for j in range(kw):
                            uw = x + pw - j
                            if uw < 0 or uw % sw != 0 or uw // sw >= wo_n:
                                continue
                            g = gy[b, ut // st, uh // sh, uw // sw]
                            wk = w[(a * kh + i) * kw + j]
                            for c in range(nc):
                                dst[c] += g[c] * wk[c]


@numba.njit(**_JIT)  # type: ignore[untyped-decorator]
def _grad_weight_sample(xp: Any, gy: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, part: Any,
                        b: int) -> None:
    """part[b] (K, C) = sum over (t, h, w) of gy[b] (To, Ho, Wo, C) * xp[b] (Tp, Hp, Wp, C) shifted by tap k, in
    the arrays' dtype (the caller adds the B samples in float64)."""
    _, nt, nh, nw, nc = gy.shape
    acc = part[b]
    acc[:] = 0.0
    for t in range(nt):
        for h in range(nh):
            for x in range(nw):
                g = gy[b, t, h, x]
                for a in range(kt):
                    for i in range(kh):
                        for j in range(kw):
                            src = xp[b, t * st + a, h * sh + i, x * sw + j]
                            row = acc[(a * kh + i) * kw + j]
                            for c in range(nc):
                                row[c] += g[c] * src[c]


@numba.njit(**_JIT)  # type: ignore[untyped-decorator]
def _forward_serial(xp: Any, w: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, y: Any) -> None:
    for b in range(y.shape[0]):
        _forward_sample(xp, w, kt, kh, kw, st, sh, sw, y, b)


@numba.njit(parallel=True, **_JIT)  # type: ignore[untyped-decorator]
def _forward_parallel(xp: Any, w: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, y: Any) -> None:
    for b in numba.prange(y.shape[0]):  # each sample writes only y[b]: no two threads touch one element
        _forward_sample(xp, w, kt, kh, kw, st, sh, sw, y, b)


@numba.njit(**_JIT)  # type: ignore[untyped-decorator]
def _grad_input_serial(gy: Any, w: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, pt: int, ph: int,
                       pw: int, gx: Any) -> None:
    for b in range(gy.shape[0]):
        _grad_input_sample(gy, w, kt, kh, kw, st, sh, sw, pt, ph, pw, gx, b)


@numba.njit(parallel=True, **_JIT)  # type: ignore[untyped-decorator]
def _grad_input_parallel(gy: Any, w: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, pt: int, ph: int,
                         pw: int, gx: Any) -> None:
    for b in numba.prange(gy.shape[0]):
        _grad_input_sample(gy, w, kt, kh, kw, st, sh, sw, pt, ph, pw, gx, b)


@numba.njit(**_JIT)  # type: ignore[untyped-decorator]
def _grad_weight_serial(xp: Any, gy: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, part: Any) -> None:
    for b in range(gy.shape[0]):
        _grad_weight_sample(xp, gy, kt, kh, kw, st, sh, sw, part, b)


@numba.njit(parallel=True, **_JIT)  # type: ignore[untyped-decorator]
def _grad_weight_parallel(xp: Any, gy: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, part: Any) -> None:
    for b in numba.prange(gy.shape[0]):
        _grad_weight_sample(xp, gy, kt, kh, kw, st, sh, sw, part, b)


def forward(xp: Any, w: Any, kernel: tuple[int, int, int], stride: tuple[int, int, int], y: Any) -> None:
    """y (B, To, Ho, Wo, C) = the depthwise conv of xp (B, Tp, Hp, Wp, C) with w (K, C)."""
    (_forward_parallel if _THREADS > 1 else _forward_serial)(xp, w, *kernel, *stride, y)


def grad_input(gy: Any, w: Any, kernel: tuple[int, int, int], stride: tuple[int, int, int],
               padding: tuple[int, int, int], gx: Any) -> None:
    """gx (B, T, H, W, C) = the transposed conv of gy (B, To, Ho, Wo, C) with w (K, C) (every element written)."""
    (_grad_input_parallel if _THREADS > 1 else _grad_input_serial)(gy, w, *kernel, *stride, *padding, gx)


def grad_weight(xp: Any, gy: Any, kernel: tuple[int, int, int], stride: tuple[int, int, int], part: Any) -> None:
    """part (B, K, C): each sample's weight gradient from xp (B, Tp, Hp, Wp, C) and gy (B, To, Ho, Wo, C)."""
    (_grad_weight_parallel if _THREADS > 1 else _grad_weight_serial)(xp, gy, *kernel, *stride, part)


