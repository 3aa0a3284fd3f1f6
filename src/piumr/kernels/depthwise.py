"""Triton kernels for X3D's depthwise 3x3x3 convolution (pytorchvideo ``conv_b``).

The op is ``y = conv3d(x, w, stride=(1, s, s), padding=1, groups=C)`` with

- ``x``: (B, C, T, H, W), contiguous NCTHW (what pytorchvideo feeds it),
- ``w``: (C, 1, 3, 3, 3), one 3x3x3 filter per channel, no bias,
- ``y``: (B, C, T, Ho, Wo) with ``Ho = (H - 1) // s + 1``, ``Wo = (W - 1) // s + 1``, ``s`` in {1, 2}.

Three kernels implement it (all accumulate in fp32; inputs may be fp32, bf16 or fp16). All three share one
decomposition: a program owns one (b, c) plane stack and one (BLOCK_T, BLOCK_H, BLOCK_W) tile of it, so the 27
filter taps of channel c are scalar (uniform) loads, and it loops over the taps statically unrolled, each tap a
masked 3-D load of the shifted tile (zero padding = masked-off lanes).

``_dw3d_fwd_kernel``
    grid (B*C, tiles of (T, Ho, Wo)); ``y = sum_k shift_k(x) * w[c, k]``.
``_dw3d_bwd_input_kernel``
    grid (B*C, tiles of the *input* (T, H, W)); a gather,
    ``gx[t, h, w] = sum_k gy[t - kt + 1, (h - kh + 1) / s, (w - kw + 1) / s] * w[c, k]``, where the division
    must be exact (for s = 2 the lanes with an odd offset are masked off). No atomics, no scatter: each gx
    element is written once by one program, so the result is deterministic.
``_dw3d_bwd_weight_kernel``
    a two-stage reduction over (B, T, Ho, Wo). Grid (C, SPLIT): program (c, p) walks the work items
    p, p + SPLIT, p + 2 SPLIT, ... of channel c (an item = one (b, tile)), loads the gy tile once and the 27
    shifted x tiles, and accumulates the 27 tile sums in a 32-lane fp32 register vector. Stage 1 writes
    ``partial[p, c, 0:32]``; stage 2 is ``partial.sum(0)`` in torch (SPLIT x C x 32 floats, negligible).
    Deterministic (no fp32 atomics whose order varies from run to run), and bf16 inputs stay accurate. SPLIT
    defaults to ~8 programs per SM in total on CUDA.

Why this layout
    NCTHW keeps W contiguous, so W is the fast tile axis: loads are coalesced (stride-2 loads are 2-strided,
    half-coalesced, fine for a memory-bound op). The tile is filled W first (up to 64), then H, then T, up to
    1024 elements: X3D-M's 56x56 planes get (1, 16, 64) tiles, its 7x7 planes (16, 8, 8) -- stacking frames
    keeps late-stage programs from being mostly masked-off lanes. The 27 shifted loads of one program re-read
    overlapping data that is hot in L1/L2, so DRAM traffic stays near one read of the inputs and one write of
    the output per kernel; the op is memory bound (DESIGN.md §5: the traffic floor of one X3D-M layer is ~0.7
    ms against 21 ms for cuDNN), so the design minimises passes and launches, not FLOPs. Index arithmetic is
    per program and per tap row, not per element and tap; per-(b, c) base offsets are int64 (B*C*T*H*W can
    exceed 2**31). Non-contiguous (e.g. channels_last_3d) inputs are made contiguous first.

Under ``TRITON_INTERPRET=1`` (set before triton is imported) the same kernels run on CPU tensors, which is how
they are tested on machines without a GPU. ``PIUMR_TRITON_INTERPRET=1`` asks for that too: the command line
applies it when a command starts (``piumr.settings.apply_to_process``); importing this module changes no
environment.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "DepthwiseConv3dFunction",
    "Tiles",
    "depthwise_conv3d",
    "depthwise_conv3d_backward_input",
    "depthwise_conv3d_backward_weight",
    "tile_key",
    "triton_available",
    "triton_interpreted",
]


try:
    import triton
    import triton.language as tl

    _HAS_TRITON = True
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    _HAS_TRITON = False

_NUM_TAPS = 27  # 3 x 3 x 3
_TAP_LANES = 32  # power of two >= 27, the width of the per-channel weight-gradient accumulator


if _HAS_TRITON:

    @triton.jit  # type: ignore[untyped-decorator]
    def _tile_offsets(
        tile: tl.tensor,
        n_h: tl.tensor,
        n_w: tl.tensor,
        BLOCK_T: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_W: tl.constexpr,
    ) -> tuple[tl.tensor, tl.tensor, tl.tensor]:
        """Tile index (t-tile major, w-tile minor) -> broadcastable offsets (BT,1,1), (1,BH,1), (1,1,BW)."""
        offs_t = (tile // (n_h * n_w)) * BLOCK_T + tl.arange(0, BLOCK_T)
        offs_h = ((tile // n_w) % n_h) * BLOCK_H + tl.arange(0, BLOCK_H)
        offs_w = (tile % n_w) * BLOCK_W + tl.arange(0, BLOCK_W)
        return offs_t[:, None, None], offs_h[None, :, None], offs_w[None, None, :]

    @triton.jit  # type: ignore[untyped-decorator]
    def _tap_fma(acc: tl.tensor, ptrs: tl.tensor, mask: tl.tensor, w_ptr: tl.tensor) -> tl.tensor:
        """acc + load(ptrs, mask, 0) * w[0], in fp32."""
        v = tl.load(ptrs, mask=mask, other=0.0)
        return acc + v.to(tl.float32) * tl.load(w_ptr).to(tl.float32)

    @triton.jit  # type: ignore[untyped-decorator]
    def _dw3d_fwd_kernel(
        x_ptr: tl.tensor,
        w_ptr: tl.tensor,
        y_ptr: tl.tensor,
        C: tl.tensor,
        T: tl.tensor,
        H: tl.tensor,
        W: tl.tensor,
        Ho: tl.tensor,
        Wo: tl.tensor,
        STRIDE: tl.constexpr,
        BLOCK_T: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_W: tl.constexpr,
    ) -> None:
        """y[b, c, t, ho, wo] = sum_k x[b, c, t+kt-1, ho*s+kh-1, wo*s+kw-1] * w[c, 0, kt, kh, kw].

        Grid: (B*C, n_t*n_h*n_w) with n_t = cdiv(T, BLOCK_T), n_h = cdiv(Ho, BLOCK_H), n_w = cdiv(Wo, BLOCK_W);
        program (b*C + c, tile) computes one (BLOCK_T, BLOCK_H, BLOCK_W) tile of y[b, c].
        """
        bc = tl.program_id(0).to(tl.int64)  # b*C + c; int64 because B*C*T*H*W may exceed 2**31
        c = bc % C
        n_h = tl.cdiv(Ho, BLOCK_H)
        n_w = tl.cdiv(Wo, BLOCK_W)
        offs_t, offs_h, offs_w = _tile_offsets(tl.program_id(1), n_h, n_w, BLOCK_T, BLOCK_H, BLOCK_W)
        # the three W shifts (kw = 0, 1, 2), shared by all 9 (kt, kh)
        wi0 = offs_w * STRIDE - 1
        wi1 = offs_w * STRIDE
        wi2 = offs_w * STRIDE + 1
        w_ok0 = (wi0 >= 0) & (wi0 < W)
        w_ok1 = wi1 < W
        w_ok2 = wi2 < W
        x_bc = x_ptr + bc * T * H * W
        w_c = w_ptr + c * 27
        acc = tl.zeros([BLOCK_T, BLOCK_H, BLOCK_W], dtype=tl.float32)
        for kt in tl.static_range(3):
            ti = offs_t + (kt - 1)
            t_ok = (ti >= 0) & (ti < T)
            x_t = x_bc + ti * (H * W)
            for kh in tl.static_range(3):
                hi = offs_h * STRIDE + (kh - 1)
                th_ok = t_ok & (hi >= 0) & (hi < H)
                row = x_t + hi * W
                k = kt * 9 + kh * 3
                acc = _tap_fma(acc, row + wi0, th_ok & w_ok0, w_c + k)
                acc = _tap_fma(acc, row + wi1, th_ok & w_ok1, w_c + (k + 1))
                acc = _tap_fma(acc, row + wi2, th_ok & w_ok2, w_c + (k + 2))
        out_mask = (offs_t < T) & (offs_h < Ho) & (offs_w < Wo)
        y_ptrs = y_ptr + bc * T * Ho * Wo + offs_t * (Ho * Wo) + offs_h * Wo + offs_w
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=out_mask)

    @triton.jit  # type: ignore[untyped-decorator]
    def _dw3d_bwd_input_kernel(
        gy_ptr: tl.tensor,
        w_ptr: tl.tensor,
        gx_ptr: tl.tensor,
        C: tl.tensor,
        T: tl.tensor,
        H: tl.tensor,
        W: tl.tensor,
        Ho: tl.tensor,
        Wo: tl.tensor,
        STRIDE: tl.constexpr,
        BLOCK_T: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_W: tl.constexpr,
    ) -> None:
        """gx[b, c, t, h, w] = sum_k gy[b, c, t-kt+1, (h-kh+1)/s, (w-kw+1)/s] * w[c, 0, kt, kh, kw].

        Only taps where (h-kh+1) and (w-kw+1) are non-negative multiples of s contribute (a gather, so every
        gx element is written by exactly one program). Grid: (B*C, n_t*n_h*n_w) over the *input* (T, H, W).
        """
        bc = tl.program_id(0).to(tl.int64)
        c = bc % C
        n_h = tl.cdiv(H, BLOCK_H)
        n_w = tl.cdiv(W, BLOCK_W)
        offs_t, offs_h, offs_w = _tile_offsets(tl.program_id(1), n_h, n_w, BLOCK_T, BLOCK_H, BLOCK_W)
        # tap kw reads gy at wo = (w - kw + 1) / s, valid when that is an integer in [0, Wo)
        wn0 = offs_w + 1
        wn1 = offs_w
        wn2 = offs_w - 1
        wo0 = wn0 // STRIDE
        wo1 = wn1 // STRIDE
        wo2 = wn2 // STRIDE
        w_ok0 = wo0 < Wo
        w_ok1 = wo1 < Wo
        w_ok2 = (wn2 >= 0) & (wo2 < Wo)
        if STRIDE > 1:
            w_ok0 = w_ok0 & ((wn0 % STRIDE) == 0)
            w_ok1 = w_ok1 & ((wn1 % STRIDE) == 0)
            w_ok2 = w_ok2 & ((wn2 % STRIDE) == 0)
        gy_bc = gy_ptr + bc * T * Ho * Wo
        w_c = w_ptr + c * 27
        acc = tl.zeros([BLOCK_T, BLOCK_H, BLOCK_W], dtype=tl.float32)
        for kt in tl.static_range(3):
            to = offs_t - (kt - 1)
            t_ok = (to >= 0) & (to < T)
            gy_t = gy_bc + to * (Ho * Wo)
            for kh in tl.static_range(3):
                hn = offs_h - (kh - 1)  # = ho * s where this tap contributes
                ho = hn // STRIDE
                th_ok = t_ok & (hn >= 0) & (ho < Ho)
                if STRIDE > 1:
                    th_ok = th_ok & ((hn % STRIDE) == 0)
                row = gy_t + ho * Wo
                k = kt * 9 + kh * 3
                acc = _tap_fma(acc, row + wo0, th_ok & w_ok0, w_c + k)
                acc = _tap_fma(acc, row + wo1, th_ok & w_ok1, w_c + (k + 1))
                acc = _tap_fma(acc, row + wo2, th_ok & w_ok2, w_c + (k + 2))
        in_mask = (offs_t < T) & (offs_h < H) & (offs_w < W)
        gx_ptrs = gx_ptr + bc * T * H * W + offs_t * (H * W) + offs_h * W + offs_w
        tl.store(gx_ptrs, acc.to(gx_ptr.dtype.element_ty), mask=in_mask)

    @triton.jit  # type: ignore[untyped-decorator]
    def _tap_dot(
        acc: tl.tensor, gv: tl.tensor, ptrs: tl.tensor, mask: tl.tensor, lanes: tl.tensor, k: tl.constexpr
    ) -> tl.tensor:
        """acc[k] += sum(gv * load(ptrs, mask, 0)), in fp32 (acc: (TAP_LANES,), one lane per tap)."""
        v = tl.load(ptrs, mask=mask, other=0.0)
        tap = tl.sum(tl.sum(tl.sum(gv * v.to(tl.float32), axis=2), axis=1), axis=0)
        return acc + tl.where(lanes == k, tap, 0.0)

    @triton.jit  # type: ignore[untyped-decorator]
    def _dw3d_bwd_weight_kernel(
        x_ptr: tl.tensor,
        gy_ptr: tl.tensor,
        partial_ptr: tl.tensor,
        B: tl.tensor,
        C: tl.tensor,
        T: tl.tensor,
        H: tl.tensor,
        W: tl.tensor,
        Ho: tl.tensor,
        Wo: tl.tensor,
        SPLIT: tl.tensor,
        STRIDE: tl.constexpr,
        BLOCK_T: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_W: tl.constexpr,
        TAP_LANES: tl.constexpr,
    ) -> None:
        """Stage 1 of gw[c, 0, kt, kh, kw] = sum_{b,t,ho,wo} gy[b,c,t,ho,wo] * x[b,c,t+kt-1,ho*s+kh-1,wo*s+kw-1].

        Grid: (C, SPLIT). Program (c, p) sums the work items p, p+SPLIT, ... of channel c, an item being one
        (b, t-tile, h-tile, w-tile) output tile, and writes its 27 partial sums to partial[p, c, 0:27]
        (partial: (SPLIT, C, TAP_LANES) fp32; lanes 27.. are written as zero).
        """
        c = tl.program_id(0).to(tl.int64)
        split_id = tl.program_id(1)
        n_h = tl.cdiv(Ho, BLOCK_H)
        n_w = tl.cdiv(Wo, BLOCK_W)
        tiles = tl.cdiv(T, BLOCK_T) * n_h * n_w
        lanes = tl.arange(0, TAP_LANES)
        acc = tl.zeros([TAP_LANES], dtype=tl.float32)
        for item in range(split_id, B * tiles, SPLIT):
            bc = (item // tiles).to(tl.int64) * C + c
            offs_t, offs_h, offs_w = _tile_offsets(item % tiles, n_h, n_w, BLOCK_T, BLOCK_H, BLOCK_W)
            w_out = offs_w < Wo
            gy_ptrs = gy_ptr + bc * T * Ho * Wo + offs_t * (Ho * Wo) + offs_h * Wo + offs_w
            gv = tl.load(gy_ptrs, mask=(offs_t < T) & (offs_h < Ho) & w_out, other=0.0).to(tl.float32)
            wi0 = offs_w * STRIDE - 1
            wi1 = offs_w * STRIDE
            wi2 = offs_w * STRIDE + 1
            w_ok0 = w_out & (wi0 >= 0) & (wi0 < W)
            w_ok1 = w_out & (wi1 < W)
            w_ok2 = w_out & (wi2 < W)
            x_bc = x_ptr + bc * T * H * W
            for kt in tl.static_range(3):
                ti = offs_t + (kt - 1)
                t_ok = (offs_t < T) & (ti >= 0) & (ti < T)
                x_t = x_bc + ti * (H * W)
                for kh in tl.static_range(3):
                    hi = offs_h * STRIDE + (kh - 1)
                    th_ok = t_ok & (offs_h < Ho) & (hi >= 0) & (hi < H)
                    row = x_t + hi * W
                    k = kt * 9 + kh * 3
                    acc = _tap_dot(acc, gv, row + wi0, th_ok & w_ok0, lanes, k)
                    acc = _tap_dot(acc, gv, row + wi1, th_ok & w_ok1, lanes, k + 1)
                    acc = _tap_dot(acc, gv, row + wi2, th_ok & w_ok2, lanes, k + 2)
        tl.store(partial_ptr + (split_id * C + c) * TAP_LANES + lanes, acc)


def triton_available() -> bool:
    """True when triton could be imported (the kernels exist)."""
    return _HAS_TRITON


def triton_interpreted() -> bool:
    """True when the kernels were built for the Triton CPU interpreter (``TRITON_INTERPRET=1`` at import)."""
    if not _HAS_TRITON:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_dw3d_fwd_kernel, InterpretedFunction)


def _require_triton() -> None:
    if not _HAS_TRITON:
        raise RuntimeError("piumr.kernels.depthwise: triton is not importable; use torch.nn.functional.conv3d")


def _out_size(n: int, stride: int) -> int:
    # kernel 3, padding 1: floor((n + 2 - 3) / s) + 1
    return (n - 1) // stride + 1


Block = tuple[int, int, int]
"""(BLOCK_T, BLOCK_H, BLOCK_W): the tile one program computes; each a power of two."""


def _tile(t: int, h: int, w: int, block: Block | None = None) -> Block:
    """(BLOCK_T, BLOCK_H, BLOCK_W) for a (t, h, w) plane stack: at most 1024 elements a tile, filled W first
    (the contiguous axis, up to 64 wide), then H, then T (small late-stage planes stack several frames).

    X3D-M (T = 16): 56x56 -> (1, 16, 64), 28x28 -> (1, 32, 32), 14x14 -> (4, 16, 16), 7x7 -> (16, 8, 8).
    """
    if block is not None:
        bt, bh, bw = (int(v) for v in block)
        if any(v < 1 or v & (v - 1) for v in (bt, bh, bw)):
            raise ValueError(f"block sizes must be powers of two, got {block}")
        return bt, bh, bw
    budget = 1024
    block_w = min(triton.next_power_of_2(max(w, 1)), 64)
    block_h = min(triton.next_power_of_2(max(h, 1)), max(1, budget // block_w))
    block_t = min(triton.next_power_of_2(max(t, 1)), max(1, budget // (block_w * block_h)))
    return int(block_t), int(block_h), int(block_w)


def _n_tiles(t: int, h: int, w: int, block: Block) -> int:
    return int(triton.cdiv(t, block[0]) * triton.cdiv(h, block[1]) * triton.cdiv(w, block[2]))


def _num_warps(block: Block) -> int:
    n = block[0] * block[1] * block[2]
    return 4 if n >= 512 else (2 if n >= 128 else 1)


def _check(x: torch.Tensor, weight: torch.Tensor, stride: int) -> None:
    if x.dim() != 5:
        raise ValueError(f"x must be (B, C, T, H, W), got shape {tuple(x.shape)}")
    c = x.shape[1]
    if tuple(weight.shape) != (c, 1, 3, 3, 3):
        raise ValueError(f"weight must be ({c}, 1, 3, 3, 3) for C={c}, got {tuple(weight.shape)}")
    if stride not in (1, 2):
        raise ValueError(f"spatial stride must be 1 or 2, got {stride}")
    if x.device != weight.device:
        raise ValueError(f"x on {x.device} but weight on {weight.device}")


def depthwise_conv3d(
    x: torch.Tensor, weight: torch.Tensor, stride: int = 1, block: Block | None = None
) -> torch.Tensor:
    """Triton forward: x (B, C, T, H, W), weight (C, 1, 3, 3, 3) -> y (B, C, T, Ho, Wo) in x.dtype.

    Equal to ``F.conv3d(x, weight, stride=(1, stride, stride), padding=1, groups=C)`` (fp32 accumulation).
    ``block`` overrides the (BLOCK_T, BLOCK_H, BLOCK_W) tile (tests, tuning).
    """
    _require_triton()
    _check(x, weight, stride)
    x = x.contiguous()
    weight = weight.contiguous()
    b, c, t, h, w = x.shape
    ho, wo = _out_size(h, stride), _out_size(w, stride)
    y = torch.empty((b, c, t, ho, wo), device=x.device, dtype=x.dtype)
    if y.numel() == 0:
        return y
    blk = _tile(t, ho, wo, block)
    _dw3d_fwd_kernel[(b * c, _n_tiles(t, ho, wo, blk))](
        x, weight, y, c, t, h, w, ho, wo,
        STRIDE=stride, BLOCK_T=blk[0], BLOCK_H=blk[1], BLOCK_W=blk[2], num_warps=_num_warps(blk),
    )  # fmt: skip
    return y


def depthwise_conv3d_backward_input(
    grad_y: torch.Tensor,
    weight: torch.Tensor,
    input_hw: tuple[int, int],
    stride: int = 1,
    block: Block | None = None,
) -> torch.Tensor:
    """Triton grad wrt x: grad_y (B, C, T, Ho, Wo), weight (C, 1, 3, 3, 3) -> grad_x (B, C, T, H, W).

    ``input_hw`` = (H, W) of the forward input (with stride 2 two values of H give the same Ho).
    grad_x has grad_y's dtype.
    """
    _require_triton()
    _check(grad_y, weight, stride)
    h, w = input_hw
    b, c, t, ho, wo = grad_y.shape
    if (ho, wo) != (_out_size(h, stride), _out_size(w, stride)):
        raise ValueError(f"grad_y spatial size {(ho, wo)} does not match input {(h, w)} at stride {stride}")
    grad_y = grad_y.contiguous()
    weight = weight.contiguous()
    gx = torch.empty((b, c, t, h, w), device=grad_y.device, dtype=grad_y.dtype)
    if gx.numel() == 0:
        return gx
    blk = _tile(t, h, w, block)
    _dw3d_bwd_input_kernel[(b * c, _n_tiles(t, h, w, blk))](
        grad_y, weight, gx, c, t, h, w, ho, wo,
        STRIDE=stride, BLOCK_T=blk[0], BLOCK_H=blk[1], BLOCK_W=blk[2], num_warps=_num_warps(blk),
    )  # fmt: skip
    return gx


def _default_split(n_items: int, channels: int, device: torch.device) -> int:
    """Programs per channel of the weight-gradient reduction: about 8 programs per SM in all on CUDA."""
    if device.type == "cuda":
        target = 8 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = 1  # the interpreter runs programs one after another: one program per channel is cheapest
    return max(1, min(n_items, math.ceil(target / max(channels, 1))))


def depthwise_conv3d_backward_weight(
    x: torch.Tensor,
    grad_y: torch.Tensor,
    stride: int = 1,
    split: int | None = None,
    block: Block | None = None,
) -> torch.Tensor:
    """Triton grad wrt weight: x (B, C, T, H, W), grad_y (B, C, T, Ho, Wo) -> grad_w (C, 1, 3, 3, 3) fp32.

    Two-stage, deterministic reduction over (B, T, Ho, Wo): ``split`` programs per channel write fp32 partial
    sums (split, C, 32), then torch sums over split. ``split=None`` picks a value that fills the GPU.
    """
    _require_triton()
    if x.dim() != 5 or grad_y.dim() != 5:
        raise ValueError(f"x and grad_y must be 5-D, got {tuple(x.shape)} and {tuple(grad_y.shape)}")
    if stride not in (1, 2):
        raise ValueError(f"spatial stride must be 1 or 2, got {stride}")
    b, c, t, h, w = x.shape
    ho, wo = _out_size(h, stride), _out_size(w, stride)
    if tuple(grad_y.shape) != (b, c, t, ho, wo):
        raise ValueError(f"grad_y must be {(b, c, t, ho, wo)} for x {tuple(x.shape)}, got {tuple(grad_y.shape)}")
    x = x.contiguous()
    grad_y = grad_y.contiguous()
    if grad_y.numel() == 0:
        return torch.zeros((c, 1, 3, 3, 3), device=x.device, dtype=torch.float32)
    blk = _tile(t, ho, wo, block)
    n_items = b * _n_tiles(t, ho, wo, blk)
    n_split = _default_split(n_items, c, x.device) if split is None else max(1, min(int(split), n_items))
    partial = torch.empty((n_split, c, _TAP_LANES), device=x.device, dtype=torch.float32)
    _dw3d_bwd_weight_kernel[(c, n_split)](
        x, grad_y, partial, b, c, t, h, w, ho, wo, n_split,
        STRIDE=stride, BLOCK_T=blk[0], BLOCK_H=blk[1], BLOCK_W=blk[2], TAP_LANES=_TAP_LANES,
        num_warps=_num_warps(blk),
    )  # fmt: skip
    return partial.sum(dim=0)[:, :_NUM_TAPS].reshape(c, 1, 3, 3, 3)


Tiles = dict[str, Block]
"""Tile per kernel and shape, keyed by :func:`tile_key` (``"fwd/16x56x56/s1"``); a missing key takes ``_tile``."""


def tile_key(kind: str, t: int, h: int, w: int, stride: int) -> str:
    """Key of :data:`Tiles`: ``kind`` in fwd, bwd_input, bwd_weight; (t, h, w) the forward input's plane stack."""
    return f"{kind}/{t}x{h}x{w}/s{stride}"


class DepthwiseConv3dFunction(torch.autograd.Function):
    """Autograd wiring of the three kernels: ``apply(x, weight, stride, tiles=None) -> y``.

    x: (B, C, T, H, W); weight: (C, 1, 3, 3, 3); stride: spatial stride s in {1, 2} (temporal stride 1,
    padding 1); tiles: optional :data:`Tiles` for this shape; y: (B, C, T, Ho, Wo) in x.dtype. grad_x comes
    back in grad_y's dtype, grad_w in weight.dtype.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: int,
                tiles: Tiles | None = None) -> torch.Tensor:
        t, h, w = x.shape[2:]
        ctx.blocks = [(tiles or {}).get(tile_key(k, t, h, w, stride)) for k in ("fwd", "bwd_input", "bwd_weight")]
        y = depthwise_conv3d(x, weight, stride, block=ctx.blocks[0])
        ctx.save_for_backward(x, weight)
        ctx.stride = stride
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        x, weight = ctx.saved_tensors
        stride: int = ctx.stride
        grad_x: torch.Tensor | None = None
        grad_w: torch.Tensor | None = None
        if ctx.needs_input_grad[0]:
            grad_x = depthwise_conv3d_backward_input(grad_y, weight, (x.shape[3], x.shape[4]), stride,
                                                     block=ctx.blocks[1])
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_conv3d_backward_weight(x, grad_y, stride, block=ctx.blocks[2]).to(weight.dtype)
        return grad_x, grad_w, None, None

