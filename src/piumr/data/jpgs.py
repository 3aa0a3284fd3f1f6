"""The file format of one prepared clip (``<name>.mp4.jpgs``, see ``piumr.data.prepare``): header, offset
table and concatenated JPEGs; ``encode_clip`` writes one, ``read_header`` checks one, ``read_blobs`` reads
the JPEGs of some frames."""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import encode_jpeg  # type: ignore[import-untyped]

from piumr.data.video import VideoError

__all__ = ["MAGIC", "VERSION", "ClipHeader", "torchvision_jpeg", "encode_clip", "read_header", "read_blobs"]

MAGIC = b"PIUMRJPG"
VERSION = 1
_HEADER = struct.Struct("<8sIIIId")


@dataclass(frozen=True)
class ClipHeader:
    """Header of one cache file; ``offsets`` has ``num_frames + 1`` entries."""

    num_frames: int
    height: int
    width: int
    fps: float
    offsets: np.ndarray[Any, np.dtype[np.uint64]]

    @property
    def data_start(self) -> int:
        return _HEADER.size + 8 * (self.num_frames + 1)

    @property
    def file_size(self) -> int:
        return self.data_start + int(self.offsets[-1])


@contextmanager
def torchvision_jpeg() -> Iterator[None]:
    """Silence only torchvision 0.29's deprecation notice for its JPEG codec (TorchCodec is
    the suggested successor but is not a dependency; the functions still work)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities",
                                category=DeprecationWarning)
        yield


def encode_clip(frames: torch.Tensor, fps: float, quality: int = 90) -> bytes:
    """uint8 ``(N, H, W, 3)`` frames -> bytes of one cache file."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"expected (N, H, W, 3) frames with N > 0, got {tuple(frames.shape)}")
    with torchvision_jpeg():
        jpegs = encode_jpeg([f.permute(2, 0, 1).contiguous() for f in frames], quality=quality)
    sizes = np.array([0] + [j.numel() for j in jpegs], dtype=np.uint64)
    n, h, w = frames.shape[:3]
    head = _HEADER.pack(MAGIC, VERSION, n, h, w, float(fps))
    return b"".join([head, np.cumsum(sizes).astype("<u8").tobytes()] + [j.numpy().tobytes() for j in jpegs])


def read_header(path: Path) -> ClipHeader:
    """Parse and sanity-check a cache file's header (raises :class:`VideoError`)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER.size)
            if len(head) != _HEADER.size:
                raise VideoError(f"{path}: truncated cache file (no header)")
            magic, version, n, h, w, fps = _HEADER.unpack(head)
            if magic != MAGIC or version != VERSION or n == 0:
                raise VideoError(f"{path}: not a piumr cache file (magic {magic!r}, version {version})")
            raw = f.read(8 * (n + 1))
    except OSError as e:
        raise VideoError(f"{path}: cannot read cache file ({e})") from e
    if len(raw) != 8 * (n + 1):
        raise VideoError(f"{path}: truncated cache file (offset table)")
    offsets = np.frombuffer(raw, dtype="<u8").astype(np.uint64)
    header = ClipHeader(int(n), int(h), int(w), float(fps), offsets)
    if np.any(np.diff(offsets.astype(np.int64)) <= 0) or path.stat().st_size != header.file_size:
        raise VideoError(f"{path}: corrupt or truncated cache file (offsets disagree with size)")
    return header


def read_blobs(path: Path, header: ClipHeader, wanted: list[int]) -> list[torch.Tensor]:
    """The JPEG bytes of frames ``wanted`` (sorted indices) of the cache file ``path``."""
    blobs = []
    with open(path, "rb") as f:
        for i in wanted:
            start, end = int(header.offsets[i]), int(header.offsets[i + 1])
            f.seek(header.data_start + start)
            blobs.append(torch.frombuffer(bytearray(f.read(end - start)), dtype=torch.uint8))
    return blobs
