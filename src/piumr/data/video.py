"""Decode clips (decord or PyAV) and choose which frames to sample.

Frames come back as uint8 ``(T, H, W, 3)`` RGB in display orientation (this is the
one place with channels last; :mod:`piumr.data.transforms` permutes to
``(3, T, H, W)``). Both backends give the same frames within decoder rounding:

* decord applies the container's display rotation itself; the PyAV path reads
  ``frame.rotation`` and rotates with :func:`torch.rot90`.
* ``short_side`` makes the decoder scale each frame (swscale), so a 1080x1296 MA-52
  clip is never converted to full-resolution RGB when 256 pixels are enough.
* The container decides the demuxer, not the file extension: an mp4 renamed
  ``.avi`` decodes normally (FFmpeg probes content).

Every failure (missing, not a video, truncated, corrupt, zero frames, index past
the last decodable frame) is a :class:`VideoError` naming the file.

Memory budget: before any frame is converted to RGB, ``read_frames`` computes the bytes
its output will take (``T x H x W x 3`` after resizing) and refuses a request over
:func:`decode_budget` (``PIUMR_DECODE_BUDGET_MIB``, default 1024 MiB: several loader
processes stay well inside a 24 GB machine), e.g. 100000 frames, or a 2x2000-pixel clip
whose short side scaled to 256 would be 256000 pixels wide.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import av
import av.error
import decord
import numpy as np
import torch

from piumr import settings
from piumr.errors import VideoError
from piumr.settings import BUDGET_ENV

Backend = Literal["decord", "pyav", "auto"]
# Threads per decoder. 0 = FFmpeg's choice (all cores); DataLoader workers may set 1.
DECODER_THREADS = 0


class _Rng(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True)
class VideoInfo:
    """Stream facts in display orientation (``height``/``width`` after rotation)."""

    num_frames: int
    fps: float
    height: int
    width: int


# ----------------------------------------------------------------------------- sampling


def segment_indices(num_frames: int, num_samples: int, rng: _Rng) -> list[int]:
    """Training sampler (TSN style): one random frame from each of ``num_samples`` equal segments.

    Clips shorter than ``num_samples`` get repeated frames (segments narrower than
    one frame), never an error. Returns sorted indices in ``[0, num_frames)``.
    ``rng`` is a :class:`random.Random` or a numpy ``Generator`` (anything with ``random()``).
    """
    _check_counts(num_frames, num_samples)
    step = num_frames / num_samples
    return [min(int((i + float(rng.random())) * step), num_frames - 1) for i in range(num_samples)]


def uniform_indices(num_frames: int, num_samples: int, offset: float = 0.5) -> list[int]:
    """Evaluation sampler: frame at position ``offset`` of each of ``num_samples`` segments.

    Deterministic; ``offset`` in [0, 1) picks different temporal views of one clip.
    """
    _check_counts(num_frames, num_samples)
    if not 0.0 <= offset < 1.0:
        raise ValueError(f"offset must be in [0, 1), got {offset}")
    step = num_frames / num_samples
    return [min(int((i + offset) * step), num_frames - 1) for i in range(num_samples)]


def _check_counts(num_frames: int, num_samples: int) -> None:
    if num_frames < 1:
        raise ValueError(f"cannot sample from a clip with {num_frames} frames")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the shorter side scaled to ``short_side``, aspect kept."""
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


# ----------------------------------------------------------------------------- memory budget



class DecodeBudgetError(VideoError):
    """The decoded frames asked for would exceed the memory budget (raised before decoding them)."""


def decode_budget() -> int:
    """Bytes one :func:`read_frames` call may return: ``$PIUMR_DECODE_BUDGET_MIB`` MiB (default 1024), as read
    into ``piumr.settings``."""
    return settings.current().decode_budget_mib * 2**20


def check_budget(path: Path, frames: int, height: int, width: int, budget: int, what: str = "") -> None:
    """Raise :class:`DecodeBudgetError` if ``frames`` uint8 RGB ``height x width`` frames exceed ``budget`` bytes."""
    need = frames * height * width * 3
    if need > budget:
        raise DecodeBudgetError(
            f"{path}: {frames} frames of {width}x{height} pixels{what} would take {need / 2**30:.2f} GiB, "
            f"over the decode budget of {budget / 2**30:.2f} GiB (fewer frames, a smaller short side, or "
            f"raise {BUDGET_ENV})"
        )


def _check_info(path: Path, frames: int, info: VideoInfo, short_side: int | None, budget: int) -> None:
    h, w = (info.height, info.width) if short_side is None else resized_size(info.height, info.width, short_side)
    what = "" if short_side is None else f" (a {info.width}x{info.height} clip resized to short side {short_side})"
    check_budget(path, frames, h, w, budget, what)


# ----------------------------------------------------------------------------- probing


def probe(path: Path, backend: str = "auto") -> VideoInfo:
    """Frame count, fps and display size of a clip.

    ``pyav`` (and ``auto``) read the container header, count packets when the header
    has no frame count (e.g. Matroska), and decode the first frame for its size
    and display rotation. ``decord`` asks decord. Zero frames is a :class:`VideoError`.
    """
    path = _existing(path)
    if backend == "decord":
        return _probe_decord(path)
    if backend not in ("pyav", "auto"):
        raise ValueError(f"unknown backend {backend!r}")
    return _probe_pyav(path)


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    return path


def _probe_pyav(path: Path) -> VideoInfo:
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(path, container)
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoError(f"{path}: the video stream has zero decodable frames")
            height, width = _display_hw(first.height, first.width, first.rotation)
            count = stream.frames
        if count <= 0:
            count = _count_packets(path)
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: cannot read video ({e})") from e
    return VideoInfo(count, fps, height, width)


def _video_stream(path: Path, container: av.container.InputContainer) -> av.VideoStream:
    if not container.streams.video:
        raise VideoError(f"{path}: no video stream")
    return container.streams.video[0]


def _count_packets(path: Path) -> int:
    """Count video packets by demuxing (no decoding); for headers without a frame count."""
    with av.open(str(path)) as container:
        stream = _video_stream(path, container)
        count = sum(1 for p in container.demux(stream) if p.size > 0)
    if count == 0:
        raise VideoError(f"{path}: the video stream has zero frames")
    return count


def _display_hw(height: int, width: int, rotation: int) -> tuple[int, int]:
    return (width, height) if rotation % 180 else (height, width)


def _probe_decord(path: Path) -> VideoInfo:
    reader = _open_decord(path)
    try:
        height, width = reader[0].shape[:2]
    except decord.DECORDError as e:
        raise VideoError(f"{path}: decord cannot decode the first frame ({_short(e)})") from e
    return VideoInfo(len(reader), float(reader.get_avg_fps()), int(height), int(width))


def _short(e: BaseException) -> str:
    """First line of a (very long) decord error message."""
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


# ----------------------------------------------------------------------------- decoding


def read_frames(
    path: Path,
    indices: Sequence[int],
    backend: Backend = "auto",
    short_side: int | None = None,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """Decode frames ``indices`` (any order, repeats allowed) of a clip.

    Returns uint8 ``(T, H, W, 3)`` RGB in display orientation, ``T = len(indices)``;
    with ``short_side`` the decoder scales frames so ``min(H, W) == short_side``.
    ``auto`` = decord, falling back to PyAV when decord fails to open *or* to decode
    (decord 0.6 has quirks, e.g. it cannot output frames 24 or 48 pixels wide); a clip
    both reject is a :class:`VideoError` carrying both messages. An output larger than
    ``max_bytes`` (default :func:`decode_budget`) is a :class:`VideoError` raised before
    any frame is converted.
    """
    path = _existing(path)
    idx = [int(i) for i in indices]
    if not idx or min(idx) < 0:
        raise ValueError(f"{path}: indices must be a non-empty list of frame numbers >= 0")
    budget = decode_budget() if max_bytes is None else max_bytes
    if backend == "pyav":
        return _read_pyav(path, idx, short_side, budget)
    if backend not in ("decord", "auto"):
        raise ValueError(f"unknown backend {backend!r}")
    try:
        info: VideoInfo | None = _probe_pyav(path)  # decord has no cheap size query
    except VideoError:
        info = None  # left to decord (and its fallback) to report
    if info is not None:
        _check_info(path, len(idx), info, short_side, budget)
    try:
        reader = _open_decord(path, short_side, info)
        if info is None:
            _check_decord_budget(path, reader, len(idx), budget)
        return _read_decord(path, reader, idx)
    except DecodeBudgetError:
        raise
    except VideoError as decord_error:
        if backend == "decord":
            raise
        try:
            return _read_pyav(path, idx, short_side, budget)
        except VideoError as e:
            raise VideoError(f"{e} (decord also failed: {decord_error})") from e


def _check_decord_budget(path: Path, reader: decord.VideoReader, frames: int, budget: int) -> None:
    try:
        h, w = reader[0].shape[:2]
    except decord.DECORDError as e:
        raise VideoError(f"{path}: decord cannot decode the first frame ({_short(e)})") from e
    check_budget(path, frames, int(h), int(w), budget)


def _open_decord(path: Path, short_side: int | None = None, info: VideoInfo | None = None) -> decord.VideoReader:
    width = height = -1
    if short_side is not None:
        info = info or _probe_pyav(path)
        height, width = resized_size(info.height, info.width, short_side)
    try:
        return decord.VideoReader(
            str(path), ctx=decord.cpu(0), width=width, height=height, num_threads=DECODER_THREADS
        )
    except (decord.DECORDError, RuntimeError) as e:
        raise VideoError(f"{path}: decord cannot open the file ({_short(e)})") from e


def _read_decord(path: Path, reader: decord.VideoReader, idx: list[int]) -> torch.Tensor:
    n = len(reader)
    if n == 0:
        raise VideoError(f"{path}: the video has zero frames")
    if max(idx) >= n:
        raise VideoError(f"{path}: frame {max(idx)} requested but the clip has {n} frames")
    try:
        batch = reader.get_batch(idx).asnumpy()
    except decord.DECORDError as e:
        raise VideoError(f"{path}: decoding frames failed ({_short(e)})") from e
    return torch.from_numpy(np.ascontiguousarray(batch))


def _read_pyav(path: Path, idx: list[int], short_side: int | None, budget: int) -> torch.Tensor:
    """Decode sequentially up to ``max(idx)``; convert only the requested frames (after checking
    at the first frame that all of them fit in ``budget`` bytes)."""
    wanted = set(idx)
    last = max(idx)
    got: dict[int, torch.Tensor] = {}
    decoded = 0
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(path, container)
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = DECODER_THREADS
            for frame in container.decode(stream):
                if decoded == 0:
                    hw = _display_hw(frame.height, frame.width, frame.rotation)
                    _check_info(path, len(idx), VideoInfo(0, 0.0, *hw), short_side, budget)
                if decoded in wanted:
                    got[decoded] = _frame_to_tensor(frame, short_side)
                decoded += 1
                if decoded > last:
                    break
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: decoding failed after frame {decoded} ({e})") from e
    if last not in got:
        raise VideoError(f"{path}: frame {last} requested but only {decoded} frames could be decoded")
    return torch.stack([got[i] for i in idx])


def _frame_to_tensor(frame: av.VideoFrame, short_side: int | None) -> torch.Tensor:
    """One PyAV frame -> uint8 (H, W, 3) in display orientation."""
    rotation = frame.rotation
    if short_side is None:
        array = frame.to_ndarray(format="rgb24")
    else:
        dh, dw = resized_size(*_display_hw(frame.height, frame.width, rotation), short_side)
        h, w = _display_hw(dh, dw, rotation)  # back to coded orientation
        array = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="BICUBIC")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    k = (rotation // 90) % 4  # rotation is counter-clockwise degrees
    return tensor.rot90(k, dims=(0, 1)).contiguous() if k else tensor


def read_clip_frames(path: Path, backend: Backend = "auto", short_side: int | None = None) -> torch.Tensor:
    """Every decodable frame of a clip, uint8 ``(N, H, W, 3)``; used by the cache builder.

    Uses the header/packet frame count from :func:`probe`; a clip that cannot decode
    that many frames is a :class:`VideoError` (it is broken, not shorter).
    """
    info = probe(path, "pyav")
    return read_frames(path, range(info.num_frames), backend=backend, short_side=short_side)


def views_offsets(views: int) -> list[float]:
    """Temporal offsets in [0, 1) for ``views`` evaluation clips: centres of equal parts."""
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    return [(v + 0.5) / views for v in range(views)]


def seeded_rng(*parts: int) -> random.Random:
    """A :class:`random.Random` fully determined by integers (e.g. seed, epoch, index)."""
    key = 0
    for p in parts:
        key = (key * 1_000_003 + int(p)) % (2**61 - 1)
    return random.Random(key)


__all__ = [
    "Backend", "DecodeBudgetError", "VideoError", "VideoInfo", "check_budget", "decode_budget", "probe", "read_frames", "read_clip_frames",
    "segment_indices", "uniform_indices", "resized_size", "views_offsets", "seeded_rng",
]
