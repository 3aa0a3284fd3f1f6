"""Cross-entropy + Group-Invariant Regularized Loss (GIRL), paper §3.2, eq. (6)-(7)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from piumr.config import GIRLConfig, Grouping, Pairs, TrainConfig
from piumr.criterion import Criterion, LossParts
from piumr.dg.coral import CORALLoss
from piumr.dg.groupdro import GroupDROLoss
from piumr.dg.vrex import VRExLoss

__all__ = ["Criterion", "GIRLLoss", "GIRLParts", "LOSSES", "PIUmrLoss", "LossParts", "build_criterion", "criterion_slug"]


class GIRLParts(NamedTuple):
    """GIRL's pieces: total = grp + lambda_var * var. All float32 scalars.

    Diagnostics (detached): ``w_eff`` the effective number of the Gaussian weights over an anchor's
    positives, ``1 / sum_j w_j^2`` with w renormalised over the positives, divided by their count and
    averaged over anchors with >= 2 positives (1 = uniform, 1/n = one-hot; NaN when no anchor has two);
    ``w_ratio`` the mean over those anchors of max_j w_j / min_j w_j; ``partnered`` the fraction of
    anchors with a positive other than themselves in their group."""

    total: Tensor
    grp: Tensor
    var: Tensor
    w_eff: Tensor
    w_ratio: Tensor
    partnered: Tensor


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

    with I_ij = [y_i == y_j], i over the group's anchors and j, k over the whole batch
    (``pairs="batch"``, default) or over the group (``pairs="group"``, as written), the
    anchor itself included (as written; ``exclude_self=True`` drops self-pairs).
    ``grouping="person"``: one group per participant id instead of random groups.
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
        grouping: Grouping = _G.grouping, pairs: Pairs = _G.pairs,
    ) -> None:
        super().__init__()
        if groups < 1 or tau <= 0 or eta <= 0:
            raise ValueError(f"need groups >= 1, tau > 0, eta > 0 (got {groups}, {tau}, {eta})")
        self.groups, self.tau, self.eta, self.lambda_var = groups, tau, eta, lambda_var
        self.var_grad, self.exclude_self, self.weight_on, self.eps = var_grad, exclude_self, weight_on, eps
        self.detach_weights, self.grouping, self.pairs = detach_weights, grouping, pairs
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_config(cls, cfg: GIRLConfig) -> GIRLLoss:
        return cls(**cfg.model_dump(exclude={"enabled", "weight"}))

    def partition(self, batch: int, persons: Tensor | None = None) -> list[Tensor]:
        """The groups: list of index tensors (CPU, int64), none empty.

        ``grouping="random"``: a seeded permutation split into G pseudo-groups of ~batch/G.
        ``grouping="person"``: one group per participant id in ``persons`` (B,) (required then)."""
        if self.grouping == "person":
            if persons is None:
                raise ValueError("GIRL with grouping='person' needs the batch's participant ids")
            p = persons.cpu()
            return [torch.nonzero(p == v).flatten() for v in torch.unique(p)]
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

    def group_risk(self, f: Tensor, y: Tensor, rows: Tensor | None = None) -> Tensor:
        """eq. (6) for one group: f (n, D) l2-normalised float32, y (n,) -> scalar L_g.

        ``rows`` (m,) picks the anchors among the n (default: all); j and k run over all n."""
        return self._group(f, y, rows)[0]

    def _group(self, f: Tensor, y: Tensor, rows: Tensor | None) -> tuple[Tensor, Tensor]:
        """(L_g, diagnostics (5,): [sum w_eff, sum w_ratio, anchors with >= 2 positives, anchors with a
        positive, anchors]) for anchors ``rows`` of f (n, D), y (n,)."""
        rows = torch.arange(len(y), device=f.device) if rows is None else rows.to(f.device)
        cos = f[rows] @ f.t()  # (m, n)
        s = cos / self.tau
        logw = -0.5 * ((self.weight_coordinate(cos) - self.eta) / self.eta) ** 2
        pos = (y[rows][:, None] == y[None, :]).to(s.dtype)
        eye = torch.zeros_like(pos, dtype=torch.bool)
        eye[torch.arange(len(rows), device=f.device), rows] = True
        if self.exclude_self:
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
        risk = (num / (pos.sum(dim=1) + self.eps)).mean()
        with torch.no_grad():
            others = (y[rows][:, None] == y[None, :]) & ~eye  # positives other than the anchor itself
            n_pos = others.sum(dim=1).float()
            multi = n_pos >= 2
            # in log space: the weights of an anchor's positives, renormalised over them (no underflow)
            lw = logw.detach().masked_fill(~others, -torch.inf).masked_fill(~multi[:, None], 0.0)
            wn = torch.softmax(lw, dim=1)
            eff = 1.0 / (wn ** 2).sum(dim=1) / n_pos.clamp_min(1.0)
            spread = lw.amax(dim=1) - lw.masked_fill(~others & multi[:, None], torch.inf).amin(dim=1)
            ratio = torch.exp(spread.clamp_max(80.0))
            diag = torch.stack([eff[multi].sum(), ratio[multi].sum(), multi.sum().float(),
                                (n_pos > 0).sum().float(), torch.tensor(float(len(rows)), device=f.device)])
        return risk, diag

    def parts(self, features: Tensor, labels: Tensor, persons: Tensor | None = None) -> GIRLParts:
        """features (B, D), labels (B,), participant ids (B,) (``grouping="person"`` only) -> GIRLParts.

        ``pairs="batch"`` (and always for person groups): L_g's anchors are group g's clips and its pairs
        run over the whole batch, so an anchor's positives are not limited to its few group-mates (with
        person groups: other participants' clips of the same class). ``"group"``: j, k inside the group."""
        if features.dim() != 2 or labels.shape != features.shape[:1]:
            raise ValueError(f"GIRL expects features (B, D) and labels (B,), got {tuple(features.shape)} "
                             f"and {tuple(labels.shape)}")
        f = F.normalize(features.float(), dim=1, eps=1e-12)
        groups = self.partition(f.shape[0], persons)
        if self.grouping == "person" or self.pairs == "batch":
            outs = [self._group(f, labels, g) for g in groups]
        else:
            outs = [self._group(f[g.to(f.device)], labels[g.to(labels.device)], None) for g in groups]
        risks = torch.stack([o[0] for o in outs])
        d = torch.stack([o[1] for o in outs]).sum(dim=0)
        grp = risks.mean()
        r = risks if self.var_grad else risks.detach()
        var = r.var(unbiased=False) if len(groups) > 1 else r.sum() * 0.0
        nan = d.new_tensor(float("nan"))
        w_eff = d[0] / d[2] if d[2] > 0 else nan
        w_ratio = d[1] / d[2] if d[2] > 0 else nan
        return GIRLParts(grp + self.lambda_var * var, grp, var, w_eff, w_ratio, d[3] / d[4])

    def forward(self, features: Tensor, labels: Tensor, persons: Tensor | None = None) -> Tensor:
        """features (B, D), labels (B,) -> scalar L_GIRL (float32)."""
        return self.parts(features, labels, persons).total


class PIUmrLoss(Criterion):
    """§4.1: ``ce_weight * CE(logits, y) + girl.weight * GIRL(embedding, y)``; its extra state is GIRL's
    group-permutation generator."""

    def __init__(self, girl: GIRLConfig, ce_weight: float = 1.0) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.girl_weight = girl.weight
        self.girl: GIRLLoss | None = GIRLLoss.from_config(girl) if girl.enabled else None

    @property
    def needs_persons(self) -> bool:
        """True when the criterion uses the batch's participant ids (person groups)."""
        return self.girl is not None and self.girl.grouping == "person"

    def forward(self, logits: Tensor, embedding: Tensor | None, labels: Tensor,
                persons: Tensor | None = None) -> LossParts:
        """logits (B, K), embedding (B, D) (None only with GIRL off), labels (B,), persons (B,) or None ->
        LossParts."""
        ce = F.cross_entropy(logits.float(), labels)
        if self.girl is None:
            total = self.ce_weight * ce
            return LossParts(total, {"loss": total, "ce": ce})
        if embedding is None:
            raise ValueError("GIRL needs the model's embedding; this model gives logits only")
        g = self.girl.parts(embedding, labels, persons)
        total = self.ce_weight * ce + self.girl_weight * g.total
        return LossParts(total, {"loss": total, "ce": ce, "girl": g.total, "girl_var": g.var,
                                 "girl_w_eff": g.w_eff, "girl_w_ratio": g.w_ratio, "girl_partnered": g.partnered})

    def state_tensors(self) -> dict[str, Tensor]:
        """Extra state for ``last.safetensors`` (name -> tensor)."""
        return {"girl_generator": self.girl.generator.get_state()} if self.girl is not None else {}

    def load_state_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        """Restore what ``state_tensors`` saved (missing names keep their fresh state)."""
        gen = tensors.get("girl_generator")
        if gen is not None and self.girl is not None:
            self.girl.generator.set_state(gen)


#: the registry of training criteria: ``TrainConfig.loss`` -> a builder from the run config. A new loss adds one
#: entry here and lives in its own module; nothing else changes (the recipe seam, ``piumr.recipe``, builds it).
LOSSES: dict[str, Callable[[TrainConfig], Criterion]] = {
    "piumr": lambda cfg: PIUmrLoss(cfg.girl, cfg.ce_weight),  # §4.1: CE + GIRL (GIRL off: CE alone)
    # domain-generalisation baselines over persons (piumr.dg): the person-shift suite's arms
    "groupdro": lambda cfg: GroupDROLoss.from_options(cfg.loss_options),
    "vrex": lambda cfg: VRExLoss.from_options(cfg.loss_options),
    "coral": lambda cfg: CORALLoss.from_options(cfg.loss_options),
}


def build_criterion(cfg: TrainConfig) -> Criterion:
    """The training criterion of a run config (``LOSSES[cfg.loss]``); ``ValueError`` naming an unknown loss."""
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss {cfg.loss!r} is not registered; choose one of: {', '.join(sorted(LOSSES))}")
    return LOSSES[cfg.loss](cfg)


def criterion_slug(cfg: TrainConfig) -> str:
    """The run-folder word for a run config's criterion (``piumr.reproduce.specs.run_slug``): for ``piumr``,
    ``girl`` with GIRL on, ``nogirl`` for CE alone; any other loss, its registry name."""
    if cfg.loss != "piumr":
        return cfg.loss
    return "girl" if cfg.girl.enabled else "nogirl"
