"""Temporary files of a prepared cache (``piumr.data.prepare``): a clip file is written as ``<file>.tmp<pid>`` and
renamed into place, the manifest as ``<manifest>.tmp``; the ones a process that is gone left behind (e.g. one
killed by -9) are removed when a run starts and when it stops."""

from __future__ import annotations

from pathlib import Path

from piumr.data.ma52 import MANIFEST_NAME, PREPARED_SUFFIX
from piumr.runtime import pid_alive

__all__ = ["remove_stale_temps"]


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove the temporary files (``*.tmp<pid>``, the manifest's ``.tmp``) that processes now gone left in
    the cache ``out``; returns them."""
    gone = []
    for path in [*out.glob(f"*/*{PREPARED_SUFFIX}.tmp*"), out / (MANIFEST_NAME + ".tmp")]:
        pid = path.name.rsplit(".tmp", 1)[-1]
        if path.is_file() and (not pid.isdigit() or not pid_alive(int(pid))):
            path.unlink(missing_ok=True)
            gone.append(path)
    return gone
