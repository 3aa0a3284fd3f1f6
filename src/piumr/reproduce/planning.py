"""``piumr reproduce --plan``: what would run, and an ESTIMATE of its cost on the paper preset.

Nothing here trains: the plan lists (experiment, row, seed) entries, flags runs
that several experiments share, and estimates GPU hours from measured
throughput anchors times an ASSUMED TFAM overhead (see ``estimate_gpu_hours``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table as RichTable

from piumr.config import PRESETS, TrainConfig, backbone_overrides, get_preset, with_overrides
from piumr.reproduce import specs
from piumr.reproduce.runner import expand_names, experiment_spec
from piumr.reproduce.runs import Settings, State, jobs_for

__all__ = ["ANCHOR_TRAIN_CLIPS_PER_S", "ANCHOR_EVAL_CLIPS_PER_S", "TFAM_OVERHEAD_ASSUMED", "BACKBONE_GMACS",
           "estimate_gpu_hours",
           "PlanRow", "plan", "plan_table"]

# Measured anchors (torch 2.11, bf16 autocast, AdamW): plain pytorchvideo X3D-M 16x224, bf16, batch 80, one H100.
ANCHOR_TRAIN_CLIPS_PER_S = 125.0
ANCHOR_EVAL_CLIPS_PER_S = 874.0
#: NOT measured on a GPU: assumed slowdown of X3D-M + TFAM (after the last stage, 7x7 maps) vs plain X3D-M.
TFAM_OVERHEAD_ASSUMED = 1.15
MA52_TRAIN_CLIPS, MA52_VAL_CLIPS = 11_250, 5_586
#: multiply-accumulates (G) of one clip's forward pass at each backbone's own clip length and crop
#: (``piumr.config.NATIVE_INPUT``), counted with ``torch.utils.flop_counter``; a torchvision backbone's run is
#: estimated as X3D-M's times the ratio (an ESTIMATE: per-MAC GPU speed differs between architectures)
BACKBONE_GMACS: dict[str, float] = {"x3d_m": 4.73, "r2plus1d_18": 40.52, "swin3d_t": 87.76, "mvit_v2_s": 64.22}


def estimate_gpu_hours(cfg: TrainConfig) -> float:
    """Estimated hours of one run of ``cfg`` on MA-52 with the paper's X3D-M 16x224 on one H100.

    An ESTIMATE from measured anchors (plain X3D-M trains at ~125
    clips/s and infers at ~874 clips/s in bf16 at batch 80 on an H100), times an
    ASSUMED, unmeasured TFAM overhead of ``TFAM_OVERHEAD_ASSUMED``; it counts
    the training epochs, each validation pass and our final evaluation, and
    assumes data loading keeps up (a prepared cache, ``piumr prepare``). The
    anchors are X3D-M's: other X3D sizes are not scaled; a backbone in
    ``BACKBONE_GMACS`` is scaled by its MACs over X3D-M's (at their own inputs).
    """
    if cfg.data.split == "cross-subject":
        pool = MA52_TRAIN_CLIPS + MA52_VAL_CLIPS
        val = pool // cfg.data.folds
        train = pool - val
    else:
        train, val = MA52_TRAIN_CLIPS, MA52_VAL_CLIPS
    steps = train // cfg.optim.batch_size
    if cfg.max_steps_per_epoch is not None:
        steps = min(steps, cfg.max_steps_per_epoch)
    epochs = cfg.optim.epochs
    speed = ANCHOR_TRAIN_CLIPS_PER_S / (TFAM_OVERHEAD_ASSUMED if cfg.model.tfam.enabled else 1.0)
    evals = len({e for e in range(epochs) if (e + 1) % cfg.eval_every == 0 or e + 1 == epochs}) + 1
    seconds = epochs * steps * cfg.optim.batch_size / speed + evals * val / ANCHOR_EVAL_CLIPS_PER_S
    cost = BACKBONE_GMACS.get(cfg.model.backbone, BACKBONE_GMACS["x3d_m"]) / BACKBONE_GMACS["x3d_m"]
    return cost * seconds / 3600.0


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

    The estimate is for the paper preset on MA-52 with the same row switches,
    ``--epochs`` and seeds (``estimate_gpu_hours``), whatever preset is chosen.
    """
    paper_base = PRESETS["paper"]
    if settings.base.optim.epochs != get_preset(settings.preset).optim.epochs:
        paper_base = with_overrides(paper_base, {"optim.epochs": settings.base.optim.epochs})
    if settings.base.model.backbone != get_preset(settings.preset).model.backbone:  # --backbone
        paper_base = with_overrides(paper_base, backbone_overrides(settings.base.model.backbone, native_input=True))
    first_seen: dict[Path, str] = {}
    rows = []
    for name in expand_names(names):
        spec = experiment_spec(settings, name)
        for job in jobs_for(settings, spec):
            est = estimate_gpu_hours(specs.build_config(paper_base, job.row, job.seed))
            shared = first_seen.setdefault(job.run_dir, spec.name)
            rows.append(PlanRow(spec.name, job.row.key, job.seed, job.run_dir, job.state, est,
                                "" if shared == spec.name else shared))
    return rows


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
        t.add_row(r.experiment, r.row, str(r.seed), state, str(rel), f"{r.paper_gpu_hours:.1f}")
        unique.setdefault(r.run_dir, r)
    todo = [r for r in unique.values() if r.state != "done"]
    total = sum(r.paper_gpu_hours for r in unique.values())
    left = sum(r.paper_gpu_hours for r in todo)
    line = (f"{len(rows)} (row, seed) entries, {len(unique)} distinct runs, {len(todo)} still to train or resume. "
            f"Paper preset on MA-52, one H100: ~{total:.1f} GPU h in all, ~{left:.1f} GPU h left "
            f"(ESTIMATE: measured plain X3D-M throughput x assumed TFAM overhead {TFAM_OVERHEAD_ASSUMED}, "
            "x MACs ratio to X3D-M for torchvision backbones; "
            "resumed runs counted whole).")
    return t, line
