"""MA-52 evaluation: the official metrics of the paper, plus per-class / per-person views.

Official metrics (paper Table 1-3, ``official_metrics``), as the official MA-52 code computes
them from the 52-way scores:

* action prediction = ``argmax`` of the 52 scores; body prediction = body group of the action
  prediction (no separate body head);
* Top-1 / Top-5 accuracy at action level, Top-1 at body level;
* F1 exactly as scikit-learn's ``f1_score(y_true, y_pred, average='macro'|'micro')`` at action
  level (52 classes) and body level (7 groups). Macro F1 averages over the labels that occur in
  ``y_true`` OR ``y_pred`` -- not over all 52 -- so on a subset it differs from libraries that
  average over every class;
* ``f1_mean`` = mean of the four F1 values.

All values are in percent (0-100), like the paper. For single-label data micro F1 equals Top-1.

Ties: the action prediction is ``numpy.argmax``, i.e. the LOWEST class index among equal maximal
scores. Top-k rankings use the same rule (stable sort on descending score, equal scores ordered
by ascending class index), so Top-1 == argmax accuracy == micro F1 always hold.

F1 is computed here with numpy (``2 TP / (2 TP + FP + FN)`` per label); the tests check it against
``sklearn.metrics.f1_score`` on many random draws.

Inputs may be ``numpy.ndarray`` or ``torch.Tensor`` (scores are converted with
``.detach().cpu().float().numpy()``). NaN scores raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import numpy.typing as npt
import torch

from piumr.data.ma52 import ACTION_TO_BODY, NUM_ACTIONS, NUM_BODIES

__all__ = [
    "PAPER_COLUMNS",
    "SUBMISSION_HEADER",
    "EvalResult",
    "ParticipantMetrics",
    "confusion",
    "domain_accuracy",
    "evaluate_scores",
    "format_table",
    "official_metrics",
    "participant_metrics",
    "per_class_accuracy",
    "topk_submission_rows",
]

ArrayLike = npt.ArrayLike | torch.Tensor
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# Official 52 -> 7 mapping (action label -> body group), as in the official evaluation script.
_ACTION_TO_BODY: tuple[int, ...] = ACTION_TO_BODY
_NUM_ACTIONS = NUM_ACTIONS
_NUM_BODIES = NUM_BODIES
_TOPK = 5

#: ``(metric key, display name)`` in the column order of the paper's Table 1.
PAPER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("body_top1", "Body Top-1"),
    ("action_top1", "Action Top-1"),
    ("action_top5", "Action Top-5"),
    ("body_f1_macro", "Body F1_macro"),
    ("body_f1_micro", "Body F1_micro"),
    ("action_f1_macro", "Action F1_macro"),
    ("action_f1_micro", "Action F1_micro"),
    ("f1_mean", "F1_mean"),
)

#: Header of the Codabench ``prediction.csv``.
SUBMISSION_HEADER: list[str] = (
    ["vid"] + [f"action_pred_{i}" for i in range(1, _TOPK + 1)] + [f"body_pred_{i}" for i in range(1, _TOPK + 1)]
)


# --------------------------------------------------------------------------------------------
# conversion / validation helpers
# --------------------------------------------------------------------------------------------
def _scores_np(scores: ArrayLike) -> FloatArray:
    """Scores ``(N, C)`` -> float64 numpy array; raises on wrong rank, empty input or NaN."""
    if isinstance(scores, torch.Tensor):
        arr = scores.detach().cpu().float().numpy().astype(np.float64)
    else:
        arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"scores must have shape (N, C), got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"scores must be non-empty, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError("scores contain NaN")
    return arr


def _ints_np(x: ArrayLike, name: str) -> IntArray:
    """Integer labels/predictions ``(N,)`` -> int64 numpy array; non-integral values raise."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        arr: npt.NDArray[np.generic] = (t.double() if t.is_floating_point() else t.long()).numpy()
    else:
        arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got {arr.shape}")
    if arr.dtype.kind == "f":
        as_float = arr.astype(np.float64)
        if not np.all(np.isfinite(as_float)) or not np.all(as_float == np.round(as_float)):
            raise ValueError(f"{name} must hold integer class indices")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_range(x: IntArray, num_classes: int, name: str) -> None:
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got range [{x.min()}, {x.max()}]")


def _to_body(actions: IntArray, coarse: Sequence[int] = _ACTION_TO_BODY) -> IntArray:
    """Map action labels ``(N,)`` in [0, 52) to body groups ``(N,)`` in [0, 7) (or a manifest's labels to its
    groups with ``coarse``, label -> group index)."""
    _check_range(actions, len(coarse), "action labels")
    table = np.asarray(coarse, dtype=np.int64)
    mapped: IntArray = table[actions]
    return mapped


def _ranking(scores: FloatArray) -> IntArray:
    """Class indices ``(N, C)`` by descending score; ties -> lower index first (argmax rule)."""
    order: IntArray = np.argsort(-scores, axis=1, kind="stable").astype(np.int64)
    return order


def _f1_macro_micro(y_true: IntArray, y_pred: IntArray) -> tuple[float, float]:
    """sklearn ``f1_score`` macro and micro (fractions, not percent) for single-label data.

    Macro averages per-label F1 over the labels present in ``y_true`` or ``y_pred``;
    micro F1 = 2 TP / (2 TP + FP + FN) = TP / N.
    """
    labels = np.union1d(y_true, y_pred)
    pos_t = np.searchsorted(labels, y_true)
    pos_p = np.searchsorted(labels, y_pred)
    n_lab = labels.size
    tp = np.bincount(pos_t[y_true == y_pred], minlength=n_lab).astype(np.float64)
    n_true = np.bincount(pos_t, minlength=n_lab).astype(np.float64)
    n_pred = np.bincount(pos_p, minlength=n_lab).astype(np.float64)
    # every label here occurs in y_true or y_pred, so the denominator is > 0
    per_label = 2.0 * tp / (n_true + n_pred)
    macro = float(per_label.mean())
    micro = float(tp.sum() / y_true.size)
    return macro, micro


def _prepare(scores: ArrayLike, labels: ArrayLike, coarse: Sequence[int] | None = None) -> tuple[FloatArray, IntArray]:
    s = _scores_np(scores)
    y = _ints_np(labels, "labels")
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"scores have {s.shape[0]} rows but labels have {y.shape[0]}")
    if coarse is None and s.shape[1] > _NUM_ACTIONS:
        raise ValueError(f"scores have {s.shape[1]} classes, MA-52 has at most {_NUM_ACTIONS}")
    if coarse is not None and s.shape[1] > len(coarse):
        raise ValueError(f"scores have {s.shape[1]} classes, the group mapping covers {len(coarse)}")
    _check_range(y, s.shape[1], "labels")
    return s, y


# --------------------------------------------------------------------------------------------
# official metrics
# --------------------------------------------------------------------------------------------
def official_metrics(scores: ArrayLike, labels: ArrayLike, coarse: Sequence[int] | None = None) -> dict[str, float]:
    """The official MA-52 metrics, in percent (for a manifest: label and group level, ``coarse`` mapping
    label -> group index; the keys keep MA-52's action / body names).

    Args:
        scores: ``(N, C)`` class scores (logits or probabilities), normally ``C = 52``;
            ``C < 52`` is accepted (columns are action labels ``0..C-1``), ``C > 52`` raises.
        labels: ``(N,)`` integer action labels in ``[0, C)``, ``N >= 1``.

    Returns:
        dict with keys ``body_top1, action_top1, action_top5, body_f1_macro, body_f1_micro,
        action_f1_macro, action_f1_micro, f1_mean`` (floats in 0-100). Top-5 uses
        ``k = min(5, C)``. Ties: see module docstring (lowest index wins).
    """
    s, y = _prepare(scores, labels, coarse)
    table = _ACTION_TO_BODY if coarse is None else coarse
    k = min(_TOPK, s.shape[1])
    ranking = _ranking(s)
    pred = ranking[:, 0]  # == np.argmax(s, axis=1)
    top5_hit = (ranking[:, :k] == y[:, None]).any(axis=1)

    body_true = _to_body(y, table)
    body_pred = _to_body(pred, table)

    a_macro, a_micro = _f1_macro_micro(y, pred)
    b_macro, b_micro = _f1_macro_micro(body_true, body_pred)
    out = {
        "body_top1": 100.0 * float(np.mean(body_true == body_pred)),
        "action_top1": 100.0 * float(np.mean(y == pred)),
        "action_top5": 100.0 * float(np.mean(top5_hit)),
        "body_f1_macro": 100.0 * b_macro,
        "body_f1_micro": 100.0 * b_micro,
        "action_f1_macro": 100.0 * a_macro,
        "action_f1_micro": 100.0 * a_micro,
    }
    out["f1_mean"] = (out["body_f1_macro"] + out["body_f1_micro"] + out["action_f1_macro"] + out["action_f1_micro"]) / 4.0
    return out


# --------------------------------------------------------------------------------------------
# beyond the paper
# --------------------------------------------------------------------------------------------
def _pred_labels(pred: ArrayLike, labels: ArrayLike, num_classes: int) -> tuple[IntArray, IntArray]:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p = _ints_np(pred, "pred")
    y = _ints_np(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"pred {p.shape} and labels {y.shape} differ in shape")
    _check_range(p, num_classes, "pred")
    _check_range(y, num_classes, "labels")
    return p, y


def per_class_accuracy(pred: ArrayLike, labels: ArrayLike, num_classes: int) -> dict[int, float]:
    """Per-class accuracy (= recall) in percent.

    Args:
        pred: ``(N,)`` predicted labels in ``[0, num_classes)``.
        labels: ``(N,)`` true labels in ``[0, num_classes)``.
        num_classes: number of classes ``C``.

    Returns:
        ``{class: 100 * correct / count}`` for the classes that occur in ``labels`` only
        (ascending class order); absent classes are omitted, not reported as 0.
    """
    p, y = _pred_labels(pred, labels, num_classes)
    count = np.bincount(y, minlength=num_classes)
    correct = np.bincount(y[p == y], minlength=num_classes)
    return {int(c): 100.0 * float(correct[c]) / float(count[c]) for c in np.flatnonzero(count)}


def confusion(pred: ArrayLike, labels: ArrayLike, num_classes: int) -> IntArray:
    """Confusion matrix ``(C, C)`` of counts, int64: row = true label, column = prediction.

    Same convention as ``sklearn.metrics.confusion_matrix(labels, pred, labels=range(C))``.
    """
    p, y = _pred_labels(pred, labels, num_classes)
    flat = np.bincount(y * num_classes + p, minlength=num_classes * num_classes)
    mat: IntArray = flat.reshape(num_classes, num_classes).astype(np.int64)
    return mat


class ParticipantMetrics(TypedDict):
    """Per-person view of action Top-1 (all accuracies in percent).

    ``mean``/``std`` are over participants (unweighted, population std ``ddof=0``);
    ``worst10_acc`` is the mean accuracy of the ``num_worst10 = ceil(P / 10)`` worst participants.
    """

    per_participant: dict[str, float]
    num_participants: int
    num_unknown_excluded: int
    mean: float
    std: float
    worst_id: str
    worst_acc: float
    worst10_acc: float
    num_worst10: int


def participant_metrics(pred: ArrayLike, labels: ArrayLike, participants: Sequence[str]) -> ParticipantMetrics:
    """Per-participant action Top-1 and its worst-case summaries (the DRO view).

    Args:
        pred: ``(N,)`` predicted action labels.
        labels: ``(N,)`` true action labels.
        participants: ``N`` participant ids; the empty string means "unknown" and those clips
            are EXCLUDED from every participant metric (counted in ``num_unknown_excluded``).

    Returns:
        ``ParticipantMetrics``. Worst participant: lowest accuracy, ties broken by the smallest
        id. Worst-10 %: mean of the ``ceil(P/10)`` lowest per-participant accuracies.

    Raises:
        ValueError: on length mismatch or when no clip has a known participant.
    """
    p = _ints_np(pred, "pred")
    y = _ints_np(labels, "labels")
    if p.shape != y.shape or len(participants) != p.shape[0]:
        raise ValueError(f"length mismatch: pred {p.shape[0]}, labels {y.shape[0]}, participants {len(participants)}")
    ids = np.asarray([str(x) for x in participants], dtype=object)
    known = ids != ""
    if not known.any():
        raise ValueError("no clip has a known participant id (all ids are empty)")
    uniq, inv = np.unique(ids[known].astype(str), return_inverse=True)
    correct = (p == y)[known].astype(np.float64)
    acc = 100.0 * np.bincount(inv, weights=correct) / np.bincount(inv)
    per = {str(pid): float(a) for pid, a in zip(uniq, acc, strict=True)}
    order = sorted(per.items(), key=lambda kv: (kv[1], kv[0]))
    n_part = len(order)
    n_worst = (n_part + 9) // 10  # ceil(P / 10), in integer arithmetic
    worst_vals = [a for _, a in order[:n_worst]]
    return ParticipantMetrics(
        per_participant=per,
        num_participants=n_part,
        num_unknown_excluded=int((~known).sum()),
        mean=float(np.mean(acc)),
        std=float(np.std(acc)),
        worst_id=order[0][0],
        worst_acc=order[0][1],
        worst10_acc=float(np.mean(worst_vals)),
        num_worst10=n_worst,
    )


def domain_accuracy(pred: ArrayLike, labels: ArrayLike, domains: Sequence[str]) -> dict[str, float]:
    """Action (label) Top-1 in percent per domain, ``{domain: accuracy}`` sorted by name; clips whose
    domain is "" (unknown) are left out."""
    p = _ints_np(pred, "pred")
    y = _ints_np(labels, "labels")
    if p.shape != y.shape or len(domains) != p.shape[0]:
        raise ValueError(f"length mismatch: pred {p.shape[0]}, labels {y.shape[0]}, domains {len(domains)}")
    out: dict[str, float] = {}
    for name in sorted({d for d in domains if d}):
        mask = np.asarray([d == name for d in domains])
        out[name] = 100.0 * float(np.mean(p[mask] == y[mask]))
    return out


# --------------------------------------------------------------------------------------------
# bundle
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalResult:
    """Everything ``evaluate_scores`` computes.

    Attributes:
        official: ``official_metrics`` (percent).
        per_class: ``per_class_accuracy`` of the argmax predictions (percent, present classes).
        participants: ``participant_metrics`` or ``None`` when no ids were given.
        confusion: ``(C, C)`` int64 counts, row = true, column = predicted.
        domains: ``domain_accuracy`` or ``None`` when no domains were given.
        words: what the two levels are called: MA-52's ("action", "body"), a manifest's ("label", "group");
            ``to_json`` names the official keys with them.
    """

    official: dict[str, float]
    per_class: dict[int, float]
    participants: ParticipantMetrics | None
    confusion: IntArray
    domains: dict[str, float] | None = None
    words: tuple[str, str] = ("action", "body")

    def to_json(self) -> dict[str, object]:
        """JSON-serialisable dict (plain lists/floats; ``per_class`` keys become strings)."""
        part: dict[str, object] | None = None
        if self.participants is not None:
            part = dict(self.participants)
            part["per_participant"] = dict(self.participants["per_participant"])
        out: dict[str, object] = {
            "official": {_renamed(k, self.words): float(v) for k, v in self.official.items()},
            "per_class": {str(k): float(v) for k, v in self.per_class.items()},
            "participants": part,
            "confusion": [[int(v) for v in row] for row in self.confusion.tolist()],
        }
        if self.domains is not None:
            out["domains"] = dict(self.domains)
        return out


def _renamed(key: str, words: tuple[str, str]) -> str:
    """An official metric key with the level words ``words`` (``action_top1`` -> ``label_top1``)."""
    return key.replace("action", words[0], 1) if key.startswith("action") else key.replace("body", words[1], 1)


def evaluate_scores(
    scores: ArrayLike, labels: ArrayLike, participants: Sequence[str] | None = None, *,
    domains: Sequence[str] | None = None, coarse: Sequence[int] | None = None,
    words: tuple[str, str] = ("action", "body"),
) -> EvalResult:
    """Official metrics + per-class accuracy + confusion (+ participant and domain metrics).

    Args:
        scores: ``(N, C)`` scores, ``C <= 52`` (``C <= len(coarse)`` with ``coarse``).
        labels: ``(N,)`` action labels in ``[0, C)``.
        participants: optional ``N`` participant ids ("" = unknown, excluded).
        domains: optional ``N`` domain names ("" = unknown, excluded): per-domain accuracy.
        coarse: label -> group index of a manifest's classes (default: MA-52's action -> body).
        words: the names of the two levels (``EvalResult.words``).
    """
    s, y = _prepare(scores, labels, coarse)
    num_classes = s.shape[1]
    pred = np.argmax(s, axis=1).astype(np.int64)
    return EvalResult(
        official=official_metrics(s, y, coarse),
        per_class=per_class_accuracy(pred, y, num_classes),
        participants=None if participants is None else participant_metrics(pred, y, participants),
        confusion=confusion(pred, y, num_classes),
        domains=None if domains is None else domain_accuracy(pred, y, domains),
        words=words,
    )


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------
def format_table(metrics: dict[str, float], words: tuple[str, str] = ("action", "body")) -> str:
    """Two-line plain-text table (header, values with 2 decimals) in the paper's column order; ``words`` name
    the two levels in the header (a manifest's "label" / "group").

    Raises ``KeyError`` if a ``PAPER_COLUMNS`` key is missing from ``metrics``.
    """
    cells = [(name.replace("Action", words[0].capitalize()).replace("Body", words[1].capitalize()),
              f"{metrics[key]:.2f}") for key, name in PAPER_COLUMNS]
    widths = [max(len(n), len(v)) for n, v in cells]
    header = " | ".join(n.rjust(w) for (n, _), w in zip(cells, widths, strict=True))
    values = " | ".join(v.rjust(w) for (_, v), w in zip(cells, widths, strict=True))
    return f"{header}\n{values}"


def topk_submission_rows(vids: Sequence[str], scores: ArrayLike) -> list[list[str | int]]:
    """Rows of the Codabench ``prediction.csv`` (header: ``SUBMISSION_HEADER``).

    Args:
        vids: ``N`` video file names without folder (e.g. ``test0000.mp4``); a path separator raises.
        scores: ``(N, 52)`` action scores.

    Returns:
        ``N`` rows ``[vid, a1..a5, b1..b5]``: top-5 action labels best first (ties -> lower
        index), then the body group of each of those actions (duplicates kept, as the official
        script derives them).
    """
    s = _scores_np(scores)
    if s.shape[1] != _NUM_ACTIONS:
        raise ValueError(f"submission needs (N, {_NUM_ACTIONS}) scores, got {s.shape}")
    if len(vids) != s.shape[0]:
        raise ValueError(f"{len(vids)} vids but {s.shape[0]} score rows")
    top = _ranking(s)[:, :_TOPK]
    body = _to_body(top.reshape(-1)).reshape(top.shape)
    rows: list[list[str | int]] = []
    for i, vid in enumerate(vids):
        if "/" in vid or "\\" in vid:
            raise ValueError(f"vid must be a bare file name, got {vid!r}")
        rows.append([vid, *[int(a) for a in top[i]], *[int(b) for b in body[i]]])
    return rows
