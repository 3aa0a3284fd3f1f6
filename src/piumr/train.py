"""Training (§4.1) as a recipe: set up -> restore -> for each epoch: one epoch, validate, save.

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from piumr.checkpoint import Checkpoint, read_checkpoint, restore_rng, save_checkpoint
from piumr.config import OptimConfig, TrainConfig
from piumr.data.dataset import VideoDataset
from piumr.data.loaders import build_dataset, eval_loader, probe_lengths, train_loader
from piumr.data.splits import load_split, resolve_root
from piumr.evaluate import collect_scores, score_metrics, write_predictions_csv
from piumr.files import write_json_atomic, write_text_atomic
from piumr.losses import PIUmrLoss
from piumr.metrics import format_table
from piumr.model import PIUmrNet, build_model
from piumr.runtime import DistInfo, seed_everything, setup_distributed

__all__ = ["TrainResult", "lr_at", "train"]


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


def lr_at(optim: OptimConfig, epoch: int) -> float:
    """§4.1 step schedule: lr * gamma^(number of milestones <= epoch), after optional linear warm-up."""
    lr = optim.lr * optim.gamma ** sum(1 for m in optim.milestones if epoch >= m)
    if epoch < optim.warmup_epochs:
        lr *= (epoch + 1) / (optim.warmup_epochs + 1)
    return lr


class _Log:
    """Append-only JSONL log (rank 0 only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, **row: Any) -> None:
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")


@dataclass
class _Run:
    """Everything set-up builds: fixed for the whole run."""

    cfg: TrainConfig
    out_dir: Path
    dinfo: DistInfo
    console: Console
    log: _Log
    train_ds: VideoDataset
    val_loader: DataLoader[dict[str, Any]]
    model: PIUmrNet
    criterion: PIUmrLoss
    opt: torch.optim.Optimizer
    steps_per_epoch: int


@dataclass
class _State:
    """What changes as the run goes (and what ``last.safetensors`` restores)."""

    start_epoch: int = 0
    step: int = 0
    best: float = -math.inf
    final: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ set-up


def _set_up(cfg: TrainConfig, out_dir: Path, dinfo: DistInfo, progress: bool, console: Console) -> _Run:
    """Data, run folder, model, loss and optimiser (in this order: the global RNG sees the same draws)."""
    if cfg.optim.batch_size % dinfo.world:
        raise ValueError(f"batch size {cfg.optim.batch_size} is not divisible by {dinfo.world} processes")
    seed_everything(cfg.seed + dinfo.rank)
    # data first: a bad --data fails before anything is written, leaving no run folder behind
    resolve_root(cfg.data, progress and dinfo.main)
    train_records = load_split(cfg.data, "train", progress)
    val_records = load_split(cfg.data, "val", progress)
    if dinfo.main:
        write_text_atomic(out_dir / "config.json", cfg.model_dump_json(indent=2))
    train_ds = build_dataset(cfg, train_records, "train")
    probe_lengths(train_ds)
    val_loader = eval_loader(cfg, val_records, batch_size=max(1, cfg.optim.batch_size // dinfo.world),
                             shard=(dinfo.rank, dinfo.world) if dinfo.world > 1 else None)
    if len(train_ds) < cfg.optim.batch_size:
        raise ValueError(f"train split has {len(train_ds)} clips, fewer than one batch of {cfg.optim.batch_size}")
    model = build_model(config=cfg.model).to(dinfo.device)
    criterion = PIUmrLoss(cfg.girl, cfg.ce_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    steps = len(train_ds) // cfg.optim.batch_size
    if cfg.max_steps_per_epoch is not None:
        steps = min(steps, cfg.max_steps_per_epoch)
    return _Run(cfg, out_dir, dinfo, console, _Log(out_dir / "log.jsonl" if dinfo.main else None), train_ds,
                val_loader, model, criterion, opt, steps)


def _restore(run: _Run, ckpt: Checkpoint | None) -> _State:
    """Model, optimiser, GIRL generator, RNGs and counters from ``last.safetensors`` (fresh state if None)."""
    if ckpt is None:
        return _State()
    run.model.load_state_dict(ckpt.model_state)
    if ckpt.optim_state is not None:
        run.opt.load_state_dict(ckpt.optim_state)
    best = ckpt.meta.get("best_metric")
    state = _State(int(ckpt.meta["epoch"]) + 1, int(ckpt.meta["step"]), -math.inf if best is None else float(best))
    gen_state = ckpt.meta["extra_tensors"].get("girl_generator")
    if gen_state is not None and run.criterion.girl is not None:
        run.criterion.girl.generator.set_state(gen_state)
    restore_rng(ckpt)
    if run.dinfo.main:
        run.console.print(f"[bold]resuming[/] {run.out_dir} at epoch {state.start_epoch} (step {state.step})")
    return state


def _wrap(run: _Run) -> torch.nn.Module:
    """The module to train: the model, or DDP around it under torch.distributed."""
    if run.dinfo.world == 1:
        return run.model
    dev = run.dinfo.device
    return DistributedDataParallel(run.model, device_ids=[dev.index] if dev.type == "cuda" else None)


# ------------------------------------------------------------------------------------------ one epoch


def _train_one_epoch(run: _Run, net: torch.nn.Module, state: _State, epoch: int, prog: Progress, task: TaskID,
                     log_every: int) -> dict[str, Any]:
    """One pass of ``net`` (the model, DDP-wrapped under torch.distributed) over the training loader;
    returns the epoch's log row (mean losses, rate, skipped clips)."""
    cfg, dinfo = run.cfg, run.dinfo
    lr = lr_at(cfg.optim, epoch)
    for g in run.opt.param_groups:
        g["lr"] = lr
    run.train_ds.set_epoch(epoch)
    net.train()
    use_amp = cfg.optim.amp and dinfo.device.type == "cuda"
    skipped: list[str] = []
    sums = {"loss": 0.0, "ce": 0.0, "girl": 0.0}
    n_batches, clips, t_ep = 0, 0, time.time()
    loader = train_loader(cfg, run.train_ds, epoch=epoch, rank=dinfo.rank, world=dinfo.world,
                          pin_memory=dinfo.device.type == "cuda")
    for i, batch in enumerate(loader):
        if i >= run.steps_per_epoch:
            break
        video = batch["video"].to(dinfo.device, non_blocking=True)  # (B, 3, T, H, W)
        labels = batch["action"].to(dinfo.device, non_blocking=True)  # (B,)
        skipped += batch["skipped"]
        with torch.autocast(dinfo.device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = net(video)
        parts = run.criterion(out.logits, out.embedding, labels)
        if not torch.isfinite(parts.total):
            raise FloatingPointError(f"non-finite loss at epoch {epoch} step {state.step}: {parts}")
        run.opt.zero_grad(set_to_none=True)
        parts.total.backward()
        if cfg.optim.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
        run.opt.step()
        state.step += 1
        n_batches += 1
        clips += video.shape[0] * dinfo.world
        vals = {k: float(v.detach()) for k, v in parts._asdict().items()}
        for k, name in (("loss", "total"), ("ce", "ce"), ("girl", "girl")):
            sums[k] += vals[name]
        rate = clips / max(time.time() - t_ep, 1e-9)
        prog.update(task, advance=1, info=f"loss {vals['total']:.3f} lr {lr:.1e} {rate:.1f} clips/s")
        if state.step % log_every == 0:
            run.log(type="step", epoch=epoch, step=state.step, loss=vals["total"], ce=vals["ce"],
                    girl=vals["girl"], girl_var=vals["girl_var"], lr=lr, clips_per_s=rate)
    if skipped and dinfo.main:
        run.console.print(f"[yellow]epoch {epoch}: skipped {len(skipped)} broken clip(s)[/]: "
                          + ", ".join(sorted(set(skipped))[:5]))
    state.skipped += skipped
    return {"type": "epoch", "epoch": epoch, "step": state.step, "lr": lr,
            **{k: v / max(n_batches, 1) for k, v in sums.items()},
            "clips_per_s": clips / max(time.time() - t_ep, 1e-9), "skipped": len(skipped)}


# ------------------------------------------------------------------------------------------ validate, save


def _validate(run: _Run, state: _State, epoch: int, row: dict[str, Any], prog: Progress) -> None:
    """Score the val split; on a new best F1_mean write ``best.safetensors``, ``metrics.json`` and the
    per-clip predictions (rank 0). Adds the scores to the epoch's log ``row``."""
    cfg, dinfo = run.cfg, run.dinfo
    scores = collect_scores(run.model, run.val_loader, dinfo.device, amp=cfg.optim.amp)
    result = score_metrics(scores)
    state.final = result.official
    row["val"] = state.final
    if result.participants is not None:
        row["val_worst_participant"] = result.participants["worst_acc"]
    if dinfo.main and state.final["f1_mean"] > state.best:
        state.best = state.final["f1_mean"]
        save_checkpoint(run.out_dir / "best.safetensors", run.model, cfg, epoch=epoch, step=state.step,
                        metrics=state.final, best_metric=state.best, device=str(dinfo.device))
        write_json_atomic(run.out_dir / "metrics.json",
                          {"epoch": epoch, "split": "val", "clips": len(scores.labels), **result.to_json()})
        write_predictions_csv(run.out_dir / "predictions_val.csv", scores)
    if dinfo.main:
        prog.console.print(f"epoch {epoch}: val F1_mean {state.final['f1_mean']:.2f} "
                           f"(action top-1 {state.final['action_top1']:.2f}, best {state.best:.2f})")


def _save_last(run: _Run, state: _State, epoch: int) -> None:
    """``last.safetensors``: model, optimiser, GIRL generator and RNG states (exact resume)."""
    extra = {}
    if run.criterion.girl is not None:
        extra["girl_generator"] = run.criterion.girl.generator.get_state()
    save_checkpoint(run.out_dir / "last.safetensors", run.model, run.cfg, epoch=epoch, step=state.step,
                    metrics=state.final, best_metric=state.best if state.best > -math.inf else None,
                    optimizer=run.opt, extra_tensors=extra, device=str(run.dinfo.device), with_rng=True)


def _finish(run: _Run, state: _State, seconds: float) -> TrainResult:
    """The run's ``TrainResult``; rank 0 also writes ``summary.json`` and prints the final table."""
    res = TrainResult(run.out_dir, run.cfg.optim.epochs, state.step, state.best, state.final,
                      sorted(set(state.skipped)), seconds)
    if run.dinfo.main:
        write_json_atomic(run.out_dir / "summary.json", {
            "epochs": res.epochs, "steps": res.steps, "best_f1_mean": res.best_metric if res.best_metric > -math.inf
            else None, "final_val": res.final, "skipped_clips": res.skipped, "seconds": res.seconds,
            "device": str(run.dinfo.device), "world_size": run.dinfo.world})
        if res.final:
            run.console.print(format_table(res.final))
    return res


# ------------------------------------------------------------------------------------------ the recipe


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
    last = out_dir / "last.safetensors"
    ckpt = read_checkpoint(last) if resume and last.is_file() else None
    run = _set_up(ckpt.config if ckpt is not None else cfg, out_dir, dinfo, progress, console)
    state = _restore(run, ckpt)
    net = _wrap(run)
    epochs, per_epoch = run.cfg.optim.epochs, run.steps_per_epoch
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                    disable=not (progress and dinfo.main))
    with prog:
        task = prog.add_task(run.cfg.name, total=epochs * per_epoch, completed=state.start_epoch * per_epoch, info="")
        for epoch in range(state.start_epoch, epochs):
            row = _train_one_epoch(run, net, state, epoch, prog, task, log_every)
            if (epoch + 1) % run.cfg.eval_every == 0 or epoch + 1 == epochs:
                _validate(run, state, epoch, row, prog)
            run.log(**row)
            if dinfo.main:
                _save_last(run, state, epoch)
            if on_epoch is not None:
                on_epoch(epoch, row)
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                break
    return _finish(run, state, time.time() - t0)
