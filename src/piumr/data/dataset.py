"""``VideoDataset``: records -> sampled, decoded, augmented clips (raw videos or prepared cache).

Sampling randomness is derived from ``(seed, epoch, index)`` only, so a training
epoch is reproducible whatever the number of DataLoader workers and whichever worker
gets which item; call :meth:`VideoDataset.set_epoch` before each epoch (with
``persistent_workers=True`` the workers keep their old copy: leave it off or rebuild
the loader). Evaluation sampling is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from piumr.config import DataConfig, TrainConfig
from piumr.data import video as video_module
from piumr.data.ma52 import ClipRecord
from piumr.data.memory import FrameSource
from piumr.runtime import die_with_parent
from piumr.data.video import (
    Backend, VideoError, probe, read_frames, seeded_rng, segment_indices, uniform_indices, views_offsets,
)

OnError = Literal["raise", "skip"]
Transform = Callable[[torch.Tensor], torch.Tensor]
_DATA = DataConfig()  # sampling/decoding defaults live in the config
MAX_REPLACEMENTS = 16  # consecutive broken clips tolerated before giving up on one item


class VideoDataset(Dataset[dict[str, Any]]):
    """One item = one clip: ``video`` float32 ``(3, T, crop, crop)`` (or ``(V, 3, T, crop, crop)``).

    Args:
        records: clips to serve (from :func:`piumr.data.ma52.read_split` or folds).
        frames: T, frames sampled per clip.
        train: random segment sampling (TSN) if True, else uniform sampling.
        transform: uint8 ``(T, H, W, 3)`` -> float32 ``(3, T, crop, crop)``.
        backend: video decoder for raw clips.
        on_error: "raise" propagates :class:`VideoError`; "skip" replaces a broken clip
            by the next index (deterministic) and lists its path in ``skipped``.
        seed: base seed of all sampling randomness.
        views: evaluation temporal views (uniform offsets); > 1 stacks them as dim 0.
        cache: read frames from a prepared cache or a decoded-clip memory cache instead of
            decoding videos (anything with ``num_frames(path)`` and ``read(path, indices)``).
        decode_short_side: ask the video decoder to resize (raw clips only); usually
            the transform's short side.
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        frames: int,
        train: bool,
        transform: Transform,
        backend: Backend = _DATA.backend,
        on_error: OnError = _DATA.on_error,
        seed: int = TrainConfig().seed,
        views: int = 1,
        cache: FrameSource | None = None,
        decode_short_side: int | None = None,
    ) -> None:
        if frames < 1 or views < 1:
            raise ValueError(f"frames and views must be >= 1, got {frames}, {views}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if train and views != 1:
            raise ValueError("multi-view sampling is for evaluation only (train=False)")
        self.records = list(records)
        self.frames = frames
        self.train = train
        self.transform = transform
        self.backend: Backend = backend
        self.on_error: OnError = on_error
        self.seed = seed
        self.views = views
        self.cache = cache
        self.decode_short_side = decode_short_side
        self.epoch = 0
        self._num_frames: dict[int, int] = {}  # per-process memo of clip lengths
        # each participant's run-wide id: its rank among the dataset's participants (the same in every batch and
        # after a resume, so a criterion may keep state per person: GroupDRO's weights)
        self.person_index = {p: j for j, p in enumerate(sorted({r.participant or "" for r in self.records}))}

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's sampling randomness (train only)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[str] = []
        for attempt in range(min(MAX_REPLACEMENTS, len(self.records))):
            i = (index + attempt) % len(self.records)
            try:
                video = self._load(i)
            except VideoError:
                if self.on_error == "raise":
                    raise
                skipped.append(str(self.records[i].path))
                continue
            return self._item(i, video, skipped)
        raise VideoError(f"{len(skipped)} consecutive broken clips from index {index}: {skipped}")

    def _item(self, i: int, video: torch.Tensor, skipped: list[str]) -> dict[str, Any]:
        rec = self.records[i]
        return {"video": video, "action": rec.action, "body": rec.body,
                "participant": rec.participant or "", "person": self.person_index[rec.participant or ""],
                "domain": rec.domain or "", "path": str(rec.path), "index": i, "skipped": skipped}

    def _load(self, i: int) -> torch.Tensor:
        """Decode + transform record ``i`` -> ``(3, T, c, c)`` or ``(V, 3, T, c, c)``."""
        n = self.num_frames(i)
        if self.train:
            rng = seeded_rng(self.seed, self.epoch, i)
            frames = self._read(i, segment_indices(n, self.frames, rng))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(rng.getrandbits(63))
                return self.transform(frames)
        per_view = [uniform_indices(n, self.frames, off) for off in views_offsets(self.views)]
        frames = self._read(i, [j for view in per_view for j in view])
        clips = [self.transform(frames[v * self.frames:(v + 1) * self.frames]) for v in range(self.views)]
        return clips[0] if self.views == 1 else torch.stack(clips)

    def num_frames(self, i: int) -> int:
        """Frame count of record ``i`` (cache manifest or video probe, memoised)."""
        if i not in self._num_frames:
            path = self.records[i].path
            if self.cache is not None:
                try:
                    self._num_frames[i] = self.cache.num_frames(path)
                except KeyError as e:
                    raise VideoError(str(e.args[0])) from e
            else:
                self._num_frames[i] = probe(path, "pyav" if self.backend == "pyav" else "auto").num_frames
        return self._num_frames[i]

    def _read(self, i: int, indices: list[int]) -> torch.Tensor:
        path = self.records[i].path
        if self.cache is not None:
            return self.cache.read(path, indices)
        return read_frames(path, indices, self.backend, self.decode_short_side)


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of items: ``video`` (B, 3, T, c, c) or (B, V, 3, T, c, c), ``action``/
    ``body``/``index``/``person`` int64 (B,) (``person``: the participant's id in its dataset), ``participant``/
    ``domain``/``path`` lists, ``skipped`` one flat list."""
    return {
        "video": torch.stack([b["video"] for b in batch]),
        "action": torch.tensor([b["action"] for b in batch], dtype=torch.long),
        "body": torch.tensor([b["body"] for b in batch], dtype=torch.long),
        "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
        "person": torch.tensor([b["person"] for b in batch], dtype=torch.long),
        "participant": [b["participant"] for b in batch],
        "domain": [b["domain"] for b in batch],
        "path": [b["path"] for b in batch],
        "skipped": [p for b in batch for p in b["skipped"]],
    }


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one decoder/torch thread per worker process, which dies with the
    process that started it (``piumr.runtime.die_with_parent``)."""
    die_with_parent()
    torch.set_num_threads(1)
    video_module.DECODER_THREADS = 1
