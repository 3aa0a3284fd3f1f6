"""The PIUmr network: backbone features -> TFAM -> head (§3, Fig. 2); X3D, a torchvision video model or
VideoMAE (optional extra)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor, nn

from piumr.backbones import Family, backbone_spec
from piumr.config import ModelConfig, TFAMConfig, get_preset
from piumr.dg.mixstyle import MixStyle
from piumr.model import backbone as x3d
from piumr.model import video_backbones, videomae
from piumr.model.tfam import TFAM

__all__ = ["PIUmrOutput", "PIUmrNet", "Split", "FamilyCode", "FAMILIES", "build_model", "build_tfam", "attach_tfam"]


class Split(Protocol):
    """How a backbone runs stage by stage (holds no parameters): ``stem`` -> ``stage(1..4)`` -> ``embed`` ->
    ``head``; ``to_cthw`` / ``from_cthw`` turn a stage output into (B, C, T, H, W) for TFAM and back;
    ``channels(net, s)`` is C after stage s; ``embed_dim`` is the classifier's input width D."""

    def stem(self, net: Any, x: Tensor) -> Tensor: ...
    def stage(self, net: Any, i: int, x: Tensor) -> Tensor: ...
    def to_cthw(self, x: Tensor) -> Tensor: ...
    def from_cthw(self, y: Tensor, like: Tensor) -> Tensor: ...
    def channels(self, net: Any, stage: int) -> int: ...
    def embed(self, net: Any, x: Tensor) -> Tensor: ...
    def head(self, net: Any, emb: Tensor) -> Tensor: ...
    def embed_dim(self, net: Any) -> int: ...


class FamilyCode(NamedTuple):
    """The code of one backbone family: ``build(cfg)`` -> (backbone module, its ``Split``), and
    ``load(net, path, name)`` -> the keys of local pretrained weights it did not load."""

    build: Callable[[ModelConfig], tuple[nn.Module, Split]]
    load: Callable[[nn.Module, Path, str], list[str]]


#: the family of each registered backbone (``piumr.backbones``) -> the module that builds, splits and loads it
FAMILIES: dict[Family, FamilyCode] = {
    "x3d": FamilyCode(x3d.build, x3d.load_kinetics_checkpoint),
    "torchvision": FamilyCode(video_backbones.build, video_backbones.load_torchvision_weights),
    "videomae": FamilyCode(videomae.build, videomae.load_videomae_weights),
}


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
    stage, others: see ``piumr.model.video_backbones``). With ``cfg.mixstyle.enabled`` (a baseline, not
    PIUmr), MixStyle (``piumr.dg.mixstyle``) runs on the output of each stage in ``cfg.mixstyle.stages``,
    before TFAM where both follow one stage.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tfam_stage = cfg.tfam.stage
        self.backbone: nn.Module
        self.backbone, self._split = FAMILIES[backbone_spec(cfg.backbone).family].build(cfg)
        channels = self._split.channels(self.backbone, cfg.tfam.stage)
        self.tfam: TFAM | None = build_tfam(channels, cfg.tfam) if cfg.tfam.enabled else None
        self.embed_dim = self._split.embed_dim(self.backbone)
        ms = cfg.mixstyle
        # its draws: a stream of the run's seed (torch's initial seed, set by the trainer before the model is built)
        self.mixstyle: MixStyle | None = MixStyle.from_config(ms, seed=torch.initial_seed()) if ms.enabled else None
        self.mixstyle_stages = frozenset(ms.stages)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> last-stage features: (B, C, T', H', W') for X3D and R(2+1)D,
        (B, T', H', W', C) for Swin, tokens (B, 1 + T'H'W', C) for MViT, (B, T'H'W', C) for VideoMAE."""
        sp = self._split
        x = sp.stem(self.backbone, x)
        for i in range(1, 5):
            x = sp.stage(self.backbone, i, x)
            if self.mixstyle is not None and i in self.mixstyle_stages:
                x = sp.from_cthw(self.mixstyle(sp.to_cthw(x)), x)
            if self.tfam is not None and i == self.tfam_stage:
                x = sp.from_cthw(self.tfam(sp.to_cthw(x)), x)
        return x

    def embed(self, feats: Tensor) -> Tensor:
        """Last-stage features -> embedding f (B, D) (X3D: projected pool + ReLU; torchvision: its pool
        or MViT's class token; VideoMAE: mean token + fc_norm)."""
        return self._split.embed(self.backbone, feats)

    def forward_head(self, emb: Tensor) -> Tensor:
        """Embedding (B, D) -> logits (B, num_classes) (dropout where the backbone has one + linear; no softmax)."""
        return self._split.head(self.backbone, emb)

    def diagnostics(self) -> dict[str, Tensor]:
        """Scalars of the last training forward worth logging: the mean and the spread (std over the
        batch's clips) of TFAM's per-clip fusion weight lambda_t, when consistency fusion ran."""
        lam = self.tfam.last_lam if self.tfam is not None else None
        if lam is None or not self.training:
            return {}
        lt = lam[:, 0].float()
        return {"tfam_lam_t": lt.mean(), "tfam_lam_t_std": lt.std(unbiased=False)}

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
    replace ``ModelConfig`` fields (``num_classes=10``, ``backbone=`` a name of ``piumr.backbones.BACKBONES``,
    ``tfam=TFAMConfig(enabled=False)`` ...). ``pretrained`` is a local Kinetics
    checkpoint (never downloaded), loaded by the backbone family's loader (``FAMILIES``): pytorchvideo
    ``.pyth`` for X3D, a VideoMAE model folder or state dict for VideoMAE, a torchvision ``.pth`` state dict
    otherwise; the classifier is re-initialised when the
    class count differs.
    """
    cfg = config if config is not None else get_preset(preset or "paper").model
    if overrides:
        cfg = ModelConfig.model_validate({**cfg.model_dump(), **{k: (v.model_dump() if hasattr(v, "model_dump") else v)
                                                                 for k, v in overrides.items()}})
    weights = pretrained if pretrained is not None else cfg.pretrained
    net = PIUmrNet(cfg)
    if weights is not None:
        FAMILIES[backbone_spec(cfg.backbone).family].load(net.backbone, Path(weights), cfg.backbone)
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
