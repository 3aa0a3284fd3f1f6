"""From a ``DataConfig`` to clip records: the synthetic default, official and cross-subject splits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from piumr.config import DataConfig
from piumr.data.ma52 import ClipRecord, DatasetError, read_split
from piumr.data.ma52 import cross_subject_folds as _folds
from piumr.data.synth import ensure_synth

__all__ = ["cache_dir", "resolve_root", "load_split", "synth_params", "hold_out_seen"]

SplitName = Literal["train", "val", "val_seen", "test"]


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


def hold_out_seen(records: list[ClipRecord], every: int) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Split training records into (kept, held out): every ``every``-th clip of each person, by file name.

    The held-out clips are the seen-persons evaluation set of the person-shift benchmark: the
    same persons as training, clips never trained on. ``every=0`` holds out nothing.
    """
    if every <= 0:
        return list(records), []
    by_person: dict[str, list[ClipRecord]] = {}
    for r in records:
        by_person.setdefault(r.participant or "", []).append(r)
    held = {id(r) for recs in by_person.values()
            for i, r in enumerate(sorted(recs, key=lambda r: r.path.name)) if i % every == every - 1}
    return [r for r in records if id(r) not in held], [r for r in records if id(r) in held]


def load_split(cfg: DataConfig, split: SplitName, progress: bool = True) -> list[ClipRecord]:
    """Records of ``split`` under ``cfg.split``.

    official: the list files as given ("val_seen" is the official val list). cross-subject: for
    synthetic data, the generated person-disjoint root (``cross_subject/``), fold 0 only (any other
    fold raises ``DatasetError``); for MA-52, fold
    ``cfg.fold`` of ``cfg.folds`` person-disjoint folds over train+val participants (held-out
    persons are "val"); every ``cfg.seen_holdout``-th clip of each training person is taken out of
    "train" and served as "val_seen" (seen persons, unseen clips). "test" is always the official test list.
    """
    root = resolve_root(cfg, progress)
    if split == "test":
        return read_split(root, split)
    if cfg.split == "official":
        return read_split(root, "val" if split == "val_seen" else split)
    if (root / "cross_subject").is_dir():
        if cfg.fold != 0:  # never ignore a fold: the generated root holds one person split
            raise DatasetError(f"{root}: --fold {cfg.fold}: synthetic data (task v1) has one fixed person split, "
                               "fold 0; person folds on synthetic data: piumr reproduce shift-suite")
        pool_train = read_split(root / "cross_subject", "train")
        held_persons = read_split(root / "cross_subject", "val") if split == "val" else []
    else:
        if cfg.fold >= cfg.folds:
            raise DatasetError(f"{root}: fold {cfg.fold} out of range for {cfg.folds} folds")
        pool = read_split(root, "train") + read_split(root, "val")
        pool_train, held_persons = _folds(pool, k=cfg.folds, seed=cfg.fold_seed)[cfg.fold]
    if split == "val":
        return held_persons
    kept, seen = hold_out_seen(pool_train, cfg.seen_holdout)
    return kept if split == "train" else seen
