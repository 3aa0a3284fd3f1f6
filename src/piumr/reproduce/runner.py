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

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from rich.console import Console

from piumr.backbones import backbone_spec
from piumr.checkpoint import load_model
from piumr.data.loaders import eval_loader
from piumr.evaluate import collect_scores
from piumr.files import write_json_atomic
from piumr.reproduce import figures as F
from piumr.reproduce import paired, specs
from piumr.reproduce.runs import (
    CHECKPOINT, RESULT_FILE, SYNTH_BANNER, EvalFn, Job, SeenEvalFn, Settings, TrainFn, collapse_warnings, data_tag,
    ensure_run,
    evaluate_run, evaluate_seen_run, final_model_and_val, jobs_for, make_settings, run_jobs, warm_memory_cache,
)
from piumr.reproduce.specs import ExperimentSpec
from piumr.reproduce.verdicts import fig5_finding, fig6_finding, landscape_stats
from piumr.reproduce.writers import (
    Cell, ResultTable, TableRow, cells_from_values, paper_apart, table_to_rich, write_table,
)
from piumr.source import resolve_source

__all__ = [
    "RESULT_FILE", "SYNTH_BANNER", "TrainFn", "EvalFn", "SeenEvalFn", "Settings", "Job", "ExperimentOutput",
    "make_settings", "data_tag", "jobs_for", "ensure_run", "run_experiment", "run_many", "build_table", "FIGURES",
    "FigureFn", "figure_builder",
    "evaluate_run", "evaluate_seen_run", "warm_memory_cache", "with_banner", "expand_names", "print_result",
]

# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------
def _row_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Official metrics + participant summaries (``p_*``) of one run result."""
    m = dict(result["metrics"])
    p = result.get("participants")
    if p:
        m.update(p_mean=p["mean"], p_std=p["std"], p_worst=p["worst_acc"], p_worst10=p["worst10_acc"])
    seen = result.get("seen")
    if seen:
        m.update(seen_top1=seen["metrics"]["action_top1"], seen_f1_mean=seen["metrics"]["f1_mean"],
                 gap_top1=seen["metrics"]["action_top1"] - m["action_top1"])
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


def with_banner(table: ResultTable, banner: str | None) -> ResultTable:
    """``table`` with ``banner`` prefixed to its title (JSON, LaTeX caption, console) and first in its notes."""
    if not banner:
        return table
    return dataclasses.replace(table, title=f"[{banner}] {table.title}", notes=(banner, *table.notes))


@dataclass
class ExperimentOutput:
    """What one experiment produced."""

    name: str
    out_dir: Path
    files: list[Path]
    table: ResultTable | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


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
    results = run_jobs(settings, jobs)
    table = with_banner(build_table(spec, results), settings.banner)
    if resolve_source(settings.base.data.root).kind == "synth":  # the paper's MA-52 numbers: apart, never differenced
        table = paper_apart(table)
    table = dataclasses.replace(table, warnings=tuple(collapse_warnings(jobs)))
    files = write_table(table, out_dir) + _write_rows(out_dir, spec, jobs, table, results)
    summary: dict[str, Any] = {"speed": _speed(results)}
    if spec.paired is not None and all(k in results for k in spec.paired):
        metrics = tuple(m for m in (*paired.METRICS, *paired.SEEN_METRICS)
                        if all(_has_metric(r, m) for rs in results.values() for r in rs))
        diff = paired.compare_rows(out_dir, *spec.paired, metrics=metrics)
        if spec.kind == "person-shift" and all(r.get("participants") for k in spec.paired for r in results[k]):
            diff["resolution"] = paired.person_resolution(out_dir, *spec.paired)
        write_json_atomic(out_dir / "paired.json", diff)
        files.append(out_dir / "paired.json")
        summary["paired"] = diff
    if spec.kind == "person-shift":
        per: dict[str, list[float]] = {}
        for row in spec.rows:
            for r in results.get(row.key, []):
                if r.get("participants"):
                    per.setdefault(row.label.split(" (")[0], []).extend(r["participants"]["per_participant"].values())
        if per:
            files += F.participant_figure(per, out_dir / "per_participant", settings.banner,
                                          specs.chance_percent(jobs[0].cfg.model_dump()))
        summary.update({r.key: {c: cell.mean for c, cell in r.cells.items()} for r in table.rows})
    return ExperimentOutput(spec.name, out_dir, files, table, summary)


def _has_metric(result: dict[str, Any], metric: str) -> bool:
    if metric == "seen_top1":
        return bool(result.get("seen"))
    return metric in result["metrics"] or bool(result.get("participants"))


def _speed(results: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Training cost of the runs behind a table: count, mean seconds per run, clips/s (from result.json)."""
    runs = [r for rs in results.values() for r in rs]
    secs = [float(r["train"]["seconds"]) for r in runs]
    clips = [float(r["train"]["steps"]) * int(r["config"]["optim"]["batch_size"]) for r in runs]
    total = sum(secs)
    return {"runs": len(runs), "mean_seconds_per_run": total / max(len(runs), 1),
            "clips_per_s": sum(clips) / total if total > 0 else float("nan")}


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------
def _embeddings(settings: Settings, job: Job) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Val embeddings (N, D) and action labels (N,) of a finished run (cached per process)."""
    key = job.run_dir.resolve()
    if key not in settings._embeddings:
        model, records, dev = final_model_and_val(job.run_dir, job.cfg, settings.device)
        scores = collect_scores(model, eval_loader(job.cfg, records), dev, amp=job.cfg.optim.amp,
                                keep_embeddings=True)
        if scores.embeddings is None:
            raise RuntimeError(f"{job.run_dir}: no embeddings were collected")
        settings._embeddings[key] = (scores.embeddings.astype(np.float64), scores.labels.astype(np.int64))
    return settings._embeddings[key]


#: a figure's builder: (settings, each seed's finished jobs in the order asked, row key -> model name, the
#: experiment's folder, its JSON so far) -> the files it drew; it adds the plotted numbers to the JSON
FigureFn = Callable[[Settings, dict[int, list[Job]], dict[str, str], Path, dict[str, Any]], list[Path]]


def _fig4(settings: Settings, by_seed: dict[int, list[Job]], names: dict[str, str], out_dir: Path,
          data: dict[str, Any]) -> list[Path]:
    """Fig. 4: t-SNE of the first seed's validation embeddings."""
    seed = next(iter(by_seed))
    emb = {names[j.row.key]: _embeddings(settings, j) for j in by_seed[seed]}
    idx = F.subsample(min(len(e[1]) for e in emb.values()), settings.max_points, seed)
    data["clips"] = int(idx.size)
    pts = {k: (F.tsne_2d(e[idx], seed), y[idx]) for k, (e, y) in emb.items()}
    return F.tsne_figure(pts, out_dir / "fig4_tsne", settings.banner)


def _fig5(settings: Settings, by_seed: dict[int, list[Job]], names: dict[str, str], out_dir: Path,
          data: dict[str, Any]) -> list[Path]:
    """Fig. 5: every seed's similarity statistics and the finding over seeds; the histograms are the first
    seed's (the figure's title says which)."""
    seeds = list(by_seed)
    seed = seeds[0]
    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    first: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
    for s in seeds:
        emb = {names[j.row.key]: _embeddings(settings, j) for j in by_seed[s]}
        idx = F.subsample(min(len(e[1]) for e in emb.values()), settings.max_points, seed)
        sims = {k: F.cosine_similarities(e[idx], y[idx]) for k, (e, y) in emb.items()}
        per_seed[s] = {k: _similarity_stats(a, b) for k, (a, b) in sims.items()}
        if s == seed:
            first, data["clips"] = sims, int(idx.size)
    data["similarity"] = per_seed[seed]
    data["similarity_by_seed"] = {str(s): v for s, v in per_seed.items()}
    data["finding"] = fig5_finding(per_seed)
    note = F.figure_note(settings.banner, data["finding"])
    return F.similarity_figure(first, out_dir / "fig5_similarity", note, title=F.similarity_title(seed, seeds))


def _fig6(settings: Settings, by_seed: dict[int, list[Job]], names: dict[str, str], out_dir: Path,
          data: dict[str, Any]) -> list[Path]:
    """Fig. 6: every seed's loss landscape statistics; the surfaces drawn are the first seed's."""
    files, data["landscape"], data["landscape_by_seed"], data["finding"] = _landscape(settings, by_seed, names,
                                                                                     out_dir)
    return files


#: every figure experiment's builder, by the experiment's name (``specs.EXPERIMENTS``)
FIGURES: dict[str, FigureFn] = {"fig4": _fig4, "fig5": _fig5, "fig6": _fig6}


def figure_builder(name: str) -> FigureFn:
    """The builder of figure ``name``; ``ValueError`` listing the figures otherwise."""
    if name not in FIGURES:
        raise ValueError(f"no figure named {name!r}; the figures are {', '.join(FIGURES)}")
    return FIGURES[name]


def _figure_experiment(settings: Settings, spec: ExperimentSpec, out_dir: Path) -> ExperimentOutput:
    draw = figure_builder(spec.name)  # before any training
    jobs = jobs_for(settings, spec)
    run_jobs(settings, jobs)
    names = {job.row.key: job.row.label.split(" (")[0] for job in jobs}
    seeds = list(dict.fromkeys(j.seed for j in jobs))  # in the order asked
    seed = seeds[0]
    by_seed = {s: [j for j in jobs if j.seed == s] for s in seeds}
    used = {names[j.row.key]: str(j.run_dir / CHECKPOINT) for j in by_seed[seed]}
    data: dict[str, Any] = {"checkpoints": used, "seed": seed, "seeds": seeds, "split": "val"}
    files = draw(settings, by_seed, names, out_dir, data)
    p = out_dir / f"{spec.name}.json"
    write_json_atomic(p, data)
    return ExperimentOutput(spec.name, out_dir, [*files, p], None, data)


def _mean(x: npt.NDArray[np.float64]) -> float:
    return float(x.mean()) if x.size else float("nan")


def _similarity_stats(inter: npt.NDArray[np.float64], intra: npt.NDArray[np.float64]) -> dict[str, float]:
    """Fig. 5's numbers of one model and seed from its inter- and intra-class pair cosines (1-D arrays)."""
    return {"inter_mean": _mean(inter), "intra_mean": _mean(intra), "gap_intra_minus_inter": _mean(intra) - _mean(inter),
            "inter_pairs": int(inter.size), "intra_pairs": int(intra.size)}


def _landscape(settings: Settings, by_seed: dict[int, list[Job]], names: dict[str, str],
               out_dir: Path) -> tuple[list[Path], dict[str, Any], dict[str, Any], str]:
    """Fig. 6 on every seed's pair of runs (each on the same first val batches); the figure shows the first
    seed. Returns (files, first seed's surfaces, ``{seed: {model: landscape_stats}}``, the finding)."""
    seeds = list(by_seed)
    jobs = by_seed[seeds[0]]
    cfg = jobs[0].cfg
    _, records, dev = final_model_and_val(jobs[0].run_dir, cfg, settings.device)
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    for b in eval_loader(cfg, records):
        batches.append((b["video"].to(dev), b["action"].to(dev)))
        if len(batches) >= settings.landscape_batches:
            break
    surfaces: dict[int, dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]] = {}
    for s, seed_jobs in by_seed.items():
        surfaces[s] = {}
        for job in seed_jobs:
            model, _ = load_model(job.run_dir / CHECKPOINT, map_location=dev)
            surfaces[s][names[job.row.key]] = F.loss_landscape(model, batches, steps=settings.landscape_steps,
                                                               seed=settings.seeds[0])
    per_seed = {s: {k: landscape_stats(surf) for k, (_, surf) in v.items()} for s, v in surfaces.items()}
    finding = fig6_finding(per_seed)
    note = F.figure_note(settings.banner, finding)
    files = F.landscape_figure(surfaces[seeds[0]], out_dir / "fig6_landscape", note, seed=seeds[0], seeds=len(seeds))
    first: dict[str, Any] = {k: {"coords": c.tolist(), "loss": surf.tolist(), **per_seed[seeds[0]][k]}
                             for k, (c, surf) in surfaces[seeds[0]].items()}
    first["clips"] = sum(int(b[1].shape[0]) for b in batches)
    return files, first, {str(s): v for s, v in per_seed.items()}, finding


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


def experiment_spec(settings: Settings, name: str) -> ExperimentSpec:
    """The spec of ``name``; Table 1 gains the ``settings.table1_with`` backbones' rows (their own input
    size with the paper preset, the preset's otherwise). With ``--backbone`` the rows say so."""
    spec = specs.get_experiment(name)
    bb = settings.base.model.backbone
    if backbone_spec(bb).family != "x3d":  # --backbone: the X3D rows run on bb; the paper's X3D values do not apply
        spec = replace(spec, rows=tuple(replace(r, label=_on_backbone(r.label, bb), paper=None) for r in spec.rows))
    if spec.name == "table1" and settings.table1_with:
        extra = specs.table1_with(settings.table1_with, native_input=settings.preset == "paper")
        return replace(extra, rows=spec.rows + extra.rows[len(spec.rows):])
    return spec


def _on_backbone(label: str, backbone: str) -> str:
    """A row label for a run on a non-X3D ``backbone``: X3D is replaced and nothing is called PIUmr."""
    return specs.arm_label(label.replace("X3D", backbone).replace("(PIUmr)", f"({backbone} + TFAM + GIRL)"))


#: how each kind of experiment (``specs.Kind``) is run: its rows trained, then a table or a figure
_BY_KIND: dict[specs.Kind, Callable[[Settings, ExperimentSpec, Path], ExperimentOutput]] = {
    "table": _table_experiment, "person-shift": _table_experiment, "figure": _figure_experiment}


def run_experiment(settings: Settings, name: str) -> ExperimentOutput:
    """Run (or finish) experiment ``name`` and write its files under ``settings.root / name``."""
    t0 = time.time()
    spec = experiment_spec(settings, name)
    out_dir = settings.root / spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    res = _BY_KIND[spec.kind](settings, spec, out_dir)
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


def _print_resolution(r: dict[str, Any], t_half: float | None, console: Console) -> None:
    """The line that says what the paired comparison can resolve (``paired.person_resolution``)."""
    persons = "/".join(str(n) for n in sorted(set(r["persons_per_seed"])))
    seeds = len(r["seeds"])
    t_part = (f" (the t interval over seeds above: +-{t_half:.1f})" if t_half is not None and math.isfinite(t_half)
              else "")
    console.print(f"resolution: {r['b']} - {r['a']} unseen-person Top-1 {r['diff']:+.1f} points, 95 % interval "
                  f"[{r['lo']:+.1f}, {r['hi']:+.1f}] (bootstrap clustered by person x seed, {seeds} seeds x {persons} "
                  f"held-out persons): person and clip noise alone limit this comparison to differences beyond "
                  f"+-{r['half_width']:.1f} points (minimum detectable effect {r['mde']:.1f} points at 80 % power); "
                  f"the seed-to-seed spread comes on top, and {seeds} seeds barely sample it{t_part}.", highlight=False)


def print_result(res: ExperimentOutput, console: Console) -> None:
    """Print a finished experiment: its table (if any) and where its files are."""
    if res.table is not None:
        console.print(table_to_rich(res.table))
    if "paired" in res.summary:
        d = res.summary["paired"]
        console.print(f"paired difference {d['b']} - {d['a']} over seeds {d['seeds']} (mean, 95 % t interval):")
        for m, v in d["diffs"].items():
            console.print(f"  {specs.COLUMN_NAMES.get(m, m):22s} {v['a_mean']:6.2f} -> {v['b_mean']:6.2f}  "
                          f"diff {v['mean']:+6.2f}  [{v['lo']:+6.2f}, {v['hi']:+6.2f}]", highlight=False)
        if "resolution" in d:
            top1 = d["diffs"].get("action_top1")
            _print_resolution(d["resolution"], None if top1 is None else (top1["hi"] - top1["lo"]) / 2, console)
    if "speed" in res.summary and res.summary["speed"]["runs"]:
        sp = res.summary["speed"]
        console.print(f"training: {sp['runs']} runs, {sp['mean_seconds_per_run']:.0f} s per run (wall, one process "
                      f"each), {sp['clips_per_s']:.1f} clips/s per process", highlight=False)
    if res.name == "fig5" and "similarity" in res.summary:
        for k, v in res.summary["similarity"].items():
            console.print(f"{k} (seed {res.summary['seed']}): mean cosine inter-class {v['inter_mean']:.3f}, "
                          f"intra-class {v['intra_mean']:.3f}", highlight=False)
    if res.summary.get("finding"):
        console.print(res.summary["finding"], highlight=False)
    console.print(f"[bold]{res.name}[/] done in {res.seconds:.0f} s; files:")
    for f in res.files:
        console.print(f"  {f}")
