"""Run the rows of a spec (skip finished runs, resume interrupted ones), aggregate seeds, write results.

Layout under the output root (default ``artifacts/reproduce/<data-tag>/``)::

    runs/<slug>-<config key>/seed<k>/   one training run: config.json, log.jsonl, last/best.safetensors,
                                        summary.json, result.json (metrics, full config, seed, provenance)
    <experiment>/table.json, table.tex  the table (measured rows, reported rows, marks)
    <experiment>/rows/<row>.json        every seed's result + the aggregate of one row
    <experiment>/<figure>.png, .pdf     figures (+ <figure>.json with the plotted numbers)

Runs are keyed by their canonical config (``specs.config_key``), so a model
two tables need (Table 2 row c = Table 3 row a; the X3D baseline and PIUmr of
Table 1, Table 2 and Fig. 4-6) is trained once. A run whose ``result.json``
exists is skipped; one with ``last.safetensors`` but no result is resumed
(``train(resume=True)``); anything else is trained from scratch.

Measured numbers are the *final* model (``last.safetensors``, end of the
schedule) evaluated on the ``val`` split of its config (the held-out persons
for ``data.split="cross-subject"``): no checkpoint selection on the data that
is reported. MA-52's test labels are hidden (test scores come from the
challenge server: ``piumr predict --submission``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import torch
from rich.console import Console

from piumr.checkpoint import load_model, provenance
from piumr.config import TrainConfig, get_preset, with_overrides
from piumr.data.loaders import eval_loader
from piumr.data.ma52 import ClipRecord
from piumr.data.splits import load_split
from piumr.evaluate import collect_scores, evaluate_checkpoint
from piumr.files import write_json_atomic
from piumr.metrics import EvalResult
from piumr.model import PIUmrNet
from piumr.reproduce import figures as F
from piumr.reproduce import specs
from piumr.reproduce.specs import ExperimentSpec, RowSpec
from piumr.reproduce.writers import Cell, ResultTable, TableRow, cells_from_values, table_to_rich, write_table
from piumr.runtime import pick_device
from piumr.train import TrainResult, train

__all__ = [
    "RESULT_FILE", "TrainFn", "EvalFn", "Settings", "Job", "ExperimentOutput", "make_settings", "data_tag",
    "jobs_for", "ensure_run", "run_experiment", "run_many", "build_table", "evaluate_run", "expand_names",
    "print_result",
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


def evaluate_run(run_dir: Path, cfg: TrainConfig, device: str | None) -> EvalResult:
    """Final model (``last.safetensors``) of ``run_dir`` on the val split of ``cfg.data``."""
    dev = pick_device(device)
    model, ck = load_model(run_dir / CHECKPOINT, map_location=dev)
    result, _ = evaluate_checkpoint(model, ck.config, split="val", out_dir=None, device=dev,
                                    progress=False, data=cfg.data)
    return result


def _final_model_and_val(run_dir: Path, cfg: TrainConfig, device: str | None
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
    landscape_steps: int = 7  # Fig. 6 grid (steps x steps)
    landscape_batches: int = 2  # Fig. 6 val batches
    max_points: int = 2000  # Fig. 4 / 5 embeddings (random subset of val)
    _embeddings: dict[Path, tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]] = field(default_factory=dict)


#: the data root of settings made without ``--data`` (plans only): MA-52's published sizes are assumed
ASSUMED_MA52 = "MA-52"


def data_tag(data: str, preset: str) -> str:
    """Folder name for a data root + preset: ``synth-tiny``, ``MA-52`` (the paper preset adds nothing)."""
    name = "synth" if data == "synth" else (Path(data).expanduser().resolve().name or "data")
    return name if preset == "paper" else f"{name}-{preset}"


def make_settings(*, data: str | None, preset: str = "paper", seeds: Sequence[int] = (0,), epochs: int | None = None,
                  out: Path | None = None, device: str | None = None, max_steps_per_epoch: int | None = None,
                  progress: bool = True, console: Console | None = None) -> Settings:
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
    if data != "synth" and not plan_only and not Path(data).expanduser().is_dir():
        raise FileNotFoundError(f"{data}: data root does not exist (give an MA-52 folder, a prepared cache, or 'synth')")
    over: dict[str, Any] = {"data.root": data if data == "synth" else str(Path(data).expanduser())}
    if epochs is not None:
        over["optim.epochs"] = epochs
    if max_steps_per_epoch is not None:
        over["max_steps_per_epoch"] = max_steps_per_epoch
    base = with_overrides(get_preset(preset), over)
    root = out if out is not None else Path("artifacts") / "reproduce" / data_tag(data, preset)
    return Settings(root=root, base=base, preset=preset, seeds=tuple(seeds), device=device, progress=progress,
                    console=console or Console(stderr=True))


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
        """``done`` (result.json exists), ``resume`` (last.safetensors, no result) or ``new``."""
        if (self.run_dir / RESULT_FILE).is_file():
            return "done"
        if (self.run_dir / CHECKPOINT).is_file():
            return "resume"
        return "new"


def jobs_for(settings: Settings, spec: ExperimentSpec, seeds: Sequence[int] | None = None) -> list[Job]:
    """The (row, seed) runs ``spec`` needs; figures use the first seed only."""
    use = tuple(seeds) if seeds is not None else (settings.seeds[:1] if spec.kind == "figure" else settings.seeds)
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
    payload: dict[str, Any] = {
        "run": job.run_dir.parent.name,
        "seed": job.seed,
        "split": "val",
        "checkpoint": CHECKPOINT,
        "metrics": {k: float(v) for k, v in ev.official.items()},
        "participants": None if ev.participants is None else {
            k: (dict(v) if isinstance(v, dict) else v) for k, v in ev.participants.items()},
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


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------
def _row_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Official metrics + participant summaries (``p_*``) of one run result."""
    m = dict(result["metrics"])
    p = result.get("participants")
    if p:
        m.update(p_mean=p["mean"], p_std=p["std"], p_worst=p["worst_acc"], p_worst10=p["worst10_acc"])
    return m


def build_table(spec: ExperimentSpec, results: dict[str, list[dict[str, Any]]]) -> ResultTable:
    """The table of ``spec`` from run results (``{row key: [result per seed]}``) plus the reported rows."""
    rows: list[TableRow] = []
    for rep in spec.reported:
        cells = {c: Cell((v,)) for c, v in rep.values.items() if c in spec.columns}
        rows.append(TableRow(rep.name, rep.name, cells, reported=True, citation=f"{rep.citation}; paper {rep.source}"))
    for row in spec.rows:
        res = results.get(row.key, [])
        if not res:
            continue
        paper_vals = row.paper.values if row.paper is not None else None
        cells = cells_from_values([_row_metrics(r) for r in res], spec.columns, paper_vals)
        rows.append(TableRow(row.key, row.label, cells, switches=row.switches,
                             seeds=tuple(int(r["seed"]) for r in res)))
    return ResultTable(spec.name, spec.title, spec.columns, specs.COLUMN_NAMES, tuple(rows), spec.switch_columns,
                       spec.source, spec.notes, specs.LOWER_IS_BETTER)


@dataclass
class ExperimentOutput:
    """What one experiment produced."""

    name: str
    out_dir: Path
    files: list[Path]
    table: ResultTable | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _run_jobs(settings: Settings, jobs: list[Job]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        out.setdefault(job.row.key, []).append(ensure_run(settings, job))
    return out


def _write_rows(out_dir: Path, spec: ExperimentSpec, jobs: list[Job], table: ResultTable,
                results: dict[str, list[dict[str, Any]]]) -> list[Path]:
    paths = []
    by_key = {r.key: r for r in table.rows if not r.reported}
    for row in spec.rows:
        if row.key not in results:
            continue
        tr = by_key[row.key]
        payload = {
            "experiment": spec.name, "row": row.key, "label": row.label, "overrides": row.overrides,
            "run_dirs": [str(j.run_dir) for j in jobs if j.row.key == row.key],
            "paper": None if row.paper is None else {"values": row.paper.values, "source": row.paper.source,
                                                     "notes": list(row.paper.notes)},
            "aggregate": {c: {"mean": cell.mean, "std": cell.std, "n": cell.n, "paper": cell.paper,
                              "diff": cell.diff} for c, cell in tr.cells.items()},
            "seeds": results[row.key],
        }
        p = out_dir / "rows" / f"{row.key}.json"
        write_json_atomic(p, payload)
        paths.append(p)
    return paths


def _table_experiment(settings: Settings, spec: ExperimentSpec, out_dir: Path) -> ExperimentOutput:
    jobs = jobs_for(settings, spec)
    results = _run_jobs(settings, jobs)
    table = build_table(spec, results)
    files = write_table(table, out_dir) + _write_rows(out_dir, spec, jobs, table, results)
    summary: dict[str, Any] = {}
    if spec.kind == "person-shift":
        per: dict[str, list[float]] = {}
        for row in spec.rows:
            for r in results.get(row.key, []):
                if r.get("participants"):
                    per.setdefault(row.label.split(" (")[0], []).extend(r["participants"]["per_participant"].values())
        if per:
            files += F.participant_figure(per, out_dir / "per_participant")
        summary = {r.key: {c: cell.mean for c, cell in r.cells.items()} for r in table.rows}
    return ExperimentOutput(spec.name, out_dir, files, table, summary)


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------
def _embeddings(settings: Settings, job: Job) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Val embeddings (N, D) and action labels (N,) of a finished run (cached per process)."""
    key = job.run_dir.resolve()
    if key not in settings._embeddings:
        model, records, dev = _final_model_and_val(job.run_dir, job.cfg, settings.device)
        scores = collect_scores(model, eval_loader(job.cfg, records), dev, amp=job.cfg.optim.amp,
                                keep_embeddings=True)
        if scores.embeddings is None:
            raise RuntimeError(f"{job.run_dir}: no embeddings were collected")
        settings._embeddings[key] = (scores.embeddings.astype(np.float64), scores.labels.astype(np.int64))
    return settings._embeddings[key]


def _figure_experiment(settings: Settings, spec: ExperimentSpec, out_dir: Path) -> ExperimentOutput:
    jobs = jobs_for(settings, spec)
    for job in jobs:
        ensure_run(settings, job)
    names = {job.row.key: job.row.label.split(" (")[0] for job in jobs}
    used = {names[j.row.key]: str(j.run_dir / CHECKPOINT) for j in jobs}
    seed = settings.seeds[0]
    data: dict[str, Any] = {"checkpoints": used, "seed": seed, "split": "val"}
    if spec.name in ("fig4", "fig5"):
        emb = {names[j.row.key]: _embeddings(settings, j) for j in jobs}
        n = min(len(e[1]) for e in emb.values())
        idx = F.subsample(n, settings.max_points, seed)
        data["clips"] = int(idx.size)
        if spec.name == "fig4":
            pts = {k: (F.tsne_2d(e[idx], seed), y[idx]) for k, (e, y) in emb.items()}
            files = F.tsne_figure(pts, out_dir / "fig4_tsne")
        else:
            sims = {k: F.cosine_similarities(e[idx], y[idx]) for k, (e, y) in emb.items()}
            data["similarity"] = {k: {"inter_mean": _mean(a), "intra_mean": _mean(b),
                                      "gap_intra_minus_inter": _mean(b) - _mean(a),
                                      "inter_pairs": int(a.size), "intra_pairs": int(b.size)}
                                  for k, (a, b) in sims.items()}
            files = F.similarity_figure(sims, out_dir / "fig5_similarity")
    else:
        files, data["landscape"] = _landscape(settings, jobs, names, out_dir)
    p = out_dir / f"{spec.name}.json"
    write_json_atomic(p, data)
    return ExperimentOutput(spec.name, out_dir, [*files, p], None, data)


def _mean(x: npt.NDArray[np.float64]) -> float:
    return float(x.mean()) if x.size else float("nan")


def _landscape(settings: Settings, jobs: list[Job], names: dict[str, str],
               out_dir: Path) -> tuple[list[Path], dict[str, Any]]:
    cfg = jobs[0].cfg
    _, records, dev = _final_model_and_val(jobs[0].run_dir, cfg, settings.device)
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    for b in eval_loader(cfg, records):
        batches.append((b["video"].to(dev), b["action"].to(dev)))
        if len(batches) >= settings.landscape_batches:
            break
    surfaces = {}
    for job in jobs:
        model, _ = load_model(job.run_dir / CHECKPOINT, map_location=dev)
        coords, surf = F.loss_landscape(model, batches, steps=settings.landscape_steps,
                                        seed=settings.seeds[0])
        surfaces[names[job.row.key]] = (coords, surf)
    files = F.landscape_figure(surfaces, out_dir / "fig6_landscape")
    data: dict[str, Any] = {k: {"coords": c.tolist(), "loss": s.tolist(), "centre": float(s[len(c) // 2, len(c) // 2]),
                "mean_rise": float(s.mean() - s[len(c) // 2, len(c) // 2])} for k, (c, s) in surfaces.items()}
    data["clips"] = sum(int(b[1].shape[0]) for b in batches)
    return files, data


# ----------------------------------------------------------------------------------------------
# entry points
# ----------------------------------------------------------------------------------------------
def expand_names(names: Sequence[str]) -> list[str]:
    """Resolve aliases and ``all``; unknown names raise ``ValueError``; duplicates dropped, order kept."""
    out: list[str] = []
    for n in names:
        for m in (specs.ALL_ORDER if n == "all" else (n,)):
            key = specs.get_experiment(m).name
            if key not in out:
                out.append(key)
    return out


def run_experiment(settings: Settings, name: str) -> ExperimentOutput:
    """Run (or finish) experiment ``name`` and write its files under ``settings.root / name``."""
    t0 = time.time()
    spec = specs.get_experiment(name)
    out_dir = settings.root / spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    if spec.kind == "figure":
        res = _figure_experiment(settings, spec, out_dir)
    else:
        res = _table_experiment(settings, spec, out_dir)
    res.seconds = time.time() - t0
    return res


def run_many(settings: Settings, names: Sequence[str],
             on_done: Callable[[ExperimentOutput], None] | None = None) -> list[ExperimentOutput]:
    """``run_experiment`` for each of ``names`` (``all`` and aliases expanded), in order."""
    outs = []
    for n in expand_names(names):
        res = run_experiment(settings, n)
        if on_done is not None:
            on_done(res)
        outs.append(res)
    return outs


def print_result(res: ExperimentOutput, console: Console) -> None:
    """Print a finished experiment: its table (if any) and where its files are."""
    if res.table is not None:
        console.print(table_to_rich(res.table))
    if res.name == "fig5" and "similarity" in res.summary:
        for k, v in res.summary["similarity"].items():
            console.print(f"{k}: mean cosine inter-class {v['inter_mean']:.3f}, intra-class {v['intra_mean']:.3f}")
    console.print(f"[bold]{res.name}[/] done in {res.seconds:.0f} s; files:")
    for f in res.files:
        console.print(f"  {f}")
