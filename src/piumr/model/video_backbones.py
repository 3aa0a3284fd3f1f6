"""torchvision video backbones split for TFAM: features -> TFAM at a stage -> head.

Three torchvision families, each with its full-size model (torchvision's own
builder arguments, so its Kinetics-400 ``.pth`` state dicts load unchanged)
and a tiny variant for CPU tests and demos (same code, small widths/depths):

===============  ==========================  ======================================
name             model                       TFAM stage s (1-4) runs after
===============  ==========================  ======================================
r2plus1d_18      R(2+1)D-18 (VideoResNet)    ``layer{s}``           (B, C, T, H, W)
swin3d_t         Video Swin-T                ``features[2(s-1)]``   (B, T, H, W, C)
mvit_v2_s        MViTv2-S                    the last block of scale stage s,
                                             tokens (B, 1 + T*H*W, C) + class token
===============  ==========================  ======================================

Swin3d and MViT are channels-last inside: their stage outputs are permuted
(and MViT's class token set aside) to (B, C, T, H, W) for TFAM and back.
The default stage is 4 for every backbone (the last stage, before the head),
as for X3D. Stages of MViTv2-S by resolution are blocks [0], [1-2], [3-13],
[14-15]; of Swin-T the four transformer stages between patch mergings.

Weights are never downloaded: ``load_torchvision_weights`` reads a local
torchvision ``.pth`` state dict with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from piumr.backbones import backbone_spec
from piumr.config import ModelConfig
from piumr.model.weights import fit_state, one_file, read_state

__all__ = [
    "VideoSpec", "VIDEO_SPECS", "VideoSplit", "build", "build_video_backbone", "video_split",
    "load_torchvision_weights",
]


@dataclass(frozen=True)
class VideoSpec:
    """One torchvision backbone: its architecture family and builder arguments (the rest: ``piumr.backbones``)."""

    family: str  # "r2plus1d" | "swin3d" | "mvit"
    depths: tuple[int, int, int, int]
    dims: tuple[int, int, int, int]  # output channels per stage (r2plus1d: fixed by torchvision)
    heads: tuple[int, int, int, int] = (1, 1, 1, 1)
    window: tuple[int, int, int] = (8, 7, 7)  # swin3d attention window (T, H, W)
    stochastic_depth: float = 0.0


VIDEO_SPECS: dict[str, VideoSpec] = {
    # torchvision.models.video.r2plus1d_18
    "r2plus1d_18": VideoSpec("r2plus1d", (2, 2, 2, 2), (64, 128, 256, 512)),
    # torchvision.models.video.swin3d_t
    "swin3d_t": VideoSpec("swin3d", (2, 2, 6, 2), (96, 192, 384, 768), (3, 6, 12, 24), stochastic_depth=0.1),
    # torchvision.models.video.mvit_v2_s
    "mvit_v2_s": VideoSpec("mvit", (1, 2, 11, 2), (96, 192, 384, 768), (1, 2, 4, 8), stochastic_depth=0.2),
    # not paper models: the same code at small depth/width, for CPU tests and demos
    "r2plus1d_tiny": VideoSpec("r2plus1d", (1, 1, 1, 1), (64, 128, 256, 512)),
    "swin3d_tiny": VideoSpec("swin3d", (1, 1, 1, 1), (16, 32, 64, 128), (1, 1, 2, 2), window=(2, 4, 4)),
    "mvit_tiny": VideoSpec("mvit", (1, 1, 1, 1), (16, 32, 64, 128), (1, 1, 2, 2)),
}


def _mvit_blocks(spec: VideoSpec) -> list[Any]:
    """MViTv2 block settings for ``spec``: stage i's first block (i > 0) halves H, W and widens.

    Key/value pooling stride starts at 8 and halves per stage (MViTv2-S's values).
    """
    from torchvision.models.video.mvit import MSBlockConfig  # type: ignore[import-untyped]

    out: list[Any] = []
    for i, depth in enumerate(spec.depths):
        kv = max(1, 8 >> i)
        for j in range(depth):
            first = i > 0 and j == 0
            out.append(MSBlockConfig(
                num_heads=spec.heads[i], input_channels=spec.dims[i - 1] if first else spec.dims[i],
                output_channels=spec.dims[i], kernel_q=[3, 3, 3], kernel_kv=[3, 3, 3],
                stride_q=[1, 2, 2] if first else [1, 1, 1], stride_kv=[1, kv, kv],
            ))
    return out


def build_video_backbone(name: str, *, num_classes: int, frames: int, crop: int, dropout: float = 0.5) -> nn.Module:
    """Build torchvision backbone ``name`` for (B, 3, frames, crop, crop) input.

    Module names are torchvision's own. MViT is built for exactly this input
    size (its positional grid is fixed at construction); R(2+1)D and Swin
    accept any size. ``dropout`` is MViT's head dropout (the others have
    none). Raises ``ValueError`` for an unknown name.
    """
    if name not in VIDEO_SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(VIDEO_SPECS)}")
    spec = VIDEO_SPECS[name]
    if spec.family == "r2plus1d":
        from torchvision.models.video.resnet import (  # type: ignore[import-untyped]
            BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet,
        )

        net: nn.Module = VideoResNet(BasicBlock, [Conv2Plus1D] * 4, list(spec.depths), R2Plus1dStem,
                                     num_classes=num_classes)
        return net
    if spec.family == "swin3d":
        from torchvision.models.video.swin_transformer import SwinTransformer3d  # type: ignore[import-untyped]

        net = SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=spec.dims[0], depths=list(spec.depths),
                                num_heads=list(spec.heads), window_size=list(spec.window),
                                stochastic_depth_prob=spec.stochastic_depth, num_classes=num_classes)
        return net
    from torchvision.models.video.mvit import MViT

    net = MViT(spatial_size=(crop, crop), temporal_size=frames, block_setting=_mvit_blocks(spec),
               residual_pool=True, residual_with_cls_embed=False, rel_pos_embed=True, proj_after_attn=True,
               dropout=dropout, stochastic_depth_prob=spec.stochastic_depth, num_classes=num_classes)
    return net


class VideoSplit:
    """Runs a torchvision backbone stage by stage (holds no parameters).

    ``stem`` -> ``stage(1..4)`` -> ``embed`` -> ``head``; ``to_cthw``/``from_cthw``
    convert a stage output to (B, C, T, H, W) for TFAM and back.
    """

    def __init__(self, family: str, depths: tuple[int, int, int, int], dims: tuple[int, int, int, int]) -> None:
        self.family = family
        self.dims = dims
        ends = [sum(depths[: i + 1]) for i in range(4)]
        self._mvit_ranges = [(0 if i == 0 else ends[i - 1], ends[i]) for i in range(4)]
        self._thw: tuple[int, int, int] = (0, 0, 0)

    def stem(self, net: Any, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> input of stage 1 (layout of the family)."""
        if self.family == "r2plus1d":
            out: Tensor = net.stem(x)
            return out
        if self.family == "swin3d":
            return net.pos_drop(net.patch_embed(x))  # type: ignore[no-any-return]
        x = net.conv_proj(x)
        self._thw = (int(x.shape[2]), int(x.shape[3]), int(x.shape[4]))
        return net.pos_encoding(x.flatten(2).transpose(1, 2))  # type: ignore[no-any-return]

    def stage(self, net: Any, i: int, x: Tensor) -> Tensor:
        """Run stage ``i`` (1-4)."""
        if self.family == "r2plus1d":
            return getattr(net, f"layer{i}")(x)  # type: ignore[no-any-return]
        if self.family == "swin3d":
            if i > 1:
                x = net.features[2 * i - 3](x)  # patch merging before stage i
            return net.features[2 * i - 2](x)  # type: ignore[no-any-return]
        lo, hi = self._mvit_ranges[i - 1]
        thw = self._thw
        for b in range(lo, hi):
            x, thw_l = net.blocks[b](x, thw)
            thw = (int(thw_l[0]), int(thw_l[1]), int(thw_l[2]))
        self._thw = thw
        return x

    def to_cthw(self, x: Tensor) -> Tensor:
        """Stage output -> (B, C, T, H, W)."""
        if self.family == "r2plus1d":
            return x
        if self.family == "swin3d":
            return x.permute(0, 4, 1, 2, 3)  # (B, T, H, W, C) -> (B, C, T, H, W)
        t, h, w = self._thw
        tok = x[:, 1:]  # (B, T*H*W, C), class token dropped here and restored by from_cthw
        return tok.transpose(1, 2).reshape(x.shape[0], x.shape[2], t, h, w)

    def from_cthw(self, y: Tensor, like: Tensor) -> Tensor:
        """(B, C, T, H, W) -> the layout of the stage output ``like``."""
        if self.family == "r2plus1d":
            return y
        if self.family == "swin3d":
            return y.permute(0, 2, 3, 4, 1)
        return torch.cat([like[:, :1], y.flatten(2).transpose(1, 2)], dim=1)

    def channels(self, net: Any, stage: int) -> int:
        """C of stage ``stage``'s output (TFAM's input width)."""
        return self.dims[stage - 1]

    def embed(self, net: Any, x: Tensor) -> Tensor:
        """Last stage output -> embedding (B, D): pooled features (R(2+1)D, Swin) or MViT's class token."""
        if self.family == "r2plus1d":
            return torch.flatten(net.avgpool(x), 1)
        if self.family == "swin3d":
            return torch.flatten(net.avgpool(net.norm(x).permute(0, 4, 1, 2, 3)), 1)
        return net.norm(x)[:, 0]  # type: ignore[no-any-return]

    def head(self, net: Any, emb: Tensor) -> Tensor:
        """Embedding (B, D) -> logits (B, num_classes) (MViT: dropout + linear; others: linear)."""
        if self.family == "r2plus1d":
            return net.fc(emb)  # type: ignore[no-any-return]
        return net.head(emb)  # type: ignore[no-any-return]

    def embed_dim(self, net: Any) -> int:
        """D, the classifier's input width."""
        lin: Callable[..., Tensor] = net.fc if self.family == "r2plus1d" else (
            net.head if self.family == "swin3d" else net.head[1])
        return int(getattr(lin, "in_features"))


def video_split(name: str) -> tuple[VideoSpec, VideoSplit]:
    """The spec and a fresh ``VideoSplit`` of backbone ``name``."""
    spec = VIDEO_SPECS[name]
    return spec, VideoSplit(spec.family, spec.depths, spec.dims)


def build(cfg: ModelConfig) -> tuple[nn.Module, VideoSplit]:
    """The torchvision backbone of ``cfg`` and its split."""
    net = build_video_backbone(cfg.backbone, num_classes=cfg.num_classes, frames=cfg.frames, crop=cfg.crop,
                               dropout=cfg.dropout)
    return net, video_split(cfg.backbone)[1]


def load_torchvision_weights(net: nn.Module, path: Path, name: str) -> list[str]:
    """Load a local torchvision ``.pth`` state dict into backbone ``net`` (built as ``name``).

    Read by ``piumr.model.weights.read_state``; the classifier is re-initialised when its class count
    differs. Returns the keys NOT loaded. Raises ``CheckpointError`` (one line naming the file) on a missing
    or unreadable file or any key/shape mismatch.
    """
    path = one_file(Path(path))
    return fit_state(net, read_state(path), path, name, backbone_spec(name).classifier)
