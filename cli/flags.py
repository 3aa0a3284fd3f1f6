"""Every option of ``piumr train`` (and ``piumr synth``) that sets a config key, declared once in
``TRAIN_OPTIONS`` / ``SYNTH_OPTIONS``. From that one list come: the config overrides a command builds, the
flag a validation error names (``--epochs``, not ``optim.epochs``: ``FLAGS``), the options a resumed run
accepts (``RESUME_OPTIONS``), and the options that cannot be combined (a switch that removes a model part
and the options that configure it)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, get_args

from pydantic import ValidationError

from piumr.config import TrainConfig

from .speed import SPEED_FLAGS, parse_speed


def parse_milestones(text: Optional[str]) -> Optional[tuple[int, ...]]:
    """``--milestones 30,60`` -> (30, 60); '' -> (); ``ValueError`` naming the flag otherwise."""
    if text is None:
        return None
    try:
        epochs = tuple(int(m) for m in text.replace(" ", "").split(",") if m)
    except ValueError:
        raise ValueError(f"--milestones {text!r}: give epochs as integers separated by commas, e.g. 30,60") from None
    if any(m < 0 for m in epochs):
        raise ValueError(f"--milestones {text!r}: epochs must be >= 0")
    return epochs



def parse_set(values: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` options -> dotted config overrides; VALUE is read as JSON (``true``, ``0.5``,
    ``[1, 2]``), else kept as text. A value without ``=`` is a ``ValueError`` naming it."""
    out: dict[str, Any] = {}
    fields: Any = TrainConfig().model_dump()
    for item in values or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set girl.exclude_self=false")
        node = fields
        for part in key.strip().split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"--set {item!r}: unknown config key {key.strip()!r} (the keys are those of a run's "
                                 "config.json, e.g. girl.tau, optim.lr, model.tfam.fusion)")
            node = node[part]
        try:
            value = json.loads(raw) if key.strip() != "name" else raw  # a run's name is text: name=5 is "5"
        except json.JSONDecodeError:
            value = raw
        _check_set_value(item, key.strip(), value, node)
        out[key.strip()] = value
    return out


#: a run's name becomes a folder, ``artifacts/runs/<name>-<time>``: a plain folder name, never a path
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def _field_type(key: str) -> Any:
    """The annotation of the config field at the dotted ``key`` (a known key)."""
    ann: Any = TrainConfig
    for part in key.split("."):
        ann = ann.model_fields[part].annotation
    return ann


def _takes_bool(annotation: Any) -> bool:
    return annotation is bool or any(_takes_bool(a) for a in get_args(annotation))


def _check_set_value(item: str, key: str, value: Any, default: Any) -> None:
    """``ValueError`` naming ``--set`` and the key for what pydantic would quietly convert or take: a boolean for
    a number (``true`` would be 1), a run name that is not a plain folder name (``../x`` would leave
    ``artifacts/runs``)."""
    if isinstance(value, bool) and not _takes_bool(_field_type(key)):
        example = f" (e.g. {default!r})" if default is not None else ""
        raise ValueError(f"--set {item!r}: {key} is not a true/false setting; give a value of its own type{example}")
    if key == "name" and not (isinstance(value, str) and PLAIN_NAME.fullmatch(value)):
        raise ValueError(f"--set {item!r}: a run's name is a folder name (artifacts/runs/<name>-<time>): letters, "
                         "digits, '.', '_', '+' and '-', starting with a letter or digit; not a path")


@dataclass(frozen=True)
class Option:
    """One command-line option: the flag as typed, the config key it sets (None: the command uses the value
    itself), how a typed value becomes the config value, whether a resumed run accepts it (an amendment,
    one of ``piumr.run_folder.AMENDABLE``), and the model part it removes or configures."""

    flag: str  # as typed: "--batch-size"; a two-way switch "--amp/--no-amp"
    key: Optional[str] = None
    convert: Optional[Callable[[Any], Any]] = None  # typed value -> config value (None: as typed)
    switch: bool = False  # a one-way switch (False = not typed)
    resumable: bool = False
    removes: Optional[str] = None  # the model part this switch removes ("tfam", "girl")
    configures: Optional[str] = None  # the model part this option configures
    expands: bool = False  # ``convert`` returns several dotted config overrides (``--speed``), not one value
    name: Optional[str] = None  # the command's parameter, where it is not the flag's (``compile_``)

    @property
    def param(self) -> str:
        """The command's parameter: ``--batch-size`` -> ``batch_size``."""
        return self.name or self.flag.split("/")[0].removeprefix("--").replace("-", "_")

    def typed(self, value: Any) -> bool:
        """Whether the user typed this option, given the parameter's value."""
        return value is True if self.switch else value is not None


def _const(value: Any) -> Callable[[Any], Any]:
    return lambda _typed: value


TRAIN_OPTIONS: tuple[Option, ...] = (
    Option("--preset"),
    Option("--data", "data.root"),
    Option("--epochs", "optim.epochs", resumable=True),
    Option("--batch-size", "optim.batch_size"),
    Option("--lr", "optim.lr", resumable=True),
    Option("--milestones", "optim.milestones", parse_milestones, resumable=True),
    Option("--frames", "model.frames"),
    Option("--crop", "model.crop"),
    Option("--backbone", "model.backbone"),
    Option("--pretrained", "model.pretrained", str),
    Option("--tfam-stage", "model.tfam.stage"),
    Option("--no-tfam", "model.tfam.enabled", _const(False), switch=True, removes="tfam"),
    Option("--no-girl", "girl.enabled", _const(False), switch=True, removes="girl"),
    Option("--tfam-frequency/--no-tfam-frequency", "model.tfam.frequency", configures="tfam"),
    Option("--tfam-temporal/--no-tfam-temporal", "model.tfam.temporal", configures="tfam"),
    Option("--fusion", "model.tfam.fusion", configures="tfam"),
    Option("--girl-var-grad", "girl.var_grad", _const(True), switch=True, configures="girl"),
    Option("--girl-detach-weights", "girl.detach_weights", _const(True), switch=True, configures="girl"),
    Option("--girl-grouping", "girl.grouping", configures="girl"),
    Option("--split", "data.split"),
    Option("--fold", "data.fold"),
    Option("--hold-out", "data.hold_out"),
    Option("--seed", "seed"),
    Option("--workers", "data.num_workers", resumable=True),
    Option("--amp/--no-amp", "optim.amp"),
    Option("--grad-clip", "optim.grad_clip"),
    Option("--eval-every", "eval_every"),
    Option("--max-steps-per-epoch", "max_steps_per_epoch"),
    Option("--on-error", "data.on_error"),
    Option("--tensorboard", "tensorboard", _const(True), switch=True, resumable=True),
    Option("--fresh", switch=True),
    # how a step runs (docs/benchmarks.md); --compile and --fast-depthwise win over the same lever in --speed
    Option("--speed", "speed", parse_speed, resumable=True, expands=True),
    Option("--compile/--no-compile", "speed.compile", resumable=True, name="compile_"),
    Option("--fast-depthwise", "speed.depthwise", resumable=True),
    # any config field as KEY=VALUE (the last word: it wins over the options above)
    Option("--set", None, parse_set, expands=True, name="set_"),
)

SYNTH_OPTIONS: tuple[Option, ...] = (
    Option("--persons", "data.synth_persons"),
    Option("--clips-per-person", "data.synth_clips_per_person"),
    Option("--classes-per-body", "data.synth_classes_per_body"),
    Option("--frames", "data.synth_frames"),
    Option("--size", "data.synth_size"),
    Option("--seed", "data.synth_seed"),
    Option("--task", "data.synth_task"),
)

# config key (dotted) -> the command-line option that sets it
FLAGS: dict[str, str] = {**{o.key: o.flag for o in (*SYNTH_OPTIONS, *TRAIN_OPTIONS) if o.key is not None},
                         **SPEED_FLAGS}
# the options a resumed run accepts (the config keys they set); the others would change the run mid-way
RESUME_OPTIONS: dict[str, str] = {o.flag: o.key for o in TRAIN_OPTIONS if o.resumable and o.key is not None}


def typed_options(options: Sequence[Option], params: Mapping[str, Any]) -> dict[str, Any]:
    """flag -> value of the ``options`` the user typed, from a command's parameters (name -> value)."""
    return {o.flag: params[o.param] for o in options if o.typed(params[o.param])}


def config_overrides(options: Sequence[Option], typed: Mapping[str, Any]) -> dict[str, Any]:
    """config key -> config value of the ``typed`` options (flag -> typed value) that set a key."""
    out: dict[str, Any] = {}
    for o in options:
        if o.flag not in typed or (o.key is None and not o.expands):
            continue
        value = o.convert(typed[o.flag]) if o.convert else typed[o.flag]
        if o.expands:
            out.update(value)
        elif o.key is not None:
            out[o.key] = value
    return out


def refuse_conflicts(options: Sequence[Option], typed: Mapping[str, Any]) -> None:
    """A switch that removes a model part, typed with options that configure that part (which would be
    silently ignored): ``ValueError`` naming them all."""
    for switch in options:
        if switch.removes is None or switch.flag not in typed:
            continue
        others = [o.flag for o in options if o.configures == switch.removes and o.flag in typed]
        if others:
            raise ValueError(f"{switch.flag} cannot be combined with {', '.join(others)} "
                             f"(they configure the part that {switch.flag} removes)")


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


def with_overrides_described(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``base`` with the non-None ``overrides``; a validation error names the flag the user typed."""
    from piumr.config import with_overrides

    try:
        return with_overrides(base, {k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:  # one line naming the flag the user typed, not the config key
        raise ValueError(describe(e)) from None


def build_config(preset: str, overrides: dict[str, Any], backbone: str | None = None) -> TrainConfig:
    """``preset`` + ``overrides`` (None = not given). A ``backbone`` also moves TFAM to its default stage
    and, for the full-size ``paper`` preset only, the input to its own clip length and crop; explicit
    overrides win."""
    from piumr.config import backbone_overrides, get_preset

    base = backbone_overrides(backbone, native_input=preset == "paper") if backbone is not None else {}
    return with_overrides_described(get_preset(preset), {**base, **{k: v for k, v in overrides.items()
                                                                    if v is not None}})
