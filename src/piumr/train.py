"""One readable training function (§4.1): data -> model -> CE + GIRL -> AdamW, step schedule.

Runs on one device, or under ``torchrun`` with DistributedDataParallel
(``torchrun --nproc-per-node N -m piumr train ...``): rank-0 logs and writes
checkpoints, validation scores are gathered over all ranks. ``batch_size`` in
the config is the GLOBAL batch (split evenly over ranks).

Files in ``out_dir``: ``config.json``, ``log.jsonl`` (one JSON object per
logged step and per epoch), ``last.safetensors`` (model + optimiser + RNG:
``resume=True`` continues exactly), ``best.safetensors`` (best validation
F1_mean), ``metrics.json`` (final validation metrics), ``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from piumr.checkpoint import read_checkpoint, restore_rng, save_checkpoint
from piumr.config import OptimConfig, TrainConfig
from piumr.data import VideoDataset, VideoError, build_transform, collate, open_cache_if_any, worker_init
from piumr.data.splits import load_split, resolve_root
from piumr.evaluate import collect_scores, eval_loader, score_metrics, write_predictions_csv
from piumr.losses import PIUmrLoss
from piumr.metrics import format_table
from piumr.model import PIUmrNet, build_model

__all__ = ["TrainResult", "DistInfo", "setup_distributed", "lr_at", "seed_everything", "train", "pick_device"]


@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) run reports."""

    out_dir: Path
    epochs: int
    steps: int
    best_metric: float
    final: dict[str, float]
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(device: str | None) -> torch.device:
    """``None``/"auto" -> CUDA when available, else CPU; otherwise the named device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def setup_distributed(device: str | None) -> DistInfo:
    """Initialise torch.distributed when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, pick_device(device))
    dev = pick_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank()
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    return DistInfo(rank, dist.get_world_size(), dev)


def lr_at(optim: OptimConfig, epoch: int) -> float:
    """§4.1 step schedule: lr * gamma^(number of milestones <= epoch), after optional linear warm-up."""
    lr = optim.lr * optim.gamma ** sum(1 for m in optim.milestones if epoch >= m)
    if epoch < optim.warmup_epochs:
        lr *= (epoch + 1) / (optim.warmup_epochs + 1)
    return lr


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _train_loader(cfg: TrainConfig, ds: VideoDataset, dinfo: DistInfo, epoch: int) -> DataLoader[dict[str, Any]]:
    per_rank = cfg.optim.batch_size // dinfo.world
    gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
    sampler: DistributedSampler[int] | None = None
    if dinfo.world > 1:
        sampler = DistributedSampler(ds, num_replicas=dinfo.world, rank=dinfo.rank, shuffle=True,
                                     seed=cfg.seed, drop_last=True)
        sampler.set_epoch(epoch)
    nw = cfg.data.num_workers
    return DataLoader(ds, batch_size=per_rank, shuffle=sampler is None, sampler=sampler, drop_last=True,
                      num_workers=nw, collate_fn=collate, worker_init_fn=worker_init if nw else None,
                      generator=gen, pin_memory=dinfo.device.type == "cuda", persistent_workers=False)


class _Log:
    """Append-only JSONL log (rank 0 only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, **row: Any) -> None:
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")


def train(
    cfg: TrainConfig, out_dir: Path, *, resume: bool = False, device: str | None = None, progress: bool = True,
    console: Console | None = None, log_every: int = 10, stop_after_epoch: int | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` into ``out_dir``; with ``resume`` continue from ``out_dir/last.safetensors``.

    ``stop_after_epoch`` ends the run early after that epoch (used to test
    resumption); the checkpoint is then exactly what a killed run leaves.
    """
    t0 = time.time()
    console = console or Console(stderr=True)
    dinfo = setup_distributed(device)
    out_dir = Path(out_dir)
    ckpt = None
    if resume and (out_dir / "last.safetensors").is_file():
        ckpt = read_checkpoint(out_dir / "last.safetensors")
        cfg = ckpt.config
    if cfg.optim.batch_size % dinfo.world:
        raise ValueError(f"batch size {cfg.optim.batch_size} is not divisible by {dinfo.world} processes")
    seed_everything(cfg.seed + dinfo.rank)

    # data (checked before anything is written, so a bad --data leaves no run folder behind)
    resolve_root(cfg.data, progress and dinfo.main)
    train_records = load_split(cfg.data, "train", progress)
    val_records = load_split(cfg.data, "val", progress)
    if dinfo.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(cfg.model_dump_json(indent=2))
    log = _Log(out_dir / "log.jsonl" if dinfo.main else None)
    root = train_records[0].path.parent.parent
    train_ds = VideoDataset(
        train_records, frames=cfg.model.frames, train=True,
        transform=build_transform(train=True, crop=cfg.model.crop, short_side=cfg.data.short_side,
                                  hflip=cfg.data.hflip, min_scale=cfg.data.crop_min_scale),
        backend=cfg.data.backend, on_error=cfg.data.on_error, seed=cfg.seed, cache=open_cache_if_any(root),
        decode_short_side=cfg.data.short_side,
    )
    if train_ds.cache is None:
        # probe clip lengths once here: forked loader workers inherit them instead of re-probing every
        # clip in every worker every epoch (a prepared cache keeps lengths in its manifest)
        for i in range(len(train_ds)):
            try:
                train_ds.num_frames(i)
            except VideoError:
                if cfg.data.on_error == "raise":
                    raise
                # left unprobed on purpose: the loader meets it again, skips it and counts it
    val_loader = eval_loader(cfg, val_records, batch_size=max(1, cfg.optim.batch_size // dinfo.world),
                             shard=(dinfo.rank, dinfo.world) if dinfo.world > 1 else None)
    if len(train_ds) < cfg.optim.batch_size:
        raise ValueError(f"train split has {len(train_ds)} clips, fewer than one batch of {cfg.optim.batch_size}")

    # model, loss, optimiser
    model: PIUmrNet = build_model(config=cfg.model).to(dinfo.device)
    criterion = PIUmrLoss(cfg.girl, cfg.ce_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    start_epoch, step, best = 0, 0, -math.inf
    if ckpt is not None:
        model.load_state_dict(ckpt.model_state)
        if ckpt.optim_state is not None:
            opt.load_state_dict(ckpt.optim_state)
        start_epoch, step = int(ckpt.meta["epoch"]) + 1, int(ckpt.meta["step"])
        best = float(ckpt.meta["best_metric"]) if ckpt.meta.get("best_metric") is not None else -math.inf
        gen_state = ckpt.meta["extra_tensors"].get("girl_generator")
        if gen_state is not None and criterion.girl is not None:
            criterion.girl.generator.set_state(gen_state)
        restore_rng(ckpt)
        if dinfo.main:
            console.print(f"[bold]resuming[/] {out_dir} at epoch {start_epoch} (step {step})")
    net: torch.nn.Module = model
    if dinfo.world > 1:
        net = DistributedDataParallel(model, device_ids=[dinfo.device.index] if dinfo.device.type == "cuda" else None)
    use_amp = cfg.optim.amp and dinfo.device.type == "cuda"
    epochs = cfg.optim.epochs
    steps_per_epoch = len(train_ds) // cfg.optim.batch_size
    if cfg.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    final: dict[str, float] = {}
    all_skipped: list[str] = []

    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                    disable=not (progress and dinfo.main))
    with prog:
        task = prog.add_task(cfg.name, total=epochs * steps_per_epoch, completed=start_epoch * steps_per_epoch,
                             info="")
        for epoch in range(start_epoch, epochs):
            lr = lr_at(cfg.optim, epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            train_ds.set_epoch(epoch)
            net.train()
            epoch_skipped: list[str] = []
            sums = {"loss": 0.0, "ce": 0.0, "girl": 0.0}
            n_batches, clips, t_ep = 0, 0, time.time()
            for i, batch in enumerate(_train_loader(cfg, train_ds, dinfo, epoch)):
                if i >= steps_per_epoch:
                    break
                video = batch["video"].to(dinfo.device, non_blocking=True)
                labels = batch["action"].to(dinfo.device, non_blocking=True)
                epoch_skipped += batch["skipped"]
                with torch.autocast(dinfo.device.type, dtype=torch.bfloat16, enabled=use_amp):
                    out = net(video)
                parts = criterion(out.logits, out.embedding, labels)
                if not torch.isfinite(parts.total):
                    raise FloatingPointError(f"non-finite loss at epoch {epoch} step {step}: {parts}")
                opt.zero_grad(set_to_none=True)
                parts.total.backward()
                if cfg.optim.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                opt.step()
                step += 1
                n_batches += 1
                clips += video.shape[0] * dinfo.world
                vals = {k: float(v.detach()) for k, v in parts._asdict().items()}
                for k, name in (("loss", "total"), ("ce", "ce"), ("girl", "girl")):
                    sums[k] += vals[name]
                rate = clips / max(time.time() - t_ep, 1e-9)
                prog.update(task, advance=1, info=f"loss {vals['total']:.3f} lr {lr:.1e} {rate:.1f} clips/s")
                if step % log_every == 0:
                    log(type="step", epoch=epoch, step=step, loss=vals["total"], ce=vals["ce"],
                        girl=vals["girl"], girl_var=vals["girl_var"], lr=lr, clips_per_s=rate)
            row: dict[str, Any] = {"type": "epoch", "epoch": epoch, "step": step, "lr": lr,
                                   **{k: v / max(n_batches, 1) for k, v in sums.items()},
                                   "clips_per_s": clips / max(time.time() - t_ep, 1e-9),
                                   "skipped": len(epoch_skipped)}
            if epoch_skipped and dinfo.main:
                console.print(f"[yellow]epoch {epoch}: skipped {len(epoch_skipped)} broken clip(s)[/]: "
                              + ", ".join(sorted(set(epoch_skipped))[:5]))
            all_skipped += epoch_skipped
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == epochs:
                scores = collect_scores(model, val_loader, dinfo.device, amp=cfg.optim.amp)
                result = score_metrics(scores)
                final = result.official
                row["val"] = final
                if result.participants is not None:
                    row["val_worst_participant"] = result.participants["worst_acc"]
                if dinfo.main and final["f1_mean"] > best:
                    best = final["f1_mean"]
                    save_checkpoint(out_dir / "best.safetensors", model, cfg, epoch=epoch, step=step,
                                    metrics=final, best_metric=best, device=str(dinfo.device))
                    (out_dir / "metrics.json").write_text(json.dumps(
                        {"epoch": epoch, "split": "val", "clips": len(scores.labels), **result.to_json()}, indent=2))
                    write_predictions_csv(out_dir / "predictions_val.csv", scores)
                if dinfo.main:
                    prog.console.print(f"epoch {epoch}: val F1_mean {final['f1_mean']:.2f} "
                                       f"(action top-1 {final['action_top1']:.2f}, best {best:.2f})")
            log(**row)
            if dinfo.main:
                extra = {}
                if criterion.girl is not None:
                    extra["girl_generator"] = criterion.girl.generator.get_state()
                save_checkpoint(out_dir / "last.safetensors", model, cfg, epoch=epoch, step=step, metrics=final,
                                best_metric=best if best > -math.inf else None, optimizer=opt,
                                extra_tensors=extra, device=str(dinfo.device), with_rng=True)
            if on_epoch is not None:
                on_epoch(epoch, row)
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                break
    result_ = TrainResult(out_dir, epochs, step, best, final, sorted(set(all_skipped)), time.time() - t0)
    if dinfo.main:
        (out_dir / "summary.json").write_text(json.dumps({
            "epochs": epochs, "steps": step, "best_f1_mean": best if best > -math.inf else None,
            "final_val": final, "skipped_clips": result_.skipped, "seconds": result_.seconds,
            "device": str(dinfo.device), "world_size": dinfo.world}, indent=2))
        if final:
            console.print(format_table(final))
    return result_
