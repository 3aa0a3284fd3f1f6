"""Training (§4.1) as a recipe: open the run folder -> set up -> restore -> for each epoch: one epoch,
validate, save -> finish.

Runs on one device, or under ``torchrun`` with DistributedDataParallel (``torchrun --nproc-per-node N -m piumr
train ...``): rank-0 logs and writes checkpoints, validation scores are gathered over all ranks. ``batch_size``
in the config is the GLOBAL batch (split evenly over ranks).

Files in ``out_dir``: ``config.json``, ``log.jsonl`` (one JSON object per logged step, per epoch, per resume
and per amendment), ``last.safetensors`` (model + optimiser + RNG, written at every epoch end and every
``checkpoint_every_min`` minutes within an epoch: ``resume=True`` continues exactly), ``best.safetensors``
(best validation F1_mean), ``metrics.json`` (validation metrics of the best epoch), ``summary.json``, ``curves.png``
(loss, validation, lr per epoch, redrawn from ``log.jsonl`` at each epoch end); ``cfg.tensorboard``: ``tensorboard/``.

The run folder's rules (``piumr.run_folder``): one process at a time (a lock), a new run only into an empty folder
(``fresh=True`` moves an old run aside), a resumed run drops the log rows after its checkpoint and records every
change of its config as an amendment. Faults that stop a run (divergence, a failed write, a vanished run folder)
raise ``RunError`` naming the epoch, the step and the last good checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from piumr import run_folder
from piumr.checkpoint import restore_rng, save_checkpoint
from piumr.config import CHECKPOINT_EVERY_MIN, OptimConfig, TrainConfig
from piumr.data.dataset import VideoDataset
from piumr.data.loaders import build_dataset, data_root, eval_loader, probe_lengths
from piumr.data.manifest import MA52_CLASSES, ClassInfo
from piumr.data.splits import class_info, fit_head, load_split, resolve_root, trained_on
from piumr.errors import RunError
from piumr.evaluate import Scores, collect_scores, score_metrics, write_predictions_csv
from piumr.files import write_json_atomic
from piumr.losses import Criterion
from piumr.metrics import format_table
from piumr.model import PIUmrNet, build_model
from piumr.runtime import DistInfo, seed_everything, setup_distributed
from piumr.stall import OnStall, StallGuard, stall_after
from piumr.recipe import build_criterion, build_optimizer, lr_at, set_lr, train_step
from piumr.speed import Feed, LossMeter, Synced, compile_model, configure_backends, prepare_model
from piumr.steplog import RunLog, finite_values, fold_read

__all__ = ["TrainResult", "lr_at", "train"]

_T = TypeVar("_T")


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
    stalled: bool | None = None  # the stall guard's verdict (None: not checked in this process, e.g. resumed late)


@dataclass
class _Run:
    """Everything set-up builds: fixed for the whole run."""

    cfg: TrainConfig
    out_dir: Path
    dinfo: DistInfo
    console: Console
    log: RunLog
    train_ds: VideoDataset
    val_loader: DataLoader[dict[str, Any]]
    model: PIUmrNet
    criterion: Criterion
    opt: torch.optim.Optimizer
    steps_per_epoch: int
    feed: Feed  # each epoch's batches on the device (piumr.speed)
    meter: LossMeter  # loss parts summed on the device, read every speed.check_every steps
    checkpoint_every_s: float = math.inf
    folder_id: tuple[int, int] | None = None
    classes: ClassInfo = MA52_CLASSES  # a manifest's classes and groups (validation metrics, predictions)
    trained_on: dict[str, Any] = field(default_factory=dict)  # what checkpoints record (data.splits.trained_on)
    guard: StallGuard | None = None  # the stall guard (rank 0)


@dataclass
class _State:
    """What changes as the run goes (and what ``last.safetensors`` restores)."""

    start_epoch: int = 0
    step: int = 0
    best: float = -math.inf
    final: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    batches_done: int = 0  # batches of ``start_epoch`` already trained (a mid-epoch checkpoint)
    partial: dict[str, Any] = field(default_factory=dict)  # that epoch's running sums
    val_reference: int | None = None  # clips of the first validation: selection runs on a fixed set
    val_missing: list[str] = field(default_factory=list)
    val_shrank: list[dict[str, Any]] = field(default_factory=list)
    last_good: str = "none (no checkpoint was written yet)"
    last_save: float = field(default_factory=time.monotonic)


# ------------------------------------------------------------------------------------------ run folder


def _finished(opened: run_folder.Opened, out_dir: Path, dinfo: DistInfo, console: Console) -> TrainResult | None:
    """A resumed run whose checkpoint is the end of its last epoch: say so and change nothing."""
    ck = opened.ckpt
    epochs, batches, _ = opened.start()
    if ck is None or batches or epochs < opened.cfg.optim.epochs:
        return None
    best = ck.meta.get("best_metric")
    summary = out_dir / "summary.json"
    res = TrainResult(out_dir, epochs, int(ck.meta["step"]), -math.inf if best is None else float(best),
                      dict(ck.meta.get("metrics", {})), sorted(set(ck.meta.get("extra", {}).get("skipped", []))))
    s = json.loads(summary.read_text()) if summary.is_file() else {}
    if s.get("steps") == res.steps:
        res.skipped, res.seconds = list(s.get("skipped_clips", [])), float(s.get("seconds", 0.0))
    elif dinfo.main:  # killed between the last checkpoint and its summary: write what the run ended with
        write_json_atomic(summary, _summary_payload(res, dinfo, ck.meta.get("extra", {})))
    if dinfo.main:
        unused = "; ".join(f"{c.key} {c.old!r} -> {c.new!r}" for c in opened.changes)
        console.print(f"{out_dir} is a finished run ({epochs} of {epochs} epochs, step {res.steps}); nothing to do, "
                      f"nothing changed (to train it longer: --resume {out_dir} --epochs N)"
                      + (f"; not applied: {unused}" if unused else ""), highlight=False)
    return res


def _guarded(run: _Run, state: _State, epoch: int, what: str, write: Callable[[], _T]) -> _T:
    """Run a write into the run folder; a vanished folder or a failed write is a ``RunError``."""
    where = f"at epoch {epoch}, step {state.step}"
    if run.folder_id is not None:
        try:
            st = os.stat(run.out_dir)
            same = (st.st_dev, st.st_ino) == run.folder_id
        except OSError:
            same = False
        if not same:
            raise RunError(f"run folder {run.out_dir} vanished or was replaced {where}; the last good checkpoint "
                           f"was {state.last_good}")
    try:
        return write()
    except OSError as e:
        raise RunError(f"{run.out_dir}: could not write {what} {where} ({e.strerror or e}); the last good "
                       f"checkpoint is {state.last_good}") from None


# ------------------------------------------------------------------------------------------ set-up


def _set_up(opened: run_folder.Opened, out_dir: Path, dinfo: DistInfo, progress: bool, console: Console,
            on_stall: OnStall = "warn") -> _Run:
    """Data, run folder, model, loss and optimiser (in this order: the global RNG sees the same draws)."""
    cfg = opened.cfg
    if cfg.optim.batch_size % dinfo.world:
        raise ValueError(f"batch size {cfg.optim.batch_size} is not divisible by {dinfo.world} processes")
    log = RunLog(out_dir / "log.jsonl" if dinfo.main else None, tensorboard=cfg.tensorboard)  # no extra: fails here
    seed_everything(cfg.seed + dinfo.rank)
    # data first: a bad --data fails before anything is written, leaving no run folder behind
    resolve_root(cfg.data, progress and dinfo.main)
    train_records = load_split(cfg.data, "train", progress)
    val_records = load_split(cfg.data, "val", progress)
    train_ds = build_dataset(cfg, train_records, "train")
    probe_lengths(train_ds)
    val_loader = eval_loader(cfg, val_records, batch_size=max(1, cfg.optim.batch_size // dinfo.world),
                             shard=(dinfo.rank, dinfo.world) if dinfo.world > 1 else None)
    if len(train_ds) < cfg.optim.batch_size:
        raise ValueError(f"train split has {len(train_ds)} clips, fewer than one batch of {cfg.optim.batch_size}")
    # a resumed run takes its weights from the checkpoint: the --pretrained file is not read (it may have moved)
    model_cfg = cfg.model if opened.ckpt is None else cfg.model.model_copy(update={"pretrained": None})
    model = build_model(config=model_cfg).to(dinfo.device)
    configure_backends(cfg.speed, dinfo.device)
    prepare_model(model, cfg.speed, dinfo.device)
    criterion = build_criterion(cfg)
    opt = build_optimizer(model, cfg.optim, cfg.speed, dinfo.device)
    steps = len(train_ds) // cfg.optim.batch_size
    if cfg.max_steps_per_epoch is not None:
        steps = min(steps, cfg.max_steps_per_epoch)
    # config.json last: data, loaders and the model (a --pretrained file) fail before the run folder holds a run
    if dinfo.main and (opened.ckpt is None or opened.changes or not (out_dir / run_folder.CONFIG).is_file()):
        epoch, _, step = opened.start()
        opened.history += [c.to_json(epoch, step) for c in opened.changes]
        run_folder.write_config(out_dir, cfg, opened.history)
    st = os.stat(out_dir) if dinfo.main else None
    seen = trained_on(cfg, train_records)
    # chance is ln K over the classes the run trains on (a head fitted to label counts reaches it, whatever its size)
    guard = StallGuard(max(2, len(seen["classes"])), stall_after(steps * cfg.optim.epochs, cfg.optim.warmup_steps),
                       str(out_dir),
                       lambda line: console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False),
                       on_stall) if dinfo.main else None
    return _Run(cfg, out_dir, dinfo, console, log, train_ds, val_loader, model, criterion, opt, steps,
                Feed(cfg, train_ds, dinfo.device, steps, rank=dinfo.rank, world=dinfo.world),
                LossMeter(cfg.speed.check_every), folder_id=(st.st_dev, st.st_ino) if st is not None else None,
                classes=class_info(cfg.data), trained_on=seen, guard=guard)


def _restore(run: _Run, opened: run_folder.Opened) -> _State:
    """Model, optimiser, the criterion's own state, RNGs and counters from ``last.safetensors`` (fresh state if None);
    the log loses its rows after the checkpoint's step and records the resume and its amendments."""
    ckpt, state = opened.ckpt, _State()
    if ckpt is not None:
        run.model.load_state_dict(ckpt.model_state)
        if ckpt.optim_state is not None:
            run.opt.load_state_dict(ckpt.optim_state)
        extra = ckpt.meta.get("extra", {})
        best = ckpt.meta.get("best_metric")
        state.start_epoch, state.batches_done, state.step = opened.start()
        state.best = -math.inf if best is None else float(best)
        state.final = dict(ckpt.meta.get("metrics", {}))
        state.partial = dict(extra.get("partial", {}))
        state.skipped = list(extra.get("skipped", []))
        state.val_reference = extra.get("val_reference")
        state.val_missing = list(extra.get("val_missing", []))
        state.val_shrank = list(extra.get("val_shrank", []))
        state.last_good = f"{ckpt.path} (epoch {ckpt.meta['epoch']}, step {state.step})"
        run.criterion.load_state_tensors(ckpt.meta["extra_tensors"])
        restore_rng(ckpt)
    log = run.out_dir / "log.jsonl"
    if not run.dinfo.main or not opened.resumed or (opened.ckpt is None and not log.is_file()):
        return state
    dropped = _guarded(run, state, state.start_epoch, "log.jsonl", lambda: run_folder.trim_log(log, state.step))
    where = f"epoch {state.start_epoch}" + (f" batch {state.batches_done}" if state.batches_done else "")
    rows = [{"type": "resume", "epoch": state.start_epoch, "step": state.step, "batch": state.batches_done,
             "dropped_rows": dropped}]
    rows += [{"type": "amendment", **c.to_json(state.start_epoch, state.step)} for c in opened.changes]
    for row in rows:
        _guarded(run, state, state.start_epoch, "log.jsonl", lambda: run.log(**row))
    for c in opened.changes:
        run.console.print(f"[bold]amended[/] {c.key}: {c.old!r} -> {c.new!r}", highlight=False)
    run.console.print(f"[bold]resuming[/] {run.out_dir} at {where} (step {state.step})"
                      + (f"; dropped {dropped} log row(s) written after that checkpoint" if dropped else ""))
    return state


def _wrap(run: _Run) -> torch.nn.Module:
    """The module to train: the model, or DDP around it under torch.distributed; compiled with speed.compile."""
    if run.dinfo.world == 1:
        return compile_model(run.model, run.cfg.speed)
    dev = run.dinfo.device
    return compile_model(DistributedDataParallel(run.model, device_ids=[dev.index] if dev.type == "cuda" else None),
                         run.cfg.speed)


# ------------------------------------------------------------------------------------------ one epoch


def _train_one_epoch(run: _Run, net: torch.nn.Module, state: _State, epoch: int, prog: Progress, task: TaskID,
                     log_every: int) -> dict[str, Any]:
    """One pass of ``net`` (the model, DDP-wrapped under torch.distributed) over the training loader
    (from ``state.batches_done`` when the run resumed mid-epoch); returns the epoch's log row."""
    cfg, dinfo = run.cfg, run.dinfo
    lr = set_lr(run.opt, cfg.optim, epoch)
    run.train_ds.set_epoch(epoch)
    net.train()
    use_amp = cfg.optim.amp and dinfo.device.type == "cuda"
    skip, state.batches_done = state.batches_done, 0
    acc: dict[str, Any] = {"sums": {}, "counts": {}, "n_batches": 0, "clips": 0, "skipped": []}
    if skip:
        acc.update(state.partial)
        # a checkpoint written before per-key counts: every key was summed over every batch
        acc.setdefault("counts", {})
        for k in acc["sums"]:
            acc["counts"].setdefault(k, acc["n_batches"])
    t_ep, clips0 = time.time(), acc["clips"]
    vals: dict[str, float] = {}
    for i, batch in enumerate(run.feed.epoch(epoch, skip), start=skip):
        video, labels = batch["video"], batch["action"]  # on the device: (B, 3, T, H, W) float32, (B,)
        if state.step < cfg.optim.warmup_steps:  # the step warm-up: this step's lr
            set_lr(run.opt, cfg.optim, epoch, state.step)
        acc["skipped"] += batch["skipped"]
        _, parts = train_step(net, run.criterion, run.opt, video, labels,
                              batch["person"].to(dinfo.device, non_blocking=True), amp=use_amp,
                              grad_clip=cfg.optim.grad_clip, clip_params=run.model.parameters())
        log_now = (state.step + 1) % log_every == 0 and dinfo.main
        # the criterion's and the model's own log values (e.g. the spread of TFAM's per-clip fusion weights),
        # summed on the device and read every speed.check_every steps (``total`` is the one checked)
        step_vals = {"total": parts.total, **parts.logs, **run.model.diagnostics()}
        fresh = _synced(run, state, epoch, acc, run.meter.add(step_vals, state.step + 1, log_now))
        if fresh:
            vals = fresh
            if run.guard is not None:  # a stall row goes to log.jsonl (before --on-stall stop ends the run)
                run.guard.watch(state.step + 1, fresh, lambda row: _guarded(
                    run, state, epoch, "log.jsonl", lambda: run.log(epoch=epoch, **row)))
        state.step += 1
        acc["n_batches"] += 1
        acc["clips"] += video.shape[0] * dinfo.world
        rate = (acc["clips"] - clips0) / max(time.time() - t_ep, 1e-9)
        loss = f"{vals['total']:.3f}" if vals else "-"  # "-" until the first host read (speed.check_every)
        prog.update(task, advance=1, info=f"loss {loss} lr {lr:.1e} {rate:.1f} clips/s")
        if log_now:
            _guarded(run, state, epoch, "log.jsonl", lambda: run.log(
                type="step", epoch=epoch, step=state.step, **finite_values(vals), lr=lr,
                clips_per_s=rate))
        if (dinfo.main and i + 1 < run.steps_per_epoch
                and time.monotonic() - state.last_save >= run.checkpoint_every_s):
            _synced(run, state, epoch, acc, run.meter.flush())
            _save_last(run, state, epoch, batches=i + 1, partial=acc)
    _synced(run, state, epoch, acc, run.meter.flush())
    if acc["skipped"] and dinfo.main:
        run.console.print(f"[yellow]epoch {epoch}: skipped {len(acc['skipped'])} broken clip(s)[/]: "
                          + ", ".join(sorted(set(acc["skipped"]))[:5]))
    state.skipped += acc["skipped"]
    return {"type": "epoch", "epoch": epoch, "step": state.step, "lr": lr,
            **{k: v / max(acc["counts"].get(k, 0), 1) for k, v in acc["sums"].items()},
            "clips_per_s": (acc["clips"] - clips0) / max(time.time() - t_ep, 1e-9), "skipped": len(acc["skipped"])}


def _synced(run: _Run, state: _State, epoch: int, acc: dict[str, Any], got: Synced | None) -> dict[str, float]:
    """Fold one host read of the loss meter into the epoch's sums; a non-finite total is a ``RunError``.
    Returns the last step's loss parts ({} when nothing was read)."""
    if got is None:
        return {}
    if got.bad_step is not None:
        raise RunError(f"training diverged: non-finite loss ({got.bad_value}) at epoch {epoch}, step {got.bad_step}; "
                       f"the last good checkpoint is {state.last_good} (resume from it with a lower --lr: "
                       f"--resume {run.out_dir} --lr ...)")
    fold_read(acc, got)
    return got.last


# ------------------------------------------------------------------------------------------ validate, save


def _account_val(run: _Run, state: _State, epoch: int, scores: Scores, row: dict[str, Any]) -> None:
    """Count and name the validation clips left out (unreadable); warn loudly when the evaluated set is
    smaller than at the first validation (best-checkpoint selection then compares different sets)."""
    records = run.val_loader.dataset.records if isinstance(run.val_loader.dataset, VideoDataset) else []
    state.val_missing = sorted({str(r.path) for r in records} - set(scores.paths))
    n = len(scores.labels)
    row.update(val_clips=n, val_listed=len(records), val_skipped=state.val_missing)
    if state.val_missing and run.dinfo.main:
        run.console.print(f"[yellow]epoch {epoch}: {len(state.val_missing)} of {len(records)} validation clip(s) "
                          "could not be read and were left out[/]: " + ", ".join(state.val_missing[:5])
                          + (" ..." if len(state.val_missing) > 5 else ""), highlight=False)
    if state.val_reference is None:
        state.val_reference = n
    elif n < state.val_reference:
        state.val_shrank.append({"epoch": epoch, "from": state.val_reference, "to": n, "missing": state.val_missing})
        row["val_shrank_from"] = state.val_reference
        if run.dinfo.main:
            run.console.print(f"[bold red]warning: the validation set shrank from {state.val_reference} to {n} "
                              f"clips at epoch {epoch}; best-checkpoint selection now compares F1 over different "
                              "sets (recorded in log.jsonl, metrics.json and summary.json)[/]", highlight=False)


def _validate(run: _Run, state: _State, epoch: int, row: dict[str, Any], prog: Progress) -> None:
    """Score the val split; on a new best F1_mean write ``best.safetensors``, ``metrics.json`` and the
    per-clip predictions (rank 0). Adds the scores and the clip accounting to the epoch's log ``row``."""
    cfg, dinfo = run.cfg, run.dinfo
    scores = collect_scores(run.model, run.val_loader, dinfo.device, amp=cfg.optim.amp)
    if not np.isfinite(scores.probs).all():
        raise RunError(f"validation scores are not finite (NaN or inf) at epoch {epoch}, step {state.step}: the "
                       f"model diverged; the last good checkpoint is {state.last_good}")
    _account_val(run, state, epoch, scores, row)
    result = score_metrics(scores, run.classes)
    state.final = result.official
    row["val"] = state.final
    if result.participants is not None:
        row["val_worst_participant"] = result.participants["worst_acc"]
    if dinfo.main and state.final["f1_mean"] > state.best:
        state.best = state.final["f1_mean"]
        _guarded(run, state, epoch, "best.safetensors", lambda: save_checkpoint(
            run.out_dir / "best.safetensors", run.model, cfg, epoch=epoch, step=state.step, metrics=state.final,
            best_metric=state.best, device=str(dinfo.device), trained_on=run.trained_on))
        payload = {"epoch": epoch, "split": "val", "clips": len(scores.labels), "listed": row["val_listed"],
                   "skipped": state.val_missing, "shrank": state.val_shrank, **result.to_json()}
        _guarded(run, state, epoch, "metrics.json",
                 lambda: write_json_atomic(run.out_dir / "metrics.json", payload))
        val = run.val_loader.dataset.records if isinstance(run.val_loader.dataset, VideoDataset) else []
        _guarded(run, state, epoch, "predictions_val.csv", lambda: write_predictions_csv(
            run.out_dir / "predictions_val.csv", scores, classes=run.classes, root=data_root(val)))
    if dinfo.main:
        prog.console.print(f"epoch {epoch}: val F1_mean {state.final['f1_mean']:.2f} "
                           f"(action top-1 {state.final['action_top1']:.2f}, best {state.best:.2f})")


def _save_last(run: _Run, state: _State, epoch: int, *, batches: int = 0,
               partial: dict[str, Any] | None = None) -> None:
    """``last.safetensors``: model, optimiser, the criterion's own state, RNG states and counters (exact resume); at an
    epoch end (``batches`` 0) or after ``batches`` batches of ``epoch`` with its running sums ``partial``."""
    if not all(bool(torch.isfinite(p).all()) for p in run.model.parameters()):
        raise RunError(f"training diverged: non-finite weights at epoch {epoch}, step {state.step}; the last good "
                       f"checkpoint is {state.last_good}")
    tensors = run.criterion.state_tensors()
    # the clips skipped in earlier epochs; those of an unfinished epoch travel in ``partial``
    extra = {"epoch_batches": batches, "partial": partial or {}, "skipped": state.skipped,
             "val_reference": state.val_reference, "val_missing": state.val_missing, "val_shrank": state.val_shrank}
    path = run.out_dir / "last.safetensors"
    _guarded(run, state, epoch, "the checkpoint last.safetensors", lambda: save_checkpoint(
        path, run.model, run.cfg, epoch=epoch, step=state.step, metrics=state.final,
        best_metric=state.best if state.best > -math.inf else None, optimizer=run.opt, extra_tensors=tensors,
        extra=extra, device=str(run.dinfo.device), with_rng=True, trained_on=run.trained_on))
    state.last_good = f"{path} (epoch {epoch}, step {state.step})"
    state.last_save = time.monotonic()


def _summary_payload(res: TrainResult, dinfo: DistInfo, extra: dict[str, Any]) -> dict[str, Any]:
    return {"epochs": res.epochs, "steps": res.steps, "stalled": res.stalled,
            "best_f1_mean": res.best_metric if res.best_metric > -math.inf else None, "final_val": res.final,
            "skipped_clips": res.skipped, "val_clips": extra.get("val_reference"),
            "val_skipped_clips": extra.get("val_missing", []), "val_set_shrank": extra.get("val_shrank", []),
            "seconds": res.seconds, "device": str(dinfo.device), "world_size": dinfo.world}


def _finish(run: _Run, state: _State, seconds: float) -> TrainResult:
    """The run's ``TrainResult``; rank 0 also writes ``summary.json`` and prints the final table."""
    guard = run.guard
    res = TrainResult(run.out_dir, run.cfg.optim.epochs, state.step, state.best, state.final,
                      sorted(set(state.skipped)), seconds,
                      guard.stalled if guard is not None and guard.after is not None and guard.checked else None)
    if run.dinfo.main:
        extra = {"val_reference": state.val_reference, "val_missing": state.val_missing,
                 "val_shrank": state.val_shrank}
        _guarded(run, state, run.cfg.optim.epochs - 1, "summary.json", lambda: write_json_atomic(
            run.out_dir / "summary.json", _summary_payload(res, run.dinfo, extra)))
        if res.final:
            run.console.print(format_table(res.final, (run.classes.label_word, run.classes.group_word)))
    return res


# ------------------------------------------------------------------------------------------ the recipe


def train(
    cfg: TrainConfig, out_dir: Path, *, resume: bool = False, device: str | None = None, progress: bool = True,
    console: Console | None = None, log_every: int = 10, stop_after_epoch: int | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None, fresh: bool = False,
    checkpoint_every_min: float = CHECKPOINT_EVERY_MIN, on_stall: OnStall = "warn",
) -> TrainResult:
    """Train ``cfg`` into ``out_dir`` (which must be empty unless ``fresh``, which moves an old run aside).

    With ``resume``, continue the run in ``out_dir`` from its ``last.safetensors`` (from the start when it has
    none yet): ``cfg`` is the run's config with the changes ``piumr.run_folder.AMENDABLE`` allows (more
    epochs, the learning-rate schedule), each recorded as an amendment; a finished run is reported and left
    unchanged. ``checkpoint_every_min`` (0 = epoch ends only) bounds the work a kill loses. ``on_stall``: what
    the stall guard does when the training cross-entropy is still at chance 200 steps after warm-up
    (``piumr.stall``): "warn" (one line, a ``stall`` row in ``log.jsonl``) or "stop" (also ``TrainingStalled``).
    ``stop_after_epoch`` ends the run early after that epoch (used to test resumption); the checkpoint is
    then exactly what a killed run leaves.
    """
    t0 = time.time()
    console = console or Console(stderr=True, soft_wrap=True)
    dinfo = setup_distributed(device)
    out_dir = Path(out_dir)
    cfg = fit_head(cfg)
    opened = run_folder.open_run(cfg, out_dir, main=dinfo.main, resume=resume, fresh=fresh, console=console)
    try:
        done = _finished(opened, out_dir, dinfo, console)
        if done is not None:
            return done
        run = _set_up(opened, out_dir, dinfo, progress, console, on_stall)
        run.checkpoint_every_s = checkpoint_every_min * 60.0 if checkpoint_every_min > 0 else math.inf
        state = _restore(run, opened)
        return _loop(run, state, _wrap(run), progress, log_every, stop_after_epoch, on_epoch, t0)
    finally:
        if opened.lock is not None:
            opened.lock.release()


def _loop(run: _Run, state: _State, net: torch.nn.Module, progress: bool, log_every: int,
          stop_after_epoch: int | None, on_epoch: Callable[[int, dict[str, Any]], None] | None,
          t0: float) -> TrainResult:
    """For each epoch: one epoch, validate, log, save; then finish."""
    epochs, per_epoch, dinfo = run.cfg.optim.epochs, run.steps_per_epoch, run.dinfo
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=run.console,
                    disable=not (progress and dinfo.main))
    with prog, run.log:  # leaving it closes the TensorBoard event file
        task = prog.add_task(run.cfg.name, total=epochs * per_epoch,
                             completed=state.start_epoch * per_epoch + state.batches_done, info="")
        for epoch in range(state.start_epoch, epochs):
            row = _train_one_epoch(run, net, state, epoch, prog, task, log_every)
            if (epoch + 1) % run.cfg.eval_every == 0 or epoch + 1 == epochs:
                _validate(run, state, epoch, row, prog)
            if dinfo.main:
                _guarded(run, state, epoch, "log.jsonl", lambda: run.log(**row))
                _guarded(run, state, epoch, "curves.png", run.log.draw_curves)
                _save_last(run, state, epoch)
            if on_epoch is not None:
                on_epoch(epoch, row)
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                break
    return _finish(run, state, time.time() - t0)
