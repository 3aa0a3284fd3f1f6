"""Option names for config keys: a validation error names the flag the user typed, not the
config field behind it (``--epochs``, not ``optim.epochs``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from piumr.config import TrainConfig

from .speed import SPEED_FLAGS

# config key (dotted) -> the command-line option that sets it
FLAGS: dict[str, str] = {
    "data.root": "--data",
    "data.split": "--split",
    "data.fold": "--fold",
    "data.num_workers": "--workers",
    "data.on_error": "--on-error",
    "data.synth_persons": "--persons",
    "data.synth_clips_per_person": "--clips-per-person",
    "data.synth_classes_per_body": "--classes-per-body",
    "data.synth_frames": "--frames",
    "data.synth_size": "--size",
    "data.synth_seed": "--seed",
    "optim.epochs": "--epochs",
    "optim.batch_size": "--batch-size",
    "optim.lr": "--lr",
    "optim.milestones": "--milestones",
    "optim.amp": "--amp/--no-amp",
    "optim.grad_clip": "--grad-clip",
    "model.frames": "--frames",
    "model.crop": "--crop",
    "model.backbone": "--backbone",
    "model.pretrained": "--pretrained",
    "model.tfam.enabled": "--no-tfam",
    "model.tfam.frequency": "--tfam-frequency/--no-tfam-frequency",
    "model.tfam.temporal": "--tfam-temporal/--no-tfam-temporal",
    "model.tfam.fusion": "--fusion",
    "girl.enabled": "--no-girl",
    "girl.var_grad": "--girl-var-grad",
    "girl.detach_weights": "--girl-detach-weights",
    "seed": "--seed",
    "eval_every": "--eval-every",
    "max_steps_per_epoch": "--max-steps-per-epoch",
    **SPEED_FLAGS,
}


def _key(error: Mapping[str, Any]) -> str:
    """Dotted config key an error is about; a cross-field check names its field in the error."""
    parts = [str(p) for p in error.get("loc", ())]
    blamed = getattr((error.get("ctx") or {}).get("error"), "field", None)
    if isinstance(blamed, str):
        parts.append(blamed)
    return ".".join(parts)


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def describe(e: ValidationError) -> str:
    """One line for all errors of ``e``: ``--grad-clip -1.0: Input should be greater than 0``.

    Keys without an option keep their config name; a value is shown only for field errors.
    """
    lines = []
    for error in e.errors():
        key = _key(error)
        name = FLAGS.get(key, key or "config")
        value = error.get("input")
        shown = f" {value!r}" if error.get("type") != "value_error" and not isinstance(value, dict) else ""
        lines.append(f"{name}{shown}: {_message(error)}")
    return "; ".join(lines)


def refuse_combined(flag: str, given: bool, others: Mapping[str, bool]) -> None:
    """``flag`` removes a part of the model; options of that part (``others``: option -> typed?)
    would be silently ignored, so typing both is an error."""
    typed = [name for name, was_typed in others.items() if was_typed]
    if given and typed:
        raise ValueError(f"{flag} cannot be combined with {', '.join(typed)} "
                         f"(they configure the part that {flag} removes)")


def with_overrides_described(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``base`` with the non-None ``overrides``; a validation error names the flag the user typed."""
    from piumr.config import with_overrides

    try:
        return with_overrides(base, {k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:  # one line naming the flag the user typed, not the config key
        raise ValueError(describe(e)) from None

