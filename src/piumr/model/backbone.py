"""pytorchvideo X3D backbones, built locally (nothing is ever downloaded).

Module names are pytorchvideo's own (``blocks.0.conv.conv_t`` ...), so Kinetics
checkpoints (``.pyth`` files holding ``model_state``) load unchanged.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from piumr.config import ModelConfig
from piumr.errors import CheckpointError, load_error

__all__ = ["X3DSpec", "X3D_SPECS", "build_x3d", "stage_channels", "load_kinetics_checkpoint", "CheckpointError"]


@dataclass(frozen=True)
class X3DSpec:
    """Builder arguments of one X3D size (pytorchvideo hub values)."""

    clip_length: int
    crop_size: int
    depth_factor: float
    width_factor: float = 2.0
    stem_dim_in: int = 12
    head_dim_out: int = 2048
    bottleneck_factor: float = 2.25


X3D_SPECS: dict[str, X3DSpec] = {
    "x3d_xs": X3DSpec(4, 160, 2.2),
    "x3d_s": X3DSpec(13, 160, 2.2),
    "x3d_m": X3DSpec(16, 224, 2.2),
    "x3d_l": X3DSpec(16, 312, 5.0),
    # not a paper model: a very small X3D for CPU demos and tests
    "x3d_tiny": X3DSpec(4, 64, 1.0, width_factor=1.0, stem_dim_in=8, head_dim_out=256),
    # not a paper model either: X3D-XS widths at depth 1.0, for the CPU person-shift check
    "x3d_mini": X3DSpec(4, 64, 1.0, head_dim_out=256),
}


def build_x3d(name: str, *, num_classes: int, frames: int, crop: int,
              dropout: float = ModelConfig().dropout) -> nn.Module:
    """Build pytorchvideo's X3D ``name`` for (B, 3, frames, crop, crop) input.

    ``head_activation=None`` so training outputs are logits (pytorchvideo's
    default Softmax would feed probabilities to cross-entropy). The head's fixed
    AvgPool3d is replaced by a global AdaptiveAvgPool3d: identical for the
    size it was built for, and correct for any other (it has no parameters, so
    checkpoint keys are unchanged). Returns a ``pytorchvideo.models.net.Net``.
    """
    if name not in X3D_SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(X3D_SPECS)}")
    spec = X3D_SPECS[name]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        from pytorchvideo.models.x3d import create_x3d

    net: nn.Module = create_x3d(
        input_clip_length=frames, input_crop_size=crop, model_num_class=num_classes,
        dropout_rate=dropout, width_factor=spec.width_factor, depth_factor=spec.depth_factor,
        stem_dim_in=spec.stem_dim_in, head_dim_out=spec.head_dim_out,
        bottleneck_factor=spec.bottleneck_factor, head_activation=None,
    )
    head: Any = getattr(net, "blocks")[5]
    head.pool.pool = nn.AdaptiveAvgPool3d(1)
    return net


def stage_channels(stage: nn.Module) -> int:
    """Output channels of a pytorchvideo residual stage (its last Conv3d)."""
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv3d)]
    if not convs:
        raise ValueError("stage has no Conv3d")
    return int(convs[-1].out_channels)


def load_kinetics_checkpoint(net: nn.Module, path: Path) -> list[str]:
    """Load a local pytorchvideo Kinetics checkpoint into ``net``.

    ``path`` is a ``.pyth`` file with ``model_state`` (or a bare state dict),
    read with ``torch.load(weights_only=True)``. The classifier
    (``blocks.5.proj``) is re-initialised when its class count differs.
    Returns the keys that were NOT loaded. Raises ``CheckpointError`` naming
    the file on a missing file, an unreadable file, or any other mismatch.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; this backbone takes one weights file (a folder is for VideoMAE)")
    if not path.is_file():
        raise CheckpointError(f"{path}: pretrained weights file not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types (pickle, zip, runtime)
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint ({load_error(e)})") from None
    state = raw.get("model_state", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict or a dict with 'model_state'")
    own = net.state_dict()
    skipped = [k for k in ("blocks.5.proj.weight", "blocks.5.proj.bias")
               if k in state and k in own and state[k].shape != own[k].shape]
    for k in skipped:
        del state[k]
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{path}: shape mismatch for {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)} "
            "(a checkpoint of another X3D size?)"
        )
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and k not in skipped]
    if unexpected or len(missing) > len(own) // 2:
        raise CheckpointError(
            f"{path}: does not fit this X3D ({len(unexpected)} unexpected keys, e.g. {unexpected[:3]}; "
            f"{len(missing)} missing)"
        )
    net.load_state_dict(state, strict=False)
    return skipped + missing
