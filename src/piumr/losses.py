"""Cross-entropy + Group-Invariant Regularized Loss (GIRL), paper §3.2, eq. (6)-(7)."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from piumr.config import GIRLConfig

__all__ = ["GIRLLoss", "GIRLParts", "PIUmrLoss", "LossParts"]


class GIRLParts(NamedTuple):
    """GIRL's pieces: total = grp + lambda_var * var. All float32 scalars."""

    total: Tensor
    grp: Tensor
    var: Tensor


class GIRLLoss(nn.Module):
    """Group-Invariant Regularized Loss on (features (B, D), labels (B,)) -> scalar.

    Features are l2-normalised here; s_ij = f_i . f_j / tau. Each call draws a
    permutation of the batch from a seeded stream and splits it into ``groups``
    pseudo-groups of size ~B/G (empty groups, when B < G, are dropped). Inside
    group g, eq. (6):

        w_ij = softmax_k(-(s_ik - eta)^2 / (2 eta^2))_j            (Gaussian reweighting)
        L_g  = mean_i [ -sum_j I_ij w_ij (s_ij - logsumexp_k s_ik) / (sum_j I_ij + eps) ]

    with I_ij = [y_i == y_j] and j, k running over the group, the anchor itself
    included (as written in the paper; ``exclude_self=True`` drops self-pairs).
    eq. (7): L = mean_g L_g + lambda_var * Var_g(r_g), r_g = stopgrad(L_g).

    NOTE (faithful by default): the weights w_ij are functions of s_ij and, as
    written, carry gradient. Then the loss can also fall by moving positive pairs
    AWAY from eta (which shrinks their weight) rather than pulling them together;
    measured on the synthetic set this stops a small X3D from learning at all
    (``docs/method_fidelity.md``). ``detach_weights=True`` treats them as
    importance weights (no gradient), the usual DRO reweighting.

    NOTE (faithful by default): because the paper detaches r_g, the variance
    term R_var carries NO gradient: it changes the reported loss value but not
    training. ``var_grad=True`` lets it carry gradient (our recommended variant).
    Var is the population variance over the non-empty groups (0 for one group).

    The Gaussian weights are computed as a softmax of log-weights, so they never
    underflow to 0/0 (with s_ij = cos/tau far from eta every raw weight is 0 in
    floating point). Inputs in bf16/fp16 are computed in float32.
    """

    def __init__(
        self, groups: int = 4, tau: float = 0.07, eta: float = 0.2, lambda_var: float = 1.0, *,
        var_grad: bool = False, exclude_self: bool = False,
        weight_on: Literal["scaled", "cosine"] = "scaled", eps: float = 1e-8, seed: int = 0,
        detach_weights: bool = False,
    ) -> None:
        super().__init__()
        if groups < 1 or tau <= 0 or eta <= 0:
            raise ValueError(f"need groups >= 1, tau > 0, eta > 0 (got {groups}, {tau}, {eta})")
        self.groups, self.tau, self.eta, self.lambda_var = groups, tau, eta, lambda_var
        self.var_grad, self.exclude_self, self.weight_on, self.eps = var_grad, exclude_self, weight_on, eps
        self.detach_weights = detach_weights
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_config(cls, cfg: GIRLConfig) -> GIRLLoss:
        return cls(cfg.groups, cfg.tau, cfg.eta, cfg.lambda_var, var_grad=cfg.var_grad,
                   exclude_self=cfg.exclude_self, weight_on=cfg.weight_on, eps=cfg.eps, seed=cfg.seed,
                   detach_weights=cfg.detach_weights)

    def partition(self, batch: int) -> list[Tensor]:
        """Random pseudo-groups: list of index tensors (CPU, int64), sizes ~batch/G, none empty."""
        perm = torch.randperm(batch, generator=self.generator)
        return [g for g in torch.tensor_split(perm, self.groups) if g.numel() > 0]

    def group_risk(self, f: Tensor, y: Tensor) -> Tensor:
        """eq. (6) for one group: f (n, D) l2-normalised float32, y (n,) -> scalar L_g."""
        cos = f @ f.t()
        s = cos / self.tau
        centre = s if self.weight_on == "scaled" else cos
        logw = -0.5 * ((centre - self.eta) / self.eta) ** 2
        pos = (y[:, None] == y[None, :]).to(s.dtype)
        if self.exclude_self:
            eye = torch.eye(len(y), dtype=torch.bool, device=s.device)
            pos = pos.masked_fill(eye, 0.0)
            # a large finite negative, not -inf: a group of one then gives 0 * finite, never NaN
            logw = logw.masked_fill(eye, -1e4)
            s_den = s.masked_fill(eye, -1e4)
        else:
            s_den = s
        w = torch.softmax(logw, dim=1)
        if self.detach_weights:
            w = w.detach()
        log_prob = s - torch.logsumexp(s_den, dim=1, keepdim=True)
        num = -(pos * w * log_prob).sum(dim=1)
        return (num / (pos.sum(dim=1) + self.eps)).mean()

    def parts(self, features: Tensor, labels: Tensor) -> GIRLParts:
        """features (B, D), labels (B,) -> GIRLParts (float32 scalars)."""
        if features.dim() != 2 or labels.shape != features.shape[:1]:
            raise ValueError(f"GIRL expects features (B, D) and labels (B,), got {tuple(features.shape)} "
                             f"and {tuple(labels.shape)}")
        f = F.normalize(features.float(), dim=1, eps=1e-12)
        groups = self.partition(f.shape[0])
        risks = torch.stack([self.group_risk(f[g.to(f.device)], labels[g.to(labels.device)]) for g in groups])
        grp = risks.mean()
        r = risks if self.var_grad else risks.detach()
        var = r.var(unbiased=False) if len(groups) > 1 else r.sum() * 0.0
        return GIRLParts(grp + self.lambda_var * var, grp, var)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """features (B, D), labels (B,) -> scalar L_GIRL (float32)."""
        return self.parts(features, labels).total


class LossParts(NamedTuple):
    """Training loss pieces (float32 scalars); ``total`` is what is back-propagated."""

    total: Tensor
    ce: Tensor
    girl: Tensor
    girl_var: Tensor


class PIUmrLoss(nn.Module):
    """§4.1: ``ce_weight * CE(logits, y) + girl.weight * GIRL(embedding, y)``."""

    def __init__(self, girl: GIRLConfig, ce_weight: float = 1.0) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.girl_weight = girl.weight
        self.girl: GIRLLoss | None = GIRLLoss.from_config(girl) if girl.enabled else None

    def forward(self, logits: Tensor, embedding: Tensor, labels: Tensor) -> LossParts:
        """logits (B, K), embedding (B, D), labels (B,) -> LossParts."""
        ce = F.cross_entropy(logits.float(), labels)
        if self.girl is None:
            zero = ce.new_zeros(())
            return LossParts(self.ce_weight * ce, ce, zero, zero)
        g = self.girl.parts(embedding, labels)
        return LossParts(self.ce_weight * ce + self.girl_weight * g.total, ce, g.total, g.var)
