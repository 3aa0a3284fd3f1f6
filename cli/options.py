"""Options shared by several commands, their help generated from the code's own lists, and the cheap
checks of paths and names that run before any heavy import (torch, video decoders)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional, get_args

import typer

from piumr.config import PRESETS, Backbone, ListSplit, get_preset


PRESET_NAMES = tuple(PRESETS)
BACKBONE_NAMES: tuple[str, ...] = get_args(Backbone)
LIST_SPLITS: tuple[str, ...] = get_args(ListSplit)

ThreadsOpt = Annotated[Optional[int], typer.Option(
    help="intra-op CPU threads (default: OMP_NUM_THREADS if set, else the physical cores left after the data "
         "loader workers; never more than that)")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:N or auto (default: cuda if available)")]
PRESET_METAVAR = f"<{'|'.join(PRESET_NAMES)}>"
PRESET_HELP = "config preset (config.py PRESETS)"
PresetOpt = Annotated[str, typer.Option(metavar=PRESET_METAVAR, help=PRESET_HELP)]


def check_preset(name: str) -> None:
    """``KeyError`` listing the presets when ``name`` is not one (before any heavy import)."""
    get_preset(name)


def check_data(data: Optional[str], flag: str = "--data") -> None:
    """``FileNotFoundError`` naming ``flag`` when ``data`` is neither ``synth`` nor an existing folder."""
    if data is None or data == "synth":
        return
    root = Path(data).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{flag} {data}: no such folder (give an MA-52 folder, a prepared cache, or 'synth')")
    if not root.is_dir():
        raise FileNotFoundError(f"{flag} {data}: not a folder (give an MA-52 folder, a prepared cache, or 'synth')")


def check_file(path: Optional[Path], flag: str, what: str = "file") -> None:
    """``FileNotFoundError`` naming ``flag`` when ``path`` is given and is not an existing file."""
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"{flag} {path}: no such {what}")


def resolve_checkpoint(checkpoint: Optional[Path], artifacts: Path) -> Path:
    """``checkpoint`` if it is a file, else (when not given) the most recently written ``best.safetensors``
    under ``artifacts``; ``FileNotFoundError`` naming the flag or saying how to get one."""
    if checkpoint is not None:
        check_file(checkpoint, "--checkpoint", "checkpoint")
        return checkpoint
    found = sorted(artifacts.rglob("best.safetensors"), key=lambda p: p.stat().st_mtime) if artifacts.is_dir() else []
    if not found:
        raise FileNotFoundError(
            f"no checkpoint given and none found under {artifacts}/; train one first "
            "(e.g. `piumr train --preset smoke --data synth`) or pass --checkpoint PATH")
    return found[-1]


def check_inputs(paths: Optional[list[Path]]) -> None:
    """``FileNotFoundError`` naming the first clip or folder that does not exist."""
    for p in paths or []:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
