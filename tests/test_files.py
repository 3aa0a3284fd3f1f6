"""The atomic writer every result file goes through."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from piumr.files import atomic_write, write_json_atomic, write_text_atomic


def test_writes_and_creates_parents(tmp_path: Path) -> None:
    p = write_json_atomic(tmp_path / "a" / "b" / "metrics.json", {"f1_mean": 1.5})
    assert json.loads(p.read_text()) == {"f1_mean": 1.5}
    assert write_text_atomic(tmp_path / "t.txt", "x\r\ny").read_bytes() == b"x\r\ny"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a", "t.txt"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "summary.json", "old")

    def half(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half)
    assert target.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["summary.json"]
