"""V-REx over persons (Krueger et al., "Out-of-Distribution Generalization via Risk Extrapolation (REx)", ICML
2021, eq. 8; DomainBed's ``VREx``): a baseline of the person-shift suite."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from piumr.dg.common import check_persons, person_risks, read_options
from piumr.criterion import Criterion, LossParts

__all__ = ["DEFAULTS", "VRExLoss"]

#: the options of ``TrainConfig.loss_options`` for ``loss="vrex"`` and their defaults
DEFAULTS: dict[str, float] = {
    "lambda": 10.0,  # DomainBed's default penalty weight (vrex_lambda)
    # DomainBed: 500 (vrex_penalty_anneal_iters); 0 here: the suite's runs are a few hundred steps long
    "anneal_steps": 0.0,
}


class VRExLoss(Criterion):
    """V-REx with one domain per participant: logits (B, K), labels (B,), persons (B,) -> LossParts.

    R_g = mean cross-entropy of participant g's clips, g over the P participants present in the batch;

        total = mean_g R_g + w * Var_g(R_g),   Var_g(R) = mean_g (R_g - mean_h R_h)^2   (population variance)

    with w = 1.0 for the first ``anneal_steps`` calls and ``lambda`` afterwards (DomainBed's schedule; each call
    counts as one step). The penalty carries gradient (eq. 8). One participant in a batch: Var = 0.

    eq. 8 sums the risks (sum_g R_g + beta * Var); DomainBed, and this loss, average them, which is eq. 8 with
    beta = P * lambda scaled by 1 / P.

    Deviations from DomainBed: it draws one equal-size minibatch per domain, so mean_g R_g is there also the
    batch mean; here each participant present counts once, whatever its clip count (``ce``, the batch's mean
    CE, is logged besides). DomainBed also resets the Adam state when the weight switches to lambda; a criterion
    cannot reset the trainer's optimiser, so that is not reproduced (with ``anneal_steps=0``, the default here,
    there is no switch).
    """

    step: Tensor

    def __init__(self, lambda_: float = DEFAULTS["lambda"], anneal_steps: int = int(DEFAULTS["anneal_steps"])) -> None:
        super().__init__()
        if not lambda_ >= 0.0:
            raise ValueError(f"loss 'vrex': option 'lambda' must be >= 0, got {lambda_}")
        if not (anneal_steps >= 0 and float(anneal_steps).is_integer()):
            raise ValueError(f"loss 'vrex': option 'anneal_steps' must be a whole number >= 0, got {anneal_steps}")
        self.lambda_, self.anneal_steps = float(lambda_), int(anneal_steps)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))  # calls so far

    @classmethod
    def from_options(cls, options: Mapping[str, float]) -> VRExLoss:
        """From ``TrainConfig.loss_options`` (``lambda``, ``anneal_steps``); ``ValueError`` naming an unknown
        option or a value out of range."""
        o = read_options("vrex", options, DEFAULTS)
        steps = o["anneal_steps"]
        if not steps.is_integer():
            raise ValueError(f"loss 'vrex': option 'anneal_steps' must be a whole number >= 0, got {steps}")
        return cls(o["lambda"], int(steps))

    @property
    def needs_persons(self) -> bool:
        """True: the risks are per participant."""
        return True

    def forward(self, logits: Tensor, embedding: Tensor | None, labels: Tensor,
                persons: Tensor | None = None) -> LossParts:
        """logits (B, K), embedding (unused), labels (B,), persons (B,) int64 ids -> LossParts with ``loss``,
        ``ce`` (the batch's mean CE), ``vrex_penalty`` (Var_g R_g) and ``vrex_weight`` (w this step)."""
        persons = check_persons("vrex", persons, labels)
        per_clip = F.cross_entropy(logits.float(), labels, reduction="none")  # (B,)
        _, risks, _ = person_risks(per_clip, persons)  # (P,)
        mean = risks.mean()
        penalty = ((risks - mean) ** 2).mean()
        if self.step.device != per_clip.device:
            self.step = self.step.to(per_clip.device)
        # on the device, without a host sync: 1.0 during the warm-up, lambda afterwards
        weight = torch.where(self.step >= self.anneal_steps, penalty.new_tensor(self.lambda_), penalty.new_tensor(1.0))
        self.step += 1
        total = mean + weight * penalty
        return LossParts(total, {"loss": total, "ce": per_clip.mean(), "vrex_penalty": penalty.detach(),
                                 "vrex_weight": weight})

    def state_tensors(self) -> dict[str, Tensor]:
        """``vrex_step`` () int64: the calls so far (the warm-up's clock)."""
        return {"vrex_step": self.step.cpu()}

    def load_state_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        """Restore what ``state_tensors`` saved (absent: the count stays)."""
        step = tensors.get("vrex_step")
        if step is not None:
            self.step = step.to(self.step.device, torch.int64).reshape(()).clone()
