"""What a training step leaves behind: the append-only ``log.jsonl`` writer, JSON-safe log values, the epoch's
sums of the values a :class:`piumr.speed.LossMeter` read, and a batch's participant ids (GIRL's person groups)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from piumr.speed import Synced

__all__ = ["RunLog", "finite_values", "fold_read", "person_ids"]


class RunLog:
    """Append-only JSONL log (rank 0 only: ``path`` None writes nothing)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, **row: Any) -> None:
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")


def finite_values(vals: dict[str, float]) -> dict[str, float | None]:
    """JSON-safe log values: a non-finite diagnostic becomes null; the meter's ``total`` is left out (the
    criterion logs it as ``loss``)."""
    return {k: (v if math.isfinite(v) else None) for k, v in vals.items() if k != "total"}


def fold_read(acc: dict[str, Any], got: Synced) -> None:
    """Add one host read of the loss meter to the epoch's sums and counts (``acc["sums"]``, ``acc["counts"]``);
    a non-finite sum (a diagnostic with no value, e.g. no partnered anchor in a step) leaves that read out."""
    for k, v in got.sums.items():
        if k != "total" and math.isfinite(v):
            acc["sums"][k] = acc["sums"].get(k, 0.0) + v
            acc["counts"][k] = acc["counts"].get(k, 0) + got.steps


def person_ids(participants: list[str], device: torch.device) -> torch.Tensor:
    """Participant names of a batch -> (B,) int64 ids, equal for equal names (numbered within the batch)."""
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(p, len(ids)) for p in participants], dtype=torch.long, device=device)
