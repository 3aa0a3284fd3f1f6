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


_G = GIRLConfig()  # the one source of GIRL's defaults (tests/test_girl.py::test_defaults_match_config)
WeightOn = Literal["cosine", "scaled", "shifted"]


class GIRLLoss(nn.Module):
    """Group-Invariant Regularized Loss on (features (B, D), labels (B,)) -> scalar.

    Features are l2-normalised here; s_ij = f_i . f_j / tau. Each call draws a
    permutation of the batch from a seeded stream and splits it into ``groups``
    pseudo-groups of size ~B/G (empty groups, when B < G, are dropped). Inside
    group g, eq. (6):

        w_ij = softmax_k(-(u_ik - eta)^2 / (2 eta^2))_j            (Gaussian reweighting)
        L_g  = mean_i [ -sum_j I_ij w_ij (s_ij - logsumexp_k s_ik) / (sum_j I_ij + eps) ]

    with I_ij = [y_i == y_j] and j, k running over the group, the anchor itself
    included (as written in the paper; ``exclude_self=True`` drops self-pairs).
    eq. (7): L = mean_g L_g + lambda_var * Var_g(r_g), r_g = stopgrad(L_g).

    What the Gaussian is centred on (``weight_on``, u_ij above) decides whether the
    loss trains; the paper writes u = s = cos / tau but gives neither tau nor eta:

    * ``"scaled"`` (literal, u = cos / tau): with the related code's tau = 0.07,
      eta = 0.2 the Gaussian sits at cosine tau * eta = 0.014 with width 0.014. X3D's
      post-ReLU embeddings have pairwise cosines of ~0.6-0.97, so every pair is tens
      of widths above the centre: w is near one-hot on the LEAST similar group-mate,
      whatever its label, and d log w / d cos = -(cos - tau*eta) / (tau*eta)^2 is
      in the thousands, so the gradient through w spikes (measured: the smoke
      model stays at chance). The fault is this scale, not the sign of anything.
    * ``"cosine"`` (default, u = cos, eta in cosine units): with eta = 0.5 the
      Gaussian covers the cosines embeddings actually take, weights stay spread,
      and the gradient through w is bounded (|d log w / d cos| = |cos - eta| / eta^2 <= 6
      for cos in [-1, 1]).
    * ``"shifted"`` (the authors' earlier facial-expression code): u = s - max_k s_ik
      (row maximum detached), which puts the weight on near-duplicate pairs.

    ``detach_weights=True`` treats w as constant importance weights (DRO-style);
    by default w carries gradient, as eq. (6) writes it.

    NOTE (faithful by default): because the paper detaches r_g, the variance
    term R_var carries NO gradient: it changes the reported loss value but not
    training. ``var_grad=True`` lets it carry gradient.
    Var is the population variance over the non-empty groups (0 for one group).

    The Gaussian weights are computed as a softmax of log-weights, so they never
    underflow to 0/0. Inputs in bf16/fp16 are computed in float32.
    """

    def __init__(
        self, groups: int = _G.groups, tau: float = _G.tau, eta: float = _G.eta, lambda_var: float = _G.lambda_var,
        *, var_grad: bool = _G.var_grad, exclude_self: bool = _G.exclude_self, weight_on: WeightOn = _G.weight_on,
        eps: float = _G.eps, seed: int = _G.seed, detach_weights: bool = _G.detach_weights,
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
        return cls(**cfg.model_dump(exclude={"enabled", "weight"}))

    def partition(self, batch: int) -> list[Tensor]:
        """Random pseudo-groups: list of index tensors (CPU, int64), sizes ~batch/G, none empty."""
        perm = torch.randperm(batch, generator=self.generator)
        return [g for g in torch.tensor_split(perm, self.groups) if g.numel() > 0]

    def weight_coordinate(self, cos: Tensor) -> Tensor:
        """u_ij, what the Gaussian of eq. (6) is centred on: cos (n, n) -> (n, n) (see class docstring)."""
        if self.weight_on == "cosine":
            return cos
        s = cos / self.tau
        if self.weight_on == "shifted":
            return s - s.amax(dim=1, keepdim=True).detach()
        return s

    def gaussian_weights(self, features: Tensor) -> Tensor:
        """w_ij over the whole batch as one group (diagnostics): features (n, D) -> (n, n), rows sum to 1."""
        f = F.normalize(features.float(), dim=1, eps=1e-12)
        logw = -0.5 * ((self.weight_coordinate(f @ f.t()) - self.eta) / self.eta) ** 2
        if self.exclude_self:
            logw = logw.masked_fill(torch.eye(len(f), dtype=torch.bool, device=f.device), -1e4)
        return torch.softmax(logw, dim=1)

    def group_risk(self, f: Tensor, y: Tensor) -> Tensor:
        """eq. (6) for one group: f (n, D) l2-normalised float32, y (n,) -> scalar L_g."""
        cos = f @ f.t()
        s = cos / self.tau
        logw = -0.5 * ((self.weight_coordinate(cos) - self.eta) / self.eta) ** 2
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
