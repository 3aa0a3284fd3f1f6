"""CORAL across persons (Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV-W
2016, eq. 1; in DomainBed's multi-domain form, ``CORAL``): a baseline of the person-shift suite."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from piumr.dg.common import check_persons, read_options
from piumr.criterion import Criterion, LossParts

__all__ = ["DEFAULTS", "CORALLoss", "coral_penalty"]

#: the options of ``TrainConfig.loss_options`` for ``loss="coral"`` and their defaults
DEFAULTS: dict[str, float] = {"weight": 1.0}  # DomainBed's default (mmd_gamma)


def coral_penalty(embedding: Tensor, persons: Tensor) -> tuple[Tensor, int]:
    """The CORAL penalty of a batch: embedding (B, D), persons (B,) integer ids -> (penalty () float32, P).

    Over the P participants with at least 2 clips in the batch (an unbiased covariance needs two; the others are
    left out), with mu_i (D,) the mean and C_i (D, D) the unbiased covariance of participant i's embeddings:

        penalty = mean_{i<j} [ mean_d (mu_i - mu_j)_d^2 + mean_{d,e} (C_i - C_j)_{de}^2 ]

    computed through sum_{i<j} |a_i - a_j|^2 = P * sum_i |a_i - mean_k a_k|^2 (no loop over pairs). P < 2: 0
    (a tensor on the embedding's device, without gradient). Computed in float32 (bf16 embeddings included).
    """
    x = embedding.float()
    _, inverse, counts = torch.unique(persons.to(x.device), return_inverse=True, return_counts=True)
    keep = [g for g, n in enumerate(counts.tolist()) if n >= 2]  # one host sync
    P, D = len(keep), x.shape[1]
    if P < 2:
        return x.new_zeros(()), P
    means, covs = [], []
    for g in keep:
        xg = x[inverse == g]  # (n_g, D)
        mu = xg.mean(dim=0)
        xc = xg - mu
        means.append(mu)
        covs.append(xc.t() @ xc / (len(xg) - 1))
    mu_all, cov_all = torch.stack(means), torch.stack(covs)  # (P, D), (P, D, D)
    mean_term = ((mu_all - mu_all.mean(dim=0)) ** 2).sum() / D
    cov_term = ((cov_all - cov_all.mean(dim=0)) ** 2).sum() / (D * D)
    pairs = P * (P - 1) / 2
    return P * (mean_term + cov_term) / pairs, P


class CORALLoss(Criterion):
    """CE + ``weight`` * CORAL penalty across participants: logits (B, K), embedding (B, D), labels (B,), persons
    (B,) -> LossParts; the penalty is ``coral_penalty`` (pairs of participants with >= 2 clips in the batch).

    Deviations: Sun & Saenko align one source with one target by |C_S - C_T|_F^2 / (4 d^2) (covariances only);
    DomainBed (followed here) adds the squared mean difference, averages the squared entries (/ d and / d^2, no
    1/4) and averages over the pairs of domains. DomainBed's CE term is the mean over domains of each domain's
    mean CE, equal to the batch's mean CE for its equal-size per-domain minibatches; here batches are not
    balanced by participant and the term is the batch's mean CE. Participants with one clip in the batch are left
    out of the penalty (DomainBed's domains always have many).
    """

    def __init__(self, weight: float = DEFAULTS["weight"]) -> None:
        super().__init__()
        if not weight >= 0.0:
            raise ValueError(f"loss 'coral': option 'weight' must be >= 0, got {weight}")
        self.weight = float(weight)

    @classmethod
    def from_options(cls, options: Mapping[str, float]) -> CORALLoss:
        """From ``TrainConfig.loss_options`` (``weight``); ``ValueError`` naming an unknown option."""
        return cls(**read_options("coral", options, DEFAULTS))

    @property
    def needs_persons(self) -> bool:
        """True: the statistics are per participant."""
        return True

    def forward(self, logits: Tensor, embedding: Tensor | None, labels: Tensor,
                persons: Tensor | None = None) -> LossParts:
        """logits (B, K), embedding (B, D), labels (B,), persons (B,) int64 ids -> LossParts with ``loss``, ``ce``
        and ``coral_penalty``."""
        if embedding is None:
            raise ValueError("loss 'coral' aligns the model's embedding across participants; this model gives "
                             "logits only")
        persons = check_persons("coral", persons, labels)
        if embedding.dim() != 2 or embedding.shape[0] != labels.shape[0]:
            raise ValueError(f"loss 'coral': embedding must be (B, D) with B = {labels.shape[0]}, got "
                             f"{tuple(embedding.shape)}")
        ce = F.cross_entropy(logits.float(), labels)
        penalty, _ = coral_penalty(embedding, persons)
        total = ce + self.weight * penalty
        return LossParts(total, {"loss": total, "ce": ce, "coral_penalty": penalty.detach()})
