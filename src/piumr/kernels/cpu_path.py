"""The CPU training path's drop-in convolutions: depthwise convs with a cheap backward, pointwise convs as matmuls.

``swap_cpu_convs(model, depthwise=..., pointwise=...)`` replaces, in place,

- every depthwise ``nn.Conv3d`` (groups = in = out channels, any kernel, stride and zero padding; X3D's 3x3x3
  ``conv_b`` and its stem's temporal 5x1x1 ``conv_xy``) by a :class:`CpuDepthwiseConv3d` running
  :func:`piumr.kernels.cpu_depthwise.cpu_depthwise_conv3d` (``"numba"`` or ``"autograd"``);
- (``swap_swish``) pytorchvideo's ``Swish`` by ``nn.SiLU``;
- with ``pointwise="matmul"``, every 1x1x1 ``nn.Conv3d`` (groups 1, no padding; strided ones subsample first) by a
  :class:`MatmulConv3d`: ``F.linear`` over the channels of a channels-last view, whose backward is two matmuls.

Each replacement shares the replaced conv's ``weight`` (and ``bias``) Parameter, so ``state_dict()`` keys,
``parameters()``, optimiser state and checkpoints are unchanged. Off the CPU both run ``F.conv3d``. Outputs keep
the input's memory format (contiguous or ``torch.channels_last_3d``, ``speed.channels_last``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from piumr.kernels.cpu_depthwise import CpuDepthwiseImpl, cpu_depthwise_conv3d

__all__ = ["CpuDepthwiseConv3d", "MatmulConv3d", "PointwiseImpl", "is_depthwise_conv3d", "is_pointwise_conv3d",
           "swap_cpu_convs", "swap_swish"]

PointwiseImpl = Literal["conv3d", "matmul"]
Triple = tuple[int, int, int]


def _triple(v: tuple[int, ...] | int | str) -> Triple:
    if isinstance(v, str):  # nn.Conv3d's padding="same"/"valid": not a depthwise conv this path handles
        raise ValueError(f"string padding {v!r} is not supported")
    t = (v, v, v) if isinstance(v, int) else tuple(v)
    return int(t[0]), int(t[1]), int(t[2])


def is_depthwise_conv3d(module: nn.Module) -> bool:
    """True for nn.Conv3d with groups = in = out channels, zero padding, dilation 1 and integer padding."""
    return (type(module) is nn.Conv3d and module.groups == module.in_channels == module.out_channels
            and not isinstance(module.padding, str) and module.padding_mode == "zeros"
            and tuple(module.dilation) == (1, 1, 1))


def is_pointwise_conv3d(module: nn.Module) -> bool:
    """True for nn.Conv3d with a 1x1x1 kernel, groups 1, no padding and dilation 1 (any stride)."""
    return (type(module) is nn.Conv3d and tuple(module.kernel_size) == (1, 1, 1) and module.groups == 1
            and not isinstance(module.padding, str) and tuple(module.padding) == (0, 0, 0)
            and tuple(module.dilation) == (1, 1, 1))


class CpuDepthwiseConv3d(nn.Module):
    """A depthwise ``nn.Conv3d`` (its ``weight`` (C, 1, kt, kh, kw) and ``bias`` (C,) or None, shared) whose
    forward and backward run ``cpu_depthwise_conv3d`` on the CPU.

    forward: (B, C, T, H, W) -> (B, C, To, Ho, Wo) in x's memory format (``F.conv3d`` off the CPU).
    """

    def __init__(self, conv: nn.Conv3d, impl: CpuDepthwiseImpl) -> None:
        super().__init__()
        if not is_depthwise_conv3d(conv):
            raise ValueError(f"not a depthwise Conv3d: {conv}")
        self.channels = conv.in_channels
        self.kernel_size: Triple = _triple(conv.kernel_size)
        self.stride: Triple = _triple(conv.stride)
        self.padding: Triple = _triple(conv.padding)
        self.impl: CpuDepthwiseImpl = impl
        self.weight = conv.weight
        self.bias = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W) -> (B, C, To, Ho, Wo)."""
        weight: torch.Tensor = self.weight
        bias: torch.Tensor | None = self.bias
        if x.device.type != "cpu":
            return F.conv3d(x, weight, bias, self.stride, self.padding, 1, self.channels)
        y = cpu_depthwise_conv3d(x, weight, self.stride, self.padding, self.impl)
        return y if bias is None else y + bias.view(1, -1, 1, 1, 1)

    def extra_repr(self) -> str:
        return (f"{self.channels}, {self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.channels}, impl={self.impl}")


class MatmulConv3d(nn.Module):
    """A 1x1x1 ``nn.Conv3d`` (its ``weight`` (Cout, Cin, 1, 1, 1) and ``bias`` shared) as ``F.linear`` over channels.

    forward: (B, Cin, T, H, W) -> (B, Cout, To, Ho, Wo), strided input subsampled first, in the input's memory
    format: channels_last_3d as ``F.linear`` over the channels, contiguous as ``W @ x`` per clip (both
    without a copy of x). ``F.conv3d`` off the CPU.
    """

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        if not is_pointwise_conv3d(conv):
            raise ValueError(f"not a 1x1x1 Conv3d: {conv}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.stride: Triple = _triple(conv.stride)
        self.weight = conv.weight
        self.bias = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, Cin, T, H, W) -> (B, Cout, To, Ho, Wo)."""
        weight: torch.Tensor = self.weight
        bias: torch.Tensor | None = self.bias
        if x.device.type != "cpu":
            return F.conv3d(x, weight, bias, self.stride)
        st, sh, sw = self.stride
        if self.stride != (1, 1, 1):
            x = x[:, :, ::st, ::sh, ::sw]
        w2 = weight.view(self.out_channels, self.in_channels)
        if x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
            return F.linear(x.permute(0, 2, 3, 4, 1), w2, bias).permute(0, 4, 1, 2, 3)  # (B,T,H,W,C) @ W^T
        b, _, t, h, w = x.shape
        # (B, Cout, Cin) @ (B, Cin, THW), the weight broadcast over B without a copy (torch.matmul would fold B into
        # the rows and copy x transposed)
        x3 = x.reshape(b, self.in_channels, t * h * w)
        y = torch.bmm(w2.unsqueeze(0).expand(b, -1, -1), x3) if bias is None else \
            torch.baddbmm(bias.view(1, -1, 1).expand(b, -1, t * h * w), w2.unsqueeze(0).expand(b, -1, -1), x3)
        return y.view(b, self.out_channels, t, h, w)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size=(1, 1, 1), stride={self.stride}, impl=matmul"


def swap_cpu_convs(model: nn.Module, *, depthwise: CpuDepthwiseImpl | None,
                   pointwise: PointwiseImpl = "conv3d") -> tuple[int, int]:
    """Replace ``model``'s depthwise (``depthwise`` not None) and 1x1x1 (``pointwise="matmul"``) Conv3d modules in
    place; return (depthwise swapped, pointwise swapped). Weights are shared, training mode kept."""
    counts = [0, 0]
    for name, module in list(model.named_modules()):
        new: nn.Module | None = None
        if depthwise is not None and is_depthwise_conv3d(module):
            assert isinstance(module, nn.Conv3d)
            new, slot = CpuDepthwiseConv3d(module, depthwise), 0
        elif pointwise == "matmul" and is_pointwise_conv3d(module):
            assert isinstance(module, nn.Conv3d)
            new, slot = MatmulConv3d(module), 1
        if new is None:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new.train(module.training)
        setattr(parent, child, new)
        counts[slot] += 1
    return counts[0], counts[1]


def swap_swish(model: nn.Module) -> int:
    """Replace pytorchvideo's ``Swish`` (x * sigmoid(x) as a Python autograd Function that recomputes the sigmoid
    in its backward) by ``nn.SiLU``, the same function in one native kernel each way; return how many."""
    from pytorchvideo.layers.swish import Swish

    count = 0
    for name, module in list(model.named_modules()):
        if type(module) is Swish:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, nn.SiLU())
            count += 1
    return count
