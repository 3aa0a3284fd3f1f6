"""The environment settings of a piumr process, read once at the edge into one ``RuntimeSettings`` object.

The command line reads them when a command starts (``piumr_cli.main``); a library user may call ``use``,
and otherwise the first ``current()`` reads the environment. No module reads these variables elsewhere, and
importing a module changes no environment.

==========================  ==========================================================================
``PIUMR_CACHE``             where generated data lives (default ``~/.cache/piumr``)
``PIUMR_DECODE_BUDGET_MIB`` MiB one clip decode may return (default 1024; ``piumr.data.video``)
``PIUMR_TRITON_INTERPRET``  ``1``: run the Triton kernels under the CPU interpreter; applied to the process by
                            ``apply_to_process`` (it sets ``TRITON_INTERPRET=1`` before triton is imported)
==========================  ==========================================================================
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["CACHE_ENV", "BUDGET_ENV", "INTERPRET_ENV", "DEFAULT_BUDGET_MIB", "RuntimeSettings", "current", "use",
           "apply_to_process"]

CACHE_ENV = "PIUMR_CACHE"
BUDGET_ENV = "PIUMR_DECODE_BUDGET_MIB"
INTERPRET_ENV = "PIUMR_TRITON_INTERPRET"
DEFAULT_BUDGET_MIB = 1024


def _flag(text: Optional[str]) -> bool:
    return (text or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class RuntimeSettings:
    """What the environment asks of this process (see the module docstring)."""

    cache: Path
    decode_budget_mib: int = DEFAULT_BUDGET_MIB
    triton_interpret: bool = False

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> RuntimeSettings:
        """The settings of ``env`` (default ``os.environ``); ``ValueError`` naming the variable on a bad value."""
        env = os.environ if env is None else env
        cache = env.get(CACHE_ENV)
        text = env.get(BUDGET_ENV, "").strip()
        if text and (not (text.isascii() and text.isdigit()) or int(text) < 1):
            raise ValueError(f"{BUDGET_ENV}={text!r}: expected a whole number of MiB >= 1")
        return cls(cache=Path(cache) if cache else Path.home() / ".cache" / "piumr",
                   decode_budget_mib=int(text) if text else DEFAULT_BUDGET_MIB,
                   triton_interpret=_flag(env.get(INTERPRET_ENV)))


_active: Optional[RuntimeSettings] = None


def current() -> RuntimeSettings:
    """The settings in force: those given to ``use``, else the environment's (read at the first call)."""
    global _active
    if _active is None:
        _active = RuntimeSettings.from_env()
    return _active


def use(settings: Optional[RuntimeSettings]) -> None:
    """Put ``settings`` in force for this process (None: read the environment again at the next ``current``)."""
    global _active
    _active = settings


def apply_to_process(settings: RuntimeSettings) -> Optional[str]:
    """At the edge only: ``PIUMR_TRITON_INTERPRET`` becomes ``TRITON_INTERPRET=1`` for this process (triton reads
    it when a kernel is defined). Returns a warning when triton was imported already (then it cannot apply)."""
    if not settings.triton_interpret or _flag(os.environ.get("TRITON_INTERPRET")):
        return None
    if "triton" in sys.modules:
        return (f"{INTERPRET_ENV}=1 ignored: triton was imported before; set TRITON_INTERPRET=1 in the "
                "environment instead")
    os.environ["TRITON_INTERPRET"] = "1"
    return None
