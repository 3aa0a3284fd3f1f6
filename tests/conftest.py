"""Shared test fixtures and paths."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLIPS = SHARED / "clips"
MA52_LISTS = SHARED / "ma52"

# intra-op threads per test process: the CPUs shared by the pytest-xdist workers (never more threads than cores)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture
def clips_dir() -> Path:
    if not CLIPS.is_dir():
        pytest.skip("../shared/clips is absent")
    return CLIPS


@pytest.fixture
def ma52_lists() -> Path:
    if not (MA52_LISTS / "train_list_videos.txt").is_file():
        pytest.skip("../shared/ma52 lists are absent")
    return MA52_LISTS


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated datasets go to a per-session folder, never the user's ~/.cache."""
    os.environ["PIUMR_CACHE"] = str(tmp_path_factory.mktemp("piumr_cache"))


class VideoWriter(Protocol):
    """Signature of the ``make_video`` fixture."""

    def __call__(self, path: Path, frames: int, width: int = 64, height: int = 48, *,
                 grey: Callable[[int], int] | None = None, codec: str = "libx264", fps: int = 25,
                 rotation: int | None = None) -> Path: ...


def write_video(path: Path, frames: int, width: int = 64, height: int = 48, *,
                grey: Callable[[int], int] | None = None, codec: str = "libx264", fps: int = 25,
                rotation: int | None = None) -> Path:
    """Write a clip whose frame i is uniform ``grey(i)`` (default 20 + 10 i) with a white square in the
    top-left quarter (an orientation marker); frames are (height, width, 3) RGB before encoding."""
    level = grey or (lambda i: 20 + 10 * i)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            img = np.full((height, width, 3), level(i), np.uint8)
            img[: height // 4, : width // 4] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="session")
def make_video() -> VideoWriter:
    """The shared synthetic-clip writer (``write_video``)."""
    return write_video
