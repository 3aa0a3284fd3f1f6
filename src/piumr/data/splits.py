"""From a ``DataConfig`` to clip records: the synthetic default, official and cross-subject splits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from piumr.config import DataConfig
from piumr.data.ma52 import ClipRecord, DatasetError, read_split
from piumr.data.ma52 import cross_subject_folds as _folds
from piumr.data.synth import ensure_synth

__all__ = ["cache_dir", "resolve_root", "load_split", "synth_params"]

SplitName = Literal["train", "val", "test"]


def cache_dir() -> Path:
    """Where generated data lives: ``$PIUMR_CACHE`` or ``~/.cache/piumr``."""
    env = os.environ.get("PIUMR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "piumr"


def synth_params(cfg: DataConfig) -> dict[str, int]:
    """The ``piumr.data.synth.generate`` parameters a ``DataConfig`` asks for."""
    return {"persons": cfg.synth_persons, "clips_per_person": cfg.synth_clips_per_person,
            "classes_per_body": cfg.synth_classes_per_body, "frames": cfg.synth_frames,
            "size": cfg.synth_size, "seed": cfg.synth_seed}


def resolve_root(cfg: DataConfig, progress: bool = True) -> Path:
    """The dataset root: generated (and cached) for ``root="synth"``, else the user's path."""
    if cfg.root == "synth":
        return ensure_synth(cache_dir() / "synth", progress=progress, **synth_params(cfg))
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: data root does not exist (give an MA-52 folder, a prepared cache, or 'synth')")
    return root


def load_split(cfg: DataConfig, split: SplitName, progress: bool = True) -> list[ClipRecord]:
    """Records of ``split`` under ``cfg.split``.

    official: the list files as given. cross-subject: for synthetic data, the
    generated person-disjoint root (``cross_subject/``); for MA-52, fold
    ``cfg.fold`` of ``cfg.folds`` person-disjoint folds over train+val
    participants (held-out persons are "val"); "test" is always the official test list.
    """
    root = resolve_root(cfg, progress)
    if cfg.split == "official" or split == "test":
        return read_split(root, split)
    if (root / "cross_subject").is_dir():
        return read_split(root / "cross_subject", split)
    if cfg.fold >= cfg.folds:
        raise DatasetError(f"{root}: fold {cfg.fold} out of range for {cfg.folds} folds")
    pool = read_split(root, "train") + read_split(root, "val")
    train, held = _folds(pool, k=cfg.folds, seed=cfg.fold_seed)[cfg.fold]
    return train if split == "train" else held
