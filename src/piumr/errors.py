"""The exceptions users cause, in one module at the bottom of the import graph.

Each message names the file (and line or flag) at fault; the command line turns
them into one ``error: ...`` line and a non-zero exit. Nothing here imports
another piumr module.
"""

from __future__ import annotations

import importlib.util
import re

__all__ = ["load_error", "CheckpointError", "DatasetError", "VideoError", "DeviceError", "RunFolderError", "RunError",
           "MissingExtraError", "require_extra", "Interrupted", "TrainingStalled"]


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or incompatible; the message names the file."""


class DatasetError(ValueError):
    """A problem with the dataset files; the message names the file (and line)."""


class VideoError(RuntimeError):
    """A clip that cannot be decoded as asked; the message names the file."""


class DeviceError(ValueError):
    """A device that does not exist or is not available here; the message names it."""


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (occupied, locked, unwritable, nothing to resume);
    the message names the folder and the way out."""


class RunError(RuntimeError):
    """A training run that cannot go on (divergence, a failed write, a vanished run folder); the message
    names the epoch, the step and the last good checkpoint."""


class TrainingStalled(RunError):
    """A run stopped by its stall guard (``--on-stall stop``): its cross-entropy stayed at chance."""


class MissingExtraError(ValueError):
    """An optional package a chosen feature needs is not installed; the message names the extra to install."""


def require_extra(package: str, extra: str, feature: str) -> None:
    """``MissingExtraError`` naming ``extra`` when ``package`` is not installed (found without importing it, so
    the command line can ask before torch loads)."""
    if importlib.util.find_spec(package) is None:
        raise MissingExtraError(f"{feature} needs the optional package {package}: pip install \"piumr[{extra}]\"")


def load_error(e: BaseException) -> str:
    """One line for a weights file that ``torch.load(weights_only=True)`` or safetensors could not read: the
    exception's first line, and for a pickle payload what it holds, never torch's advice to retry with
    ``weights_only=False`` (which would run the payload)."""
    text = str(e)
    if "Weights only load failed" in text:
        found = re.search(r"(unsupported GLOBAL \S+|Unsupported global: \S+|Unsupported operand \S+)", text)
        detail = found.group(1).rstrip(".") if found else "objects other than tensors"
        return f"not a plain weights file ({detail}); pickled Python objects are never loaded"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


class Interrupted(Exception):
    """Long work stopped by SIGINT or SIGTERM after saving what it had done; the message says what was kept
    and how to continue. The command line exits with ``128 + signum`` (130, 143)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
