"""Shared test fixtures and paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLIPS = SHARED / "clips"
MA52_LISTS = SHARED / "ma52"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
