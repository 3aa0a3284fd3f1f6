"""Throughput measurements for ``piumr bench loader`` (numbers, no printing)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_jpeg  # type: ignore[import-untyped]

from piumr.config import DataConfig, ModelConfig, SpeedConfig, TrainConfig
from piumr.data.dataset import VideoDataset, collate, worker_init
from piumr.data.loaders import build_dataset
from piumr.data.ma52 import Split, read_split
from piumr.data.manifest import read_manifest
from piumr.data.jpgs import read_blobs, read_header
from piumr.data.prepare import PreparedCache
from piumr.errors import DatasetError
from piumr.data.video import Backend, probe, read_frames, uniform_indices
from piumr.source import resolve_source


#: the fewest clips a loader measurement cycles through (a smaller split is indexed repeatedly), and the fewest
#: batches one pass over them makes (a larger batch cycles through more clips): several epochs' worth of batches
#: go through one loader whose workers start once, so neither a tiny split nor worker restarts set the number
MIN_CLIPS, MIN_BATCHES_PER_PASS = 48, 4


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
    *,
    uint8: bool = False,
    gpu_decode: bool = False,
    min_clips: int = MIN_CLIPS,
) -> dict[str, Any]:
    """Clips/s of fully augmented ``(3, frames, crop, crop)`` clips through one DataLoader.

    Frames come from the prepared cache when ``root`` is one, else from decoding the raw videos (the decoded-clip
    memory cache is off: a measurement decodes). ``root`` may be a manifest (``manifest.csv``, a prepared
    cache's too): its rows, all of them, are the clips measured. The split's clips are indexed repeatedly up to
    ``max(min_clips, MIN_BATCHES_PER_PASS * batch_size)`` items a pass, drawn in random batches from one loader
    that lives for the whole measurement (no worker restarts). The first batch (worker start-up) is timed
    separately; then batches are drawn for ``seconds``. ``uint8``: clips leave the loader as uint8 (normalised
    later on the device). ``gpu_decode``: the prepared cache's JPEGs decoded by ``torchvision.io.decode_jpeg`` on
    CUDA and augmented there, in this process (``workers`` is ignored; needs CUDA and a prepared cache).
    Returns clips/s, the clips/passes/batches measured, bytes per clip and what was measured (``{"not_run":
    reason}`` for ``gpu_decode`` without CUDA or a prepared cache).
    """
    # a manifest: every row, whatever its split (the loader's speed is measured, not a split)
    records = list(read_manifest(root).records) if resolve_source(root).kind == "manifest" \
        else read_split(root, cast(Split, split))
    if not records:
        raise DatasetError(f"{root}: the {split} split lists no clips to measure the loader on")
    cfg = TrainConfig(model=ModelConfig(frames=frames, crop=crop),
                      data=DataConfig(short_side=short_side, on_error="skip", memory_cache="off"),
                      speed=SpeedConfig(uint8_clips=uint8 or gpu_decode))
    dataset = build_dataset(cfg, records, "train" if train else "eval")
    prepared = dataset.cache is not None
    if gpu_decode:
        if not (torch.cuda.is_available() and isinstance(dataset.cache, PreparedCache)):
            return {"not_run": "GPU JPEG decoding needs CUDA and a prepared cache"}
        dataset.cache, workers = _GpuJpegCache(dataset.cache, torch.device("cuda")), 0
    per_pass = max(min_clips, MIN_BATCHES_PER_PASS * batch_size, len(records))
    loader = DataLoader(_Repeated(dataset, per_pass), batch_sampler=_RandomBatches(per_pass, batch_size),
                        num_workers=workers, collate_fn=collate, worker_init_fn=worker_init if workers > 0 else None)
    start = time.perf_counter()
    batches = iter(loader)
    first = next(batches)
    warmup = time.perf_counter() - start
    clips, n_batches, skipped, t0 = 0, 0, len(first["skipped"]), time.perf_counter()
    for batch in batches:
        clips += batch["video"].shape[0]
        n_batches += 1
        skipped += len(batch["skipped"])
        if time.perf_counter() - t0 >= seconds:  # checked after a batch: at least one is measured
            break
    if gpu_decode:
        torch.cuda.synchronize()
    elapsed = max(time.perf_counter() - t0, 1e-9)
    rate = clips / elapsed
    video = first["video"]
    return {"clips_per_s": rate, "clips_per_s_per_worker": rate / max(workers, 1), "clips": clips,
            "batches": n_batches, "passes": clips / per_pass, "distinct_clips": len(records), "clips_per_pass": per_pass,
            "batch": batch_size, "seconds": elapsed, "warmup_s": warmup, "skipped": skipped, "workers": workers,
            "dtype": str(video.dtype).removeprefix("torch."), "bytes_per_clip": video[0].numel() * video.element_size(),
            "source": "prepared cache" if prepared else "raw videos", "decode": "cuda" if gpu_decode else "cpu",
            "prepared": prepared}


class _Repeated(Dataset[dict[str, Any]]):
    """``ds`` indexed repeatedly: item ``i`` is ``ds[i % len(ds)]`` for ``i < length``."""

    def __init__(self, ds: VideoDataset, length: int) -> None:
        self.ds, self.length = ds, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.ds[i % len(self.ds)]


class _RandomBatches:
    """Endless random batches of ``batch`` indices below ``n``: a new permutation each pass (seeded)."""

    def __init__(self, n: int, batch: int) -> None:
        self.n, self.batch = n, batch

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(0)
        while True:
            order = torch.randperm(self.n, generator=gen).tolist()
            for b in range(0, self.n - self.batch + 1, self.batch):
                yield order[b:b + self.batch]


class _GpuJpegCache:
    """A prepared cache whose JPEGs ``torchvision.io.decode_jpeg`` decodes on ``device`` (nvJPEG): read ->
    uint8 ``(T, H, W, 3)`` on the device, which the clip transform then crops there."""

    def __init__(self, cache: PreparedCache, device: torch.device) -> None:
        self.cache, self.device = cache, device

    def num_frames(self, path_or_name: str | Path) -> int:
        return self.cache.num_frames(path_or_name)

    def read(self, path_or_name: str | Path, indices: Sequence[int]) -> torch.Tensor:
        path = self.cache.file(path_or_name)
        header = read_header(path)
        wanted = sorted({int(i) for i in indices})
        images = decode_jpeg(read_blobs(path, header, wanted), mode=ImageReadMode.RGB, device=self.device)
        frame_of = dict(zip(wanted, images))
        return torch.stack([frame_of[int(i)] for i in indices]).permute(0, 2, 3, 1).contiguous()


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
