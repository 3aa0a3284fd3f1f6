"""What a training step leaves behind: the append-only ``log.jsonl`` writer (with the run's ``curves.png`` and,
optionally, TensorBoard scalars drawn from it), JSON-safe log values, the epoch's sums of the values a
:class:`piumr.speed.LossMeter` read, and a batch's participant ids (GIRL's person groups)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from piumr.errors import require_extra
from piumr.plots import write_run_curves
from piumr.speed import Synced

__all__ = ["RunLog", "TENSORBOARD", "finite_values", "fold_read"]

TENSORBOARD = "tensorboard"  # a run's TensorBoard event files, beside its log.jsonl
_NOT_SCALARS = ("type", "epoch", "step")


class RunLog:
    """Append-only JSONL log (rank 0 only: ``path`` None writes nothing).

    With ``tensorboard`` (the optional ``tensorboard`` package; ``MissingExtraError`` here, before anything is
    written, when it is not installed) every number of a step or epoch row also goes to TensorBoard event files
    in ``tensorboard/`` beside the log, at the row's optimiser step: ``step/<key>``, ``epoch/<key>`` and
    ``val/<metric>`` (an epoch row's ``val`` metrics and its ``val_*`` counts). A resume row purges the events
    after its step, as the log drops its rows after the checkpoint. Used as a context manager: leaving it closes
    the event file."""

    def __init__(self, path: Path | None, tensorboard: bool = False) -> None:
        self.path = path
        self.tensorboard = tensorboard and path is not None
        self._writer: Any = None  # torch.utils.tensorboard.SummaryWriter, opened at the first row
        if self.tensorboard:
            require_extra("tensorboard", "tensorboard", "--tensorboard")

    def __call__(self, **row: Any) -> None:
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            if self.tensorboard:
                self._scalars(row)

    def _scalars(self, row: dict[str, Any]) -> None:
        """The numbers of a step / epoch row as scalars at its step (a resume row opens the writer with the
        steps after it purged)."""
        kind, step = row.get("type"), row.get("step")
        if kind not in ("step", "epoch", "resume") or not isinstance(step, int) or self.path is None:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.path.parent / TENSORBOARD),
                                         purge_step=step + 1 if kind == "resume" else None)
        if kind == "resume":
            return
        values = [(f"val/{k[4:]}" if k.startswith("val_") else f"{kind}/{k}", v) for k, v in row.items()
                  if k not in _NOT_SCALARS and k != "val"]
        values += [(f"val/{k}", v) for k, v in (row.get("val") or {}).items()] if kind == "epoch" else []
        for tag, v in values:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self._writer.add_scalar(tag, v, step)
        if kind == "epoch":
            self._writer.flush()

    def draw_curves(self) -> None:
        """Redraw ``curves.png`` beside the log from its epoch rows (``piumr.plots.write_run_curves``)."""
        if self.path is not None:
            write_run_curves(self.path.parent)

    def close(self) -> None:
        """Close the TensorBoard event file (if one is open)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


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
