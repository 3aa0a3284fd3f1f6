"""From a config and clip records to datasets and DataLoaders: the only place a ``VideoDataset`` is built.

``build_dataset(cfg, records, mode)`` assembles sampling, transform, decoder,
error policy and cache for ``mode``:

* ``"train"``: random segment sampling, RandomResizedCrop + flip, broken clips per ``cfg.data.on_error``;
* ``"eval"``: uniform sampling, centre crop, optional temporal views;
* ``"predict"``: like eval, on arbitrary files: no prepared cache, broken clips raise.

Items are float32 ``(3, T, crop, crop)`` (``(V, 3, T, crop, crop)`` with views > 1; training items are uint8
with ``cfg.speed.uint8_clips``, normalised on the device by ``piumr.speed``);
loaders batch them to ``(B, 3, T, crop, crop)`` (``(B, V, 3, T, crop, crop)``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from piumr.config import TrainConfig
from piumr.data.dataset import VideoDataset, collate, worker_init
from piumr.data.ma52 import ClipRecord
from piumr.data.memory import DEFAULT_BUDGET_BYTES, FrameSource, estimate_bytes, shared_cache
from piumr.data.prepare import open_cache_if_any
from piumr.data.transforms import build_transform
from piumr.backbones import backbone_spec
from piumr.errors import VideoError
from piumr.source import resolve_source

__all__ = ["Mode", "data_root", "build_dataset", "probe_lengths", "train_loader", "persistent_train_loader",
           "eval_loader", "person_batches", "person_order"]

Mode = Literal["train", "eval", "predict"]


def data_root(records: Sequence[ClipRecord]) -> Path:
    """The folder holding the split folders of ``records`` (where a prepared cache keeps its manifest), or a
    manifest's folder; ``.`` for no records."""
    if not records:
        return Path(".")
    first = records[0]
    from_manifest = first.list_file is not None and resolve_source(first.list_file).kind == "manifest"
    return first.list_file.parent if first.list_file is not None and from_manifest else first.path.parent.parent


def build_dataset(cfg: TrainConfig, records: Sequence[ClipRecord], mode: Mode, *, views: int = 1) -> VideoDataset:
    """The ``VideoDataset`` of ``records`` for ``mode`` (see the module docstring)."""
    d, m = cfg.data, cfg.model
    spec = backbone_spec(m.backbone)  # the input normalisation of its weights (piumr.recipe.input_stats)
    train = mode == "train"
    transform = build_transform(train=train, crop=m.crop, short_side=d.short_side, hflip=train and d.hflip,
                                min_scale=d.crop_min_scale, normalize=not (train and cfg.speed.uint8_clips),
                                mean=spec.mean, std=spec.std)
    if mode == "predict":
        return VideoDataset(records, frames=m.frames, train=False, transform=transform, backend=d.backend,
                            on_error="raise", views=views, decode_short_side=d.short_side)
    # every train/eval dataset gets its frame source here: a prepared cache, else the decoded-clip memory cache
    cache: FrameSource | None = open_cache_if_any(data_root(records))
    if cache is None and _use_memory_cache(cfg, records):
        cache = shared_cache(records, backend=d.backend, short_side=d.short_side)
    return VideoDataset(records, frames=m.frames, train=train, transform=transform, backend=d.backend,
                        on_error=d.on_error, seed=cfg.seed, views=views, cache=cache,
                        decode_short_side=d.short_side)


def _use_memory_cache(cfg: TrainConfig, records: Sequence[ClipRecord]) -> bool:
    """``cfg.data.memory_cache``: "on", "off", or "auto" = the decoded clips fit ``DEFAULT_BUDGET_BYTES``."""
    mode = cfg.data.memory_cache
    if mode != "auto" or not records:
        return mode == "on"
    try:
        return estimate_bytes(records, cfg.data.short_side, cfg.data.backend) <= DEFAULT_BUDGET_BYTES
    except VideoError:  # first clip unreadable: no estimate, decode per item (the loader skips and counts it)
        return False


def probe_lengths(ds: VideoDataset) -> None:
    """Probe every clip length of a raw (uncached) dataset once, in this process.

    Forked loader workers inherit the lengths instead of re-probing every clip in
    every worker every epoch (a prepared cache keeps them in its manifest). A
    broken clip raises ``VideoError`` with ``on_error="raise"``; with "skip" it is
    left unprobed: the loader meets it again, skips it and counts it.
    """
    if ds.cache is not None:
        return
    for i in range(len(ds)):
        try:
            ds.num_frames(i)
        except VideoError:
            if ds.on_error == "raise":
                raise


def train_loader(cfg: TrainConfig, ds: VideoDataset, *, epoch: int, rank: int = 0, world: int = 1,
                 pin_memory: bool = False, skip_batches: int = 0) -> DataLoader[dict[str, Any]]:
    """Shuffled, drop-last loader for one epoch: ``cfg.optim.batch_size // world`` clips per rank.

    The shuffle order is seeded from ``(cfg.seed, epoch)``; under torch.distributed
    (``world > 1``) a ``DistributedSampler`` gives each rank its part. ``skip_batches`` leaves out
    the epoch's first batches without loading them (a run resumed mid-epoch): the loader then yields
    exactly the batches ``skip_batches, skip_batches + 1, ...`` of the full epoch."""
    gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
    dist_sampler: DistributedSampler[int] | None = None
    per_rank = cfg.optim.batch_size // world
    if world > 1:
        dist_sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed,
                                          drop_last=True)
        dist_sampler.set_epoch(epoch)
    sampler: DistributedSampler[int] | list[int] | None = dist_sampler
    min_persons = cfg.girl.groups if cfg.girl.enabled and cfg.girl.grouping == "person" else 0
    if min_persons and world > 1:
        raise ValueError("girl.grouping='person' draws its batches in one process; it does not run under "
                         "torch.distributed yet")
    if min_persons:
        sampler = person_batches(ds.records, per_rank, min_persons, gen)[skip_batches * per_rank:]
    elif skip_batches > 0:
        sampler = _epoch_order(ds, gen, dist_sampler)[skip_batches * per_rank:]
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
    nw = cfg.data.num_workers
    return DataLoader(ds, batch_size=per_rank, shuffle=sampler is None, sampler=sampler,
                      drop_last=True, num_workers=nw, collate_fn=collate, worker_init_fn=worker_init if nw else None,
                      generator=gen, pin_memory=pin_memory, persistent_workers=False)


def person_batches(records: Sequence[ClipRecord], batch: int, persons: int, gen: torch.Generator) -> list[int]:
    """``person_order`` of the records' participants."""
    return person_order([r.participant or "" for r in records], batch, persons, gen)


def person_order(keys: Sequence[Hashable], batch: int, persons: int, gen: torch.Generator) -> list[int]:
    """One epoch's item order in which every consecutive ``batch`` items come from exactly ``persons``
    participants (``keys``: each item's participant), ``batch // persons`` clips each (``batch`` must be a
    multiple of ``persons``).

    Each participant's clips are shuffled and cut into pieces of ``batch // persons``; the pieces, in
    random order, fill batches greedily (a piece goes to the first open batch without its participant).
    Leftovers (a participant's last short piece, batches no other participant could complete) are left
    out of the epoch. Raises ``ValueError`` when the records hold fewer than ``persons`` participants."""
    by_person: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        by_person.setdefault(key.item() if hasattr(key, "item") else key, []).append(i)
    if len(by_person) < persons:
        raise ValueError(f"person groups need {persons} participants per batch, but the training split has "
                         f"{len(by_person)}")
    k = batch // persons
    pieces: list[tuple[Hashable, list[int]]] = []
    for name, clips in by_person.items():
        mixed = [clips[j] for j in torch.randperm(len(clips), generator=gen).tolist()]
        pieces += [(name, mixed[j:j + k]) for j in range(0, len(mixed) - k + 1, k)]
    open_: list[dict[Hashable, list[int]]] = []
    order: list[int] = []
    for j in torch.randperm(len(pieces), generator=gen).tolist():
        name, piece = pieces[j]
        target = next((b for b in open_ if name not in b), None)
        if target is None:
            target = {}
            open_.append(target)
        target[name] = piece
        if len(target) == persons:
            open_.remove(target)
            order += [i for p in target.values() for i in p]
    return order


def _epoch_order(ds: VideoDataset, gen: torch.Generator, sampler: DistributedSampler[int] | None) -> list[int]:
    """The item order a loader over ``ds`` draws for one epoch: the distributed sampler's, else what
    ``DataLoader(shuffle=True, generator=gen)`` draws (one seed for its workers, then the permutation)."""
    if sampler is not None:
        return list(sampler)
    torch.empty((), dtype=torch.int64).random_(generator=gen)  # the loader's worker base seed comes first
    return list(RandomSampler(ds, generator=gen))


class _EpochItems(Dataset[dict[str, Any]]):
    """``ds`` indexed by ``(epoch, i)``: the item ``i`` with epoch ``epoch``'s sampling randomness, so workers
    that live across epochs draw what a fresh loader of that epoch would."""

    def __init__(self, ds: VideoDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        self.ds.set_epoch(key[0])
        return self.ds[key[1]]


class _EpochBatches:
    """Batches of ``(epoch, i)`` keys for the epochs ``first..last``: each epoch's order is ``train_loader``'s,
    its first ``steps`` batches (the first epoch from batch ``skip``)."""

    def __init__(self, cfg: TrainConfig, ds: VideoDataset, first: int, skip: int, steps: int, rank: int,
                 world: int) -> None:
        self.cfg, self.ds, self.first, self.skip, self.steps = cfg, ds, first, skip, steps
        self.rank, self.world, self.per_rank = rank, world, cfg.optim.batch_size // world

    def __len__(self) -> int:
        return (self.cfg.optim.epochs - self.first) * self.steps - self.skip

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for epoch in range(self.first, self.cfg.optim.epochs):
            gen = torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch)
            dist: DistributedSampler[int] | None = None
            if self.world > 1:
                dist = DistributedSampler(self.ds, num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=self.cfg.seed, drop_last=True)
                dist.set_epoch(epoch)
            order = _epoch_order(self.ds, gen, dist)
            for b in range(self.skip if epoch == self.first else 0, self.steps):
                yield [(epoch, i) for i in order[b * self.per_rank:(b + 1) * self.per_rank]]


def persistent_train_loader(cfg: TrainConfig, ds: VideoDataset, *, first_epoch: int, skip_batches: int, steps: int,
                            rank: int = 0, world: int = 1, pin_memory: bool = False,
                            prefetch_factor: int = 2) -> DataLoader[dict[str, Any]]:
    """One loader for every remaining epoch (its workers start once and prefetch across epoch ends): the
    batches ``train_loader`` gives epoch by epoch, ``steps`` per epoch, from ``first_epoch`` batch
    ``skip_batches`` on (each epoch needs ``steps`` <= its full batches). Person batches
    (``girl.grouping="person"``) are drawn by ``train_loader`` only: ``ValueError`` here."""
    if cfg.girl.enabled and cfg.girl.grouping == "person":
        raise ValueError("speed lever 'prefetch' cannot draw GIRL's person batches (girl.grouping='person') yet: "
                         "train without --speed prefetch")
    nw = cfg.data.num_workers
    return DataLoader(_EpochItems(ds), batch_sampler=_EpochBatches(cfg, ds, first_epoch, skip_batches, steps, rank,
                                                                   world),
                      num_workers=nw, collate_fn=collate, worker_init_fn=worker_init if nw else None,
                      pin_memory=pin_memory, prefetch_factor=prefetch_factor if nw else None,
                      persistent_workers=nw > 0,
                      generator=torch.Generator().manual_seed(cfg.seed))  # its worker seed: not the global RNG's


def eval_loader(cfg: TrainConfig, records: list[ClipRecord], *, views: int = 1, batch_size: int | None = None,
                workers: int | None = None, shard: tuple[int, int] | None = None) -> DataLoader[dict[str, Any]]:
    """Deterministic evaluation loader (uniform sampling, centre crop) over ``records``.

    ``shard=(rank, world)`` gives each torch.distributed rank its part (gathered again by
    ``piumr.evaluate.collect_scores``)."""
    ds = build_dataset(cfg, records, "eval", views=views)
    nw = cfg.data.num_workers if workers is None else workers
    sampler: DistributedSampler[dict[str, Any]] | None = (
        DistributedSampler(ds, num_replicas=shard[1], rank=shard[0], shuffle=False) if shard is not None else None)
    return DataLoader(ds, batch_size=batch_size or cfg.optim.batch_size, shuffle=False, sampler=sampler,
                      num_workers=nw, collate_fn=collate, worker_init_fn=worker_init if nw else None,
                      generator=torch.Generator().manual_seed(cfg.seed))
