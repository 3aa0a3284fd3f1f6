"""Ways to initialise X3D's stem (its narrow early layers), for ``ModelConfig.early_init``.

pytorchvideo's stem is a spatial conv ``conv_t`` (3 -> C0, 1 x 3 x 3, stride 2 in space) then a temporal depthwise
conv ``conv_xy`` (C0 taps of 5 x 1 x 1), BatchNorm and ReLU; x3d_tiny has C0 = 8. Each function takes the
pytorchvideo ``Net`` (X3D) and changes its stem's weights in place (no-op for other families).

- ``default``: pytorchvideo's initialisation (Kaiming normal, fan out);
- ``ortho_stem``: the C0 spatial filters orthogonal (as 27-dimensional vectors; no two alike);
- ``dirac_t``: each temporal tap an identity (the centre tap 1): the stem passes every frame's spatial response on
  unchanged, and training learns the temporal filter;
- ``ortho_dirac``: both;
- ``zero_mean_t``: pytorchvideo's random temporal taps minus their mean: every stem channel starts as a temporal
  high-pass (a change detector) instead of passing each frame's static appearance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["EARLY_INITS"]


def _stem_convs(net: nn.Module) -> tuple[nn.Conv3d, nn.Conv3d] | None:
    blocks: Any = getattr(net, "blocks", None)
    conv = getattr(getattr(blocks[0], "conv", None), "conv_t", None) if blocks is not None else None
    if not isinstance(conv, nn.Conv3d):
        return None
    return conv, blocks[0].conv.conv_xy


@torch.no_grad()
def _ortho(net: nn.Module) -> None:
    convs = _stem_convs(net)
    if convs is not None:
        w = convs[0].weight  # (C0, 3, 1, 3, 3)
        flat = torch.empty(w.shape[0], w[0].numel())
        nn.init.orthogonal_(flat)
        w.copy_(flat.view_as(w))


@torch.no_grad()
def _dirac(net: nn.Module) -> None:
    convs = _stem_convs(net)
    if convs is not None:
        w = convs[1].weight  # (C0, 1, kt, 1, 1)
        w.zero_()
        w[:, :, w.shape[2] // 2] = 1.0


@torch.no_grad()
def _zero_mean_t(net: nn.Module) -> None:
    convs = _stem_convs(net)
    if convs is not None:
        w = convs[1].weight  # (C0, 1, kt, 1, 1)
        w.sub_(w.mean(dim=2, keepdim=True))


def _both(net: nn.Module) -> None:
    _ortho(net)
    _dirac(net)


EARLY_INITS: dict[str, Callable[[nn.Module], None]] = {
    "default": lambda net: None, "ortho_stem": _ortho, "dirac_t": _dirac, "ortho_dirac": _both,
    "zero_mean_t": _zero_mean_t,
}
