"""Paired seed-by-seed difference of two rows of a finished experiment, with a 95 % t interval.

Both rows must share their seeds (each seed fixes the data order and the
person -> fold assignment alike), so ``b - a`` is taken per seed and the
interval is Student's t over those differences (n - 1 degrees of freedom).

Command line::

    python -m piumr.reproduce.paired artifacts/.../person-shift --a x3d --b piumr [--out paired.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

from piumr.shift.stats import Clusters, mde, paired_bootstrap

__all__ = ["PairedDiff", "METRICS", "SEEN_METRICS", "paired_difference", "seed_values", "compare_rows",
           "person_resolution", "main"]

#: official metrics (from ``metrics``) and per-participant summaries (from ``participants``)
METRICS: tuple[str, ...] = ("action_top1", "f1_mean", "p_mean", "p_std", "p_worst", "p_worst10")
#: seen-persons metrics (from ``seen``, person-disjoint runs only)
SEEN_METRICS: tuple[str, ...] = ("seen_top1",)
_PARTICIPANT_KEYS = {"p_mean": "mean", "p_std": "std", "p_worst": "worst_acc", "p_worst10": "worst10_acc"}


@dataclass(frozen=True)
class PairedDiff:
    """``b - a`` per seed: mean, 95 % t interval (``lo``, ``hi``; NaN for one seed), the values."""

    metric: str
    n: int
    a_mean: float
    b_mean: float
    mean: float
    lo: float
    hi: float
    diffs: tuple[float, ...]


def paired_difference(metric: str, a: list[float], b: list[float], level: float = 0.95) -> PairedDiff:
    """Mean of ``b[i] - a[i]`` with a ``level`` Student-t interval. Raises ``ValueError`` on unequal lengths."""
    if len(a) != len(b) or not a:
        raise ValueError(f"{metric}: need the same non-zero number of seeds in both rows, got {len(a)} and {len(b)}")
    d = [y - x for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        lo = hi = math.nan
    else:
        sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1))
        half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
        lo, hi = mean - half, mean + half
    return PairedDiff(metric, n, sum(a) / n, sum(b) / n, mean, lo, hi, tuple(d))


def seed_values(row: dict[str, Any], metric: str) -> dict[int, float]:
    """``{seed: value}`` of ``metric`` from a ``rows/<key>.json`` payload. Raises ``KeyError`` if absent."""
    out: dict[int, float] = {}
    for r in row["seeds"]:
        if metric == "seen_top1":
            if not r.get("seen"):
                raise KeyError(f"{metric}: row {row['row']!r} seed {r['seed']} has no seen-persons result")
            out[int(r["seed"])] = float(r["seen"]["metrics"]["action_top1"])
        elif metric in _PARTICIPANT_KEYS:
            if not r.get("participants"):
                raise KeyError(f"{metric}: row {row['row']!r} seed {r['seed']} has no per-participant results")
            out[int(r["seed"])] = float(r["participants"][_PARTICIPANT_KEYS[metric]])
        else:
            out[int(r["seed"])] = float(r["metrics"][metric])
    return out


def _rows(exp_dir: Path, a: str, b: str) -> dict[str, Any]:
    rows = {}
    for key in (a, b):
        p = exp_dir / "rows" / f"{key}.json"
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such row file (run the experiment first)")
        rows[key] = json.loads(p.read_text())
    return rows


def person_resolution(exp_dir: Path, a: str, b: str, *, reps: int = 2000) -> dict[str, Any]:
    """What the experiment can resolve: ``b - a`` of unseen-person action Top-1 (points) with a 95 % interval from
    the bootstrap clustered by person x seed (``piumr.shift.stats.paired_bootstrap``: seeds resampled, then persons within
    each seed), its half-width and the minimum detectable effect (80 % power, 5 % two-sided; ``piumr.shift.stats.mde``).

    Units are the held-out persons of each seed (``participants.per_participant`` of ``rows/{a,b}.json``), weighted
    equally (every held-out person of a synthetic split has the same number of clips). With few seeds the
    seed-to-seed part of the variance is barely sampled: the interval is a lower bound on the uncertainty.
    Raises ``KeyError`` when a row lacks per-person results and ``ValueError`` when the rows' persons differ."""
    rows = _rows(exp_dir, a, b)
    per = {k: {int(r["seed"]): r.get("participants") for r in rows[k]["seeds"]} for k in (a, b)}
    seeds = sorted(set(per[a]) & set(per[b]))
    if not seeds or any(per[k][s] is None for k in (a, b) for s in seeds):
        raise KeyError(f"rows {a!r} and {b!r} need per-person results on shared seeds")
    ids = [sorted(per[a][s]["per_participant"]) for s in seeds]
    for s, i in zip(seeds, ids, strict=True):
        if i != sorted(per[b][s]["per_participant"]):
            raise ValueError(f"seed {s}: rows {a!r} and {b!r} were scored on different persons")
    width = max(len(i) for i in ids)
    diff, n = np.zeros((len(seeds), width)), np.zeros((len(seeds), width))
    for j, (s, i) in enumerate(zip(seeds, ids, strict=True)):
        pa, pb = per[a][s]["per_participant"], per[b][s]["per_participant"]
        diff[j, :len(i)] = [(float(pb[p]) - float(pa[p])) / 100 for p in i]
        n[j, :len(i)] = 1.0
    c = paired_bootstrap(Clusters(diff, n), reps=reps)
    return {"metric": "action_top1", "a": a, "b": b, "seeds": seeds, "persons_per_seed": [len(i) for i in ids],
            "diff": c.diff, "lo": c.lo, "hi": c.hi, "half_width": c.half_width, "se": c.se, "mde": mde(c.se),
            "method": "two-stage bootstrap (seeds, then persons), 95 % percentile interval; MDE at 80 % power"}


def compare_rows(exp_dir: Path, a: str, b: str, metrics: tuple[str, ...] = METRICS) -> dict[str, Any]:
    """Paired ``b - a`` for each metric over the seeds both rows have (``exp_dir/rows/{a,b}.json``)."""
    rows = _rows(exp_dir, a, b)
    out: dict[str, Any] = {"experiment_dir": str(exp_dir), "a": a, "b": b, "level": 0.95, "diffs": {}}
    for m in metrics:
        va, vb = seed_values(rows[a], m), seed_values(rows[b], m)
        seeds = sorted(set(va) & set(vb))
        out["seeds"] = seeds
        out["diffs"][m] = asdict(paired_difference(m, [va[s] for s in seeds], [vb[s] for s in seeds]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m piumr.reproduce.paired", description=__doc__.splitlines()[0])
    ap.add_argument("experiment_dir", type=Path)
    ap.add_argument("--a", default="x3d", help="reference row key (default: x3d, the plain backbone)")
    ap.add_argument("--b", default="piumr", help="compared row key (default: piumr)")
    ap.add_argument("--out", type=Path, help="write the result as JSON here too")
    args = ap.parse_args(argv)
    try:
        res = compare_rows(args.experiment_dir, args.a, args.b)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    print(f"{args.b} - {args.a}, paired over seeds {res['seeds']} (95 % t interval):")
    for m, d in res["diffs"].items():
        print(f"  {m:12s} {d['a_mean']:7.2f} -> {d['b_mean']:7.2f}   diff {d['mean']:+6.2f}  [{d['lo']:+6.2f}, {d['hi']:+6.2f}]")
    if args.out is not None:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
