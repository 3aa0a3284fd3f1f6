"""Training runs of the reproduce commands: settings, one (row, seed) job, train-or-skip-or-resume,
evaluation on unseen and seen persons, and running several jobs at once in forked processes.

A run folder ``runs/<slug>-<config key>/seed<k>/`` holds one training (see ``piumr.reproduce.runner``).
With ``Settings.jobs > 1`` pending runs are trained that many at a time in processes forked after
the process-wide decoded-clip cache was filled, so each clip is decoded once; each process gets
``physical cores // jobs`` intra-op threads (never more threads than cores) and dies with the
command that started it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import torch
from rich.console import Console

from piumr.checkpoint import load_model, provenance
from piumr.config import TrainConfig, backbone_overrides, get_preset, with_overrides
from piumr.data.loaders import build_dataset
from piumr.data.ma52 import ClipRecord
from piumr.data.splits import load_split
from piumr.evaluate import evaluate_checkpoint
from piumr.files import write_json_atomic
from piumr.metrics import EvalResult
from piumr.model import PIUmrNet
from piumr.reproduce import specs
from piumr.reproduce.specs import ExperimentSpec, RowSpec
from piumr.runtime import die_with_parent, physical_cores, pick_device, thread_budget
from piumr.source import resolve_source
from piumr.train import TrainResult, train

__all__ = [
    "RESULT_FILE", "CHECKPOINT", "SYNTH_BANNER", "TrainFn", "EvalFn", "SeenEvalFn", "Settings", "Job", "make_settings",
    "data_tag", "jobs_for", "ensure_run", "evaluate_run", "evaluate_seen_run", "warm_memory_cache", "run_jobs",
    "final_model_and_val", "COLLAPSE_SHARE", "largest_predicted_share", "collapse_warnings",
]

RESULT_FILE = "result.json"
CHECKPOINT = "last.safetensors"
State = Literal["done", "resume", "new"]



class TrainFn(Protocol):
    """``piumr.train.train``'s calling convention (what the runner uses of it)."""

    def __call__(self, cfg: TrainConfig, out_dir: Path, *, resume: bool = ..., device: str | None = ...,
                 progress: bool = ..., console: Console | None = ...) -> TrainResult: ...


class EvalFn(Protocol):
    """Evaluate the finished run in ``run_dir`` (config ``cfg``) on its val split."""

    def __call__(self, run_dir: Path, cfg: TrainConfig, device: str | None) -> EvalResult: ...


class SeenEvalFn(Protocol):
    """Evaluate the finished run in ``run_dir`` on its seen-persons set (``None`` when it has none)."""

    def __call__(self, run_dir: Path, cfg: TrainConfig, device: str | None) -> EvalResult | None: ...


def evaluate_run(run_dir: Path, cfg: TrainConfig, device: str | None) -> EvalResult:
    """Final model (``last.safetensors``) of ``run_dir`` on the val split of ``cfg.data``."""
    dev = pick_device(device)
    model, ck = load_model(run_dir / CHECKPOINT, map_location=dev)
    result, _ = evaluate_checkpoint(model, ck.config, split="val", out_dir=None, device=dev,
                                    progress=False, data=cfg.data)
    return result


def evaluate_seen_run(run_dir: Path, cfg: TrainConfig, device: str | None) -> EvalResult | None:
    """Final model of ``run_dir`` on the seen-persons set ("val_seen": held-out clips of the training
    persons) when ``cfg`` is a person-disjoint run that has one; else ``None``."""
    if cfg.data.split != "cross-subject" or cfg.data.seen_holdout <= 0:
        return None
    dev = pick_device(device)
    model, ck = load_model(run_dir / CHECKPOINT, map_location=dev)
    result, _ = evaluate_checkpoint(model, ck.config, split="val_seen", out_dir=None, device=dev,
                                    progress=False, data=cfg.data)
    return result


def final_model_and_val(run_dir: Path, cfg: TrainConfig, device: str | None
                         ) -> tuple[PIUmrNet, list[ClipRecord], torch.device]:
    """(final model of ``run_dir`` on the device, val records of ``cfg.data``, the device)."""
    dev = pick_device(device)
    model, _ = load_model(run_dir / CHECKPOINT, map_location=dev)
    return model, load_split(cfg.data, "val", progress=False), dev


@dataclass
class Settings:
    """Everything a reproduce command needs besides the experiment name."""

    root: Path
    base: TrainConfig
    preset: str = "paper"
    seeds: tuple[int, ...] = (0,)
    device: str | None = None
    progress: bool = True
    console: Console = field(default_factory=lambda: Console(stderr=True))
    train_fn: TrainFn = train
    eval_fn: EvalFn = evaluate_run
    seen_fn: SeenEvalFn = evaluate_seen_run
    jobs: int = 1  # trainings run at once (processes; each gets physical cores // jobs threads)
    banner: str | None = None  # printed on every table and figure (synthetic data)
    landscape_steps: int = 7  # Fig. 6 grid (steps x steps)
    landscape_batches: int = 2  # Fig. 6 val batches
    max_points: int = 2000  # Fig. 4 / 5 embeddings (random subset of val)
    table1_with: tuple[str, ...] = ()  # non-X3D backbones whose rows Table 1 measures too (``--with``)
    _embeddings: dict[Path, tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]] = field(default_factory=dict)


#: the data root of settings made without ``--data`` (plans only): MA-52's published sizes are assumed
ASSUMED_MA52 = "MA-52"


def data_tag(data: str, preset: str) -> str:
    """Folder name for a data root + preset: ``synth-tiny``, ``MA-52`` (the paper preset adds nothing)."""
    name = resolve_source(data).tag
    return name if preset == "paper" else f"{name}-{preset}"


SYNTH_BANNER = "Synthetic MA-52-format data at CPU scale, not MA-52"
#: the banner of task v2 (``data.synth_task`` 2): what its classes are and what chance is
SYNTH_V2_BANNER = ("Synthetic MA-52-format data at CPU scale, not MA-52; task v2: 21 classes (once / twice / stay per "
                   "body part) that differ only in time, chance 4.8 % action, 14.3 % body")
#: the banner of each synthetic task (``data.synth_task``)
SYNTH_BANNERS: dict[int, str] = {1: SYNTH_BANNER, 2: SYNTH_V2_BANNER}


def make_settings(*, data: str | None, preset: str = "paper", seeds: Sequence[int] = (0,), epochs: int | None = None,
                  out: Path | None = None, device: str | None = None, max_steps_per_epoch: int | None = None,
                  progress: bool = True, console: Console | None = None, split: str | None = None,
                  jobs: int = 1, table1_with: Sequence[str] = (), backbone: str | None = None) -> Settings:
    """Validate the user's choices and build ``Settings``.

    Raises ``ValueError`` (no seeds, repeated seeds, bad epochs, unknown preset via
    ``KeyError``) or ``FileNotFoundError`` (a data root that is not a folder). ``data=None``: MA-52
    assumed, no root (``ASSUMED_MA52``); only a plan can be made from such settings.
    """
    plan_only = data is None
    data = ASSUMED_MA52 if data is None else data
    if not seeds:
        raise ValueError("--seeds is empty: give at least one seed, e.g. --seeds 0 1 2")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds repeats a seed: {list(seeds)}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    source = resolve_source(data)
    if not plan_only and source.kind == "missing":
        raise FileNotFoundError(f"{data}: data root does not exist (give an MA-52 folder, a prepared cache, a "
                                "manifest .csv or 'synth')")
    over: dict[str, Any] = {"data.root": source.config_root}
    if epochs is not None:
        over["optim.epochs"] = epochs
    if max_steps_per_epoch is not None:
        over["max_steps_per_epoch"] = max_steps_per_epoch
    if split is not None:
        over["data.split"] = split
    if backbone is not None:  # every row on this backbone (its own input size with the paper preset)
        over.update(backbone_overrides(backbone, native_input=preset == "paper"))
    base = with_overrides(get_preset(preset), over)
    for b in table1_with:
        specs.backbone_rows(b, native_input=False)  # an unknown or X3D backbone fails here
    root = out if out is not None else Path("artifacts") / "reproduce" / data_tag(data, preset)
    return Settings(root=root, base=base, preset=preset, seeds=tuple(seeds), device=device, progress=progress,
                    console=console or Console(stderr=True), jobs=jobs,
                    banner=SYNTH_BANNERS[base.data.synth_task] if source.kind == "synth" else None,
                    table1_with=tuple(table1_with))


# ----------------------------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One (row, seed) training run."""

    row: RowSpec
    seed: int
    cfg: TrainConfig
    run_dir: Path

    @property
    def state(self) -> State:
        """``done`` (result.json exists), ``resume`` (a started run: last.safetensors or config.json, no
        result) or ``new``."""
        if (self.run_dir / RESULT_FILE).is_file():
            return "done"
        if (self.run_dir / CHECKPOINT).is_file() or (self.run_dir / "config.json").is_file():
            return "resume"
        return "new"


def jobs_for(settings: Settings, spec: ExperimentSpec, seeds: Sequence[int] | None = None) -> list[Job]:
    """The (row, seed) runs ``spec`` needs: every seed, except Fig. 4 (one seed's t-SNE, no verdict). Fig. 5 and
    Fig. 6 draw the first seed and take their verdicts from all (``piumr.reproduce.verdicts``)."""
    use = tuple(seeds) if seeds is not None else (settings.seeds[:1] if spec.name == "fig4" else settings.seeds)
    jobs = []
    for row in spec.rows:
        for seed in use:
            cfg = specs.build_config(settings.base, row, seed)
            jobs.append(Job(row, seed, cfg, settings.root / "runs" / specs.run_slug(cfg) / f"seed{seed}"))
    return jobs


def ensure_run(settings: Settings, job: Job) -> dict[str, Any]:
    """The result of ``job``: read when finished, else trained (or resumed), evaluated and written."""
    state = job.state
    con = settings.console
    if state == "done":
        con.print(f"[dim]skip[/] {job.row.key} seed {job.seed}: {job.run_dir / RESULT_FILE} exists")
        loaded: dict[str, Any] = json.loads((job.run_dir / RESULT_FILE).read_text())
        return loaded
    verb = "resume" if state == "resume" else "train"
    con.print(f"[bold]{verb}[/] {job.row.key} ({job.row.label}) seed {job.seed} -> {job.run_dir}")
    t0 = time.time()
    tr = settings.train_fn(job.cfg, job.run_dir, resume=state == "resume", device=settings.device,
                           progress=settings.progress, console=con)
    ev = settings.eval_fn(job.run_dir, job.cfg, settings.device)
    seen = settings.seen_fn(job.run_dir, job.cfg, settings.device)
    payload: dict[str, Any] = {
        "run": job.run_dir.parent.name,
        "seed": job.seed,
        "split": "val",
        "checkpoint": CHECKPOINT,
        "metrics": {k: float(v) for k, v in ev.official.items()},
        "participants": None if ev.participants is None else {
            k: (dict(v) if isinstance(v, dict) else v) for k, v in ev.participants.items()},
        "seen": None if seen is None else {
            "split": "val_seen", "metrics": {k: float(v) for k, v in seen.official.items()},
            "participants": None if seen.participants is None else {
                k: (dict(v) if isinstance(v, dict) else v) for k, v in seen.participants.items()}},
        "train": {"epochs": tr.epochs, "steps": tr.steps, "best_val_f1_mean": _finite(tr.best_metric),
                  "final_val": tr.final, "skipped_clips": len(tr.skipped), "seconds": tr.seconds,
                  "resumed": state == "resume"},
        "seconds_this_invocation": time.time() - t0,
        "config": job.cfg.model_dump(mode="json"),
        "provenance": provenance(str(pick_device(settings.device))),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(job.run_dir / RESULT_FILE, payload)
    return payload


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


_PARALLEL: tuple[Settings, list[Job]] | None = None  # what forked workers read (set before the pool starts)


def _worker_init(threads: int, parent: int) -> None:
    """A training process of ``run_jobs``: dies with ``parent`` (the reproduce command), ``threads`` threads."""
    die_with_parent(parent)
    torch.set_num_threads(threads)


def _run_in_worker(index: int) -> dict[str, Any]:
    assert _PARALLEL is not None, "worker started without its jobs"
    settings, jobs = _PARALLEL
    return ensure_run(settings, jobs[index])


def warm_memory_cache(settings: Settings, jobs: Sequence[Job]) -> None:
    """Decode the clips the jobs will read into the process-wide memory cache (before forking workers)."""
    seen: set[tuple[str, ...]] = set()
    for job in jobs:
        d = job.cfg.data
        key = (d.root, d.split, str(d.fold), str(d.seen_holdout), d.backend, str(d.short_side))
        if key in seen:
            continue
        seen.add(key)
        for split in ("train", "val", "val_seen"):
            records = load_split(d, split, progress=settings.progress)
            if records:
                build_dataset(job.cfg, records, "eval")


def run_jobs(settings: Settings, jobs: list[Job]) -> dict[str, list[dict[str, Any]]]:
    """Results of ``jobs`` by row key; pending jobs run ``settings.jobs`` at a time in forked processes."""
    global _PARALLEL
    pending = [i for i, j in enumerate(jobs) if j.state != "done"]
    results: dict[int, dict[str, Any]] = {}
    parallel = settings.jobs > 1 and len(pending) > 1 and "fork" in multiprocessing.get_all_start_methods()
    if parallel and pick_device(settings.device).type != "cpu":
        # a forked child cannot use the CUDA context its parent already made ("Cannot re-initialize CUDA in
        # forked subprocess"), and the trainings would share one GPU anyway: one at a time
        settings.console.print(f"--jobs {settings.jobs}: trainings run one at a time on "
                               f"{pick_device(settings.device)} (parallel trainings are for CPU runs)")
        parallel = False
    if parallel:
        warm_memory_cache(settings, [jobs[i] for i in pending])
        workers = min(settings.jobs, len(pending))
        # physical cores shared by the trainings, each minus its loader workers; OMP_NUM_THREADS can only lower it
        threads = thread_budget(None, jobs[pending[0]].cfg.data.num_workers, max(1, physical_cores() // workers),
                                os.environ.get("OMP_NUM_THREADS"))
        quiet = dataclasses.replace(settings, progress=False)
        _PARALLEL = (quiet, jobs)
        settings.console.print(f"running {len(pending)} trainings, {workers} at a time ({threads} thread(s) each)")
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                     initializer=_worker_init, initargs=(threads, os.getpid())) as pool:
                for i, res in zip(pending, pool.map(_run_in_worker, pending)):
                    results[i] = res
        finally:
            _PARALLEL = None
    out: dict[str, list[dict[str, Any]]] = {}
    for i, job in enumerate(jobs):
        out.setdefault(job.row.key, []).append(results[i] if i in results else ensure_run(settings, job))
    return out


#: a run whose most frequent prediction covers at least this share of its validation clips is "collapsed"
COLLAPSE_SHARE = 0.9


def largest_predicted_share(run_dir: Path) -> float | None:
    """Share of ``run_dir``'s validation clips given its most frequent top-1 class (``predictions_val.csv``,
    written by the training's final evaluation); ``None`` when the file is missing or empty."""
    path = run_dir / "predictions_val.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        preds = [row["pred_1"] for row in csv.DictReader(f)]
    if not preds:
        return None
    return max(preds.count(p) for p in set(preds)) / len(preds)


def collapse_warnings(jobs: Sequence[Job]) -> list[str]:
    """One line per run that predicts one class for >= ``COLLAPSE_SHARE`` of its validation clips."""
    out = []
    for job in jobs:
        share = largest_predicted_share(job.run_dir)
        if share is not None and share >= COLLAPSE_SHARE:
            out.append(f"row {job.row.key} seed {job.seed} predicts one class for {share:.0%} of its validation "
                       "clips (collapsed: its numbers measure a failed training, not the method)")
    return out

