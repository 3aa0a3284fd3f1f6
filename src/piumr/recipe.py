"""The training recipe: the one seam through which every trainer builds what a training step is made of.

``piumr train`` (``piumr.train``), the person-shift suite (``piumr.shift.train``), ``piumr bench``,
``piumr doctor`` and ``piumr info`` all take from here:

- ``input_stats(model)``: the input normalisation, from the backbone's spec (``BackboneSpec.mean`` / ``std``, like
  timm's ``PretrainedCfg``), and ``normalize(video, model)``;
- ``build_criterion(cfg)``: the training criterion, by ``cfg.loss`` from the registry ``piumr.losses.LOSSES``;
- ``build_optimizer(model, cfg, device)``: AdamW with §4.1's lr and weight decay (fused on the CPU with
  ``speed.fused_adamw``): the package's only AdamW constructor;
- ``lr_at`` / ``set_lr(opt, optim, epoch, step)``: §4.1's step schedule with the warm-ups;
- ``train_step(...)``: forward, loss, backward, optional clipping, optimiser step.

``RECIPE_VERSION`` is part of every run key (``piumr.reproduce.specs.config_key``): a change that moves what a
run of an unchanged config computes (a default, an initialisation, this module) bumps it, and the golden test
(``tests/test_golden_recipe.py``) fails until it is bumped and the golden values are recorded again.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from piumr.backbones import backbone_spec
from piumr.config import ModelConfig, OptimConfig, SpeedConfig, TrainConfig
from piumr.losses import Criterion, LossParts, build_criterion

__all__ = ["RECIPE_VERSION", "build_criterion", "build_optimizer", "input_stats", "lr_at", "normalize", "recipe_of",
           "set_lr", "train_step"]

#: bump when a run of an unchanged config would compute something else (the golden test says when).
#: 1: every run before the seam. 2: X3D's stem starts with zero-mean temporal taps (``ModelConfig.early_init``);
#: the suite's AdamW is the recipe's (fused on the CPU); the torchvision and VideoMAE backbones take their weights'
#: normalisation; the CPU path's plane loops (other rounding)
RECIPE_VERSION = 2

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]


def input_stats(model: ModelConfig) -> Stats:
    """(mean, std) per RGB channel of the backbone's pretrained weights: ``(x / 255 - mean) / std``."""
    spec = backbone_spec(model.backbone)
    return spec.mean, spec.std


def normalize(video: torch.Tensor, model: ModelConfig) -> torch.Tensor:
    """float ``(B, 3, T, H, W)`` in [0, 1] -> normalised by ``input_stats(model)``, in place."""
    mean, std = input_stats(model)
    m = torch.tensor(mean, dtype=video.dtype, device=video.device).view(1, 3, 1, 1, 1)
    s = torch.tensor(std, dtype=video.dtype, device=video.device).view(1, 3, 1, 1, 1)
    return video.sub_(m).div_(s)


def build_optimizer(model: nn.Module, optim: OptimConfig, speed: SpeedConfig,
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW with §4.1's lr and weight decay; ``fused=True`` with ``speed.fused_adamw`` ("auto": on the CPU)."""
    from piumr.speed import resolve_speed

    fused = True if resolve_speed(speed, device).fused_adamw is True and device.type in ("cpu", "cuda") else None
    return torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay, fused=fused)


def lr_at(optim: OptimConfig, epoch: int, step: int | None = None) -> float:
    """§4.1 step schedule: lr * gamma^(number of milestones <= epoch), after optional linear warm-ups: by epoch
    (``warmup_epochs``) and by step (``warmup_steps``: the 0-based ``step``'s lr scaled by (step + 1) / N)."""
    lr = optim.lr * optim.gamma ** sum(1 for m in optim.milestones if epoch >= m)
    if epoch < optim.warmup_epochs:
        lr *= (epoch + 1) / (optim.warmup_epochs + 1)
    if step is not None and step < optim.warmup_steps:
        lr *= (step + 1) / optim.warmup_steps
    return lr


def set_lr(opt: torch.optim.Optimizer, optim: OptimConfig, epoch: int, step: int | None = None) -> float:
    """Set and return the lr of (0-based) ``epoch``, and of ``step`` during the step warm-up."""
    lr = lr_at(optim, epoch, step)
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def train_step(net: nn.Module, criterion: Criterion, opt: torch.optim.Optimizer | None, video: torch.Tensor,
               labels: torch.Tensor, persons: torch.Tensor | None = None, *, amp: bool = False,
               grad_clip: float | None = None, clip_params: Any = None) -> tuple[Any, LossParts]:
    """One step: forward of ``video`` (B, 3, T, H, W) (under bf16 autocast with ``amp``), the criterion on its
    logits (B, K) and embedding (B, D) (None for a model that gives logits only) against ``labels`` (B,), backward,
    gradient clipping to ``grad_clip`` over ``clip_params`` (default: ``net``'s), the optimiser's step (none
    without ``opt``: a step that only counts its work). Returns (the model's output, the loss parts)."""
    with torch.autocast(video.device.type, dtype=torch.bfloat16, enabled=amp):
        out = net(video)
    logits, emb = (out.logits, out.embedding) if hasattr(out, "logits") else (out, None)
    parts: LossParts = criterion(logits, emb, labels, persons)
    if opt is not None:
        opt.zero_grad(set_to_none=True)
    torch.autograd.backward([parts.total])
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(clip_params if clip_params is not None else net.parameters(), grad_clip)
    if opt is not None:
        opt.step()
    return out, parts


def recipe_of(cfg: TrainConfig) -> dict[str, Any]:
    """What a run's record says of its recipe: the version, the loss and the input normalisation."""
    mean, std = input_stats(cfg.model)
    return {"version": RECIPE_VERSION, "loss": cfg.loss, "mean": list(mean), "std": list(std)}
