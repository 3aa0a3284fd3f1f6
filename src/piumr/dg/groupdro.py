"""Group DRO over persons (Sagawa et al., "Distributionally Robust Neural Networks for Group Shifts", ICLR 2020,
Algorithm 1, the online algorithm; DomainBed's ``GroupDRO``): a baseline of the person-shift suite."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from piumr.dg.common import check_persons, person_risks, read_options
from piumr.criterion import Criterion, LossParts

__all__ = ["DEFAULTS", "MAX_PERSON_ID", "GroupDROLoss"]

#: the options of ``TrainConfig.loss_options`` for ``loss="groupdro"`` and their defaults
DEFAULTS: dict[str, float] = {"eta": 0.01}  # DomainBed's default step size of the group weights
#: the largest participant id the weights grow to (they are a tensor indexed by id)
MAX_PERSON_ID = 1_000_000


class GroupDROLoss(Criterion):
    """Online group DRO with one group per participant id: logits (B, K), labels (B,), persons (B,) -> LossParts.

    Each call, for the participants g present in the batch (ids sorted):

        L_g = mean cross-entropy of g's clips
        q_g <- q_g * exp(eta * L_g.detach()),   then q <- q / sum(q)          (Algorithm 1, lines 4-5)
        total = sum_{g present} q_g * L_g                                     (q detached, after this update)

    The normalisation runs over every participant seen so far (in DomainBed over the fixed set of domains, all
    present in every step). With each step's update applied, q_g = exp(eta * S_g) / sum_h exp(eta * S_h), S_g
    the sum of g's past batch losses; this form is what is stored (``log_w`` = eta * S, float64), so the weights
    never underflow. A participant seen for the first time starts at unnormalised weight 1 (log weight 0): the
    weight it would have had if it had been in the pool from the first step and never drawn. Before the first
    call q is empty.

    Like Algorithm 1 (whose gradient is q_g * grad L_g with q summing to 1 over all groups), ``total`` shrinks as
    the seen participants outnumber those of one batch: about (present / seen) x the batch's CE at uniform q.

    The weights need ids that name the same participant in every batch; ids are non-negative ints <=
    ``MAX_PERSON_ID`` (q is a tensor indexed by id, grown as ids appear). ``state_tensors`` carries the log
    weights, the seen mask and q (for readers), for an exact resume.
    """

    log_w: Tensor
    seen: Tensor

    def __init__(self, eta: float = DEFAULTS["eta"]) -> None:
        super().__init__()
        if not eta >= 0.0:
            raise ValueError(f"loss 'groupdro': option 'eta' must be >= 0, got {eta}")
        self.eta = float(eta)
        self.register_buffer("log_w", torch.zeros(0, dtype=torch.float64))  # (N,) eta * summed losses, by id
        self.register_buffer("seen", torch.zeros(0, dtype=torch.bool))  # (N,) ids seen so far

    @classmethod
    def from_options(cls, options: Mapping[str, float]) -> GroupDROLoss:
        """From ``TrainConfig.loss_options`` (``eta``); ``ValueError`` naming an unknown option."""
        return cls(**read_options("groupdro", options, DEFAULTS))

    @property
    def needs_persons(self) -> bool:
        """True: the weights are per participant."""
        return True

    @property
    def q(self) -> Tensor:
        """(N,) float64 group weights by participant id: sum 1 over the ids seen, 0 for the others."""
        if not bool(self.seen.any()):
            return torch.zeros_like(self.log_w)
        return torch.softmax(self.log_w.masked_fill(~self.seen, -torch.inf), dim=0)

    def _grow(self, size: int, device: torch.device) -> None:
        """Put the weights on ``device`` and make room for ids < ``size`` (new ids: log weight 0, unseen)."""
        if self.log_w.device != device:
            self.log_w, self.seen = self.log_w.to(device), self.seen.to(device)
        extra = size - len(self.log_w)
        if extra > 0:
            self.log_w = torch.cat([self.log_w, self.log_w.new_zeros(extra)])
            self.seen = torch.cat([self.seen, self.seen.new_zeros(extra)])

    def forward(self, logits: Tensor, embedding: Tensor | None, labels: Tensor,
                persons: Tensor | None = None) -> LossParts:
        """logits (B, K), embedding (unused), labels (B,), persons (B,) int64 ids -> LossParts with ``loss``,
        ``ce`` (the batch's mean CE) and ``groupdro_q_max`` (the largest weight over the participants seen)."""
        persons = check_persons("groupdro", persons, labels)
        per_clip = F.cross_entropy(logits.float(), labels, reduction="none")  # (B,)
        ids, risks, _ = person_risks(per_clip, persons)  # (P,), (P,)
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi > MAX_PERSON_ID:
            raise ValueError(f"loss 'groupdro': participant ids must be in 0..{MAX_PERSON_ID}, got {lo}..{hi}")
        self._grow(hi + 1, per_clip.device)
        self.log_w.index_add_(0, ids, self.eta * risks.detach().double())
        self.seen[ids] = True
        q = self.q
        total = (q[ids].to(risks.dtype) * risks).sum()
        return LossParts(total, {"loss": total, "ce": per_clip.mean(), "groupdro_q_max": q.max().float()})

    def state_tensors(self) -> dict[str, Tensor]:
        """``groupdro_log_w`` (N,) float64 and ``groupdro_seen`` (N,) bool (what a resume needs), ``groupdro_q``
        (N,) float64 (the normalised weights)."""
        return {"groupdro_log_w": self.log_w.cpu(), "groupdro_seen": self.seen.cpu(), "groupdro_q": self.q.cpu()}

    def load_state_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        """Restore what ``state_tensors`` saved (absent: the fresh, empty weights stay)."""
        log_w, seen = tensors.get("groupdro_log_w"), tensors.get("groupdro_seen")
        if log_w is None or seen is None:
            return
        if log_w.dim() != 1 or seen.shape != log_w.shape:
            raise ValueError(f"groupdro state: log weights {tuple(log_w.shape)} and seen mask {tuple(seen.shape)} "
                             "must be two vectors of one length")
        dev = self.log_w.device
        self.log_w = log_w.to(dev, torch.float64).clone()
        self.seen = seen.to(dev, torch.bool).clone()
