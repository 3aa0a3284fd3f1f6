"""The training criterion's interface: what every trainer relies on (``Criterion``, ``LossParts``). The criteria
themselves live in ``piumr.losses`` (CE + GIRL) and ``piumr.dg`` (the person-shift suite's baselines), registered by
name in ``piumr.losses.LOSSES``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from torch import Tensor, nn

__all__ = ["Criterion", "LossParts"]


class LossParts(NamedTuple):
    """What a training criterion returns: ``total`` (float32 scalar) is back-propagated; ``logs`` are the
    criterion's own float32 scalars by log key (``loss`` = total included), which training averages and
    writes without knowing their names."""

    total: Tensor
    logs: dict[str, Tensor]


class Criterion(nn.Module):
    """The training criterion's interface (what every trainer relies on, nothing more):
    ``criterion(logits, embedding, labels, persons)`` -> ``LossParts`` (``logs`` holds ``"ce"``, the
    cross-entropy the stall guard watches); ``persons`` (B,) int64 participant ids, or None; ``state_tensors()``
    / ``load_state_tensors(d)``: extra state a checkpoint carries for an exact resume. A new loss subclasses it in
    its own module and adds one entry to ``LOSSES``; ``TrainConfig.loss`` names it."""

    @property
    def needs_persons(self) -> bool:
        """True when the criterion uses the batch's participant ids (person groups)."""
        return False

    def forward(self, logits: Tensor, embedding: Tensor | None, labels: Tensor,
                persons: Tensor | None = None) -> LossParts:
        """logits (B, K), embedding (B, D) or None, labels (B,), persons (B,) or None -> LossParts."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def state_tensors(self) -> dict[str, Tensor]:
        """Extra state for ``last.safetensors`` (name -> tensor); none by default."""
        return {}

    def load_state_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        """Restore what ``state_tensors`` saved; nothing by default."""
