"""Atomic result files: a temporary file in the target folder, then ``os.replace``.

A run killed mid-write leaves either the old file or the new one, never half of
one. Every result file piumr writes (checkpoints, ``metrics.json``,
``summary.json``, ``result.json``, tables, figures, predictions, submissions)
goes through ``atomic_write``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_text_atomic", "write_json_atomic"]


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path next to ``path`` and move it into place.

    The temporary file is ``.<name>.<random>.tmp`` (writers that pick a format
    from the suffix must be told it). Parent folders are created. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, payload: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write ``payload`` as JSON (with a final newline) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=indent, sort_keys=sort_keys) + "\n")
