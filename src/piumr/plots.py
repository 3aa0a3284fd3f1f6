"""Figures and tables people look at: a run's learning curves (``curves.png``, drawn from its ``log.jsonl``), several
runs overlaid with a table of their final metrics (``piumr plot``), and ``evaluate``'s row-normalised confusion
matrix with per-class precision / recall / F1.

Figures are matplotlib (Agg, no pyplot) PNGs written atomically and tagged as piumr's (the PNG text
``Software: piumr <version>``); an output file in the way that piumr did not write is never replaced
(``check_outputs``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from piumr.errors import RunFolderError
from piumr.files import atomic_write, check_writable, write_text_atomic
from piumr.version import __version__

__all__ = ["CURVES", "COMPARE", "FINAL_CSV", "FINAL_MD", "FINAL_COLUMNS", "VAL_KEYS", "RunCurves", "Comparison",
           "read_curves", "curves_figure", "overlay_figure", "write_run_curves", "final_row", "compare_runs",
           "save_png", "is_piumr_png", "starts_with", "check_outputs", "run_labels", "table_cells", "TABLE_HEADER",
           "CONFUSION", "PER_CLASS", "PER_CLASS_COLUMNS", "confusion_figure", "per_class_csv"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CURVES = "curves.png"  # a run's own curves, in its run folder
COMPARE = "compare.png"  # ``piumr plot``'s overlay, in its --out folder
FINAL_CSV, FINAL_MD = "final_metrics.csv", "final_metrics.md"
SOFTWARE = "piumr"  # the PNG text every figure piumr writes carries (``Software: piumr <version>``)
#: the validation metrics of a log.jsonl epoch row (``val``), in the paper's column order
VAL_KEYS = ("body_top1", "action_top1", "action_top5", "body_f1_macro", "body_f1_micro", "action_f1_macro",
            "action_f1_micro", "f1_mean")
#: the columns of ``final_metrics.csv``: per run, its last epoch and its last validation (val_* in percent)
FINAL_COLUMNS = ("run", "path", "epochs", "planned_epochs", "steps", "loss", "lr", "val_epoch",
                 *(f"val_{k}" for k in VAL_KEYS), "best_f1_mean", "best_epoch")
_LOSS_PARTS = ("ce", "girl")  # drawn beside the total loss when the run logged more than one


# ------------------------------------------------------------------------------------------ files


def save_png(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` as a PNG, atomically, tagged ``Software: piumr <version>``."""
    meta = {"Software": f"{SOFTWARE} {__version__}"}
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight",
                                                      metadata=meta))


def is_piumr_png(path: Path) -> bool:
    """Whether ``path`` is a PNG that piumr wrote (its ``Software`` text names piumr)."""
    from PIL import Image, PngImagePlugin

    try:
        with Image.open(path) as im:
            text = im.text if isinstance(im, PngImagePlugin.PngImageFile) else {}
    except (OSError, ValueError):  # not an image (PIL.UnidentifiedImageError is an OSError)
        return False
    return str(text.get("Software", "")).split(" ")[0] == SOFTWARE


def starts_with(header: str) -> Callable[[Path], bool]:
    """A test that a text file's first line starts with ``header`` (how piumr recognises its own CSV and
    markdown files)."""
    def test(path: Path) -> bool:
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                return fh.readline(len(header) + 1).startswith(header)
        except (OSError, UnicodeDecodeError):
            return False
    return test


def check_outputs(outputs: Mapping[Path, Callable[[Path], bool]], command: str, flag: str = "--out") -> None:
    """Before any work: ``ValueError`` naming ``flag`` and the first of ``outputs`` (path -> "``command`` wrote
    it") that exists and is not ``command``'s own file (or is a symbolic link): piumr replaces only files it
    wrote, and a user's file stays as it is."""
    for path, ours in outputs.items():
        if not (path.exists() or path.is_symlink()):
            continue
        if path.is_symlink() or not path.is_file() or not ours(path):
            raise ValueError(f"{flag} {path.parent}: {path.name} there is not a file {command} wrote; piumr replaces "
                             f"only files it wrote, so it is left as it is: move it away or give {flag} another "
                             "folder")


# ------------------------------------------------------------------------------------------ a run's curves


@dataclass(frozen=True)
class RunCurves:
    """A run's per-epoch series from its ``log.jsonl``: ``epochs`` (E,) with ``loss`` (E,), ``parts`` (name ->
    (E,), CE and GIRL when logged; NaN where absent) and ``lr`` (E,); ``val_epochs`` (V,) with ``val`` (metric
    key -> (V,), percent). ``parts`` is empty when the loss has one part (CE alone: it is the total).
    ``planned_epochs`` from ``config.json`` (None: unknown)."""

    run: Path
    epochs: FloatArray
    loss: FloatArray
    parts: dict[str, FloatArray]
    lr: FloatArray
    val_epochs: FloatArray
    val: dict[str, FloatArray]
    steps: int
    planned_epochs: int | None


def _epoch_rows(log: Path) -> list[dict[str, Any]]:
    """The ``"type": "epoch"`` rows of ``log``, one per epoch (the last one written wins), by epoch. A
    half-written last line (a run writing it) is skipped; any other unreadable line is a ``RunFolderError``."""
    lines = log.read_text(encoding="utf-8").splitlines()
    rows: dict[int, dict[str, Any]] = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                continue
            raise RunFolderError(f"{log}:{n}: not a JSON line (an edited or damaged log)") from None
        if not isinstance(row, dict):
            raise RunFolderError(f"{log}:{n}: not a JSON object (an edited or damaged log)")
        if row.get("type") == "epoch":
            if not isinstance(row.get("epoch"), int):
                raise RunFolderError(f"{log}:{n}: an epoch row without an integer epoch (an edited or damaged log)")
            rows[row["epoch"]] = row
    return [rows[e] for e in sorted(rows)]


def _number(value: Any) -> float:
    """A logged value as a float; NaN for a missing, null or non-numeric one."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _planned_epochs(run: Path) -> int | None:
    try:
        epochs = json.loads((run / "config.json").read_text(encoding="utf-8"))["optim"]["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epochs if isinstance(epochs, int) else None


def read_curves(run: Path) -> RunCurves:
    """The curves of the training run in folder ``run``; ``RunFolderError`` naming the path for a folder that
    is not a run (no ``log.jsonl``) or whose log has no finished epoch yet."""
    run = Path(run)
    if not run.is_dir():
        raise RunFolderError(f"{run}: not a run folder ({'a file' if run.exists() else 'no such folder'})")
    log = run / "log.jsonl"
    if not log.is_file():
        raise RunFolderError(f"{run}: not a training run (no log.jsonl)")
    rows = _epoch_rows(log)
    if not rows:
        raise RunFolderError(f"{log}: no epoch has finished yet (nothing to plot)")
    validated = [r for r in rows if isinstance(r.get("val"), dict)]
    parts = [k for k in _LOSS_PARTS if any(k in r for r in rows)]
    return RunCurves(
        run=run,
        epochs=np.array([r["epoch"] for r in rows], dtype=np.float64),
        loss=np.array([_number(r.get("loss")) for r in rows]),
        parts={k: np.array([_number(r.get(k)) for r in rows]) for k in parts} if len(parts) > 1 else {},
        lr=np.array([_number(r.get("lr")) for r in rows]),
        val_epochs=np.array([r["epoch"] for r in validated], dtype=np.float64),
        val={k: np.array([_number(r["val"].get(k)) for r in validated]) for k in VAL_KEYS},
        steps=int(_number(rows[-1].get("step"))) if math.isfinite(_number(rows[-1].get("step"))) else 0,
        planned_epochs=_planned_epochs(run),
    )


def _axes(fig: Figure) -> tuple[Axes, Axes, Axes]:
    loss, acc, lr = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    for ax, title, ylabel in ((loss, "training loss", "mean loss of the epoch's steps"),
                              (acc, "validation", "percent"), (lr, "learning rate", "lr (log scale)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
    acc.set_ylim(-2, 102)
    lr.set_yscale("log")
    return loss, acc, lr


def _lr_line(ax: Axes, c: RunCurves, **style: Any) -> None:
    """The per-epoch lr as a step line (each epoch trains at one lr), drawn only where it is positive."""
    ok = np.isfinite(c.lr) & (c.lr > 0)
    if ok.any():
        ax.step(c.epochs[ok], c.lr[ok], where="mid", marker="o", markersize=3, **style)


def curves_figure(c: RunCurves, title: str | None = None) -> Figure:
    """One run: training loss (with CE and GIRL when logged), validation Top-1 and F1_mean, and the learning
    rate, per epoch."""
    fig = Figure(figsize=(13.5, 3.8))
    loss, acc, lr = _axes(fig)
    loss.plot(c.epochs, c.loss, marker="o", color="black", label="loss (total)")
    for (name, values), colour in zip(c.parts.items(), ("#1f77b4", "#d62728"), strict=False):
        loss.plot(c.epochs, values, marker=".", linestyle="--", color=colour, label=name)
    loss.legend(fontsize=8)
    if len(c.val_epochs):
        acc.plot(c.val_epochs, c.val["action_top1"], marker="o", color="#2ca02c", label="Top-1")
        acc.plot(c.val_epochs, c.val["f1_mean"], marker="s", linestyle="--", color="#9467bd", label="F1_mean")
        acc.legend(fontsize=8)
    else:
        acc.text(0.5, 0.5, "not validated yet", ha="center", va="center", transform=acc.transAxes)
    _lr_line(lr, c, color="#ff7f0e")
    done = f"{len(c.epochs)}" + (f" of {c.planned_epochs}" if c.planned_epochs is not None else "")
    fig.suptitle(title or f"{c.run.name}: {done} epoch(s), step {c.steps}")
    fig.tight_layout()
    return fig


def write_run_curves(run: Path) -> Path:
    """Draw ``run``'s ``curves.png`` from its ``log.jsonl`` (atomically); returns its path."""
    return save_png(curves_figure(read_curves(run)), Path(run) / CURVES)


# ------------------------------------------------------------------------------------------ several runs


def run_labels(runs: Sequence[Path]) -> list[str]:
    """Short distinct names of run folders: the folder names, with as many parent folders as it takes to
    tell them apart."""
    parts = [Path(r).resolve().parts for r in runs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(r) for r in runs]


def overlay_figure(curves: Sequence[RunCurves], labels: Sequence[str]) -> Figure:
    """Several runs, one colour each: training loss, validation Top-1 (solid) and F1_mean (dashed), lr."""
    fig = Figure(figsize=(14.5, 4.2))
    loss, acc, lr = _axes(fig)
    colours = [f"C{i % 10}" for i in range(len(curves))]
    for c, label, colour in zip(curves, labels, colours, strict=True):
        loss.plot(c.epochs, c.loss, marker="o", markersize=3, color=colour, label=label)
        if len(c.val_epochs):
            acc.plot(c.val_epochs, c.val["action_top1"], marker="o", markersize=3, color=colour)
            acc.plot(c.val_epochs, c.val["f1_mean"], marker="s", markersize=3, linestyle="--", color=colour)
        _lr_line(lr, c, color=colour)
    acc.plot([], [], color="grey", marker="o", label="Top-1")
    acc.plot([], [], color="grey", marker="s", linestyle="--", label="F1_mean")
    acc.legend(fontsize=8)
    legend_rows = (len(curves) + 3) // 4
    fig.legend(*loss.get_legend_handles_labels(), loc="lower center", ncol=min(len(curves), 4), fontsize=8,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{len(curves)} run(s), per epoch")
    fig.tight_layout(rect=(0, 0.02 + 0.055 * legend_rows, 1, 1))
    return fig


def final_row(c: RunCurves, label: str) -> dict[str, Any]:
    """One row of ``FINAL_COLUMNS``: the run's last epoch (loss, lr), its last validation and its best F1_mean
    (NaN / None where the run has none)."""
    row: dict[str, Any] = {"run": label, "path": str(c.run), "epochs": len(c.epochs), "planned_epochs":
                           c.planned_epochs, "steps": c.steps, "loss": float(c.loss[-1]), "lr": float(c.lr[-1])}
    has_val = len(c.val_epochs) > 0
    row["val_epoch"] = int(c.val_epochs[-1]) if has_val else None
    row.update({f"val_{k}": float(v[-1]) if has_val else math.nan for k, v in c.val.items()})
    f1 = c.val["f1_mean"]
    best = int(np.nanargmax(f1)) if has_val and np.isfinite(f1).any() else None
    row["best_f1_mean"] = float(f1[best]) if best is not None else math.nan
    row["best_epoch"] = int(c.val_epochs[best]) if best is not None else None
    return row


def _number_text(value: Any) -> str:
    """A CSV cell: '' for None / NaN, floats to 6 significant digits (an lr of 1e-7 stays 1e-07)."""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return "" if value is None else str(value)


def _cell(value: Any, digits: int = 2) -> str:
    """A table cell: '' for None / NaN, floats to ``digits`` decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """The short table (markdown, the printed one) of a ``final_row``: header -> cell."""
    epochs = f"{row['epochs']}" + (f"/{row['planned_epochs']}" if row["planned_epochs"] is not None else "")
    best = _cell(row["best_f1_mean"]) + (f" (epoch {row['best_epoch']})" if row["best_epoch"] is not None else "")
    return {"run": str(row["run"]), "epochs": epochs, "steps": str(row["steps"]), "train loss": _cell(row["loss"], 4),
            "lr": "" if not math.isfinite(row["lr"]) else f"{row['lr']:.2e}", "val epoch": _cell(row["val_epoch"]),
            "val Top-1": _cell(row["val_action_top1"]), "val Top-5": _cell(row["val_action_top5"]),
            "val F1_mean": _cell(row["val_f1_mean"]), "best F1_mean": best}


TABLE_HEADER = ("run", "epochs", "steps", "train loss", "lr", "val epoch", "val Top-1", "val Top-5", "val F1_mean",
                 "best F1_mean")
_MD_HEADER = "| " + " | ".join(TABLE_HEADER) + " |"


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FINAL_COLUMNS)
    for r in rows:
        w.writerow([_number_text(r[k]) for k in FINAL_COLUMNS])
    return buf.getvalue()


def _md_text(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [_MD_HEADER, "|" + "---|" * len(TABLE_HEADER)]
    for r in rows:
        cells = table_cells(r)
        lines.append("| " + " | ".join(cells[h].replace("|", "\\|") for h in TABLE_HEADER) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Comparison:
    """What ``compare_runs`` wrote: the overlay figure, the CSV and markdown tables, and the rows
    (``final_row``, in the order the runs were given)."""

    figure: Path
    csv: Path
    markdown: Path
    rows: list[dict[str, Any]]


def compare_runs(runs: Sequence[Path], out_dir: Path) -> Comparison:
    """Overlay the curves of ``runs`` (``compare.png``) and write their final metrics (``final_metrics.csv``,
    ``final_metrics.md``) into ``out_dir``. Every run is read and every output checked (writable, not a file
    of someone else's) before anything is written; a run given twice is a ``ValueError``."""
    runs = [Path(r) for r in runs]
    if not runs:
        raise ValueError("give at least one run folder")
    seen: dict[Path, Path] = {}
    for r in runs:
        if r.resolve() in seen:
            raise ValueError(f"{r}: the same run is given twice (as {seen[r.resolve()]} too)")
        seen[r.resolve()] = r
    curves = [read_curves(r) for r in runs]
    out_dir = Path(out_dir)
    check_writable(out_dir)
    paths = (out_dir / COMPARE, out_dir / FINAL_CSV, out_dir / FINAL_MD)
    check_outputs({paths[0]: is_piumr_png, paths[1]: starts_with(",".join(FINAL_COLUMNS)),
                    paths[2]: starts_with(_MD_HEADER)}, "piumr plot")
    labels = run_labels(runs)
    rows = [final_row(c, label) for c, label in zip(curves, labels, strict=True)]
    save_png(overlay_figure(curves, labels), paths[0])
    write_text_atomic(paths[1], _csv_text(rows))
    write_text_atomic(paths[2], _md_text(rows))
    return Comparison(*paths, rows=rows)


# ------------------------------------------------------------------------------------------ confusion

CONFUSION, PER_CLASS = "confusion.png", "per_class.csv"  # what ``evaluate`` adds to its --out folder
PER_CLASS_COLUMNS = ("label", "name", "group", "support", "predicted", "precision", "recall", "f1")
_ANNOTATE_UP_TO = 25  # classes shown; above that the cells are too small for their values


def confusion_figure(conf: npt.ArrayLike, names: Sequence[str], title: str) -> Figure:
    """The row-normalised confusion matrix ``conf`` (C, C) counts, row = true class, column = predicted: each
    row divided by its clips, so a row sums to 1 and its diagonal cell is that class's recall. Only the classes
    that occur (as a label or a prediction) are drawn; a class predicted but never a label has an empty (grey)
    row. Axis labels are ``names`` (C,) with the class index and, on rows, the number of clips."""
    counts = np.asarray(conf, dtype=np.int64)
    support, predicted = counts.sum(1), counts.sum(0)
    shown = np.flatnonzero((support > 0) | (predicted > 0))
    sub = counts[np.ix_(shown, shown)]
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(support[shown, None] > 0, sub / support[shown, None], np.nan)
    k = max(len(shown), 1)
    side = float(np.clip(0.32 * k + 3.5, 5.0, 40.0))
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["Blues"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    name = [names[i] if i < len(names) else str(i) for i in shown.tolist()]
    ax.set_xticks(range(len(shown)), [f"{n} [{i}]" for n, i in zip(name, shown, strict=True)], rotation=90,
                  fontsize=8)
    ax.set_yticks(range(len(shown)), [f"{n} [{i}] (n={support[i]})" for n, i in zip(name, shown, strict=True)],
                  fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (clips)")
    if len(shown) <= _ANNOTATE_UP_TO:
        for r, c in zip(*np.nonzero(np.nan_to_num(norm) > 0), strict=True):
            ax.text(c, r, f"{norm[r, c]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[r, c] > 0.6 else "black")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="fraction of the true class's clips")
    left_out = len(counts) - len(shown)
    note = f"\n{left_out} of {len(counts)} classes with no clip and no prediction left out" if left_out else ""
    ax.set_title(title + note, fontsize=10)
    fig.tight_layout()
    return fig


def per_class_csv(labels: npt.ArrayLike, pred: npt.ArrayLike, names: Sequence[str], groups: Sequence[str]) -> str:
    """``per_class.csv`` of true ``labels`` (N,) and predicted labels ``pred`` (N,): one row per class of ``names``
    (C,) with its ``groups`` (C,) name, clips (support), clips predicted as it, and scikit-learn's precision,
    recall and F1 in [0, 1]; a value that is undefined (precision of a class never predicted, recall of a class
    without clips) is left empty."""
    from sklearn.metrics import precision_recall_fscore_support

    y, p = np.asarray(labels, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    classes = np.arange(len(names))
    prec, rec, f1, support = precision_recall_fscore_support(y, p, labels=classes, zero_division=np.nan)
    predicted = np.bincount(p, minlength=len(names))
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PER_CLASS_COLUMNS)
    for i in range(len(names)):
        w.writerow([i, names[i], groups[i], int(support[i]), int(predicted[i]),
                    *(_number_text(float(v[i])) for v in (prec, rec, f1))])
    return buf.getvalue()
