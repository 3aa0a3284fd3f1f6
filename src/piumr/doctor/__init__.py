"""``piumr doctor``: versions, devices, data, and short speed measurements in one JSON report.

:func:`run_doctor` returns the report (schema: ``docs/doctor.md``); ``report["problems"]`` lists every check
that failed, one line each (empty = healthy). Modules: ``env`` (versions, devices), ``data`` (root, cache
verification), ``speed`` (training and loader clips/s, projections), ``full`` (GPU-only ``--full`` checks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from piumr.config import TrainConfig
from piumr.data.ma52 import DatasetError
from piumr.data.video import VideoError

__all__ = ["DoctorOptions", "SCHEMA_VERSION", "run_doctor"]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DoctorOptions:
    """What to measure. ``None`` sizes take the device's default (see :func:`run_doctor`)."""

    batch: int | None = None  # training-speed batch: preset batch on CUDA, 4 on CPU
    iters: int = 5  # timed training steps per variant
    warmup: int = 2  # untimed steps before them
    loader_seconds: float = 10.0  # how long the loader is measured
    hash_clips: int = 64  # prepared-cache files re-hashed (negative: all)
    full: bool = False  # the GPU checks (kernels, bf16 steps, inference)
    full_steps: int = 50
    infer_batch: int = 80
    kernel_batch: int | None = None  # batch of the kernel checks: the preset batch when None


def _full(dev: torch.device, opts: DoctorOptions, log: Callable[[str], None]) -> dict[str, Any]:
    """The ``--full`` checks, always on the ``paper`` preset (X3D-M, 16x224)."""
    from piumr.bench import run_bench
    from piumr.config import get_preset
    from piumr.doctor.full import check_kernels, synthetic_steps, x3d_depthwise_shapes

    paper = get_preset("paper")
    m = paper.model
    shapes = x3d_depthwise_shapes(m.backbone, m.frames, m.crop)
    log(f"--full: Triton kernels vs reference at {len(shapes)} {m.backbone} depthwise shapes")
    kernels = check_kernels(shapes, opts.kernel_batch or paper.optim.batch_size, dev)
    torch.cuda.empty_cache()
    log(f"--full: {opts.full_steps} bf16 steps of 'paper' on synthetic {m.frames}x{m.crop} clips")
    steps = synthetic_steps(paper, dev, opts.full_steps, paper.optim.batch_size)
    torch.cuda.empty_cache()
    log(f"--full: inference at batch {opts.infer_batch}")
    rows = run_bench(paper, "infer", batch=opts.infer_batch, device=str(dev), iters=opts.iters,
                     warmup=opts.warmup, variants=("x3d", "piumr", "piumr-fast"))
    return {"kernels": kernels, "paper_steps": steps,
            "inference": {r.variant: r.__dict__ for r in rows}}


def _problems(report: dict[str, Any]) -> list[str]:
    """One line per failed check of a finished report."""
    out = []
    for name, pkg in report["versions"]["packages"].items():
        if not pkg["importable"]:
            out.append(f"package {name} cannot be imported: {pkg['error']}")
    cache = report["data"].get("cache")
    if cache is not None and not cache["verified"]:
        out.append(f"prepared cache {report['data']['path']} does not verify (complete={cache['complete']}, "
                   f"missing {cache['num_missing']}, wrong size {cache['num_wrong_size']}, "
                   f"wrong sha256 {len(cache['wrong_hash'])})")
    if "error" in report["loader"]:
        out.append(f"loader: {report['loader']['error']}")
    full = report.get("full")
    if full is not None:
        out += [f"kernel check failed at C={r['channels']} T={r['frames']} {r['height']}x{r['width']} "
                f"stride {r['stride']}: fp32 {r['float32']}, bf16 {r['bfloat16']}" for r in full["kernels"] if not r["ok"]]
        st = full["paper_steps"]
        if not st["ok"]:
            out.append(f"paper bf16 steps: finite={st['finite']}, loss {st['first_mean']:.4f} -> {st['last_mean']:.4f}")
    return out


def run_doctor(cfg: TrainConfig, device: torch.device, opts: DoctorOptions,
               log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Everything ``piumr doctor`` reports, as a JSON-ready dict (``docs/doctor.md``).

    ``cfg.data.root`` is the data root ("synth" is generated when absent, as in training). Raises
    ``DatasetError`` for a data root that does not exist or holds no MA-52 lists, and ``ValueError`` for
    ``opts.full`` without CUDA. A loader that fails on the clips is reported, not raised.
    """
    from piumr.doctor.data import MA52_SIZES, data_report
    from piumr.doctor.env import devices, versions
    from piumr.doctor.speed import loader_speed, project, train_speed

    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available (torch {torch.__version__})")
    if opts.full and device.type != "cuda":
        raise ValueError(f"--full needs a CUDA GPU (device {device}); run without --full for the CPU checks")
    start = time.perf_counter()
    report: dict[str, Any] = {"schema": SCHEMA_VERSION, "preset": cfg.name, "device": str(device),
                              "versions": versions(), "devices": devices()}
    log(f"data: {cfg.data.root}")
    report["data"] = data_report(cfg.data, opts.hash_clips)
    batch = opts.batch or (cfg.optim.batch_size if device.type == "cuda" else 4)
    log(f"training speed: batch {batch}, {cfg.model.frames}x{cfg.model.crop}, {opts.iters} steps per variant")
    report["train"] = train_speed(cfg, device, batch, opts.iters, opts.warmup)
    log(f"loader speed: {cfg.data.num_workers} worker(s), {opts.loader_seconds:g} s")
    try:
        report["loader"] = loader_speed(cfg, Path(report["data"]["path"]), cfg.optim.batch_size, opts.loader_seconds)
    except (DatasetError, VideoError) as e:
        report["loader"] = {"error": str(e)}
    t = report["train"]
    model_key = "piumr-fast" if "clips_per_s" in t["piumr-fast"] else "piumr"
    model_rate = float(t[model_key]["clips_per_s"])
    loader_rate = report["loader"].get("clips_per_s")
    report["bottleneck"] = {
        "model": model_key, "model_clips_per_s": model_rate, "loader_clips_per_s": loader_rate,
        "slower": "unknown" if loader_rate is None else ("loader" if loader_rate < model_rate else "model"),
    }
    epochs = cfg.optim.epochs
    found = report["data"]["splits"].get("train")
    report["projection"] = {
        "found": None if not found else project(model_rate, loader_rate, int(found), epochs),
        "ma52": project(model_rate, loader_rate, MA52_SIZES["train"], epochs),
    }
    if opts.full:
        report["full"] = _full(device, opts, log)
    report["problems"] = _problems(report)
    report["seconds"] = time.perf_counter() - start
    return report
