"""What ``piumr doctor`` reports about the software and the devices (no measurements)."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["devices", "versions"]

_PACKAGES = ("torch", "torchvision", "triton", "pytorchvideo", "decord", "av", "pydantic", "numpy")


def _package(name: str) -> dict[str, Any]:
    """{"version": str | None, "importable": bool, "error": str | None} of one distribution."""
    try:
        version: str | None = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        version = None
    try:
        importlib.import_module(name)
        return {"version": version, "importable": True, "error": None}
    except Exception as e:  # reported in the JSON: a broken decoder is exactly what the doctor looks for
        return {"version": version, "importable": False, "error": f"{type(e).__name__}: {e}"}


def versions() -> dict[str, Any]:
    """Python, platform, CUDA/cuDNN as torch sees them, and every package the project runs on."""
    import piumr
    from piumr.kernels import triton_available, triton_interpreted

    cudnn_ok = torch.backends.cudnn.is_available()  # type: ignore[no-untyped-call]
    cudnn = torch.backends.cudnn.version() if cudnn_ok else None  # type: ignore[no-untyped-call]
    return {
        "piumr": piumr.__version__,
        "piumr_path": str(Path(piumr.__file__).parent),
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cuda_build": torch.version.cuda,
        "cudnn": cudnn,
        "packages": {name: _package(name) for name in _PACKAGES},
        "triton_kernels": {"available": triton_available(), "interpreted": triton_interpreted()},
    }


def _cpu_bf16() -> bool:
    """Whether a bf16 conv3d runs on this CPU (one 1x1x1 voxel under autocast)."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = torch.nn.functional.conv3d(torch.ones(1, 1, 1, 1, 1), torch.ones(1, 1, 1, 1, 1))
    except RuntimeError:  # reported as "bf16": false
        return False
    return bool(y.dtype == torch.bfloat16 and float(y) == 1.0)


def devices() -> list[dict[str, Any]]:
    """The CPU and every visible CUDA device, each with its bf16 support."""
    cpu: dict[str, Any] = {
        "type": "cpu", "name": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "bf16": _cpu_bf16(),
    }
    out = [cpu]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            with torch.cuda.device(i):
                bf16 = bool(torch.cuda.is_bf16_supported())
            out.append({"type": "cuda", "index": i, "name": p.name, "capability": f"{p.major}.{p.minor}",
                        "memory_gib": round(p.total_memory / 2**30, 2), "sms": p.multi_processor_count,
                        "bf16": bf16})
    return out
