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

__all__ = ["DoctorOptions", "LONG_CPU", "SCHEMA_VERSION", "SHORT_CPU", "measurement", "run_doctor"]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DoctorOptions:
    """What to measure. ``None`` sizes take the default of the measurement (see :func:`measurement`)."""

    batch: int | None = None  # training-speed batch
    iters: int | None = None  # timed training steps per variant
    warmup: int | None = None  # untimed steps before them
    loader_seconds: float | None = None  # how long the loader is measured
    hash_clips: int = 64  # prepared-cache files re-hashed (negative: all)
    full: bool = False  # the long measurement, and on CUDA the GPU checks (kernels, bf16 steps, inference)
    full_steps: int = 50
    infer_batch: int = 80
    kernel_batch: int | None = None  # batch of the kernel checks: the preset batch when None


#: (batch, timed steps, untimed steps, loader seconds) of the short CPU measurement, the default on a CPU: a
#: paper-preset doctor then answers in about a minute on 2 cores instead of ~4; ``--full`` measures the long one
SHORT_CPU = (1, 1, 1, 3.0)
LONG_CPU = (4, 5, 2, 10.0)


def measurement(cfg: TrainConfig, device: torch.device, opts: DoctorOptions) -> dict[str, Any]:
    """The sizes of the speed measurement (``report["measurement"]``): ``kind`` "short" (the default on a
    CPU) or "full", ``batch``, ``iters``, ``warmup``, ``loader_seconds``, and the ``estimate_s`` of its
    training steps on an idle CPU (``piumr.bench.estimate_cpu_seconds``; None on CUDA)."""
    from piumr.bench import estimate_cpu_seconds

    short = device.type == "cpu" and not opts.full
    batch, iters, warmup, seconds = SHORT_CPU if short else LONG_CPU
    batch = opts.batch or (cfg.optim.batch_size if device.type == "cuda" else batch)
    iters = opts.iters if opts.iters is not None else iters
    warmup = opts.warmup if opts.warmup is not None else warmup
    seconds = opts.loader_seconds if opts.loader_seconds is not None else seconds
    clips = 2 * batch * (iters + warmup)  # x3d and piumr (the fast path needs CUDA)
    estimate = (estimate_cpu_seconds(cfg.model, clips, train=True, threads=torch.get_num_threads())
                if device.type == "cpu" else None)
    m: dict[str, Any] = {"kind": "short" if short else "full", "batch": batch, "iters": iters, "warmup": warmup,
                         "loader_seconds": seconds, "estimate_s": estimate}
    return m


def _full(dev: torch.device, opts: DoctorOptions, sizes: dict[str, Any], log: Callable[[str], None]
          ) -> dict[str, Any]:
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
    rows = run_bench(paper, "infer", batch=opts.infer_batch, device=str(dev), iters=sizes["iters"],
                     warmup=sizes["warmup"], variants=("x3d", "piumr", "piumr-fast"))
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
    ``DatasetError`` for a data root that does not exist or holds no MA-52 lists. On a CPU the measurement is
    short unless ``opts.full`` (:func:`measurement`), and a synthetic set not generated yet is not generated
    (its loader is not measured); the GPU checks of ``opts.full`` run on CUDA only. A loader that fails on
    the clips is reported, not raised.
    """
    from piumr.doctor.data import MA52_SIZES, data_report
    from piumr.doctor.env import devices, versions
    from piumr.doctor.speed import loader_speed, project, train_speed

    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available (torch {torch.__version__})")
    start = time.perf_counter()
    m = measurement(cfg, device, opts)
    if m["estimate_s"] is not None:
        log(f"{m['kind']} CPU measurement: batch {m['batch']}, {m['warmup']} + {m['iters']} steps per variant at "
            f"{cfg.model.frames}x{cfg.model.crop}, loader {m['loader_seconds']:g} s: training steps about "
            f"{m['estimate_s']:.0f} s on an idle CPU (estimate)"
            + ("; --full measures batch 4, 2 + 5 steps, loader 10 s" if m["kind"] == "short" else ""))
    report: dict[str, Any] = {"schema": SCHEMA_VERSION, "preset": cfg.name, "device": str(device),
                              "measurement": m, "versions": versions(), "devices": devices()}
    log(f"data: {cfg.data.root}")
    report["data"] = data_report(cfg.data, opts.hash_clips, generate=m["kind"] == "full")
    log(f"training speed: batch {m['batch']}, {cfg.model.frames}x{cfg.model.crop}, {m['iters']} steps per variant")
    report["train"] = train_speed(cfg, device, m["batch"], m["iters"], m["warmup"])
    log(f"loader speed: {cfg.data.num_workers} worker(s), {m['loader_seconds']:g} s")
    if report["data"].get("generated") is False:
        report["loader"] = {"skipped": "the synthetic set is not generated yet (piumr synth or the first training "
                                       "makes it; doctor --full generates and measures it)"}
    else:
        try:
            report["loader"] = loader_speed(cfg, Path(report["data"]["path"]), cfg.optim.batch_size,
                                            m["loader_seconds"])
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
    if opts.full and device.type == "cuda":
        report["full"] = _full(device, opts, m, log)
    report["problems"] = _problems(report)
    report["seconds"] = time.perf_counter() - start
    return report
