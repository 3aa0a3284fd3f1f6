"""``bench_depthwise``: one X3D depthwise layer, reference (cuDNN/ATen) vs the Triton kernels, on CUDA.

Prints nothing and is never a timed test: it returns numbers (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from piumr.kernels.depthwise import DepthwiseConv3dFunction, _out_size, _require_triton, triton_interpreted

__all__ = ["bench_depthwise"]


def bench_depthwise(
    batch: int = 80,
    channels: int = 54,
    t: int = 16,
    h: int = 56,
    w: int = 56,
    dtype: torch.dtype = torch.bfloat16,
    iters: int = 20,
    stride: int = 1,
) -> dict[str, float]:
    """Forward+backward time of one depthwise layer on CUDA, reference (cuDNN/ATen) vs Triton.

    x: (batch, channels, t, h, w) in ``dtype``, weight fp32 cast to ``dtype`` (as under autocast).
    Returns ``{"reference_ms", "triton_ms", "speedup", "max_abs_err_y", "max_abs_err_gx", "max_abs_err_gw"}``
    (ms per fwd+bwd, median of ``iters``). Raises RuntimeError without CUDA or triton.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("bench_depthwise needs a CUDA GPU (torch.cuda.is_available() is False)")
    _require_triton()
    if triton_interpreted():
        raise RuntimeError("bench_depthwise: kernels were built for the interpreter (TRITON_INTERPRET=1)")
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn((batch, channels, t, h, w), device=dev, dtype=dtype, generator=gen)
    wt = torch.randn((channels, 1, 3, 3, 3), device=dev, dtype=torch.float32, generator=gen) * 0.2
    ho, wo = _out_size(h, stride), _out_size(w, stride)
    gy = torch.randn((batch, channels, t, ho, wo), device=dev, dtype=dtype, generator=gen)

    def ref_step() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xr = x.detach().requires_grad_(True)
        wr = wt.detach().requires_grad_(True)
        y = F.conv3d(xr, wr.to(dtype), None, (1, stride, stride), 1, 1, channels)
        gx, gw = torch.autograd.grad(y, (xr, wr), gy)
        return y, gx, gw

    def tri_step() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xr = x.detach().requires_grad_(True)
        wr = wt.detach().requires_grad_(True)
        y = DepthwiseConv3dFunction.apply(xr, wr.to(dtype), stride)
        gx, gw = torch.autograd.grad(y, (xr, wr), gy)
        return y, gx, gw

    def timed(step: Any) -> float:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        times.sort()
        return float(times[len(times) // 2])

    y_r, gx_r, gw_r = ref_step()
    y_t, gx_t, gw_t = tri_step()
    ref_ms = timed(ref_step)
    tri_ms = timed(tri_step)
    return {
        "reference_ms": ref_ms,
        "triton_ms": tri_ms,
        "speedup": ref_ms / tri_ms if tri_ms > 0 else float("nan"),
        "max_abs_err_y": float((y_r.float() - y_t.float()).abs().max()),
        "max_abs_err_gx": float((gx_r.float() - gx_t.float()).abs().max()),
        "max_abs_err_gw": float((gw_r.float() - gw_t.float()).abs().max()),
    }
