"""``piumr reproduce --plan``: what would run, and an ESTIMATE of its cost on the paper preset.

Nothing here trains: the plan lists (experiment, row, seed) entries, flags runs
that several experiments share, and estimates GPU hours from measured
throughput anchors, a measured TFAM + GIRL overhead and measured backbone step-time ratios
(see ``estimate_gpu_hours``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table as RichTable

from piumr.backbones import backbone_spec
from piumr.config import PRESETS, DataConfig, TrainConfig, backbone_overrides, get_preset, with_overrides
from piumr.data.splits import load_split, synth_params
from piumr.data.synth import split_counts
from piumr.reproduce import specs
from piumr.reproduce.runner import expand_names, experiment_spec
from piumr.reproduce.runs import Settings, State, jobs_for
from piumr.source import resolve_source

__all__ = ["ANCHOR_TRAIN_CLIPS_PER_S", "ANCHOR_EVAL_CLIPS_PER_S", "ANCHOR_BACKBONE", "TFAM_OVERHEAD",
           "backbone_cost_ratio",
           "estimate_gpu_hours", "DataSizes", "data_sizes", "ma52_sizes", "PlanRow", "plan", "plan_table"]

# Measured anchors (torch 2.11, bf16 autocast, AdamW): plain pytorchvideo X3D-M 16x224, bf16, batch 80, one H100.
ANCHOR_TRAIN_CLIPS_PER_S = 125.0
ANCHOR_EVAL_CLIPS_PER_S = 874.0
#: Step time of X3D-M + TFAM + GIRL over plain X3D-M, bf16, batch 80, 16x224: 713.6 / 690.3 ms, measured on one
#: H200 (``piumr doctor --full``, 10 steps each; artifacts/gpu-check/2026-11-26-h200/doctor.json). At batch 16 the
#: ratio was 1.17 (TFAM's small kernels are launch-bound): the estimate is for the paper's batch 80.
TFAM_OVERHEAD = 1.034
MA52_TRAIN_CLIPS, MA52_VAL_CLIPS = 11_250, 5_586
#: the backbone the anchors above were measured on: the paper preset's (X3D-M)
ANCHOR_BACKBONE = PRESETS["paper"].model.backbone


def backbone_cost_ratio(backbone: str) -> float:
    """Training time of ``backbone`` relative to X3D-M, from its registry spec (``piumr.backbones``): the
    measured step-time ratio, else the ratio of forward MACs (GPU speed per MAC differs widely between
    architectures: Swin3D-T has 18.6x X3D-M's MACs but took 1.5x its step time), else 1 (the other X3D sizes
    are not scaled)."""
    spec, anchor = backbone_spec(backbone), backbone_spec(ANCHOR_BACKBONE)
    if spec.step_ratio is not None:
        return spec.step_ratio
    if spec.gmacs is not None and anchor.gmacs is not None:
        return spec.gmacs / anchor.gmacs
    return 1.0


@dataclass(frozen=True)
class DataSizes:
    """Clips of the training and validation lists a plan is estimated on, and what they are."""

    train: int
    val: int
    what: str


def data_sizes(data: DataConfig) -> DataSizes:
    """The train/val clip counts of ``data`` under its split: the synthetic set's (computed, nothing is
    generated), a given root's list files, or MA-52's published sizes when the root is not there (a plan
    without ``--data``)."""
    cross = data.split == "cross-subject"
    every = data.seen_holdout
    kind = resolve_source(data.root).kind
    if kind == "synth":
        n = split_counts(**synth_params(data))
        if not cross:
            return DataSizes(n["train"], n["val"], "synthetic data")
        per_person = data.synth_clips_per_person
        kept = per_person - (per_person // every if every > 0 else 0)  # load_split's seen-persons hold-out
        return DataSizes(n["cross_subject_train"] // per_person * kept, n["cross_subject_val"], "synthetic data")
    if kind != "missing":
        return DataSizes(len(load_split(data, "train", progress=False)), len(load_split(data, "val", progress=False)),
                         f"the lists of {data.root}")
    return ma52_sizes(data)


def ma52_sizes(data: DataConfig) -> DataSizes:
    """MA-52's published train/val sizes under ``data``'s split (cross-subject: one of ``folds`` folds of
    train+val, less the seen-persons hold-out)."""
    if data.split != "cross-subject":
        return DataSizes(MA52_TRAIN_CLIPS, MA52_VAL_CLIPS, "MA-52 (assumed)")
    pool = MA52_TRAIN_CLIPS + MA52_VAL_CLIPS
    train = pool - pool // data.folds
    every = data.seen_holdout
    return DataSizes(train - (train // every if every > 0 else 0), pool // data.folds, "MA-52 (assumed)")


def estimate_gpu_hours(cfg: TrainConfig, sizes: DataSizes | None = None) -> float:
    """Estimated hours of one run of ``cfg`` on ``sizes`` (default: MA-52's, ``ma52_sizes``) with the
    paper's X3D-M 16x224 on one H100.

    An ESTIMATE from measured anchors (plain X3D-M trains at ~125
    clips/s and infers at ~874 clips/s in bf16 at batch 80 on an H100), times an
    TFAM + GIRL overhead of ``TFAM_OVERHEAD`` (measured on an H200 at batch 80); it counts
    the training epochs, each validation pass and our final evaluation, and
    assumes data loading keeps up (a prepared cache, ``piumr prepare``). The
    anchors are X3D-M's: other X3D sizes are not scaled; a torchvision backbone
    is scaled by :func:`backbone_cost_ratio` (its measured step time over X3D-M's).
    """
    sizes = sizes or ma52_sizes(cfg.data)
    train, val = sizes.train, sizes.val
    steps = max(1, train // cfg.optim.batch_size)
    if cfg.max_steps_per_epoch is not None:
        steps = min(steps, cfg.max_steps_per_epoch)
    epochs = cfg.optim.epochs
    speed = ANCHOR_TRAIN_CLIPS_PER_S / (TFAM_OVERHEAD if cfg.model.tfam.enabled else 1.0)
    evals = len({e for e in range(epochs) if (e + 1) % cfg.eval_every == 0 or e + 1 == epochs}) + 1
    seconds = epochs * steps * cfg.optim.batch_size / speed + evals * val / ANCHOR_EVAL_CLIPS_PER_S
    return backbone_cost_ratio(cfg.model.backbone) * seconds / 3600.0


@dataclass(frozen=True)
class PlanRow:
    """One line of ``--plan``."""

    experiment: str
    row: str
    seed: int
    run_dir: Path
    state: State
    paper_gpu_hours: float
    shared_with: str  # an earlier experiment that needs the same run ("" if none)


def plan(settings: Settings, names: Sequence[str]) -> list[PlanRow]:
    """What ``names`` would run (rows x seeds, shared runs flagged) and each run's paper-preset GPU estimate.

    The estimate is for the paper preset on the sizes of the data given (``data_sizes`` of the chosen
    preset's data) with the same row switches, ``--epochs`` and seeds (``estimate_gpu_hours``).
    """
    paper_base = PRESETS["paper"]
    sizes: dict[DataConfig, DataSizes] = {}
    if settings.base.optim.epochs != get_preset(settings.preset).optim.epochs:
        paper_base = with_overrides(paper_base, {"optim.epochs": settings.base.optim.epochs})
    if settings.base.model.backbone != get_preset(settings.preset).model.backbone:  # --backbone
        paper_base = with_overrides(paper_base, backbone_overrides(settings.base.model.backbone, native_input=True))
    first_seen: dict[Path, str] = {}
    rows = []
    for name in expand_names(names):
        spec = experiment_spec(settings, name)
        for job in jobs_for(settings, spec):
            if job.cfg.data not in sizes:
                sizes[job.cfg.data] = data_sizes(job.cfg.data)
            est = estimate_gpu_hours(specs.build_config(paper_base, job.row, job.seed), sizes[job.cfg.data])
            shared = first_seen.setdefault(job.run_dir, spec.name)
            rows.append(PlanRow(spec.name, job.row.key, job.seed, job.run_dir, job.state, est,
                                "" if shared == spec.name else shared))
    return rows


def _hours(h: float) -> str:
    return f"{h:.1f}" if h >= 1 else f"{h:.2f}"


def plan_table(settings: Settings, rows: Sequence[PlanRow]) -> tuple[RichTable, str]:
    """(rich table of the plan, one-line totals)."""
    t = RichTable(title=f"reproduce plan: preset {settings.preset}, data {settings.base.data.root}, "
                  f"epochs {settings.base.optim.epochs}, seeds {list(settings.seeds)}, out {settings.root}",
                  caption="run folders are relative to the output root")
    for c in ("experiment", "row", "seed", "state", "run folder", "paper-preset GPU h (est.)"):
        t.add_column(c)
    unique: dict[Path, PlanRow] = {}
    for r in rows:
        state = f"same run as {r.shared_with}" if r.shared_with else r.state
        rel = r.run_dir.relative_to(settings.root) if r.run_dir.is_relative_to(settings.root) else r.run_dir
        t.add_row(r.experiment, r.row, str(r.seed), state, str(rel), _hours(r.paper_gpu_hours))
        unique.setdefault(r.run_dir, r)
    todo = [r for r in unique.values() if r.state != "done"]
    total = sum(r.paper_gpu_hours for r in unique.values())
    left = sum(r.paper_gpu_hours for r in todo)
    line = (f"{len(rows)} (row, seed) entries, {len(unique)} distinct runs, {len(todo)} still to train or resume. "
            f"Paper preset on {data_sizes(settings.base.data).what}, one H100: ~{_hours(total)} GPU h in all, "
            f"~{_hours(left)} GPU h left "
            f"(ESTIMATE: measured plain X3D-M throughput x measured TFAM + GIRL overhead {TFAM_OVERHEAD}, "
            "x measured step-time ratio to X3D-M for torchvision backbones, MACs ratio for others; "
            "resumed runs counted whole).")
    return t, line
