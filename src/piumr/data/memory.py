"""Decoded-clip memory cache: decode every clip of a (small) dataset once, serve frames from RAM.

Training samples different frames of every clip each epoch; without a cache each
epoch decodes each clip again, which on the synthetic CPU-scale datasets was about
half of the training time. :class:`DecodedClipCache` decodes each clip once, in the
main process, before any DataLoader worker is forked (workers then share the pages
copy-on-write), and keeps its frames as uint8 ``(T, H, W, 3)`` tensors.

It has the same two methods as :class:`piumr.data.prepare.PreparedCache`
(``num_frames`` and ``read``), so :class:`piumr.data.dataset.VideoDataset` takes
either as its ``cache``. A clip that fails to decode is remembered with its reason;
reading it raises :class:`piumr.data.video.VideoError`, so the dataset's
skip-and-count logic treats it exactly like a broken file.

It is meant for datasets that fit in memory (the synthetic benchmark: ~0.2 GB);
:func:`estimate_bytes` lets callers decide before decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch

from piumr.data.ma52 import ClipRecord
from piumr.data.video import Backend, VideoError, probe, read_frames

__all__ = ["FrameSource", "DecodedClipCache", "estimate_bytes", "shared_cache", "clear_shared", "DEFAULT_BUDGET_BYTES"]

DEFAULT_BUDGET_BYTES = 2 * 1024**3  # not in paper: above this the cache is not built (2 GiB)


class FrameSource(Protocol):
    """Anything that serves decoded frames of a clip by its path."""

    def num_frames(self, path_or_name: str | Path) -> int: ...

    def read(self, path_or_name: str | Path, indices: Sequence[int]) -> torch.Tensor: ...


def estimate_bytes(records: Sequence[ClipRecord], short_side: int, backend: Backend = "auto") -> int:
    """Upper estimate of the cache size: probes the first clip and assumes every clip is like it.

    Returns bytes for ``len(records)`` clips of uint8 frames resized so the short
    side is ``short_side``. Raises ``VideoError`` when the first clip cannot be probed.
    """
    if not records:
        return 0
    info = probe(records[0].path, "pyav" if backend == "pyav" else "auto")
    h, w = info.height, info.width
    scale = short_side / min(h, w)
    return len(records) * info.num_frames * round(h * scale) * round(w * scale) * 3


class DecodedClipCache:
    """Every frame of every clip, decoded once and kept in memory.

    Args:
        records: the clips to hold.
        backend: video decoder.
        short_side: frames are decoded resized so ``min(H, W) == short_side``.
        on_progress: called with (done, total) after each clip (progress bars).

    Attributes:
        failed: path -> reason for clips that could not be decoded.
        nbytes: bytes of decoded frames held.
    """

    def __init__(self, records: Sequence[ClipRecord], *, backend: Backend = "auto", short_side: int | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
        self._frames: dict[str, torch.Tensor] = {}
        self.failed: dict[str, str] = {}
        self.backend: Backend = backend
        self.short_side = short_side
        self.nbytes = 0
        self.add(records, on_progress)

    def add(self, records: Sequence[ClipRecord], on_progress: Callable[[int, int], None] | None = None) -> int:
        """Decode the clips of ``records`` not held yet; returns how many were decoded (or failed) now."""
        total, new = len(records), 0
        for done, rec in enumerate(records, 1):
            key = str(rec.path)
            if key not in self._frames and key not in self.failed:
                new += 1
                try:
                    n = probe(rec.path, "pyav" if self.backend == "pyav" else "auto").num_frames
                    frames = read_frames(rec.path, list(range(n)), self.backend, self.short_side).contiguous()
                    self._frames[key] = frames
                    self.nbytes += frames.numel() * frames.element_size()
                except VideoError as e:
                    self.failed[key] = str(e)
            if on_progress is not None:
                on_progress(done, total)
        return new

    def __len__(self) -> int:
        return len(self._frames)

    def _get(self, path_or_name: str | Path) -> torch.Tensor:
        key = str(path_or_name)
        if key in self.failed:
            raise VideoError(self.failed[key])
        try:
            return self._frames[key]
        except KeyError:
            raise VideoError(f"{key}: not in the decoded-clip cache") from None

    def num_frames(self, path_or_name: str | Path) -> int:
        """Number of decoded frames of a clip; ``VideoError`` if it failed or is unknown."""
        return int(self._get(path_or_name).shape[0])

    def read(self, path_or_name: str | Path, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` (any order, repeats allowed) -> uint8 ``(len(indices), H, W, 3)``."""
        frames = self._get(path_or_name)
        idx = [int(i) for i in indices]
        if not idx or min(idx) < 0 or max(idx) >= frames.shape[0]:
            raise VideoError(f"{path_or_name}: frames {idx} outside 0..{frames.shape[0] - 1}")
        return frames[idx]


_SHARED: dict[tuple[str, int | None], DecodedClipCache] = {}


def shared_cache(records: Sequence[ClipRecord], *, backend: Backend = "auto",
                 short_side: int | None = None) -> DecodedClipCache:
    """The process-wide cache for (backend, short_side), with every clip of ``records`` decoded.

    Train, validation and every later run of the same process (a reproduce command's
    rows and seeds) share it, so each clip is decoded once per process. Built in the
    main process before DataLoader workers fork, it is shared with them copy-on-write.
    """
    key = (backend, short_side)
    cache = _SHARED.get(key)
    if cache is None:
        cache = _SHARED[key] = DecodedClipCache([], backend=backend, short_side=short_side)
    cache.add(records)
    return cache


def clear_shared() -> None:
    """Drop every process-wide cache (frees their memory)."""
    _SHARED.clear()
