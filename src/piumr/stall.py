"""The stall guard: a training whose cross-entropy has not left chance after its first steps says so.

A run "stalls" when the moving average of its training cross-entropy is still at or above ``factor * ln K`` (K
classes; ``factor`` 0.97) once ``after`` steps are done: 200 steps after the learning-rate warm-up, or the run's
last step if it is shorter. (One epoch, the other choice, was too early for the person-shift suite: after its 42
steps, 4 of 6 screened seeds that went on to learn were still above the line.)
The guard checks once, at the first loss value it sees at or after that step, and then says one line: the run, the
loss, the threshold and what to try. ``on_stall="stop"`` also ends the run (``piumr.errors.TrainingStalled``, a
``RunError``: one line and exit 4 from the CLI).

Every trainer has one (``piumr train``: a ``stall`` row in ``log.jsonl`` and ``stalled`` in ``summary.json``; the
person-shift suite: ``stalled`` in each run's record, counted in its report).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Literal

from piumr.errors import TrainingStalled

__all__ = ["ON_STALL", "OnStall", "STALL_FACTOR", "STALL_MAX_STEPS", "STALL_MIN_STEPS", "EMA_WEIGHT", "StallGuard", "stall_after"]

OnStall = Literal["warn", "stop"]
ON_STALL: tuple[OnStall, ...] = ("warn", "stop")
STALL_FACTOR = 0.97
STALL_MAX_STEPS = 200
STALL_MIN_STEPS = 50  # a run shorter than this is not judged (a test's or a smoke run's few steps stay at chance)
EMA_WEIGHT = 0.1  # weight of the newest value in the moving average (about the last 10 steps)


def stall_after(total_steps: int, warmup_steps: int = 0) -> int | None:
    """The step at which a run is checked: ``STALL_MAX_STEPS`` after its warm-up, or its last step; None (not
    checked) for a run of fewer than ``STALL_MIN_STEPS`` steps after its warm-up."""
    if total_steps - warmup_steps < STALL_MIN_STEPS:
        return None
    return min(total_steps, warmup_steps + STALL_MAX_STEPS)


class StallGuard:
    """Watches a run's training cross-entropy; ``update(step, ce)`` after each step whose loss was read.

    ``num_classes``: K (chance cross-entropy ln K); ``after``: the step of the check (None: none); ``name``: the run, for the
    message; ``say``: where the line goes (a console's print, ``warnings.warn`` ...).
    """

    def __init__(self, num_classes: int, after: int | None, name: str, say: Callable[[str], None],
                 on_stall: OnStall = "warn", factor: float = STALL_FACTOR) -> None:
        if on_stall not in ON_STALL:
            raise ValueError(f"--on-stall must be warn or stop, got {on_stall!r}")
        if num_classes < 2:
            raise ValueError(f"the stall guard needs at least 2 classes, got {num_classes}")
        self.factor, self.threshold = factor, factor * math.log(num_classes)
        self.after, self.name, self.say, self.on_stall = after, name, say, on_stall
        self.average: float | None = None
        self.checked = after is None  # too short a run: never checked
        self.stalled = False

    def update(self, step: int, ce: float) -> bool:
        """Fold in the cross-entropy ``ce`` read at ``step`` (1-based) and check once ``step`` reaches ``after``;
        True when this call found the stall (``TrainingStalled`` then with ``on_stall="stop"``)."""
        if not math.isfinite(ce):
            return False
        self.average = ce if self.average is None else (1 - EMA_WEIGHT) * self.average + EMA_WEIGHT * ce
        return self.check(step, self.average)

    def watch(self, step: int, vals: Mapping[str, float], record: Callable[[dict[str, Any]], None]) -> None:
        """``update`` with the cross-entropy of the loss values ``vals`` just read (``ce``, else ``total``); on a
        stall ``record`` gets the run log's ``stall`` row (also before ``on_stall="stop"`` raises)."""
        try:
            found = self.update(step, vals.get("ce", vals.get("total", math.nan)))
        except TrainingStalled:
            record(self.row(step))
            raise
        if found:
            record(self.row(step))

    def row(self, step: int) -> dict[str, Any]:
        """The ``stall`` row of a run's ``log.jsonl``."""
        return {"type": "stall", "step": step, "ce": self.average, "threshold": self.threshold,
                "on_stall": self.on_stall}

    def check(self, step: int, average: float) -> bool:
        """The check itself, with the moving average of the cross-entropy at ``step`` computed by the caller (a
        trainer that keeps it on the device and reads it once); does nothing before ``after`` or after a check."""
        if self.checked or self.after is None or step < self.after or not math.isfinite(average):
            return False
        self.checked = True
        if average < self.threshold:
            return False
        self.stalled, self.average = True, average
        line = (f"{self.name}: training stalled at chance: cross-entropy {average:.3f} after {step} steps "
                f"(>= {self.threshold:.3f} = {self.factor:.2f} ln K); try another seed, a learning-rate warm-up "
                "or a lower learning rate")
        self.say(line)
        if self.on_stall == "stop":
            raise TrainingStalled(line + " (stopped: --on-stall stop)")
        return True
