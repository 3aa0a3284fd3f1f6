"""One spec per paper table / figure: which runs (rows = name + config overrides) it needs.

A row's config is ``preset + command-line overrides + row overrides + seed``,
then canonicalised (switches that cannot matter are reset, so that identical
models share one run folder: Table 2 row c *is* Table 3 row a, Table 2 row a
*is* Table 1's X3D baseline and every figure's baseline).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Literal

from piumr.backbones import REGISTRY, backbone_spec
from piumr.config import TFAMConfig, TrainConfig, backbone_overrides, with_overrides
from piumr.data.synth.actions import select_classes
from piumr.losses import criterion_slug
from piumr.metrics import PAPER_COLUMNS
from piumr.recipe import RECIPE_VERSION
from piumr.reproduce import paper
from piumr.source import resolve_source

__all__ = [
    "Kind", "RowSpec", "ExperimentSpec", "EXPERIMENTS", "ALIASES", "ALL_ORDER", "PERSON_SHIFT_COLUMNS",
    "get_experiment", "build_config", "canonical", "config_key", "run_slug", "COLUMN_NAMES", "LOWER_IS_BETTER",
    "BASELINE", "PIUMR", "backbone_rows", "table1_with", "arm_label", "chance_percent",
]

Kind = Literal["table", "figure", "person-shift"]

#: Display names of every metric key a table may show.
COLUMN_NAMES: dict[str, str] = {
    **dict(PAPER_COLUMNS),
    "p_mean": "Mean acc.",
    "p_std": "Std over persons",
    "p_worst": "Worst person",
    "p_worst10": "Worst 10%",
    "seen_top1": "Seen persons Top-1",
    "seen_f1_mean": "Seen persons F1_mean",
    "gap_top1": "Seen - unseen Top-1",
}

#: person-shift table columns: official action Top-1 / F1_mean + per-participant action Top-1 summaries.
PERSON_SHIFT_COLUMNS: tuple[str, ...] = ("action_top1", "f1_mean", "p_mean", "p_std", "p_worst", "p_worst10",
                                         "seen_top1", "gap_top1")

#: the demo's columns: unseen persons (Top-1, F1_mean, worst person), seen persons, and the gap
DEMO_COLUMNS: tuple[str, ...] = ("action_top1", "f1_mean", "p_worst", "seen_top1", "gap_top1")

#: columns where lower is better (bold = smallest)
LOWER_IS_BETTER: frozenset[str] = frozenset({"p_std", "gap_top1"})


@dataclass(frozen=True)
class RowSpec:
    """One row: a short ``key`` ("a"), a ``label``, dotted config ``overrides`` and the paper's values."""

    key: str
    label: str
    overrides: dict[str, Any]
    paper: paper.ReportedRow | None = None
    switches: tuple[str, ...] = ()  # cell texts of the switch columns ("on"/"off"/"mean" ...)


@dataclass(frozen=True)
class ExperimentSpec:
    """A paper table or figure: its rows (trained here) and reported rows (copied from the paper)."""

    name: str
    title: str
    kind: Kind
    rows: tuple[RowSpec, ...]
    columns: tuple[str, ...] = ()
    switch_columns: tuple[str, ...] = ()
    reported: tuple[paper.ReportedRow, ...] = ()
    source: str = ""  # the paper's table / figure this reproduces
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: (reference row, compared row): the paired per-seed difference compared - reference is reported
    paired: tuple[str, str] | None = None


_OFF = {"model.tfam.enabled": False}
_NO_GIRL = {"girl.enabled": False}
BASELINE = RowSpec("x3d", "X3D baseline (TFAM off, GIRL off)", {**_OFF, **_NO_GIRL},
                   paper.TABLE1_BASELINE_FROM_TABLE2)
PIUMR = RowSpec("piumr", "PIUmr (X3D + TFAM + GIRL)", {}, paper.TABLE1_PIUMR)

_COLUMN_NOTE = ("The paper's Table 2/3 headers read 'Body F1_micro, F1_macro, Action F1_micro, F1_macro'; the "
                "values are Body F1_macro, Body F1_micro, Action F1_macro, Action F1_micro (row d of Table 2 "
                "equals PIUmr's Table 1 values 75.51 / 80.95 / 52.79 / 63.18 / 68.11).")


def _table2() -> ExperimentSpec:
    rows = (
        RowSpec("a", "TFAM off, GIRL off (X3D)", {**_OFF, **_NO_GIRL}, paper.TABLE2["a"], ("off", "off")),
        RowSpec("b", "TFAM on, GIRL off", {**_NO_GIRL}, paper.TABLE2["b"], ("on", "off")),
        RowSpec("c", "TFAM off, GIRL on", {**_OFF}, paper.TABLE2["c"], ("off", "on")),
        RowSpec("d", "TFAM on, GIRL on (PIUmr)", {}, paper.TABLE2["d"], ("on", "on")),
    )
    return ExperimentSpec("table2", "Ablation of TFAM and GIRL (paper Table 2)", "table", rows,
                          paper.ABLATION_COLUMNS, ("TFAM", "GIRL"), source="Table 2", notes=(_COLUMN_NOTE,))


def _table3() -> ExperimentSpec:
    rows = (
        RowSpec("a", "no TFAM branch (TFAM off), GIRL on", {**_OFF}, paper.TABLE3["a"], ("off", "off", "off")),
        RowSpec("b", "frequency only", {"model.tfam.temporal": False}, paper.TABLE3["b"], ("on", "off", "off")),
        RowSpec("c", "temporal only", {"model.tfam.frequency": False}, paper.TABLE3["c"], ("off", "on", "off")),
        RowSpec("d", "both, mean fusion", {"model.tfam.fusion": "mean"}, paper.TABLE3["d"], ("on", "on", "off")),
        RowSpec("e", "both, consistency fusion (PIUmr)", {"model.tfam.fusion": "consistency"}, paper.TABLE3["e"],
                ("on", "on", "on")),
    )
    return ExperimentSpec(
        "ablation-tfam", "Ablation of TFAM's branches and fusion, GIRL on (paper Table 3)", "table", rows,
        paper.ABLATION_COLUMNS, ("Fre.", "Tim.", "Fus."), source="Table 3",
        notes=(_COLUMN_NOTE, "Row a trains no TFAM at all (TFAM off, GIRL on): the paper's Table 3 row a "
               "equals its Table 2 row c, and here it is the same run."), paired=("a", "e"))


_PERSON_NOTE = ("Unseen persons: action Top-1 / F1_mean on the held-out persons of the person-disjoint split "
                "and the worst held-out person's Top-1. Seen persons: Top-1 on held-out clips of the training "
                "persons (every 4th clip of each, never trained on). Gap = seen - unseen.")
_BODY_NOTE = ("Body Top-1: which body part moved (7 parts); action Top-1: which class. On task v2 (preset demo) the "
              "3 classes of a body part differ only in time, so the two measure different things.")


def _demo() -> ExperimentSpec:
    rows = tuple(RowSpec(r.key, r.label, {**r.overrides, "data.split": "cross-subject"}, None, r.switches)
                 for r in _table2().rows)
    return ExperimentSpec(
        "demo", "TFAM x GIRL (Table 2 settings a-d) on unseen and seen persons", "person-shift", rows,
        ("body_top1", *DEMO_COLUMNS), ("TFAM", "GIRL"), source="Table 2 settings, person-disjoint split (not the paper's numbers)",
        notes=(_PERSON_NOTE, _BODY_NOTE), paired=("a", "d"))


def _girl_units() -> ExperimentSpec:
    """What GIRL's Gaussian is centred on (eq. 6): the measurement behind GIRLConfig's defaults."""
    xs = {"data.split": "cross-subject"}
    rows = (
        RowSpec("ce", "TFAM on, GIRL off (CE only)", {**_NO_GIRL, **xs}),
        RowSpec("literal", "GIRL as written: Gaussian on cos/tau, tau 0.07, eta 0.2, gradient through w",
                {**xs, "girl.weight_on": "scaled", "girl.tau": 0.07, "girl.eta": 0.2, "girl.detach_weights": False}),
        RowSpec("shifted", "Gaussian on cos/tau - row max (related code), eta 0.2, gradient through w",
                {**xs, "girl.weight_on": "shifted", "girl.tau": 0.07, "girl.eta": 0.2, "girl.detach_weights": False}),
        RowSpec("cosine", "Gaussian on the cosine, eta 0.5, gradient through w (default)",
                {**xs, "girl.weight_on": "cosine", "girl.tau": 0.07, "girl.eta": 0.5, "girl.detach_weights": False}),
        RowSpec("cosine-detached", "Gaussian on the cosine, eta 0.5, weights detached",
                {**xs, "girl.weight_on": "cosine", "girl.tau": 0.07, "girl.eta": 0.5, "girl.detach_weights": True}),
    )
    return ExperimentSpec(
        "girl-units", "GIRL's Gaussian reweighting: literal units vs alternatives (TFAM on)", "person-shift",
        rows, DEMO_COLUMNS, source="eq. (6) (the paper gives neither tau nor eta nor eta's unit)",
        notes=(_PERSON_NOTE,), paired=("literal", "cosine"))


def _table1() -> ExperimentSpec:
    return ExperimentSpec(
        "table1", "Comparison on MA-52 (paper Table 1)", "table", (BASELINE, PIUMR),
        tuple(k for k, _ in PAPER_COLUMNS), reported=paper.TABLE1_REPORTED, source="Table 1",
        notes=("Rows marked 'reported' are copied from the paper (never trained here); best / second best marks "
               "are computed over the measured rows only.",
               "The X3D baseline's paper values are Table 2 row a; its Top-1 values follow from micro-F1; "
               "Top-5 is not reported."))




def backbone_rows(backbone: str, *, native_input: bool) -> tuple[RowSpec, RowSpec]:
    """Two Table 1 rows on ``backbone``: plain (TFAM off, GIRL off) and + TFAM + GIRL.

    Both use ``backbone_overrides`` (TFAM at the backbone's default stage; with
    ``native_input`` its own clip length and crop) and start from scratch
    (``model.pretrained`` reset: the preset's weights belong to X3D). The plain
    row carries the paper's reported values where Table 1 has that method.
    Raises ``ValueError`` for an X3D or unknown backbone.
    """
    if backbone not in REGISTRY or REGISTRY[backbone].family == "x3d":
        raise ValueError(f"--with {backbone!r}: choose a non-X3D backbone: "
                         f"{', '.join(n for n, s in REGISTRY.items() if s.family != 'x3d')}")
    over = {**backbone_overrides(backbone, native_input=native_input), "model.pretrained": None}
    spec = REGISTRY[backbone]
    label = spec.label
    reported = {r.name: r for r in paper.TABLE1_REPORTED}.get(spec.paper_row or "")
    return (RowSpec(backbone, f"{label} (TFAM off, GIRL off)", {**over, **_OFF, **_NO_GIRL}, reported),
            RowSpec(f"{backbone}+piumr", f"{label} + TFAM + GIRL", over))


def table1_with(backbones: Sequence[str], *, native_input: bool) -> ExperimentSpec:
    """Table 1 with measured rows for ``backbones`` (``backbone_rows``) after the X3D rows."""
    base = _table1()
    extra = tuple(r for b in dict.fromkeys(backbones) for r in backbone_rows(b, native_input=native_input))
    note = (f"Rows on {', '.join(dict.fromkeys(backbones))} are trained here on the same data pipeline, metrics and "
            "seeds as the X3D rows, from scratch, with TFAM at the backbone's default stage"
            + (" and its own Kinetics clip length and crop." if native_input else " and the preset's input size."))
    return ExperimentSpec(base.name, base.title, base.kind, base.rows + extra, base.columns, base.switch_columns,
                          base.reported, base.source, (*base.notes, note))


def _figure(name: str, title: str, source: str) -> ExperimentSpec:
    return ExperimentSpec(name, title, "figure", (BASELINE, PIUMR), source=source)


EXPERIMENTS: dict[str, ExperimentSpec] = {
    "table1": _table1(),
    "table2": _table2(),
    "ablation-tfam": _table3(),
    "fig4": _figure("fig4", "t-SNE of validation embeddings, baseline vs PIUmr (paper Fig. 4)", "Fig. 4"),
    "fig5": _figure("fig5", "Inter-/intra-class cosine similarity, baseline vs PIUmr (paper Fig. 5)", "Fig. 5"),
    "fig6": _figure("fig6", "Loss landscape, baseline vs PIUmr (paper Fig. 6)", "Fig. 6"),
    "person-shift": ExperimentSpec(
        "person-shift", "Person-disjoint split: per-participant action Top-1, baseline vs PIUmr", "person-shift",
        tuple(RowSpec(r.key, r.label, {**r.overrides, "data.split": "cross-subject"}) for r in (BASELINE, PIUMR)),
        PERSON_SHIFT_COLUMNS, source="not in the paper (its claim of person independence, tested)",
        notes=("Participant columns are action Top-1 per held-out person: mean, population std over persons, "
               "the worst person and the mean of the worst 10% of persons.", _PERSON_NOTE), paired=("x3d", "piumr")),
    "demo": _demo(),
    "girl-units": _girl_units(),
}

#: alternative names accepted on the command line
ALIASES: dict[str, str] = {"table3": "ablation-tfam"}

#: what ``all`` runs, in order
ALL_ORDER: tuple[str, ...] = ("table1", "table2", "ablation-tfam", "fig4", "fig5", "fig6", "person-shift")


def arm_label(label: str) -> str:
    """A row's label as an arm's name: PIUmr is X3D + TFAM + GIRL, so PIUmr's row on another backbone
    (``"PIUmr (swin3d_tiny + TFAM + GIRL)"``) is named by what it is (``"swin3d_tiny + TFAM + GIRL"``);
    every other label is returned unchanged."""
    inner = label[len("PIUmr ("):-1] if label.startswith("PIUmr (") and label.endswith(")") else ""
    return inner if inner and not inner.startswith("X3D") else label


def chance_percent(config: dict[str, Any]) -> float:
    """Chance action Top-1 (%) of a run's config (``TrainConfig.model_dump()`` or a result's ``config``):
    the generated classes for synthetic data (task v1: ``synth_classes_per_body`` per body group), else the
    classifier's classes."""
    data = config["data"]
    if resolve_source(data["root"]).kind == "synth":
        return 100.0 / len(select_classes(int(data["synth_classes_per_body"])))
    return 100.0 / int(config["model"]["num_classes"])


def get_experiment(name: str) -> ExperimentSpec:
    """The spec named ``name`` (aliases accepted); ``ValueError`` listing the valid names otherwise."""
    key = ALIASES.get(name, name)
    if key not in EXPERIMENTS:
        valid = ", ".join([*EXPERIMENTS, *ALIASES])
        raise ValueError(f"unknown experiment {name!r}; choose one of: {valid}")
    return EXPERIMENTS[key]


def canonical(cfg: TrainConfig) -> TrainConfig:
    """Reset switches that have no effect, so equal models get equal configs.

    TFAM off: its branch / fusion switches go back to the defaults. One TFAM
    branch only: the fusion switch goes back to its default (nothing to fuse).
    """
    tf = cfg.model.tfam
    default = TFAMConfig()
    if not tf.enabled:
        tf = tf.model_copy(update={"frequency": default.frequency, "temporal": default.temporal,
                                   "fusion": default.fusion})
    elif not (tf.frequency and tf.temporal):
        tf = tf.model_copy(update={"fusion": default.fusion})
    if tf is cfg.model.tfam:
        return cfg
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"tfam": tf})})


def build_config(base: TrainConfig, row: RowSpec, seed: int) -> TrainConfig:
    """``base`` + the row's overrides + ``seed`` (training seed and GIRL's group-permutation seed), canonical."""
    cfg = with_overrides(base, {**row.overrides, "seed": seed, "girl.seed": seed})
    return canonical(cfg)


#: the config fields that run keys were first defined over (dotted). A field added since enters a key only when
#: it differs from its default: adding a field with a default keeps every existing run key (and run folder)
_KEYED_FIELDS = frozenset([
    *"ce_weight eval_every max_steps_per_epoch".split(),
    *(f"data.{f}" for f in "backend crop_min_scale fold fold_seed folds hflip memory_cache num_workers on_error "
      "root seen_holdout short_side split synth_classes_per_body synth_clips_per_person synth_frames "
      "synth_persons synth_seed synth_size".split()),
    *(f"girl.{f}" for f in "detach_weights enabled eps eta exclude_self groups lambda_var tau var_grad weight "
      "weight_on".split()),
    *(f"model.{f}" for f in "backbone crop dropout frames num_classes pretrained zero_init_residual".split()),
    *(f"model.tfam.{f}" for f in "alpha attn_dim attn_heads attn_kernel beta dct_kernel dyt_init enabled eps_high "
      "eps_low frequency fusion fusion_cos fusion_grad fusion_momentum gamma_w gate_scale_init kernel_scale "
      "mask_ratio num_dct sinkhorn_iters stability_pool stage tau_min tau_scale temporal temporal_perturb "
      "tokens".split()),
    *(f"optim.{f}" for f in "amp batch_size epochs gamma grad_clip lr milestones warmup_epochs weight_decay".split()),
])
#: never in a key: the run's name, and the seeds (all seeds of one row share its key)
_UNKEYED = ("name", "seed", "girl.seed")
#: fields added with a default that is not the behaviour before them (the value that reproduces the old
#: behaviour): a run whose part (GIRL, TFAM) is on and differs from it is a new run
_LEGACY: dict[str, Any] = {"girl.pairs": "group", "model.tfam.fusion_lambda": "batch", "model.tfam.stability_on": "all"}


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def config_key(cfg: TrainConfig) -> str:
    """12-hex digest of the fields of ``cfg`` that change a result: every field but the name and the seeds,
    where a field added after ``_KEYED_FIELDS`` counts only when it is not at its default (``_LEGACY``'s: not
    at the value of the behaviour before it, and only where its part is on); ``speed`` (how a step
    runs) never counts: runs are shared across it. The recipe's version (``piumr.recipe.RECIPE_VERSION``) always
    counts: a recipe change that moves results makes new runs, never a cached one under an old key."""
    defaults = _flat(type(cfg)().model_dump(mode="json"))
    flat = _flat(cfg.model_dump(mode="json"))
    off = [s for s in ("girl.", "model.tfam.") if flat.get(s + "enabled") is False]

    def counts(k: str, v: Any) -> bool:
        if k in _UNKEYED or k.startswith("speed."):
            return False
        if k in _KEYED_FIELDS:
            return True
        if k in _LEGACY:  # a new field whose default changed the behaviour: counts where its part is on
            return bool(v != _LEGACY[k]) and not any(k.startswith(s) for s in off)
        return bool(v != defaults.get(k))
    data: dict[str, Any] = {k: v for k, v in flat.items() if counts(k, v)}
    data["recipe_version"] = RECIPE_VERSION
    blob = json.dumps(_nested(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_slug(cfg: TrainConfig) -> str:
    """Readable, unique run-folder name: ``<switches>-<config_key>``, e.g. ``tfam-ft-cons_girl-1a2b3c4d5e6f``."""
    tf = cfg.model.tfam
    if not tf.enabled:
        t = "notfam"
    else:
        t = "tfam-" + ("f" if tf.frequency else "") + ("t" if tf.temporal else "")
        if tf.frequency and tf.temporal:
            t += "-cons" if tf.fusion == "consistency" else "-mean"
    g = criterion_slug(cfg)
    split = "_xsub" if cfg.data.split == "cross-subject" else ""
    bb = "" if backbone_spec(cfg.model.backbone).family == "x3d" else f"{cfg.model.backbone}_"
    return f"{bb}{t}_{g}{split}-{config_key(cfg)}"
