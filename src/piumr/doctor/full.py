"""``piumr doctor --full``: the GPU checks a first run on a new machine needs.

- :func:`x3d_depthwise_shapes`: every distinct depthwise ``conv_b`` input of a backbone at a clip size;
- :func:`check_kernels`: each Triton kernel (forward, grad-input, grad-weight) against an fp32 reference at
  those shapes, in fp32 and bf16, plus the fwd+bwd time of both (:func:`piumr.kernels.bench_depthwise`);
- :func:`synthetic_steps`: N optimiser steps of a preset's model + loss on one fixed synthetic batch (the loss
  must stay finite and fall: the model memorises the batch);
- inference speed is :func:`piumr.bench.run_bench` in ``"infer"`` mode (called by the runner).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from piumr.config import TrainConfig
from piumr.kernels import DepthwiseConv3dFunction, apply_fast_path, bench_depthwise, is_x3d_depthwise_conv

__all__ = ["TOLERANCE", "check_kernels", "rel_err", "synthetic_steps", "x3d_depthwise_shapes"]

TOLERANCE = {"float32": 1e-4, "bfloat16": 1e-2}
"""Relative L2 error allowed per dtype. bf16: the interpreter tests' bound (output rounding is ~3e-3). fp32:
10x the interpreter tests' bound, because at X3D-M sizes grad_w sums up to 80*16*56*56 = 4M products per tap and
two valid fp32 summation orders differ by up to ~sqrt(n) * 6e-8 ~ 1e-4 relative; an indexing bug gives ~1."""

Shape = tuple[int, int, int, int, int]  # (C, T, H, W, stride)


def x3d_depthwise_shapes(backbone: str, frames: int, crop: int) -> list[Shape]:
    """Distinct (C, T, H, W, stride) of the depthwise convs' inputs in ``backbone`` for a (3, frames, crop,
    crop) clip, in network order (one batch-1 forward on the meta device: nothing is computed)."""
    from piumr.model.backbone import build_x3d

    with torch.device("meta"):
        net = build_x3d(backbone, num_classes=2, frames=frames, crop=crop)
    seen: list[Shape] = []

    def hook(m: torch.nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        _, c, t, h, w = inp[0].shape
        s = (int(c), int(t), int(h), int(w), int(m.stride[1]))  # type: ignore[index]
        if s not in seen:
            seen.append(s)

    for m in net.modules():
        if is_x3d_depthwise_conv(m):
            m.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.empty(1, 3, frames, crop, crop, device="meta"))
    return seen


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """||a - ref||_2 / ||ref||_2 in float64 (0 when both are zero)."""
    a64, r64 = a.detach().double(), ref.detach().double()
    den = float(r64.norm())
    return float((a64 - r64).norm()) / den if den > 0 else float((a64 - r64).norm())


def _one_check(c: int, t: int, h: int, w: int, stride: int, batch: int, dtype: torch.dtype,
               dev: torch.device) -> dict[str, float]:
    """Relative errors of y, grad_x, grad_w of the Triton kernels vs fp32 F.conv3d on the same rounded data."""
    gen = torch.Generator(device=dev).manual_seed(c * 1000 + h)
    x = torch.randn((batch, c, t, h, w), device=dev, generator=gen).to(dtype)
    wt = (torch.randn((c, 1, 3, 3, 3), device=dev, generator=gen) * 0.2).to(dtype)
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    gy = torch.randn((batch, c, t, ho, wo), device=dev, generator=gen).to(dtype)
    xr, wr = x.float().requires_grad_(True), wt.float().requires_grad_(True)
    y_ref = F.conv3d(xr, wr, None, (1, stride, stride), 1, 1, c)
    gx_ref, gw_ref = torch.autograd.grad(y_ref, (xr, wr), gy.float())
    xt, wtt = x.clone().requires_grad_(True), wt.clone().requires_grad_(True)
    y = DepthwiseConv3dFunction.apply(xt, wtt, stride)
    gx, gw = torch.autograd.grad(y, (xt, wtt), gy)
    return {"y": rel_err(y, y_ref), "grad_x": rel_err(gx, gx_ref), "grad_w": rel_err(gw, gw_ref)}


def check_kernels(shapes: list[Shape], batch: int, device: torch.device, time_iters: int = 10) -> list[dict[str, Any]]:
    """One row per shape: relative errors in fp32 and bf16 (``ok`` when all are within :data:`TOLERANCE`) and,
    on CUDA, the bf16 fwd+bwd milliseconds of cuDNN/ATen vs Triton. TF32 is switched off for the reference."""
    rows = []
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for c, t, h, w, s in shapes:
            row: dict[str, Any] = {"channels": c, "frames": t, "height": h, "width": w, "stride": s, "batch": batch}
            ok = True
            for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
                errs = _one_check(c, t, h, w, s, batch, dtype, device)
                row[name] = errs
                ok = ok and all(math.isfinite(e) and e <= TOLERANCE[name] for e in errs.values())
            row["ok"] = ok
            if device.type == "cuda":
                b = bench_depthwise(batch=batch, channels=c, t=t, h=h, w=w, dtype=torch.bfloat16,
                                    iters=time_iters, stride=s)
                row["bf16_ms"] = {"reference": b["reference_ms"], "triton": b["triton_ms"], "speedup": b["speedup"]}
                torch.cuda.empty_cache()
            rows.append(row)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
    return rows


def synthetic_steps(cfg: TrainConfig, device: torch.device, steps: int, batch: int, fast_path: bool = True,
                    bf16: bool = True) -> dict[str, Any]:
    """``steps`` AdamW steps of the preset's model (CE + GIRL when enabled) on one fixed batch of synthetic
    (batch, 3, frames, crop, crop) clips under bf16 autocast.

    ``ok`` = every loss finite and the mean of the last fifth below the mean of the first fifth.
    """
    from piumr.config import SpeedConfig
    from piumr.model import PIUmrNet
    from piumr.recipe import build_criterion, build_optimizer, train_step

    torch.manual_seed(0)
    m = cfg.model
    model = PIUmrNet(m.model_copy(update={"pretrained": None})).to(device).train()
    replaced = apply_fast_path(model, "auto") if fast_path else 0
    loss_fn = build_criterion(cfg).to(device)
    opt = build_optimizer(model, cfg.optim, SpeedConfig(fused_adamw=False), device)
    x = torch.randn(batch, 3, m.frames, m.crop, m.crop, device=device)
    y = torch.arange(batch, device=device) % m.num_classes
    losses: list[float] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        _, parts = train_step(model, loss_fn, opt, x, y, amp=bf16)
        losses.append(float(parts.total.detach()))
    seconds = time.perf_counter() - start
    k = max(1, steps // 5)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    finite = all(math.isfinite(v) for v in losses)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"steps": steps, "batch": batch, "frames": m.frames, "crop": m.crop, "bf16": bf16,
            "fast_path_convs": replaced, "losses": losses, "first_mean": first, "last_mean": last,
            "finite": finite, "falling": last < first, "ok": finite and last < first,
            "seconds": seconds, "peak_mem_gib": peak}
