"""Throughput measurements for ``piumr bench loader`` (numbers, no printing)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import DataLoader

from piumr.config import DataConfig, ModelConfig, TrainConfig
from piumr.data.dataset import collate, worker_init
from piumr.data.loaders import build_dataset
from piumr.data.ma52 import Split, read_split
from piumr.data.video import Backend, probe, read_frames, uniform_indices


def loader_throughput(
    root: Path,
    split: str,
    frames: int,
    crop: int,
    short_side: int,
    workers: int,
    batch_size: int,
    seconds: float,
    train: bool = True,
) -> dict[str, float]:
    """Clips/s of fully augmented ``(3, frames, crop, crop)`` clips through a DataLoader.

    Reads the prepared cache when ``root`` is one, else decodes raw videos (decoder-side
    resize to ``short_side``). The first batch (worker start-up) is timed separately;
    then batches are drawn until ``seconds`` have passed or the split is exhausted.
    """
    records = read_split(root, cast(Split, split), check_files=True)
    cfg = TrainConfig(model=ModelConfig(frames=frames, crop=crop), data=DataConfig(short_side=short_side, on_error="skip"))
    dataset = build_dataset(cfg, records, "train" if train else "eval")
    cache = dataset.cache
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        collate_fn=collate, worker_init_fn=worker_init if workers > 0 else None,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    batches = _forever(loader)
    first = next(batches)
    warmup = time.perf_counter() - start
    clips, skipped, t0 = 0, len(first["skipped"]), time.perf_counter()
    for batch in batches:
        clips += batch["video"].shape[0]
        skipped += len(batch["skipped"])
        if time.perf_counter() - t0 >= seconds:
            break
    elapsed = max(time.perf_counter() - t0, 1e-9)
    rate = clips / elapsed
    return {"clips_per_s": rate, "clips_per_s_per_worker": rate / max(workers, 1), "clips": float(clips),
            "seconds": elapsed, "warmup_s": warmup, "skipped": float(skipped), "workers": float(workers),
            "prepared": float(cache is not None)}


def _forever(loader: DataLoader[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Batches of successive epochs (small splits still fill the measuring time)."""
    while True:
        yield from loader


def decode_throughput(
    paths: Sequence[Path], frames: int = 16, short_side: int | None = None,
    backend: Backend = "decord", repeats: int = 1,
) -> dict[str, float]:
    """Clips/s of decoding ``frames`` uniformly spaced frames per clip, one process."""
    lengths = [probe(p).num_frames for p in paths]
    start = time.perf_counter()
    n = 0
    for _ in range(repeats):
        for path, length in zip(paths, lengths):
            read_frames(path, uniform_indices(length, frames), backend, short_side)
            n += 1
    elapsed = time.perf_counter() - start
    return {"clips_per_s": n / elapsed, "ms_per_clip": 1000 * elapsed / n, "clips": float(n)}
