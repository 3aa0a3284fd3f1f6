"""The exceptions users cause, in one module at the bottom of the import graph.

Each message names the file (and line or flag) at fault; the command line turns
them into one ``error: ...`` line and a non-zero exit. Nothing here imports
another piumr module.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "DatasetError", "VideoError", "DeviceError"]


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or incompatible; the message names the file."""


class DatasetError(ValueError):
    """A problem with the dataset files; the message names the file (and line)."""


class VideoError(RuntimeError):
    """A clip that cannot be decoded as asked; the message names the file."""


class DeviceError(ValueError):
    """A device that does not exist or is not available here; the message names it."""
