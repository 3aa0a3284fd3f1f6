"""The switch that puts a depthwise kernel (Triton's or ATen's) into an X3D model.

``apply_fast_path(model, mode)`` swaps every X3D depthwise conv (pytorchvideo's ``conv_b``: nn.Conv3d(C, C,
3x3x3, stride (1, s, s), s in {1, 2}, padding 1, groups=C, no bias)) for a ``TritonDepthwiseConv3d`` that
shares the very same weight Parameter, so parameter names, ``state_dict()`` keys, optimizer state and
pretrained checkpoints are untouched. Nothing else in the model changes.

``swap_depthwise(model, impl, tiles)`` is the training path's switch (``speed.depthwise``): ``"conv3d"`` keeps
nn.Conv3d (cuDNN on CUDA), ``"aten"`` puts in :class:`AtenDepthwiseConv3d` (ATen's own depthwise-3D CUDA kernel,
``torch._C._nn.conv_depthwise3d``, which cuDNN's heuristics bypass), ``"triton"`` the Triton kernels with
optional tiles per shape. Off CUDA both replacements run ``F.conv3d`` (ATen's kernel exists for CUDA only).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from piumr.kernels.depthwise import (
    DepthwiseConv3dFunction, Tiles, triton_available, triton_interpreted,
)

_HAS_TRITON = triton_available()

__all__ = ["AtenDepthwiseConv3d", "DepthwiseImpl", "FastPathMode", "TritonDepthwiseConv3d", "apply_fast_path",
           "find_depthwise_convs", "is_x3d_depthwise_conv", "swap_depthwise"]

FastPathMode = Literal["auto", "triton", "reference"]
DepthwiseImpl = Literal["conv3d", "aten", "triton"]


class TritonDepthwiseConv3d(nn.Module):
    """Drop-in for pytorchvideo X3D's depthwise ``conv_b``: Conv3d(C, C, 3, stride=(1, s, s), padding=1,
    groups=C, bias=False).

    Attributes: ``weight`` (Parameter, (C, 1, 3, 3, 3); the same name as nn.Conv3d, so state_dicts and
    Kinetics checkpoints load unchanged), ``stride`` ((1, s, s)), ``channels``, ``tiles`` (optional
    :data:`Tiles` per shape).
    forward: (B, C, T, H, W) -> (B, C, T, Ho, Wo). Runs the Triton kernels on CUDA tensors, or on CPU tensors
    when the kernels were built for the interpreter (``TRITON_INTERPRET=1``/``PIUMR_TRITON_INTERPRET=1``);
    anything else (CPU, no triton) uses ``F.conv3d``, so CPU users never break. Under CUDA autocast x and
    weight are cast to the autocast dtype, as autocast does for nn.Conv3d.
    """

    def __init__(self, channels: int, stride: int = 1, weight: nn.Parameter | None = None,
                 tiles: Tiles | None = None) -> None:
        super().__init__()
        self.tiles = tiles
        if stride not in (1, 2):
            raise ValueError(f"spatial stride must be 1 or 2, got {stride}")
        if weight is None:
            weight = nn.Parameter(torch.empty(channels, 1, 3, 3, 3))
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # nn.Conv3d's default init
        if tuple(weight.shape) != (channels, 1, 3, 3, 3):
            raise ValueError(f"weight must be ({channels}, 1, 3, 3, 3), got {tuple(weight.shape)}")
        self.channels = channels
        self.stride: tuple[int, int, int] = (1, stride, stride)
        self.weight = weight

    @classmethod
    def from_conv(cls, conv: nn.Conv3d, tiles: Tiles | None = None) -> TritonDepthwiseConv3d:
        """Wrap a matching depthwise nn.Conv3d, sharing (not copying) its weight Parameter."""
        if not is_x3d_depthwise_conv(conv):
            raise ValueError(f"not an X3D depthwise 3x3x3 conv: {conv}")
        weight = conv.weight
        if not isinstance(weight, nn.Parameter):
            raise TypeError(f"conv.weight must be an nn.Parameter to be shared, got {type(weight).__name__}")
        return cls(conv.in_channels, stride=int(conv.stride[1]), weight=weight, tiles=tiles)

    def use_triton(self, x: torch.Tensor) -> bool:
        """Whether forward(x) runs the Triton kernels."""
        return _HAS_TRITON and (x.is_cuda or triton_interpreted())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W) -> (B, C, T, Ho, Wo)."""
        weight: torch.Tensor = self.weight
        if not self.use_triton(x):
            return F.conv3d(x, weight, None, self.stride, 1, 1, self.channels)
        if torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
            x, weight = x.to(dtype), weight.to(dtype)
        out: torch.Tensor = DepthwiseConv3dFunction.apply(x, weight, self.stride[1], self.tiles)
        return out

    def extra_repr(self) -> str:
        return f"{self.channels}, {self.channels}, kernel_size=(3, 3, 3), stride={self.stride}, padding=(1, 1, 1)"


def is_x3d_depthwise_conv(module: nn.Module) -> bool:
    """True for nn.Conv3d(C, C, 3x3x3, stride (1, s, s) with s in {1, 2}, padding 1, groups=C, no bias)."""
    return (
        type(module) is nn.Conv3d
        and module.groups == module.in_channels == module.out_channels
        and tuple(module.kernel_size) == (3, 3, 3)
        and module.stride[0] == 1
        and module.stride[1] == module.stride[2]
        and module.stride[1] in (1, 2)
        and tuple(module.padding) == (1, 1, 1)
        and tuple(module.dilation) == (1, 1, 1)
        and module.padding_mode == "zeros"
        and module.bias is None
    )


class AtenDepthwiseConv3d(nn.Module):
    """X3D's depthwise ``conv_b`` through ATen's CUDA kernel ``conv_depthwise3d``.

    ``weight`` (C, 1, 3, 3, 3) is the replaced conv's own Parameter; ``stride`` (1, s, s), padding 1, no bias.
    forward: (B, C, T, H, W) -> (B, C, T, Ho, Wo). On CUDA it calls ``torch._C._nn.conv_depthwise3d``
    (autograd has its backward); elsewhere ``F.conv3d``. ATen's op is not on autocast's lists, so under
    autocast x and weight are cast to the autocast dtype here, as autocast does for nn.Conv3d.
    """

    def __init__(self, channels: int, stride: int, weight: nn.Parameter) -> None:
        super().__init__()
        self.channels = channels
        self.stride: tuple[int, int, int] = (1, stride, stride)
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W) -> (B, C, T, Ho, Wo)."""
        weight: torch.Tensor = self.weight
        if not x.is_cuda:
            return F.conv3d(x, weight, None, self.stride, 1, 1, self.channels)
        if torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
            x, weight = x.to(dtype), weight.to(dtype)
        op = getattr(torch._C._nn, "conv_depthwise3d")  # not in torch's type stubs
        out: torch.Tensor = op(x, weight.to(x.dtype), [3, 3, 3], None, list(self.stride), [1, 1, 1], [1, 1, 1])
        return out

    def extra_repr(self) -> str:
        return f"{self.channels}, {self.channels}, kernel_size=(3, 3, 3), stride={self.stride}, padding=(1, 1, 1)"


def swap_depthwise(model: nn.Module, impl: DepthwiseImpl, tiles: Tiles | None = None) -> int:
    """Replace every X3D depthwise conv of ``model`` (in place) by ``impl``'s module; return how many.

    ``"conv3d"`` changes nothing (returns 0); ``"aten"`` needs nothing beyond torch; ``"triton"`` raises
    ``RuntimeError`` when triton is not importable. Weights are shared, as with :func:`apply_fast_path`.
    """
    if impl not in ("conv3d", "aten", "triton"):
        raise ValueError(f"depthwise implementation must be conv3d, aten or triton, got {impl!r}")
    if impl == "conv3d":
        return 0
    if impl == "triton" and not triton_available():
        raise RuntimeError("the Triton depthwise kernels need triton, which is not importable")
    replaced = 0
    for name in find_depthwise_convs(model):
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        conv = parent.get_submodule(child_name)
        assert isinstance(conv, nn.Conv3d) and isinstance(conv.weight, nn.Parameter)
        new: nn.Module = (TritonDepthwiseConv3d.from_conv(conv, tiles) if impl == "triton"
                          else AtenDepthwiseConv3d(conv.in_channels, int(conv.stride[1]), conv.weight))
        new.train(conv.training)
        setattr(parent, child_name, new)
        replaced += 1
    return replaced


def find_depthwise_convs(model: nn.Module) -> list[str]:
    """Qualified names of the modules ``apply_fast_path`` would replace, in ``named_modules`` order."""
    return [name for name, module in model.named_modules() if is_x3d_depthwise_conv(module)]


def _model_device(model: nn.Module) -> torch.device | None:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return None


def apply_fast_path(model: nn.Module, mode: FastPathMode = "auto") -> int:
    """Replace X3D depthwise convs in ``model`` (in place) by ``TritonDepthwiseConv3d``; return how many.

    mode:
        ``"reference"``: change nothing, return 0.
        ``"triton"``: replace every matching conv (requires triton to be importable). The new module runs the
        Triton kernels on CUDA tensors (or on CPU under ``TRITON_INTERPRET=1``) and ``F.conv3d`` otherwise.
        ``"auto"``: like ``"triton"`` when triton is importable and the model's parameters are already on a
        CUDA device (move the model to the GPU first); otherwise change nothing and return 0.

    The replacement shares the original ``weight`` Parameter object, so ``model.state_dict()`` keys and
    ``model.parameters()`` are identical before and after, and checkpoints load either way.
    """
    if mode not in ("auto", "triton", "reference"):
        raise ValueError(f"mode must be 'auto', 'triton' or 'reference', got {mode!r}")
    if mode == "reference":
        return 0
    if not triton_available():
        if mode == "triton":
            raise RuntimeError("apply_fast_path(mode='triton'): triton is not importable")
        return 0
    if mode == "auto":
        device = _model_device(model)
        if device is None or device.type != "cuda":
            return 0
    replaced = 0
    for name in find_depthwise_convs(model):
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        conv = parent.get_submodule(child_name)
        if not isinstance(conv, nn.Conv3d):  # pragma: no cover - find_depthwise_convs only yields Conv3d
            continue
        new = TritonDepthwiseConv3d.from_conv(conv)
        new.train(conv.training)
        setattr(parent, child_name, new)
        replaced += 1
    return replaced
