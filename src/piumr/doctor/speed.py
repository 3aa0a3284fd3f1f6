"""Short speed measurements of ``piumr doctor``: training clips/s, loader clips/s, bottleneck, projections.

Training rates come from :func:`piumr.bench.run_bench` (each variant in a fresh process, so each peak memory
is its own); the loader rate from :func:`piumr.data.bench.loader_throughput` with the preset's workers.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from piumr.bench import run_bench
from piumr.config import TrainConfig
from piumr.data.bench import loader_throughput
from piumr.kernels import triton_available

__all__ = ["FAST_PATH_UNAVAILABLE", "fast_path_reason", "loader_speed", "project", "train_speed"]

FAST_PATH_UNAVAILABLE = "not available on CPU: the Triton fast path needs a CUDA GPU"


def fast_path_reason(device: torch.device) -> str | None:
    """Why ``piumr-fast`` cannot run on ``device`` (None when it can)."""
    if device.type != "cuda":
        return FAST_PATH_UNAVAILABLE
    if not triton_available():
        return "not available: triton is not importable"
    return None


def train_speed(cfg: TrainConfig, device: torch.device, batch: int, iters: int, warmup: int) -> dict[str, Any]:
    """Training step (forward + backward + AdamW, synthetic clips) of plain pytorchvideo X3D, PIUmr and
    PIUmr with the fast path, at ``batch`` clips of (3, frames, crop, crop).

    Returns {"x3d": row, "piumr": row, "piumr-fast": row or {"skipped": reason}} where a row is a
    :class:`piumr.bench.BenchRow` as a dict (ms_per_step, clips_per_s, peak_mem_gib, ...).
    """
    reason = fast_path_reason(device)
    variants = ("x3d", "piumr") if reason else ("x3d", "piumr", "piumr-fast")
    rows = run_bench(cfg, "train", batch=batch, device=str(device), iters=iters, warmup=warmup, variants=variants)
    out: dict[str, Any] = {r.variant: asdict(r) for r in rows}
    if reason:
        out["piumr-fast"] = {"skipped": reason}
    return out


def loader_speed(cfg: TrainConfig, root: Path, batch: int, seconds: float) -> dict[str, Any]:
    """Augmented training clips/s of the ``train`` split with ``cfg.data.num_workers`` workers, decoded from the
    prepared cache (or the raw videos when there is none; never the in-memory cache), over at least
    ``MIN_CLIPS`` clips (a small split indexed repeatedly) through one loader whose workers start once
    (:func:`piumr.data.bench.loader_throughput`). Clips leave the loader as ``cfg.speed.uint8_clips`` says.

    The batch is at most ``max(8, 2 * workers)``: once every worker builds whole batches, clips/s does not depend
    on the batch, and a smaller one measures more batches in ``seconds`` (at least one is always measured)."""
    workers = cfg.data.num_workers
    return loader_throughput(root, "train", cfg.model.frames, cfg.model.crop, cfg.data.short_side, workers,
                             min(batch, max(8, 2 * workers)), seconds, uint8=cfg.speed.uint8_clips)


def project(train_clips_s: float, loader_clips_s: float | None, train_clips: int, epochs: int) -> dict[str, Any]:
    """Epoch and full-run time of ``epochs`` epochs over ``train_clips`` clips at the slower of the two rates.

    Validation is not included. ``loader_clips_s=None`` (not measured) projects on the model rate alone.
    """
    rate = train_clips_s if loader_clips_s is None else min(train_clips_s, loader_clips_s)
    epoch_s = train_clips / rate
    return {"train_clips": train_clips, "epochs": epochs, "clips_per_s": rate, "epoch_s": epoch_s,
            "full_run_s": epoch_s * epochs, "full_run_h": epoch_s * epochs / 3600}
