"""Atomic result files: a temporary file in the target folder, then ``os.replace``.

A run killed mid-write leaves either the old file or the new one, never half of
one; the new file is flushed to disk before it replaces the old one, and a write
that fails (a full disk) leaves the old file and no temporary. Every result file piumr writes (checkpoints, ``metrics.json``,
``summary.json``, ``result.json``, tables, figures, predictions, submissions)
goes through ``atomic_write``.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_text_atomic", "write_json_atomic", "umask", "file_mode", "dir_mode", "path_problem",
           "check_writable", "named", "MARKER_KEY", "refuse_foreign", "is_submission_zip", "has_marker"]

#: the key a JSON result file of piumr's carries (``"written_by": "piumr"``), so that piumr replaces only its own
MARKER_KEY = "written_by"


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


def path_problem(path: Path) -> str | None:
    """None when ``path`` is a regular file or a folder (after symbolic links), else what it is instead, for a
    message: missing, a symbolic-link loop, a broken link, a FIFO, a socket or a device (never opened: reading
    a FIFO would wait forever)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic-link loop"
        if e.errno == errno.ENOENT and os.path.islink(path):
            return f"a broken symbolic link (to {os.readlink(path)}, which does not exist)"
        if e.errno == errno.ENOENT:
            return "no such file or folder"
        return e.strerror or str(e)
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return f"{kind}, not a regular file or folder"


def check_writable(path: Path, *, file: bool = False) -> None:
    """Raise the ``OSError`` that writing ``path`` (a folder; with ``file``, a file) would meet, before long
    work starts, without creating anything: something other than a folder in the way (``NotADirectoryError``),
    a folder where the file should go (``IsADirectoryError``), or a folder that cannot be written (a
    read-only or full file system, no permission: a probe file in the nearest existing folder)."""
    path = Path(path)
    if file and path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a folder (a file name is needed)", str(path))
    folder = path.parent if file else path
    while not folder.is_dir():
        if os.path.lexists(folder):
            raise NotADirectoryError(errno.ENOTDIR, "Not a folder", str(folder))
        if folder == folder.parent:
            break
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".piumr-write-check.", suffix=".tmp")
    except OSError as e:  # named by the path asked about, not by the probe's random name
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    os.unlink(probe)


def refuse_foreign(path: Path, ours: Callable[[Path], bool], flag: str, what: str) -> None:
    """``ValueError`` naming ``flag`` and ``path`` when a file is there that piumr did not write (``ours`` does not
    recognise it as ``what``) or a symbolic link (replacing it would replace the link): piumr replaces only its
    own files, and a user's file stays as it is. A folder in the way is left to ``check_writable``."""
    path = Path(path)
    if not os.path.lexists(path) or (path.is_dir() and not path.is_symlink()):
        return
    if path.is_symlink():
        raise ValueError(f"{flag} {path}: a symbolic link; piumr does not replace it: move it away or choose "
                         f"another {flag}")
    if not ours(path):
        raise ValueError(f"{flag} {path}: an existing file that is not {what}; piumr replaces only files it wrote, "
                         f"so it is left as it is: move it away or choose another {flag}")


def is_submission_zip(path: Path) -> bool:
    """Whether ``path`` is a submission ``piumr predict --submission`` writes: a zip holding only ``prediction.csv``."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist() == ["prediction.csv"]
    except (OSError, zipfile.BadZipFile):
        return False


def has_marker(path: Path, legacy: frozenset[str] = frozenset()) -> bool:
    """Whether ``path`` is a JSON object piumr wrote: it carries ``MARKER_KEY`` = "piumr", or (files written before
    the marker) every key of ``legacy``, when given."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(payload, dict):
        return False
    return payload.get(MARKER_KEY) == "piumr" or bool(legacy and legacy <= payload.keys())


def named(e: OSError, path: Path) -> OSError:
    """``e`` if it names its file, else the same error naming ``path`` (a ``write()`` on a full disk raises
    ENOSPC without a file name)."""
    return e if e.filename is not None else OSError(e.errno, e.strerror or str(e), str(path))


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
    except OSError as e:
        raise named(e, path) from None
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
