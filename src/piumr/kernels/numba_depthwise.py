"""The numba loops of the CPU depthwise conv (``piumr.kernels.cpu_depthwise``), on channels-last arrays.

Imported only when the ``"numba"`` implementation runs (importing numba takes ~0.3 s). Every array is a contiguous
float32 (or float64) NumPy view of a torch tensor laid out (B, T, H, W, C): the innermost loop runs over the contiguous channels,
so LLVM vectorises it whatever the stride or the size of the spatial plane. ``xp`` is the input zero-padded on
(T, H, W); ``w`` is the kernel as (K, C) with tap ``k = (a * kh + i) * kw + j``. The loops are parallel over the
batch (each sample writes only its own output), with ``set_threads`` threads (1: the calling thread does all).
Compiled on first use and cached on disk by numba (``cache=True``), so later processes load them in ~1 s.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

__all__ = ["forward", "grad_input", "grad_weight", "set_threads"]


def set_threads(n: int) -> None:
    """Use ``n`` numba threads (capped by numba's pool, which has one per core)."""
    numba.set_num_threads(max(1, min(n, int(getattr(numba.config, "NUMBA_NUM_THREADS")))))


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def forward(xp: Any, w: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, y: Any) -> None:
    """y (B, To, Ho, Wo, C) = sum over taps k of xp (B, Tp, Hp, Wp, C) shifted by k, times w[k] (C,)."""
    nb, nt, nh, nw, nc = y.shape
    for b in numba.prange(nb):
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


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def grad_input(gy: Any, w: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, gxp: Any) -> None:
    """gxp (B, Tp, Hp, Wp, C), zero on entry, += gy (B, To, Ho, Wo, C) * w[k] scattered back through each tap k."""
    nb, nt, nh, nw, nc = gy.shape
    for b in numba.prange(nb):
        for t in range(nt):
            for h in range(nh):
                for x in range(nw):
                    g = gy[b, t, h, x]
                    for a in range(kt):
                        for i in range(kh):
                            for j in range(kw):
                                dst = gxp[b, t * st + a, h * sh + i, x * sw + j]
                                wk = w[(a * kh + i) * kw + j]
                                for c in range(nc):
                                    dst[c] += g[c] * wk[c]


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def grad_weight(xp: Any, gy: Any, kt: int, kh: int, kw: int, st: int, sh: int, sw: int, part: Any) -> None:
    """part[b] (K, C) = sum over (t, h, w) of gy[b] (To, Ho, Wo, C) * xp[b] (Tp, Hp, Wp, C) shifted by tap k.

    Each sample's sums are in the arrays' dtype; the caller adds the B samples in float64.
    """
    nb, nt, nh, nw, nc = gy.shape
    for b in numba.prange(nb):
        acc = np.zeros((kt * kh * kw, nc), dtype=part.dtype)
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
        part[b] = acc
