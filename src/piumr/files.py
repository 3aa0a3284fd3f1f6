"""Atomic result files: a temporary file in the target folder, then ``os.replace``.

A run killed mid-write leaves either the old file or the new one, never half of
one; the new file is flushed to disk before it replaces the old one, and a write
that fails (a full disk) leaves the old file and no temporary. Every result file piumr writes (checkpoints, ``metrics.json``,
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

__all__ = ["atomic_write", "write_text_atomic", "write_json_atomic", "umask", "file_mode", "dir_mode"]


def umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file under the current umask (0644 with the usual 022)."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """Mode of a new folder under the current umask (0755 with the usual 022)."""
    return 0o777 & ~umask()


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path next to ``path`` and move it into place.

    The temporary file is ``.<name>.<random>.tmp`` (writers that pick a format
    from the suffix must be told it). Parent folders are created. The file gets
    the mode a plainly created file would (``file_mode``: 0644 under umask 022),
    whatever mode ``write`` left it with. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, file_mode())  # mkstemp (and some writers) create 0600; give the mode a new file gets
        with open(tmp, "rb+") as fh:  # on disk before it replaces the old file
            os.fsync(fh.fileno())
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
