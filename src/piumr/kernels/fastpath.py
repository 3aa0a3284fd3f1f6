"""The switch that puts the Triton depthwise kernels into an X3D model.

``apply_fast_path(model, mode)`` swaps every X3D depthwise conv (pytorchvideo's ``conv_b``: nn.Conv3d(C, C,
3x3x3, stride (1, s, s), s in {1, 2}, padding 1, groups=C, no bias)) for a ``TritonDepthwiseConv3d`` that
shares the very same weight Parameter, so parameter names, ``state_dict()`` keys, optimizer state and
pretrained checkpoints are untouched. Nothing else in the model changes.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from piumr.kernels.depthwise import TritonDepthwiseConv3d, is_x3d_depthwise_conv, triton_available

__all__ = ["FastPathMode", "apply_fast_path", "find_depthwise_convs"]

FastPathMode = Literal["auto", "triton", "reference"]


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
