"""What the person-domain losses share: their options from ``TrainConfig.loss_options`` and per-person risks."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = ["check_persons", "person_risks", "read_options"]


def read_options(loss: str, given: Mapping[str, float], defaults: Mapping[str, float]) -> dict[str, float]:
    """``defaults`` updated by ``given`` (``TrainConfig.loss_options``); ``ValueError`` naming an option that
    ``loss`` does not have, or a value that is not a finite number. Range checks are the loss's own."""
    for name in given:
        if name not in defaults:
            raise ValueError(f"loss {loss!r} has no option {name!r}; its options are: {', '.join(sorted(defaults))}")
    out = {**defaults, **given}
    for name, value in out.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"loss {loss!r}: option {name!r} must be a finite number, got {value!r}")
        out[name] = float(value)
    return out


def check_persons(loss: str, persons: Tensor | None, labels: Tensor) -> Tensor:
    """``persons`` (B,) integer participant ids of the batch, checked against ``labels`` (B,); ``ValueError`` when
    the trainer gave none (this loss groups the batch by person) or their shape or type is wrong."""
    if persons is None:
        raise ValueError(f"loss {loss!r} groups the batch by participant and needs their ids (persons (B,) int64); "
                         "this trainer passed none")
    if persons.shape != labels.shape or persons.dtype.is_floating_point or persons.dtype == torch.bool:
        raise ValueError(f"loss {loss!r}: persons must be integer ids of shape {tuple(labels.shape)}, got "
                         f"{persons.dtype} {tuple(persons.shape)}")
    return persons


def person_risks(per_clip: Tensor, persons: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean of ``per_clip`` (B,) float per participant present in the batch.

    ``persons`` (B,) integer ids. Returns (ids (P,) int64, sorted and unique; risks (P,) float, differentiable;
    counts (P,) int64 clips per id), P = the number of participants in the batch."""
    ids, inverse, counts = torch.unique(persons.to(per_clip.device), return_inverse=True, return_counts=True)
    sums = torch.zeros(len(ids), dtype=per_clip.dtype, device=per_clip.device).index_add(0, inverse, per_clip)
    return ids.long(), sums / counts.to(per_clip.dtype), counts
