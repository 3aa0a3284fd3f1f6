"""``piumr train --resume``: the options a resumed run accepts, and the run's own config amended by them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .flags import FLAGS, with_overrides_described
from .speed import speed_overrides

if TYPE_CHECKING:
    from piumr.train import TrainResult

# the options a resumed run accepts (the config keys they set); the others would change the run mid-way
RESUME_OPTIONS = {"--epochs": "optim.epochs", "--lr": "optim.lr", "--milestones": "optim.milestones",
                  "--workers": "data.num_workers", "--compile/--no-compile": "speed.compile",
                  "--fast-depthwise": "speed.depthwise", "--speed": "speed"}  # speed: how a step runs


def parse_milestones(text: Optional[str]) -> Optional[tuple[int, ...]]:
    """``--milestones 30,60`` -> (30, 60); '' -> (); ``ValueError`` naming the flag otherwise."""
    if text is None:
        return None
    try:
        return tuple(int(m) for m in text.replace(" ", "").split(",") if m)
    except ValueError:
        raise ValueError(f"--milestones {text!r}: give epochs as integers separated by commas, e.g. 30,60") from None


def resume_run(folder: Path, typed: dict[str, Any], *, device: Optional[str], progress: bool,
               threads: Optional[int], checkpoint_every_min: float) -> TrainResult:
    """Continue the run in ``folder`` with its own config plus the options ``typed`` (flag -> value, only
    those the user typed): ``RESUME_OPTIONS`` become amendments, any other option is refused."""
    from piumr.checkpoint import read_checkpoint
    from piumr.run_folder import AmendmentError, read_config
    from piumr.runtime import configure_threads
    from piumr.train import train

    refused = [flag for flag in typed if flag not in RESUME_OPTIONS]
    if refused:
        raise ValueError(f"{refused[0]} cannot be used with --resume (the run in {folder} keeps its settings; "
                         f"--resume accepts {', '.join(RESUME_OPTIONS)})")
    last = folder / "last.safetensors"
    if last.is_file():
        base = read_checkpoint(last).config
    elif (folder / "config.json").is_file():
        base = read_config(folder)[0]
    else:
        raise FileNotFoundError(f"{folder}: no run to resume here (no last.safetensors or config.json)")
    values = {key: typed[flag] for flag, key in RESUME_OPTIONS.items() if flag in typed and key != "speed"}
    values.update(speed_overrides(None, None, typed.get("--speed")))
    if "optim.milestones" in values:
        values["optim.milestones"] = parse_milestones(values["optim.milestones"])
    try:
        cfg = with_overrides_described(base, values)
        configure_threads(threads, cfg.data.num_workers)
        return train(cfg, folder, resume=True, device=device, progress=progress,
                     checkpoint_every_min=checkpoint_every_min)
    except AmendmentError as e:
        raise ValueError(f"{FLAGS.get(e.key, e.key)} {e}") from None
