"""The PIUmr network: backbone features -> TFAM -> head (§3, Fig. 2); X3D, a torchvision video model or
VideoMAE (optional extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from piumr.config import ModelConfig, TFAMConfig, get_preset
from piumr.model.backbone import build_x3d, load_kinetics_checkpoint, stage_channels
from piumr.model.tfam import TFAM
from piumr.model.video_backbones import (
    VideoSplit, build_video_backbone, is_torchvision_backbone, load_torchvision_weights, video_split,
)
from piumr.model.videomae import (
    VideoMAEBackbone, VideoMAESplit, is_videomae_backbone, load_videomae_weights, videomae_split,
)

__all__ = ["PIUmrOutput", "PIUmrNet", "build_model", "build_tfam", "attach_tfam"]


class PIUmrOutput(NamedTuple):
    """Model output: ``logits`` (B, num_classes), ``embedding`` f (B, D) before the classifier."""

    logits: Tensor
    embedding: Tensor


def build_tfam(channels: int, cfg: TFAMConfig) -> TFAM:
    """A ``TFAM`` for ``channels`` from a ``TFAMConfig`` (``enabled`` is the caller's business)."""
    return TFAM.from_config(channels, cfg)


class PIUmrNet(nn.Module):
    """A video backbone split as ``forward_features`` -> TFAM -> ``forward_head``.

    Input (B, 3, T, H, W) float, normalised. Output ``PIUmrOutput`` with
    logits (B, num_classes) and the pre-classifier embedding (B, D): 2048 for
    the paper's X3D-M, 512 for R(2+1)D-18, 768 for Swin-T, MViTv2-S and VideoMAE-B. The
    backbone is kept whole under ``backbone`` with its own parameter names
    (pytorchvideo's for X3D, transformers' ``VideoMAEForVideoClassification``'s
    for VideoMAE, torchvision's otherwise), so Kinetics checkpoints
    load; TFAM runs after stage ``cfg.tfam.stage`` (1-4; X3D: residual
    stage, others: see ``piumr.model.video_backbones``).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tfam_stage = cfg.tfam.stage
        self.tfam: TFAM | None
        self._split: VideoSplit | VideoMAESplit | None
        if is_videomae_backbone(cfg.backbone):
            vspec, self._split = videomae_split(cfg.backbone)
            self.backbone: nn.Module = VideoMAEBackbone(cfg.backbone, num_classes=cfg.num_classes,
                                                        frames=cfg.frames, crop=cfg.crop, dropout=cfg.dropout)
            self.tfam = build_tfam(vspec.dims[cfg.tfam.stage - 1], cfg.tfam) if cfg.tfam.enabled else None
            self.embed_dim = self._split.embed_dim(self.backbone)
            return
        if is_torchvision_backbone(cfg.backbone):
            spec, self._split = video_split(cfg.backbone)
            self.backbone = build_video_backbone(cfg.backbone, num_classes=cfg.num_classes, frames=cfg.frames,
                                                 crop=cfg.crop, dropout=cfg.dropout)
            self.tfam = build_tfam(spec.dims[cfg.tfam.stage - 1], cfg.tfam) if cfg.tfam.enabled else None
            self.embed_dim = self._split.embed_dim(self.backbone)
            return
        self._split = None
        self.backbone = build_x3d(cfg.backbone, num_classes=cfg.num_classes, frames=cfg.frames,
                                  crop=cfg.crop, dropout=cfg.dropout)
        if not cfg.zero_init_residual:
            for m in self.backbone.modules():  # pytorchvideo marks each residual branch's last BatchNorm
                if getattr(m, "block_final_bn", False) and isinstance(m, nn.BatchNorm3d):
                    nn.init.ones_(m.weight)
        blocks: Any = getattr(self.backbone, "blocks")
        self.tfam = build_tfam(stage_channels(blocks[cfg.tfam.stage]), cfg.tfam) if cfg.tfam.enabled else None
        self.embed_dim = int(blocks[5].proj.in_features)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> last-stage features: (B, C, T', H', W') for X3D and R(2+1)D,
        (B, T', H', W', C) for Swin, tokens (B, 1 + T'H'W', C) for MViT, (B, T'H'W', C) for VideoMAE."""
        if self._split is not None:
            sp = self._split
            x = sp.stem(self.backbone, x)
            for i in range(1, 5):
                x = sp.stage(self.backbone, i, x)
                if self.tfam is not None and i == self.tfam_stage:
                    x = sp.from_cthw(self.tfam(sp.to_cthw(x)), x)
            return x
        blocks: Any = getattr(self.backbone, "blocks")
        for i in range(5):
            x = blocks[i](x)
            if self.tfam is not None and i == self.tfam_stage:
                x = self.tfam(x)
        return x

    def embed(self, feats: Tensor) -> Tensor:
        """Last-stage features -> embedding f (B, D) (X3D: projected pool + ReLU; torchvision: its pool
        or MViT's class token; VideoMAE: mean token + fc_norm)."""
        if self._split is not None:
            return self._split.embed(self.backbone, feats)
        head: Any = getattr(self.backbone, "blocks")[5]
        return torch.flatten(head.pool(feats), 1)

    def forward_head(self, emb: Tensor) -> Tensor:
        """Embedding (B, D) -> logits (B, num_classes) (dropout where the backbone has one + linear; no softmax)."""
        if self._split is not None:
            return self._split.head(self.backbone, emb)
        head: Any = getattr(self.backbone, "blocks")[5]
        if head.dropout is not None:  # pytorchvideo builds no dropout module for rate 0
            emb = head.dropout(emb)
        logits: Tensor = head.proj(emb)
        return logits

    def forward(self, x: Tensor) -> PIUmrOutput:
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"expected video input (B, 3, T, H, W), got {tuple(x.shape)}")
        emb = self.embed(self.forward_features(x))
        return PIUmrOutput(self.forward_head(emb), emb)


def build_model(
    preset: str | None = "paper", *, config: ModelConfig | None = None, pretrained: str | Path | None = None,
    **overrides: Any,
) -> PIUmrNet:
    """Build the PIUmr network.

    ``build_model(preset="paper")`` gives X3D-M + TFAM for 16x224 input and 52
    classes; ``config`` takes a full ``ModelConfig`` instead; keyword overrides
    replace ``ModelConfig`` fields (``num_classes=10``, ``backbone="x3d_s"``,
    ``tfam=TFAMConfig(enabled=False)`` ...). ``pretrained`` is a local Kinetics
    checkpoint (never downloaded): pytorchvideo ``.pyth`` for X3D, a VideoMAE
    model folder or state dict for VideoMAE (``load_videomae_weights``), a
    torchvision ``.pth`` state dict otherwise; the classifier is re-initialised when the
    class count differs.
    """
    cfg = config if config is not None else get_preset(preset or "paper").model
    if overrides:
        cfg = ModelConfig.model_validate({**cfg.model_dump(), **{k: (v.model_dump() if hasattr(v, "model_dump") else v)
                                                                 for k, v in overrides.items()}})
    weights = pretrained if pretrained is not None else cfg.pretrained
    net = PIUmrNet(cfg)
    if weights is not None and is_videomae_backbone(cfg.backbone):
        load_videomae_weights(net.backbone, Path(weights), cfg.backbone)
    elif weights is not None and is_torchvision_backbone(cfg.backbone):
        load_torchvision_weights(net.backbone, Path(weights), cfg.backbone)
    elif weights is not None:
        load_kinetics_checkpoint(net.backbone, Path(weights))
    return net


def attach_tfam(net: nn.Module, block: int, tfam: TFAM) -> nn.Module:
    """Plug ``tfam`` after ``net.blocks[block]`` of any pytorchvideo ``Net``.

    The module is registered as ``net.tfam`` and applied through a forward hook,
    so existing parameter names (and checkpoints) are untouched. Returns ``net``.
    """
    blocks: Any = getattr(net, "blocks", None)
    if blocks is None or not 0 <= block < len(blocks):
        raise ValueError(f"net has no blocks[{block}]")
    net.add_module("tfam", tfam)

    def _hook(_m: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> Tensor:
        res: Tensor = tfam(out)
        return res

    blocks[block].register_forward_hook(_hook)
    return net
