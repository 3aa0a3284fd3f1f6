"""The arms of the person-shift suite: what each trains, as data (``ARM_SPECS``).

An arm is a set of config overrides on the suite's recipe plus three things the suite's trainer does with a
batch: an augmentation (an entry of ``piumr.shift.aug.AUGMENTATIONS``), the arm-level random stream, and
person-structured batches. Arms:

- PIUmr's ablation (paper Table 2): ``baseline`` (X3D, CE), ``tfam``, ``girl``, ``piumr``;
- ``control``: the positive control, one training per factor (``piumr.shift.suite``: trained on persons whose factor
  covers the held-out range, or with the factor's augmentation);
- ``aa``: the baseline again, sharing its initialisation and data order, differing only in the arm-level random
  stream (dropout masks and the shared augmentation's draws): the A/A control of the primary comparison;
- domain-generalisation baselines over persons: ``groupdro``, ``vrex``, ``coral`` (losses of ``piumr.dg``,
  registered in ``piumr.losses.LOSSES``), ``mixstyle`` (``piumr.dg.mixstyle``, a model module) and ``augment``
  (temporal warp + scale + colour jitter, ``piumr.shift.aug.augmentation_recipe``).

A new arm adds one entry here (and, for a new loss or module, its own file and registry entry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Arm", "ARM_SPECS", "ArmKind", "PERSONS_PER_BATCH", "arm_spec"]

ArmKind = Literal["ablation", "control", "aa", "baseline-method"]

#: persons per batch of the person-group losses (16 clips = 4 persons x 4 clips): each person's risk, mean and
#: covariance need several clips of that person in the batch (DomainBed gives every domain its own minibatch)
PERSONS_PER_BATCH = 4


@dataclass(frozen=True)
class Arm:
    """One arm: config ``overrides`` (dotted keys), the training ``augment`` (a name of
    ``piumr.shift.aug.AUGMENTATIONS``, or None), its random ``stream`` (0: the baseline's) and
    ``person_batches`` (persons per batch; 0: shuffled clips, the baseline's order)."""

    name: str
    kind: ArmKind
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)
    augment: str | None = None
    stream: int = 0
    person_batches: int = 0


_CE = {"model.tfam.enabled": False, "girl.enabled": False}

ARM_SPECS: dict[str, Arm] = {a.name: a for a in (
    Arm("baseline", "ablation", "X3D (CE)", dict(_CE)),
    Arm("tfam", "ablation", "+ TFAM", {"model.tfam.enabled": True, "girl.enabled": False}),
    Arm("girl", "ablation", "+ GIRL", {"model.tfam.enabled": False, "girl.enabled": True}),
    Arm("piumr", "ablation", "PIUmr (TFAM + GIRL)", {"model.tfam.enabled": True, "girl.enabled": True}),
    Arm("control", "control", "positive control", dict(_CE)),
    Arm("aa", "aa", "A/A (baseline, other stream)", dict(_CE), stream=1),
    Arm("groupdro", "baseline-method", "GroupDRO", {**_CE, "loss": "groupdro"}, person_batches=PERSONS_PER_BATCH),
    Arm("vrex", "baseline-method", "V-REx", {**_CE, "loss": "vrex"}, person_batches=PERSONS_PER_BATCH),
    Arm("coral", "baseline-method", "CORAL", {**_CE, "loss": "coral"}, person_batches=PERSONS_PER_BATCH),
    Arm("mixstyle", "baseline-method", "MixStyle", {**_CE, "model.mixstyle.enabled": True}),
    Arm("augment", "baseline-method", "Augmentation (warp + scale + colour)", dict(_CE), augment="recipe"),
)}


def arm_spec(name: str) -> Arm:
    """The arm called ``name``; ``ValueError`` listing the arms when there is none."""
    if name not in ARM_SPECS:
        raise ValueError(f"unknown arm {name!r}; choose one of: {', '.join(ARM_SPECS)}")
    return ARM_SPECS[name]
