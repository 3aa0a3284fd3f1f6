"""``piumr predict``: top-5 actions and the body group for clips (a manifest's labels and group), and
Codabench submissions.

Every input is answered: a clip gives a :class:`ClipPrediction`; a missing path, a folder without
videos, an unreadable clip or a model output that is not finite gives a :class:`ClipFailure`, and
the other clips are still predicted. :meth:`to_json` of both has the same keys (``file``,
``top5``, ``body``, ``error``) and never holds NaN or infinity.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from piumr.config import TrainConfig
from piumr.data.loaders import build_dataset, eval_loader
from piumr.data.ma52 import ACTION_NAMES, MANIFEST_NAME, ClipRecord, read_split
from piumr.data.manifest import MA52_CLASSES, ClassInfo, read_manifest
from piumr.data.synth.tasks import task_classes
from piumr.errors import DatasetError, VideoError
from piumr.evaluate import collect_scores
from piumr.files import atomic_write, check_writable, is_submission_zip, path_problem, refuse_foreign
from piumr.metrics import SUBMISSION_HEADER, topk_submission_rows
from piumr.source import resolve_source

__all__ = ["VIDEO_SUFFIXES", "ClipPrediction", "ClipFailure", "TrainedOn", "trained_on", "find_latest_checkpoint",
           "expand_inputs", "manifest_classes", "manifest_inputs", "predict_clips", "write_submission"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


@dataclass(frozen=True)
class ClipPrediction:
    """Prediction for one clip: ``top`` = [(label, name, probability)] best first."""

    path: Path
    top: list[tuple[int, str, float]]
    body: int
    body_name: str
    body_prob: float

    def to_json(self) -> dict[str, object]:
        return {"file": str(self.path), "top5": [{"label": i, "name": n, "prob": p} for i, n, p in self.top],
                "body": {"label": self.body, "name": self.body_name, "prob": self.body_prob}, "error": None}


@dataclass(frozen=True)
class ClipFailure:
    """An input that gave no prediction; ``reason`` names the file or folder."""

    path: Path
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"file": str(self.path), "top5": None, "body": None, "error": self.reason}


@dataclass(frozen=True)
class TrainedOn:
    """What a checkpoint was trained on, for the user: ``classes`` its training split held (None: not
    recorded), ``warning`` one line when that is not MA-52's 52 classes (else None); ``names`` the class
    names and groups a prediction shows (a manifest's ``classes.csv``, else MA-52's)."""

    kind: str
    classes: tuple[int, ...] | None
    warning: str | None
    names: ClassInfo = MA52_CLASSES

    def describe(self) -> str:
        """One line naming the classes the model was trained to output."""
        if self.classes is None:
            return f"trained on {self.kind} data; its training classes are not recorded"
        if self.kind == "manifest":
            return (f"trained on a manifest: {len(self.classes)} of its {len(self.names.names)} classes "
                    f"({', '.join(self.names.names[c] for c in self.classes)})")
        names = ", ".join(f"{c} {self.names.names[c] if c < len(self.names.names) else '?'}" for c in self.classes)
        if len(self.classes) == len(ACTION_NAMES):
            return f"trained on {self.kind} data: all {len(ACTION_NAMES)} MA-52 classes"
        return (f"trained on {self.kind} data: {len(self.classes)} of the {len(ACTION_NAMES)} MA-52 classes "
                f"({names}); the others were never seen")


def trained_on(meta: dict[str, Any], path: Path, synth_task: int = 1) -> TrainedOn:
    """Read a checkpoint's ``trained_on`` metadata (``piumr.data.splits.trained_on``); ``path`` is named
    in the warning. A synthetic task's labels are named by what they show (``task_classes``); ``synth_task``
    is the task of a checkpoint that does not record it (its config's ``data.synth_task``)."""
    info = meta.get("trained_on")
    if not isinstance(info, dict):
        return TrainedOn("unrecorded", None,
                         f"{path}: the checkpoint does not record its training data (written by an older piumr); "
                         "predictions may cover only some MA-52 classes")
    kind = str(info.get("kind", "unknown"))
    raw = info.get("classes")
    classes = tuple(int(c) for c in raw) if isinstance(raw, list) else None
    if kind == "manifest" and isinstance(info.get("names"), list):
        names = ClassInfo(tuple(str(n) for n in info["names"]), tuple(int(c) for c in info["coarse"]),
                          tuple(str(g) for g in info["groups"]))
        return TrainedOn(kind, classes, None, names)
    full = classes is not None and classes == tuple(range(len(ACTION_NAMES)))
    warning = None
    if kind not in ("MA-52", "prepared cache") or not full:
        seen = f"{len(classes)} of the {len(ACTION_NAMES)} MA-52 classes" if classes is not None else "unrecorded classes"
        warning = (f"{path}: trained on {kind} data ({seen}), not on MA-52's {len(ACTION_NAMES)} classes; "
                   "predictions on real MA-52 clips are not meaningful")
    return TrainedOn(kind, classes, warning,
                     task_classes(int(info.get("task", synth_task))) if kind == "synthetic" else MA52_CLASSES)


def find_latest_checkpoint(artifacts: Path) -> Path | None:
    """The ``best.safetensors`` most recently written anywhere under ``artifacts`` (or None)."""
    if not artifacts.is_dir():
        return None
    found = sorted(artifacts.rglob("best.safetensors"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def expand_inputs(inputs: Sequence[Path]) -> list[Path | ClipFailure]:
    """Files as given; folders expanded to their video files (sorted, by suffix: ``VIDEO_SUFFIXES``).

    A missing path or a folder holding no video file becomes a :class:`ClipFailure` in its place,
    so the remaining inputs are still predicted. In a folder, an entry named like a video that is not
    one (a folder, a device, a broken link, a link loop) is a :class:`ClipFailure` naming it, as it is
    when given by itself.
    """
    out: list[Path | ClipFailure] = []
    for p in inputs:
        if p.is_dir():
            found: list[Path | ClipFailure] = []
            for q in sorted(q for q in p.iterdir() if q.suffix.lower() in VIDEO_SUFFIXES):
                problem = path_problem(q) or (None if q.is_file() else "a folder, not a video file")
                found.append(q if problem is None else ClipFailure(q, f"{q}: {problem}; skipped"))
            out += found or [ClipFailure(p, f"{p}: no video files ({', '.join(VIDEO_SUFFIXES)}) in this folder")]
        elif (problem := path_problem(p)) is None:
            out.append(p)
        else:
            out.append(ClipFailure(p, f"{p}: {problem}"))
    return out


def manifest_inputs(data: Path | None) -> list[Path]:
    """The clips ``piumr predict --data MANIFEST`` predicts: its rows marked ``split=test`` when there are
    any, else every row (checked like training data); nothing for no ``data`` or an MA-52 root."""
    if data is None or resolve_source(data).kind != "manifest":
        return []
    man = read_manifest(data)
    if (man.path.parent / MANIFEST_NAME).is_file():
        raise DatasetError(f"{data}: a prepared cache holds frames, not videos; predict from the manifest it was "
                           "prepared from")
    test = [r.path for r, s in zip(man.records, man.splits, strict=True) if s == "test"]
    return test or [r.path for r in man.records]


def manifest_classes(data: Path, names: ClassInfo, outputs: int, checkpoint: Path) -> ClassInfo:
    """The classes ``piumr predict --data MANIFEST`` names: the manifest's ``classes.csv``, which must be the
    classes the checkpoint outputs (``outputs`` of them, named ``names``: ``TrainedOn.names``); a
    ``DatasetError`` naming both files when they are not (predictions would be named after other classes)."""
    classes = read_manifest(data, check_files=False).classes
    other = f"the checkpoint {checkpoint} was trained on other classes; predict with one trained on these"
    if len(classes.names) != outputs:
        raise DatasetError(f"--data {data}: its classes.csv has {len(classes.names)} classes, the checkpoint "
                           f"{outputs} outputs: {other}")
    for i, (mine, theirs) in enumerate(zip(classes.names, names.names)):
        if mine != theirs:
            raise DatasetError(f"--data {data}: class {i} of its classes.csv is {mine!r}, the checkpoint's is "
                               f"{theirs!r}: {other}")
    return classes


def predict_clips(model: nn.Module, cfg: TrainConfig, inputs: Sequence[Path | ClipFailure], device: torch.device,
                  *, views: int = 1, top: int = 5, names: ClassInfo = MA52_CLASSES,
                  ) -> Iterator[ClipPrediction | ClipFailure]:
    """Predict each clip in turn (eval sampling, centre crop), one result per input in input order.

    ``inputs`` come from :func:`expand_inputs`; failures in it are passed through. Unreadable clips
    and clips whose class probabilities are not finite (e.g. a checkpoint holding NaN weights)
    yield :class:`ClipFailure`. ``names``: class names and groups (``TrainedOn.names``).
    """
    paths = [p for p in inputs if isinstance(p, Path)]
    records = [ClipRecord(Path(p), 0, 0, None, None, None) for p in paths]
    ds = build_dataset(cfg, records, "predict", views=views)
    model.eval()
    i = -1  # index into records (the inputs that are paths)
    for item in inputs:
        if isinstance(item, ClipFailure):
            yield item
            continue
        i += 1
        rec = records[i]
        try:
            video = ds[i]["video"]  # (3, T, crop, crop) or (V, 3, T, crop, crop)
        except VideoError as e:
            yield ClipFailure(rec.path, str(e))
            continue
        batch = video if views > 1 else video[None]
        with torch.no_grad():
            probs = torch.softmax(model(batch.to(device)).logits.float(), dim=1).mean(0).cpu().numpy()  # (classes,)
        if not np.isfinite(probs).all():
            yield ClipFailure(rec.path, f"{rec.path}: the model's class scores are not finite (NaN or inf); "
                                        "the checkpoint's weights are probably corrupt")
            continue
        order = np.argsort(-probs, kind="stable")[:top]
        best = int(order[0])
        coarse = names.coarse
        body = coarse[best] if best < len(coarse) else -1
        body_prob = float(sum(probs[a] for a in range(min(len(probs), len(coarse))) if coarse[a] == body))
        yield ClipPrediction(
            rec.path, [(int(j), names.names[j] if j < len(names.names) else str(j), float(probs[j])) for j in order],
            body, names.groups[body] if body >= 0 else "?", body_prob)


def write_submission(model: nn.Module, cfg: TrainConfig, test_root: Path, out_zip: Path, device: torch.device, *,
                     views: int = 1) -> int:
    """Score the official test list of ``test_root`` and write ``out_zip`` holding ``prediction.csv``
    (Codabench format, at the zip root). Returns the number of rows. Broken clips raise; an ``out_zip`` that
    cannot be written (a folder, a read-only or full disk) raises its ``OSError``, and one that is a file piumr
    did not write (not a zip holding only ``prediction.csv``) a ``ValueError``, before any clip is scored."""
    refuse_foreign(out_zip, is_submission_zip, "--submission", "a piumr submission (a zip holding only prediction.csv)")
    check_writable(out_zip, file=True)
    records = read_split(test_root, "test")
    run_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"on_error": "raise"})})
    scores = collect_scores(model, eval_loader(run_cfg, records, views=views), device, amp=cfg.optim.amp)
    if scores.probs.shape[1] != 52:
        raise DatasetError(f"{test_root}: a submission needs a 52-class model, this one has {scores.probs.shape[1]}")
    rows = topk_submission_rows([Path(p).name for p in scores.paths], scores.probs)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUBMISSION_HEADER)
    w.writerows(rows)

    def _zip(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("prediction.csv", buf.getvalue())

    atomic_write(out_zip, _zip)
    return len(rows)
