"""A depthwise 3-D convolution for the CPU whose backward is as cheap as its forward.

The op is ``y = conv3d(x, w, stride, padding, groups=C)`` for any kernel (kt, kh, kw), stride and zero padding:

- ``x``: (B, C, T, H, W), ``w``: (C, 1, kt, kh, kw), no bias;
- ``y``: (B, C, To, Ho, Wo), ``To = (T + 2 pt - kt) // st + 1`` (likewise H, W).

PyTorch's CPU ``convolution_backward`` for ``groups = C`` takes a slow path: on the demo model one depthwise
layer's backward costs 14-90x its forward (docs/benchmarks.md). Its two gradients are cheap operations:

- ``grad_input``: the transposed depthwise conv, ``gx`` at each input position the sum of ``gy * w[k]`` over the
  taps k that read it (for stride 1: the depthwise conv of ``gy`` with the flipped kernel);
- ``grad_weight``: ``gw[c, k] = sum over (b, t, h, w) of gy[b, c, t, h, w] * x_pad[b, c, shift_k(t, h, w)]``,
  a reduction of k shifted products.

Two implementations, chosen by ``impl``:

``"numba"``
    On contiguous tensors the forward and ``grad_input`` run oneDNN's fast forward depthwise kernel (``F.conv3d``;
    ``grad_input`` as the flipped or per-phase conv of the fallback below) and ``grad_weight`` a loop compiled by
    numba; on channels-last tensors all three are numba loops. The loops (LLVM, no C compiler needed) run over
    channels-last arrays (B, T, H, W, C), the innermost loop over the contiguous channels, so they vectorise
    whatever the stride or the spatial size (X3D's late planes are 2 x 2); one pass over the data per op. Serial
    when torch runs one intra-op thread, else parallel over the batch with as many numba threads as torch has
    (never more than the cores). The weight gradient sums each sample in the input's dtype and the samples in
    float64.
``"autograd"``
    Pure PyTorch, for machines where numba cannot be imported: forward by ``F.conv3d``, ``grad_input`` by the
    depthwise conv with the flipped kernel (stride 1) or one such conv per phase of the input (stride > 1; each
    input phase is reached by a sub-kernel only), ``grad_weight`` by one multiply-and-sum per tap in
    channels-last order.

Both return the output and ``grad_input`` in the memory format of the input (``torch.channels_last_3d`` or
contiguous); values equal ``F.conv3d``'s within float32 rounding (``tests/test_cpu_kernels.py``). Inputs of
another dtype than float32 or float64 take the ``"autograd"`` path.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx, once_differentiable

__all__ = ["CpuDepthwiseImpl", "cpu_depthwise_conv3d", "numba_available"]

CpuDepthwiseImpl = Literal["numba", "autograd"]
Triple = tuple[int, int, int]
_NUMBA_DTYPES = (torch.float32, torch.float64)
# contiguous inputs with planes of at least this many (H W) positions take ``numba_planes`` (measured on the demo
# model, 1 thread: 24 x 24 and 12 x 12 planes 1.7-5x faster than oneDNN + channels-last copies; 6 x 6 and smaller,
# where the padded phase blocks are 2-4x the plane, slower)
PLANES_MIN_AREA = 128



def numba_available() -> bool:
    """Whether numba can be imported (it is a dependency; a platform without its wheel falls back to torch)."""
    return importlib.util.find_spec("numba") is not None


def _out_size(size: Triple, kernel: Triple, stride: Triple, padding: Triple) -> Triple:
    t, h, w = ((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding))
    return t, h, w


def _to_cl(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> a contiguous (B, T, H, W, C) tensor (a view when x is channels_last_3d)."""
    return x.permute(0, 2, 3, 4, 1).contiguous()


def _from_cl(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, C) -> (B, C, T, H, W) in ``like``'s memory format (channels_last_3d: a view; else a copy)."""
    out = x.permute(0, 4, 1, 2, 3)
    return out.contiguous(memory_format=_format(like))


def _format(x: torch.Tensor) -> torch.memory_format:
    cl = x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
    return torch.channels_last_3d if cl else torch.contiguous_format


def _padded_cl(x: torch.Tensor, padding: Triple, extra: Triple = (0, 0, 0)) -> torch.Tensor:
    """x (B, C, T, H, W) -> zero-padded (B, T + 2 pt + et, H + 2 ph + eh, W + 2 pw + ew, C), contiguous."""
    b, c, t, h, w = x.shape
    pt, ph, pw = padding
    out = x.new_empty((b, t + 2 * pt + extra[0], h + 2 * ph + extra[1], w + 2 * pw + extra[2], c))
    out[:, pt:pt + t, ph:ph + h, pw:pw + w] = x.permute(0, 2, 3, 4, 1)
    # zero only the border (a full fill first would be one more pass over the buffer)
    out[:, :pt].zero_()
    out[:, pt + t:].zero_()
    out[:, pt:pt + t, :ph].zero_()
    out[:, pt:pt + t, ph + h:].zero_()
    out[:, pt:pt + t, ph:ph + h, :pw].zero_()
    out[:, pt:pt + t, ph:ph + h, pw + w:].zero_()
    return out


def _numba_forward(x: torch.Tensor, xp: torch.Tensor, w: torch.Tensor, stride: Triple,
                   padding: Triple) -> torch.Tensor:
    kernel = (w.shape[2], w.shape[3], w.shape[4])
    out = _out_size((x.shape[2], x.shape[3], x.shape[4]), kernel, stride, padding)
    wk = w.reshape(w.shape[0], -1).t().contiguous()  # (K, C)
    y = x.new_empty((x.shape[0], *out, x.shape[1]))
    fwd, _, _ = _run_kernels()
    fwd(xp.numpy(), wk.numpy(), kernel, stride, y.numpy())
    return _from_cl(y, x)


def _numba_backward(x: torch.Tensor, xp: torch.Tensor | None, w: torch.Tensor, gy: torch.Tensor, stride: Triple,
                    padding: Triple, need_x: bool, need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Both gradients; ``xp``: x zero-padded in channels-last order, made in the forward while x was in cache
    (a transposing copy of an activation read back from memory costs ~3x as much), or None to make it here."""
    kernel = (w.shape[2], w.shape[3], w.shape[4])
    b, c, t, h, wd = x.shape
    if _format(x) == torch.contiguous_format:
        return _numba_backward_contiguous(x, xp, w, gy.contiguous(), stride, padding, need_x, need_w)
    _, gin, gwt = _run_kernels()
    gy_cl = _to_cl(gy)
    gx = gw = None
    if need_x:
        gx_cl = x.new_empty((b, t, h, wd, c))
        gin(gy_cl.numpy(), w.reshape(c, -1).t().contiguous().numpy(), kernel, stride, padding, gx_cl.numpy())
        gx = _from_cl(gx_cl, x)
    if need_w:
        part = x.new_empty((b, kernel[0] * kernel[1] * kernel[2], c))
        xp = _padded_cl(x, padding) if xp is None else xp
        gwt(xp.numpy(), gy_cl.numpy(), kernel, stride, part.numpy())
        gw = part.sum(0, dtype=torch.float64).t().to(w.dtype).reshape(w.shape)
    return gx, gw


def _numba_backward_contiguous(x: torch.Tensor, xp: torch.Tensor | None, w: torch.Tensor, gy: torch.Tensor,
                               stride: Triple, padding: Triple, need_x: bool,
                               need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Both gradients for contiguous x (B, C, T, H, W) and gy (B, C, To, Ho, Wo), no layout change: grad_input by
    oneDNN (the flipped conv, or one conv per input phase), grad_weight by numba's loop over channels-last copies
    (a loop over the contiguous (b, c) planes instead was 2-6x slower on X3D's strided and late layers)."""
    kernel = (w.shape[2], w.shape[3], w.shape[4])
    gx = gw = None
    if need_x:
        gx = (_flipped_conv(gy, w, padding) if _flipped_conv_applies(kernel, stride, padding)
              else _phase_grad_input(gy, w, (x.shape[2], x.shape[3], x.shape[4]), stride, padding))
    if need_w:
        _, _, gwt = _run_kernels()
        part = x.new_empty((x.shape[0], kernel[0] * kernel[1] * kernel[2], x.shape[1]))
        xp = _padded_cl(x, padding) if xp is None else xp
        gwt(xp.numpy(), _to_cl(gy).numpy(), kernel, stride, part.numpy())
        gw = part.sum(0, dtype=torch.float64).t().to(w.dtype).reshape(w.shape)
    return gx, gw


def _flipped_conv_applies(kernel: Triple, stride: Triple, padding: Triple) -> bool:
    """Whether grad_input is the depthwise conv of gy with the flipped kernel (stride 1, padding <= kernel - 1)."""
    return stride == (1, 1, 1) and all(k - 1 - p >= 0 for k, p in zip(kernel, padding))


def _flipped_conv(gy: torch.Tensor, w: torch.Tensor, padding: Triple) -> torch.Tensor:
    """grad_input of a stride-1 depthwise conv: gy (B, C, T, H, W) correlated with the flipped kernel."""
    flip_pad = (w.shape[2] - 1 - padding[0], w.shape[3] - 1 - padding[1], w.shape[4] - 1 - padding[2])
    return F.conv3d(gy, w.flip(2, 3, 4), None, 1, flip_pad, 1, w.shape[0])


def _phase_grad_input(gy: torch.Tensor, w: torch.Tensor, size: Triple, stride: Triple,
                      padding: Triple) -> torch.Tensor:
    """grad_input of a strided depthwise conv as stride-1 depthwise convs, one per phase of the input.

    Along an axis with stride s, input position i = s m + r receives gy[m + (r + p - k) / s] * w[k] from the taps
    k = r + p (mod s) only: for each phase r a correlation of gy with that sub-kernel, which oneDNN's forward
    depthwise kernel computes fast. gy (B, C, To, Ho, Wo), w (C, 1, kt, kh, kw) -> (B, C, T, H, W) contiguous.
    """
    b, c = gy.shape[0], gy.shape[1]
    gx = gy.new_zeros((b, c, *size))
    per_axis = [[_phase(r, n, o, k, s, p) for r in range(s)] for n, o, k, s, p in
                zip(size, gy.shape[2:], w.shape[2:], stride, padding)]
    for pt_ in per_axis[0]:
        for ph_ in per_axis[1]:
            for pw_ in per_axis[2]:
                if not (pt_[1] and ph_[1] and pw_[1]):
                    continue  # no tap reaches this phase: its gradient stays zero
                sub = w[:, :, pt_[1]][:, :, :, ph_[1]][:, :, :, :, pw_[1]]
                pads: list[int] = []
                for ph in (pw_, ph_, pt_):  # F.pad: last axis first
                    pads += [ph[2], ph[3]]
                part = F.conv3d(F.pad(gy, pads), sub, None, 1, 0, 1, c)
                gx[:, :, pt_[0]::stride[0], ph_[0]::stride[1], pw_[0]::stride[2]] = part
    return gx


def _phase(r: int, n: int, o: int, k: int, s: int, p: int) -> tuple[int, list[int], int, int]:
    """Phase r of an axis (input size n, output size o, kernel k, stride s, padding p): (r, the taps that reach
    it in correlation order, left pad, right pad) such that a correlation of the padded gy with those taps gives
    the phase's ceil((n - r) / s) gradient values (F.pad crops where a pad is negative)."""
    taps = sorted((kk for kk in range(k) if (r + p - kk) % s == 0), reverse=True)
    count = max(0, -(-(n - r) // s))
    if not taps or count == 0:
        return r, [], 0, 0
    d_min = (r + p - taps[0]) // s  # offset of gy for the first tap of the correlation
    left = -d_min
    right = count + len(taps) - 1 - left - o
    return r, taps, left, right


def _phases(size: Triple, stride: Triple, padding: Triple) -> list[tuple[tuple[slice, ...], tuple[Any, ...]]]:
    """For each stride phase (rt, rh, rw): (the input positions in it, as strided slices of (T, H, W); where they
    sit in the phase block: (rt, rh, rw, then a slice of (Tq + 1, Hq, Wq) each)). Every input position is in one."""
    out: list[tuple[tuple[slice, ...], tuple[Any, ...]]] = []
    per_axis = []
    for n, s, p in zip(size, stride, padding):
        axis = []
        for r in range(s):
            first = (r - p) % s
            if first < n:
                count = (n - first + s - 1) // s
                axis.append((r, slice(first, None, s), slice((first + p) // s, (first + p) // s + count)))
        per_axis.append(axis)
    for rt, it, qt in per_axis[0]:
        for rh, ih, qh in per_axis[1]:
            for rw, iw, qw in per_axis[2]:
                out.append(((it, ih, iw), (rt, rh, rw, qt, qh, qw)))
    return out


def _planes_forward(x: torch.Tensor, w: torch.Tensor, stride: Triple,
                    padding: Triple) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (B, C, To, Ho, Wo), xq (B C, S, Tq + 1, Hq, Wq): x's planes zero-padded and split into their stride
    phases, kept for the weight gradient) for contiguous x (B, C, T, H, W): the split and the crops by torch's
    strided copies, the taps by ``numba_planes``."""
    from piumr.kernels import numba_planes as npl

    b, c, t, h, wd = x.shape
    kernel = (w.shape[2], w.shape[3], w.shape[4])
    out, block = npl.geometry((t, h, wd), kernel, stride, padding)
    xq = x.new_zeros((b * c, stride[0] * stride[1] * stride[2], block[0] + 1, block[1], block[2]))
    x4 = x.detach().reshape(b * c, t, h, wd)
    q7 = xq.view(b * c, *stride, block[0] + 1, block[1], block[2])
    for src, (rt, rh, rw, qt, qh, qw) in _phases((t, h, wd), stride, padding):
        q7[:, rt, rh, rw, qt, qh, qw] = x4[:, src[0], src[1], src[2]]
    acc = x.new_empty((b * c, out[0], block[1], block[2]))
    npl.forward(xq.view(b * c, xq.shape[1], -1).numpy(), w.detach().reshape(c, -1).contiguous().numpy(),
                npl.taps(kernel, stride, block), acc.view(b * c, -1).numpy(), _parallel())
    return acc[:, :, :out[1], :out[2]].reshape(b, c, *out).contiguous(), xq


def _planes_backward(size: tuple[int, ...], xq: torch.Tensor | None, w: torch.Tensor, gy: torch.Tensor,
                     stride: Triple, padding: Triple, need_x: bool,
                     need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Both gradients by ``numba_planes``: x of ``size`` (B, C, T, H, W), gy (B, C, To, Ho, Wo); xq from the
    forward (None when the weight needs no gradient)."""
    from piumr.kernels import numba_planes as npl

    b, c, t, h, wd = size
    kernel = (w.shape[2], w.shape[3], w.shape[4])
    out, block = npl.geometry((t, h, wd), kernel, stride, padding)
    n, nph = b * c, stride[0] * stride[1] * stride[2]
    if xq is None:
        if need_w:
            raise RuntimeError("the depthwise conv's weight gradient needs the input kept by the forward")
        xq = gy.new_zeros((1, nph, 1, 1, 1))
    ge = gy.new_zeros((n, out[0], block[1], block[2]))
    ge[:, :, :out[1], :out[2]] = gy.reshape(n, *out)
    gq = gy.new_empty((n, nph, block[0] + 1, block[1], block[2]) if need_x else (1, 1, 1))
    part = gy.new_empty((n, kernel[0] * kernel[1] * kernel[2]) if need_w else (1, 1))
    npl.backward(xq.view(xq.shape[0], nph, -1).numpy(), ge.view(n, -1).numpy(), w.detach().reshape(c, -1).contiguous().numpy(),
                 npl.taps(kernel, stride, block), gq.view(gq.shape[0], gq.shape[1], -1).numpy(), part.numpy(),
                 need_x, need_w, _parallel())
    gx = None
    if need_x:
        gx = gy.new_empty((b, c, t, h, wd))
        gx4 = gx.view(n, t, h, wd)
        q7 = gq.view(n, *stride, block[0] + 1, block[1], block[2])
        for src, (rt, rh, rw, qt, qh, qw) in _phases((t, h, wd), stride, padding):
            gx4[:, src[0], src[1], src[2]] = q7[:, rt, rh, rw, qt, qh, qw]
    gw = part.view(b, c, -1).sum(0, dtype=torch.float64).to(w.dtype).reshape(w.shape) if need_w else None
    return gx, gw


def _parallel() -> bool:
    """Whether the numba loops run in parallel: torch runs more than one intra-op thread (numba gets as many)."""
    from piumr.kernels import numba_depthwise as nd

    nd.set_threads(max(1, torch.get_num_threads()))
    return nd.threads() > 1


def _run_kernels() -> tuple[Any, Any, Any]:
    """The numba kernels (imported, and compiled or loaded from numba's cache, on first use), with numba's thread
    count set to torch's (capped by numba's pool, which is the number of cores)."""
    from piumr.kernels import numba_depthwise as nd

    nd.set_threads(max(1, torch.get_num_threads()))
    return nd.forward, nd.grad_input, nd.grad_weight


def _torch_backward(x: torch.Tensor, w: torch.Tensor, gy: torch.Tensor, stride: Triple, padding: Triple,
                    need_x: bool, need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    c = x.shape[1]
    kt, kh, kw = (w.shape[2], w.shape[3], w.shape[4])
    gx = gw = None
    if need_x:
        if _flipped_conv_applies((kt, kh, kw), stride, padding):
            gx = _flipped_conv(gy, w, padding)
        else:
            gx = _phase_grad_input(gy, w, (x.shape[2], x.shape[3], x.shape[4]), stride, padding)
        gx = gx.contiguous(memory_format=_format(x))
    if need_w:
        xp = _padded_cl(x, padding, stride)
        gy_cl = _to_cl(gy)
        to, ho, wo = gy_cl.shape[1:4]
        st, sh, sw = stride
        taps = []
        for a in range(kt):
            for i in range(kh):
                for j in range(kw):
                    shifted = xp[:, a:a + st * (to - 1) + 1:st, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                    taps.append((gy_cl * shifted).sum(dim=(0, 1, 2, 3), dtype=torch.float64))
        gw = torch.stack(taps, 1).to(w.dtype).reshape(w.shape)
    return gx, gw


class _DepthwiseFunction(torch.autograd.Function):
    """autograd of the depthwise conv: forward and both gradients by ``impl``."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, w: torch.Tensor, stride: Triple, padding: Triple,
                impl: CpuDepthwiseImpl, keep_padded: bool) -> torch.Tensor:
        ctx.stride, ctx.padding, ctx.impl = stride, padding, impl  # type: ignore[attr-defined]
        planes = impl == "numba" and _format(x) == torch.contiguous_format and x.shape[3] * x.shape[4] >= PLANES_MIN_AREA
        ctx.planes = planes  # type: ignore[attr-defined]
        if planes:
            y, xq = _planes_forward(x, w, stride, padding)
            ctx.size = tuple(x.shape)  # type: ignore[attr-defined]
            ctx.save_for_backward(w, xq if keep_padded else None)  # type: ignore[arg-type]
            return y
        cl = impl == "numba" and _format(x) == torch.channels_last_3d
        # made here, while x is in cache, also for the backward (where a transposing copy of x read back from
        # memory made the whole demo step ~20 % slower)
        xp = _padded_cl(x, padding) if impl == "numba" and (cl or keep_padded) else None
        ctx.save_for_backward(x, w, xp if keep_padded else None)  # type: ignore[arg-type]  # None is allowed
        if cl and xp is not None:
            return _numba_forward(x, xp, w, stride, padding)
        return F.conv3d(x, w, None, stride, padding, 1, x.shape[1]).contiguous(memory_format=_format(x))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if ctx.planes:
            w, xq = ctx.saved_tensors
            gx, gw = _planes_backward(ctx.size, xq, w, gy, ctx.stride, ctx.padding, need_x, need_w)
            return gx, gw, None, None, None, None
        x, w, xp = ctx.saved_tensors
        if ctx.impl == "numba":
            gx, gw = _numba_backward(x, xp, w, gy, ctx.stride, ctx.padding, need_x, need_w)
        else:
            gx, gw = _torch_backward(x, w, gy, ctx.stride, ctx.padding, need_x, need_w)
        return gx, gw, None, None, None, None


def cpu_depthwise_conv3d(x: torch.Tensor, w: torch.Tensor, stride: Triple = (1, 1, 1),
                         padding: Triple = (0, 0, 0), impl: CpuDepthwiseImpl = "numba") -> torch.Tensor:
    """Depthwise conv3d of x (B, C, T, H, W) with w (C, 1, kt, kh, kw) -> (B, C, To, Ho, Wo), in x's memory format.

    ``impl="numba"`` falls back to ``"autograd"`` for tensors other than float32 / float64 or when numba is not importable. Raises
    ``ValueError`` for a weight that is not depthwise or tensors that are not on the CPU.
    """
    if x.dim() != 5 or w.dim() != 5 or w.shape[0] != x.shape[1] or w.shape[1] != 1:
        raise ValueError(f"depthwise conv3d needs x (B, C, T, H, W) and w (C, 1, kt, kh, kw); got x "
                         f"{tuple(x.shape)}, w {tuple(w.shape)}")
    if x.device.type != "cpu" or w.device.type != "cpu":
        raise ValueError(f"the CPU depthwise conv got tensors on {x.device} / {w.device}")
    if impl == "numba" and (x.dtype not in _NUMBA_DTYPES or w.dtype != x.dtype or not numba_available()):
        impl = "autograd"
    keep_padded = impl == "numba" and torch.is_grad_enabled() and w.requires_grad
    out: torch.Tensor = _DepthwiseFunction.apply(x, w, stride, padding, impl, keep_padded)
    return out
