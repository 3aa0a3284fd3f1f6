"""Result files and generated folders get the modes any new file or folder gets under the user's umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from piumr.files import atomic_write, dir_mode, file_mode, write_json_atomic


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_results_are_0644_under_umask_022(tmp_path: Path, umask_022: None) -> None:
    js = write_json_atomic(tmp_path / "result.json", {"a": 1})
    st = atomic_write(tmp_path / "best.safetensors", lambda t: save_file({"x": torch.zeros(2)}, str(t)))
    assert _mode(js) == 0o644 and _mode(st) == 0o644 and file_mode() == 0o644 and dir_mode() == 0o755


def test_a_stricter_umask_is_kept(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        js = write_json_atomic(tmp_path / "result.json", {"a": 1})
    finally:
        os.umask(old)
    assert _mode(js) == 0o600


def test_generated_dataset_folder_is_0755(tmp_path: Path, umask_022: None) -> None:
    from piumr.data.synth import ensure_synth

    root = ensure_synth(tmp_path / "cache", persons=3, clips_per_person=4, classes_per_body=1, frames=4, size=32,
                        workers=1, progress=False)
    assert _mode(root) == 0o755
    assert {_mode(p) for p in root.rglob("*.mp4")} == {0o644}
