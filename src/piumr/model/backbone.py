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
from torch import Tensor, nn

from piumr.backbones import backbone_spec
from piumr.config import ModelConfig
from piumr.errors import CheckpointError
from piumr.model.early_init import EARLY_INITS
from piumr.model.weights import fit_state, one_file, read_state

__all__ = ["X3DSpec", "X3D_SPECS", "X3DSplit", "build", "build_x3d", "stage_channels", "load_kinetics_checkpoint",
           "CheckpointError"]


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


class X3DSplit:
    """Runs a pytorchvideo X3D stage by stage (holds no parameters); the interface of every family's split.

    ``stem`` (``blocks[0]``) -> ``stage(1..4)`` (the residual stages ``blocks[1..4]``, (B, C, T, H, W)) ->
    ``embed`` (the head's projected pool + ReLU, (B, 2048) for X3D-M) -> ``head`` (dropout + linear).
    """

    def stem(self, net: Any, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> stem output (B, C, T, H', W')."""
        return net.blocks[0](x)  # type: ignore[no-any-return]

    def stage(self, net: Any, i: int, x: Tensor) -> Tensor:
        """Run residual stage ``i`` (1-4)."""
        return net.blocks[i](x)  # type: ignore[no-any-return]

    def to_cthw(self, x: Tensor) -> Tensor:
        """Stage output is already (B, C, T, H, W)."""
        return x

    def from_cthw(self, y: Tensor, like: Tensor) -> Tensor:
        """(B, C, T, H, W) is the stage layout."""
        return y

    def channels(self, net: Any, stage: int) -> int:
        """C of stage ``stage``'s output (TFAM's input width)."""
        return stage_channels(net.blocks[stage])

    def embed(self, net: Any, x: Tensor) -> Tensor:
        """Last stage output (B, C, T, H, W) -> embedding (B, D) (projected pool + activation)."""
        return torch.flatten(net.blocks[5].pool(x), 1)

    def head(self, net: Any, emb: Tensor) -> Tensor:
        """Embedding (B, D) -> logits (B, num_classes) (dropout if any + linear; no softmax)."""
        head = net.blocks[5]
        if head.dropout is not None:  # pytorchvideo builds no dropout module for rate 0
            emb = head.dropout(emb)
        return head.proj(emb)  # type: ignore[no-any-return]

    def embed_dim(self, net: Any) -> int:
        """D, the classifier's input width."""
        return int(net.blocks[5].proj.in_features)


def build(cfg: ModelConfig) -> tuple[nn.Module, X3DSplit]:
    """The X3D of ``cfg`` (``build_x3d``; ``zero_init_residual=False`` sets each residual branch's last
    BatchNorm, which pytorchvideo zero-initialises, back to ones; ``early_init`` sets up its stem) and its split."""
    net = build_x3d(cfg.backbone, num_classes=cfg.num_classes, frames=cfg.frames, crop=cfg.crop, dropout=cfg.dropout)
    if not cfg.zero_init_residual:
        for m in net.modules():  # pytorchvideo marks each residual branch's last BatchNorm
            if getattr(m, "block_final_bn", False) and isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
    EARLY_INITS[cfg.early_init](net)  # the stem's start (draws no random numbers: the rest of the init is unchanged)
    return net, X3DSplit()


def load_kinetics_checkpoint(net: nn.Module, path: Path, name: str) -> list[str]:
    """Load a local pytorchvideo Kinetics checkpoint into ``net`` (the X3D built as ``name``).

    ``path`` is a ``.pyth`` file with ``model_state`` (or a bare state dict), read by
    ``piumr.model.weights.read_state``. The classifier (``blocks.5.proj``) is re-initialised when its class
    count differs; up to half of the model's keys may be absent. Returns the keys that were NOT loaded.
    Raises ``CheckpointError`` naming the file on a missing or unreadable file or any other mismatch.
    """
    path = one_file(Path(path))
    return fit_state(net, read_state(path), path, name, backbone_spec(name).classifier, max_missing=0.5)
