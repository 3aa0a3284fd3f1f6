"""piumr.settings: the environment is read once, at the edge, and importing a module changes no environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from piumr import settings
from piumr.settings import RuntimeSettings


def test_from_env_reads_each_variable() -> None:
    s = RuntimeSettings.from_env({"PIUMR_CACHE": "/x/cache", "PIUMR_DECODE_BUDGET_MIB": "8",
                                  "PIUMR_TRITON_INTERPRET": "yes"})
    assert s == RuntimeSettings(Path("/x/cache"), 8, True)
    d = RuntimeSettings.from_env({})
    assert d.cache == Path.home() / ".cache" / "piumr" and d.decode_budget_mib == 1024 and not d.triton_interpret
    for bad in ("lots", "0", "-3", "1.5"):
        with pytest.raises(ValueError, match=f"PIUMR_DECODE_BUDGET_MIB='{bad}'"):
            RuntimeSettings.from_env({"PIUMR_DECODE_BUDGET_MIB": bad})


def test_the_library_reads_the_settings_in_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from piumr.data.splits import cache_dir
    from piumr.data.video import decode_budget

    monkeypatch.setattr(settings, "_active", RuntimeSettings(tmp_path / "c", 3))
    monkeypatch.setenv("PIUMR_CACHE", str(tmp_path / "ignored"))  # read once: a later change does not leak in
    assert cache_dir() == tmp_path / "c" and decode_budget() == 3 * 2**20


def test_importing_every_module_changes_no_environment() -> None:
    """Import all of piumr and the CLI with PIUMR_TRITON_INTERPRET=1: os.environ is the same afterwards
    (``kernels/depthwise.py`` used to set TRITON_INTERPRET=1 when imported)."""
    # third-party packages first: decord adds its folder to PATH when imported, which is not ours to judge
    code = ("import importlib, json, os, pkgutil\n"
            "import av, decord, torch\n"
            "before = dict(os.environ)\n"
            "import piumr.kernels.depthwise, piumr, piumr_cli\n"  # the kernels before torchvision imports triton
            "for pkg in (piumr, piumr_cli):\n"
            "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
            "        if m.name not in ('piumr.__main__',):\n"
            "            importlib.import_module(m.name)\n"
            "after = dict(os.environ)\n"
            "print(json.dumps({k: after.get(k) for k in set(before) ^ set(after) | "
            "{k for k in before if before[k] != after.get(k)}}))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**env, "PIUMR_TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {}
