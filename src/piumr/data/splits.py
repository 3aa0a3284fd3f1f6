"""From a ``DataConfig`` to clip records: the synthetic default, official and cross-subject splits, and the
same protocols (plus a held-out domain) over a manifest."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from piumr import settings
from piumr.config import SYNTH, DataConfig, TrainConfig
from piumr.data.ma52 import ClipRecord, DatasetError, read_split
from piumr.data.ma52 import cross_subject_folds as _folds
from piumr.data.manifest import MA52_CLASSES, ClassInfo, Manifest, read_manifest
from piumr.data.synth import ensure_synth
from piumr.data.synth.tasks import task_classes
from piumr.source import SYNTH_META, DataSource, resolve_source

__all__ = ["cache_dir", "resolve_root", "load_split", "synth_params", "hold_out_seen", "class_info"]

SplitName = Literal["train", "val", "val_seen", "test"]


def cache_dir() -> Path:
    """Where generated data lives: ``$PIUMR_CACHE`` or ``~/.cache/piumr`` (``piumr.settings``)."""
    return settings.current().cache


def synth_params(cfg: DataConfig) -> dict[str, int]:
    """The ``piumr.data.synth.generate`` parameters a ``DataConfig`` asks for."""
    return {"persons": cfg.synth_persons, "clips_per_person": cfg.synth_clips_per_person,
            "classes_per_body": cfg.synth_classes_per_body, "frames": cfg.synth_frames,
            "size": cfg.synth_size, "seed": cfg.synth_seed, "task": cfg.synth_task}


def resolve_root(cfg: DataConfig, progress: bool = True) -> Path:
    """The dataset root: generated (and cached) for ``root=SYNTH``, else the user's path (a folder, or a
    manifest file: checked here)."""
    src = resolve_source(cfg.root)
    if src.kind == "synth":
        base = cache_dir()
        where = f"{settings.CACHE_ENV}={base}"
        if os.path.lexists(base) and not base.is_dir():
            raise DatasetError(f"{where}: not a folder; the generated data set goes there (set {settings.CACHE_ENV} "
                               "to a folder)")
        try:
            return ensure_synth(base / SYNTH, progress=progress, **synth_params(cfg))
        except OSError as e:  # read-only, full, not ours: one line naming the cache, not a traceback
            raise DatasetError(f"{where}: cannot write the generated data set there ({e.filename}: "
                               f"{e.strerror or e}); set {settings.CACHE_ENV} to a writable folder") from None
    root = src.path
    if src.kind == "manifest":
        read_manifest(root)
        return root
    if src.kind == "missing":
        raise DatasetError(f"{root}: data root does not exist (give an MA-52 folder, a prepared cache, "
                           "a manifest .csv or 'synth')")
    return root


def trained_on(cfg: TrainConfig, records: Sequence[ClipRecord]) -> dict[str, Any]:
    """What a model of ``cfg`` trained on ``records`` (its training split) is trained on, as a checkpoint stores
    it (``trained_on``): ``kind`` "synthetic" (``--data synth`` or a generated folder), "prepared cache" or
    "MA-52"; ``root``; ``split`` and ``fold``; ``classes``, the sorted action labels of ``records``; ``head``,
    the classifier's outputs; synthetic data adds its ``task`` (``data.synth.tasks``). A manifest ("manifest") adds ``hold_out`` and its ``classes.csv``: ``names``,
    ``groups`` and ``coarse`` (label -> group)."""
    data = cfg.data
    src = resolve_source(data.root)
    if src.synthetic:
        kind = "synthetic"
    elif src.kind == "manifest" and src.path.is_file():
        kind = "manifest"
    elif src.kind == "cache":
        kind = "prepared cache"
    else:
        kind = "MA-52"
    out: dict[str, Any] = {"kind": kind, "root": src.config_root, "split": data.split,
                           "fold": data.fold, "classes": sorted({r.action for r in records}),
                           "head": cfg.model.num_classes}
    if kind == "synthetic":  # the task tells what each label shows (predict names it so)
        out["task"] = _synth_task(data, src)
    if kind == "manifest":  # the names a prediction shows, kept with the model (the manifest may move)
        info = class_info(data)
        out.update(hold_out=data.hold_out, names=list(info.names), groups=list(info.groups), coarse=list(info.coarse))
    return out


def _synth_task(data: DataConfig, src: DataSource) -> int:
    """The synthetic task of ``src``: ``data.synth_task`` for ``synth``, a generated folder's ``synth_meta.json``
    "task" (sets without it are task v1)."""
    if src.kind != "generated":
        return data.synth_task
    return int(json.loads((src.path / SYNTH_META).read_text(encoding="utf-8")).get("task", 1))


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
    if resolve_source(root).kind == "manifest":
        return _manifest_split(cfg, read_manifest(root), split)
    if cfg.hold_out is not None:
        raise DatasetError(f"{root}: --hold-out {cfg.hold_out} needs a manifest with a 'domain' column "
                           "(docs/data.md)")
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


def class_info(cfg: DataConfig) -> ClassInfo:
    """Class names and coarse groups of ``cfg``'s data: a manifest's ``classes.csv``; synthetic data's labels named
    by what they show in its task (``task_classes``: task v2 "head bows: twice"); else MA-52's."""
    src = resolve_source(cfg.root)
    if src.kind == "manifest":
        return read_manifest(src.path, check_files=False).classes
    return task_classes(_synth_task(cfg, src)) if src.synthetic else MA52_CLASSES


def _manifest_split(cfg: DataConfig, man: Manifest, split: SplitName) -> list[ClipRecord]:
    """``load_split`` over a manifest: official = its ``split`` column; cross-subject = folds on ``person``
    over the rows not marked test; ``hold_out="domain=NAME"``: NAME's rows are "val", the other domains train."""
    where = f"{man.path}:1"
    rows = list(zip(man.records, man.splits, strict=True))
    if split == "test" or (cfg.split == "official" and cfg.hold_out is None):
        if not man.has("split"):
            raise DatasetError(f"{where}: no 'split' column for the {split} split; give one, or train with "
                               "--split cross-subject (folds on 'person') or --hold-out domain=NAME")
        want = "val" if split == "val_seen" else split
        picked = [r for r, s in rows if s == want]
        if not picked:
            raise DatasetError(f"{man.path}: no row has split {want!r}")
        return picked
    pool = [r for r, s in rows if s != "test"]
    if cfg.hold_out is not None:
        name = cfg.hold_out.split("=", 1)[1]
        if not man.has("domain"):
            raise DatasetError(f"{where}: --hold-out {cfg.hold_out} needs a 'domain' column")
        for r in pool:
            if r.domain is None:
                raise DatasetError(f"{r.list_file}:{r.line}: empty domain (--hold-out {cfg.hold_out} needs one on "
                                   "every row)")
        domains = sorted({r.domain or "" for r in pool})
        if name not in domains:
            raise DatasetError(f"{man.path}: --hold-out {cfg.hold_out}: no such domain; the domains are "
                               f"{', '.join(domains)}")
        pool_train, held = [r for r in pool if r.domain != name], [r for r in pool if r.domain == name]
    else:
        if not man.has("person"):
            raise DatasetError(f"{where}: --split cross-subject needs a 'person' column (person-disjoint folds)")
        pool_train, held = _folds(pool, k=cfg.folds, seed=cfg.fold_seed)[cfg.fold]
    if split == "val":
        return held
    kept, seen = hold_out_seen(pool_train, cfg.seen_holdout)
    return kept if split == "train" else seen


def fit_head(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with one classifier output per class of a manifest's ``classes.csv`` (other data: unchanged)."""
    if resolve_source(cfg.data.root).kind != "manifest":
        return cfg
    classes = class_info(cfg.data)
    if cfg.model.num_classes == len(classes.names):
        return cfg
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"num_classes": len(classes.names)})})
