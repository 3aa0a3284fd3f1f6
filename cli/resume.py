"""``piumr train --resume``: the run's own config amended by the options a resumed run accepts
(``RESUME_OPTIONS``, generated from ``flags.TRAIN_OPTIONS``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from piumr.stall import OnStall

from .flags import FLAGS, RESUME_OPTIONS, TRAIN_OPTIONS, config_overrides, with_overrides_described

if TYPE_CHECKING:
    from piumr.train import TrainResult


def resume_run(folder: Path, typed: dict[str, Any], *, device: Optional[str], progress: bool,
               threads: Optional[int], checkpoint_every_min: float, on_stall: OnStall = "warn") -> TrainResult:
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
    try:
        cfg = with_overrides_described(base, config_overrides(TRAIN_OPTIONS, typed))
        configure_threads(threads, cfg.data.num_workers)
        return train(cfg, folder, resume=True, device=device, progress=progress,
                     checkpoint_every_min=checkpoint_every_min, on_stall=on_stall)
    except AmendmentError as e:
        raise ValueError(f"{FLAGS.get(e.key, e.key)} {e}") from None
