"""Scoring a model over a data split, and ``piumr evaluate``'s files."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from piumr.config import DataConfig, TrainConfig
from piumr.data.loaders import data_root, eval_loader
from piumr.data.manifest import MA52_CLASSES, ClassInfo, clip_key
from piumr.data.splits import class_info, load_split, resolve_root
from piumr.errors import DatasetError
from piumr.files import MARKER_KEY, check_writable, has_marker, refuse_foreign, write_json_atomic, write_text_atomic
from piumr.metrics import EvalResult, evaluate_scores
from piumr.plots import (
    CONFUSION, PER_CLASS, PER_CLASS_COLUMNS, check_outputs, confusion_figure, is_piumr_png, per_class_csv, save_png,
    starts_with,
)
from piumr.source import resolve_source

__all__ = ["Scores", "collect_scores", "eval_loader", "evaluate_checkpoint", "score_metrics", "write_predictions_csv",
           "write_confusion"]


@dataclass
class Scores:
    """Per-clip outputs in dataset order: ``probs`` (N, K) softmax, ``embeddings`` (N, D) or None; ``domains``
    one name per clip ("" unknown; empty list: not collected)."""

    probs: np.ndarray
    labels: np.ndarray
    participants: list[str]
    paths: list[str]
    embeddings: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)


@torch.no_grad()
def collect_scores(model: nn.Module, loader: DataLoader[dict[str, Any]], device: torch.device, *,
                   amp: bool = False, keep_embeddings: bool = False) -> Scores:
    """Run ``model`` over ``loader``: softmax probabilities averaged over views.

    Under torch.distributed each rank scores its shard and the results are
    gathered (and de-duplicated by dataset index) on every rank.
    """
    was_training = model.training
    model.eval()
    idx_all: list[np.ndarray] = []
    probs_all: list[np.ndarray] = []
    emb_all: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    parts: list[str] = []
    domains: list[str] = []
    paths: list[str] = []
    skipped: list[str] = []
    use_amp = amp and device.type == "cuda"
    for batch in loader:
        video = batch["video"].to(device, non_blocking=True)
        views = video.shape[1] if video.dim() == 6 else 1
        flat = video.flatten(0, 1) if views > 1 else video
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = model(flat)
        p = torch.softmax(out.logits.float(), dim=1)
        e = out.embedding.float()
        if views > 1:
            p = p.view(-1, views, p.shape[1]).mean(1)
            e = e.view(-1, views, e.shape[1]).mean(1)
        probs_all.append(p.cpu().numpy())
        if keep_embeddings:
            emb_all.append(e.cpu().numpy())
        idx_all.append(batch["index"].numpy())
        labels.append(batch["action"].numpy())
        parts += batch["participant"]
        domains += batch["domain"]
        paths += batch["path"]
        skipped += batch["skipped"]
    model.train(was_training)
    local = {
        "index": np.concatenate(idx_all) if idx_all else np.zeros(0, dtype=np.int64),
        "probs": np.concatenate(probs_all) if probs_all else np.zeros((0, 0), dtype=np.float32),
        "emb": np.concatenate(emb_all) if emb_all else None,
        "labels": np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64),
        "parts": parts, "domains": domains, "paths": paths, "skipped": skipped,
    }
    shards = [local]
    if dist.is_available() and dist.is_initialized():
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, local)
        shards = gathered
    return _merge(shards)


def _merge(shards: list[dict[str, Any]]) -> Scores:
    """Concatenate rank shards, order by dataset index, drop sampler padding duplicates."""
    index = np.concatenate([s["index"] for s in shards])
    order = np.argsort(index, kind="stable")
    _, first = np.unique(index[order], return_index=True)
    keep = order[first]
    probs = np.concatenate([s["probs"] for s in shards if len(s["index"])])[keep] if len(index) else np.zeros((0, 0))
    emb = None
    if shards[0]["emb"] is not None:
        emb = np.concatenate([s["emb"] for s in shards if s["emb"] is not None])[keep]
    labels = np.concatenate([s["labels"] for s in shards])[keep]
    parts = [p for s in shards for p in s["parts"]]
    domains = [d for s in shards for d in s["domains"]]
    paths = [p for s in shards for p in s["paths"]]
    skipped = sorted({p for s in shards for p in s["skipped"]})
    return Scores(probs, labels, [parts[i] for i in keep], [paths[i] for i in keep], emb, skipped,
                  [domains[i] for i in keep])


def score_metrics(scores: Scores, classes: ClassInfo = MA52_CLASSES) -> EvalResult:
    """``evaluate_scores`` on collected scores (participant / domain metrics only where ids / domains are
    known; a manifest's ``classes`` give the label -> group mapping)."""
    known = any(scores.participants)
    return evaluate_scores(scores.probs, scores.labels, scores.participants if known else None,
                           domains=scores.domains if any(scores.domains) else None,
                           coarse=None if classes is MA52_CLASSES else classes.coarse,
                           words=(classes.label_word, classes.group_word))


#: the keys of a ``metrics.json`` written before it carried the ``MARKER_KEY``: piumr replaces such a file too
METRICS_LEGACY_KEYS = frozenset({"split", "views", "clips", "listed", "skipped"})
_PREDICTIONS_HEADER = "file,participant,label,label_name"


def _own_predictions(path: Path) -> bool:
    """Whether ``path`` starts with the header ``write_predictions_csv`` writes."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.readline().startswith(_PREDICTIONS_HEADER)


def write_predictions_csv(path: Path, scores: Scores, top: int = 5, classes: ClassInfo = MA52_CLASSES,
                          root: Path | None = None) -> None:
    """Per-clip ``predictions.csv``: file (the clip's path relative to the data ``root``, e.g. ``val/X.mp4`` or a
    manifest's ``lab/X.mp4``; its absolute path when outside it: a unique key), participant, true label (and its
    name in ``classes``), top-k labels with probabilities."""
    k = min(top, scores.probs.shape[1]) if scores.probs.size else 0
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(_PREDICTIONS_HEADER.split(",") + [c for i in range(1, k + 1) for c in (f"pred_{i}", f"prob_{i}")])
    for n in range(len(scores.paths)):
        order = np.argsort(-scores.probs[n], kind="stable")[:k]
        lab = int(scores.labels[n])
        key = clip_key(Path(scores.paths[n]), root) if root is not None else scores.paths[n]
        row: list[Any] = [key, scores.participants[n], lab, classes.names[lab]]
        for j in order:
            row += [int(j), f"{float(scores.probs[n, j]):.6f}"]
        w.writerow(row)
    write_text_atomic(path, buf.getvalue())


def write_confusion(out_dir: Path, result: EvalResult, scores: Scores, classes: ClassInfo, title: str) -> None:
    """``confusion.png`` (``result.confusion`` (C, C), rows normalised, with ``classes``' names) and
    ``per_class.csv`` (precision / recall / F1 of each class, from ``scores``' argmax predictions)."""
    num = result.confusion.shape[0]
    names = [classes.names[i] if i < len(classes.names) else str(i) for i in range(num)]
    groups = [classes.groups[classes.coarse[i]] if i < len(classes.coarse) else "" for i in range(num)]
    pred = np.argmax(scores.probs, axis=1) if scores.probs.size else np.zeros(0, dtype=np.int64)
    save_png(confusion_figure(result.confusion, names, title), out_dir / CONFUSION)
    write_text_atomic(out_dir / PER_CLASS, per_class_csv(scores.labels, pred, names, groups))


def evaluate_checkpoint(
    model: nn.Module, cfg: TrainConfig, *, split: Literal["train", "val", "val_seen", "test"], out_dir: Path | None,
    device: torch.device, views: int = 1, batch_size: int | None = None, progress: bool = True,
    data: DataConfig | None = None, source: Path | None = None,
) -> tuple[EvalResult, Scores]:
    """Evaluate ``model`` on ``split`` of ``data`` (default: the config's); write ``metrics.json``,
    ``predictions.csv``, the row-normalised ``confusion.png`` and ``per_class.csv`` into ``out_dir`` when given;
    ``source``, the checkpoint file, is named when the scores are not finite (an ``out_dir`` that cannot be
    written, or that holds a ``confusion.png`` / ``per_class.csv`` evaluate did not write, is refused before any
    clip is scored)."""
    if out_dir is not None:
        try:
            check_writable(out_dir)
        except OSError as e:
            raise ValueError(f"{e.filename}: {e.strerror}: metrics.json and predictions.csv cannot be written to "
                             f"{out_dir}; give --out a writable folder") from None
        refuse_foreign(out_dir / "metrics.json", lambda p: has_marker(p, METRICS_LEGACY_KEYS), "--out",
                       "a metrics.json of piumr evaluate")
        refuse_foreign(out_dir / "predictions.csv", _own_predictions, "--out", "a predictions.csv of piumr evaluate")
        check_outputs({out_dir / CONFUSION: is_piumr_png,
                       out_dir / PER_CLASS: starts_with(",".join(PER_CLASS_COLUMNS))}, "piumr evaluate")
    run_cfg = cfg if data is None else cfg.model_copy(update={"data": data})
    resolve_root(run_cfg.data, progress)
    classes = class_info(run_cfg.data)
    if resolve_source(run_cfg.data.root).kind == "manifest" and len(classes.names) != cfg.model.num_classes:
        raise DatasetError(f"{run_cfg.data.root}: its classes.csv has {len(classes.names)} classes, the model "
                           f"{cfg.model.num_classes} outputs (it was trained on other classes)")
    records = load_split(run_cfg.data, split, progress)
    beyond = next((r for r in records if not 0 <= r.action < cfg.model.num_classes), None)
    if beyond is not None:
        raise DatasetError(f"{run_cfg.data.root}: the {split} list labels {beyond.path.name} {beyond.action}, but the "
                           f"model outputs {cfg.model.num_classes} classes (labels 0..{cfg.model.num_classes - 1}): "
                           "it was trained on other classes than --data holds")
    scores = collect_scores(model, eval_loader(run_cfg, records, views=views, batch_size=batch_size), device,
                            amp=run_cfg.optim.amp)
    if not np.isfinite(scores.probs).all():
        raise ValueError(f"{source or 'the model'}: its scores on the {split} split are not finite (NaN or inf): "
                         "the weights are broken (e.g. saved from a diverged run)")
    result = score_metrics(scores, classes)
    if out_dir is not None:
        payload = {MARKER_KEY: "piumr", "split": split, "views": views, "clips": len(scores.labels),
                   "listed": len(records), "skipped": scores.skipped, **result.to_json()}
        if classes is not MA52_CLASSES:  # a manifest's or a synthetic task's class names, groups, label -> group
            payload["classes"] = {"names": list(classes.names), "groups": list(classes.groups),
                                  "coarse": list(classes.coarse)}
        write_json_atomic(out_dir / "metrics.json", payload)
        write_predictions_csv(out_dir / "predictions.csv", scores, classes=classes, root=data_root(records))
        where = f" of {source.parent.name}/{source.name}" if source is not None else ""
        write_confusion(out_dir, result, scores, classes, f"confusion{where}, {split} split, {len(scores.labels)} "
                        f"clips{f', {views} views' if views > 1 else ''} (rows: true class, normalised)")
    return result, scores
