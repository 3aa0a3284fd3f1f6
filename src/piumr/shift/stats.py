"""Statistics of the person-shift suite: paired differences of two arms with a bootstrap clustered by
person x seed, Holm adjustment of secondary comparisons, and the minimum detectable effect.

Suite v2 adds the crossed bootstrap (``cells`` / ``crossed_bootstrap``): held-out persons recur across seeds (seed k
scores fold k mod folds), so seeds and persons are two crossed random factors. It resamples seeds and persons
independently and jointly across seeds (a drawn person brings its clips in every drawn seed that scored it), which
the two-stage bootstrap below (persons resampled within each seed as if new) does not. ``seed_t_interval`` is the
t interval over per-seed mean differences; ``holm_levels`` gives Holm's step-down levels for any set of
comparisons.

Data of one arm: for each seed, per-clip 0/1 correctness and the clip's person. Two arms are compared
on the same seeds and the same clips (common random numbers: same held-out persons, same clips), so the
unit of resampling is a (seed, person) cluster: its clips' mean difference ``b - a``. The bootstrap
resamples seeds, then persons within each seed (two-stage), and recomputes the mean difference over
all clips of the resampled clusters; the interval is the percentile interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

__all__ = ["Cells", "Clusters", "Comparison", "cells", "clusters", "crossed_bootstrap", "holm", "holm_levels", "mde",
           "paired_bootstrap", "seed_t_interval"]


@dataclass(frozen=True)
class Clusters:
    """Per (seed, person) cluster: sum of ``b - a`` over its clips (``diff_sum``) and its clip count
    (``n``), both (S, P) arrays for S seeds and P persons per seed (P may differ per seed: padded with n = 0)."""

    diff_sum: np.ndarray
    n: np.ndarray


def clusters(a: Mapping[int, tuple[Sequence[int], Sequence[int]]],
             b: Mapping[int, tuple[Sequence[int], Sequence[int]]]) -> Clusters:
    """``a``, ``b``: seed -> (per-clip correctness 0/1, per-clip person). Both arms must hold the same seeds and,
    per seed, the same clips in the same order (raises ``ValueError`` otherwise)."""
    if set(a) != set(b) or not a:
        raise ValueError(f"arms must share their seeds, got {sorted(a)} and {sorted(b)}")
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for seed in sorted(a):
        (ca, pa), (cb, pb) = a[seed], b[seed]
        if list(pa) != list(pb):
            raise ValueError(f"seed {seed}: the arms were scored on different clips")
        persons = np.asarray(pa)
        d = np.asarray(cb, dtype=float) - np.asarray(ca, dtype=float)
        ids = np.unique(persons)
        rows.append((np.array([d[persons == p].sum() for p in ids]), np.array([(persons == p).sum() for p in ids])))
    width = max(len(r[0]) for r in rows)
    ds = np.zeros((len(rows), width))
    ns = np.zeros((len(rows), width))
    for i, (d_, n_) in enumerate(rows):
        ds[i, :len(d_)], ns[i, :len(n_)] = d_, n_
    return Clusters(ds, ns)


@dataclass(frozen=True)
class Comparison:
    """``b - a`` in accuracy points: the estimate, its interval at ``level`` and the bootstrap SE."""

    diff: float
    lo: float
    hi: float
    se: float
    level: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def _boot_means(c: Clusters, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps,) bootstrap means: seeds resampled, then each drawn seed's persons resampled (vectorised)."""
    S, P = c.n.shape
    valid = (c.n > 0).sum(axis=1)  # persons per seed; clusters are packed to the left
    si = rng.integers(0, S, (reps, S))
    nv = valid[si][..., None]  # (reps, S, 1)
    pj = np.minimum((rng.random((reps, S, P)) * nv).astype(int), P - 1)
    keep = np.arange(P)[None, None, :] < nv
    num = np.where(keep, c.diff_sum[si[..., None], pj], 0.0).sum(axis=(1, 2))
    den = np.where(keep, c.n[si[..., None], pj], 0.0).sum(axis=(1, 2))
    out: np.ndarray = num / den
    return out


def paired_bootstrap(c: Clusters, *, level: float = 0.95, reps: int = 2000, seed: int = 0) -> Comparison:
    """Mean ``b - a`` over all clips (points) with a two-stage (seed, then person) percentile interval."""
    est = float(c.diff_sum.sum() / c.n.sum())
    boots = _boot_means(c, reps, np.random.default_rng(seed))
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return Comparison(100 * est, 100 * float(lo), 100 * float(hi), 100 * float(boots.std(ddof=1)), level)


def holm(cs: Sequence[Clusters], *, level: float = 0.95, reps: int = 2000, seed: int = 0) -> list[Comparison]:
    """Holm-adjusted intervals for m secondary comparisons (family-wise ``level``), in the input order.

    Ranked by p-value (normal approximation, ``diff / se``), the k-th (k = 0..m-1) gets the interval at level
    ``1 - alpha / (m - k)`` as long as every earlier one excluded 0; from the first that covers 0 on (Holm
    stops rejecting there), the rest keep that step's level."""
    alpha = 1 - level
    raw = [paired_bootstrap(x, level=level, reps=reps, seed=seed) for x in cs]
    p = [2 * float(stats.norm.sf(abs(r.diff) / r.se)) if r.se > 0 else 1.0 for r in raw]
    m = len(cs)
    out: dict[int, Comparison] = {}
    lvl, stopped = level, False
    for k, i in enumerate(np.argsort(p, kind="stable")):
        if not stopped:
            lvl = 1 - alpha / (m - k)
        out[int(i)] = cmp = paired_bootstrap(cs[int(i)], level=lvl, reps=reps, seed=seed)
        stopped = stopped or cmp.lo <= 0.0 <= cmp.hi
    return [out[i] for i in range(m)]


def mde(se: float, *, level: float = 0.95, power: float = 0.8) -> float:
    """Minimum detectable effect (points) of a two-sided test at ``level`` with ``power``, given the SE."""
    return float((stats.norm.ppf(0.5 + level / 2) + stats.norm.ppf(power)) * se)


@dataclass(frozen=True)
class Cells:
    """Per (seed, person) cell, persons identified across seeds: ``diff_sum`` (S, Q) sum of ``b - a`` over the
    cell's clips and ``n`` (S, Q) its clip count (0 where seed s did not score person q)."""

    diff_sum: np.ndarray
    n: np.ndarray


def cells(a: Mapping[int, tuple[Sequence[int], Sequence[int]]],
          b: Mapping[int, tuple[Sequence[int], Sequence[int]]]) -> Cells:
    """Like ``clusters`` (same inputs, same ``ValueError``s) with one column per person over all seeds."""
    c = clusters(a, b)  # checks seeds and clips
    seeds = sorted(a)
    people = sorted({int(p) for s in seeds for p in a[s][1]})
    col = {p: j for j, p in enumerate(people)}
    ds = np.zeros((len(seeds), len(people)))
    ns = np.zeros((len(seeds), len(people)))
    for i, s in enumerate(seeds):
        (ca, pa), (cb, _) = a[s], b[s]
        d = np.asarray(cb, dtype=float) - np.asarray(ca, dtype=float)
        for p, v in zip(pa, d, strict=True):
            ds[i, col[int(p)]] += v
            ns[i, col[int(p)]] += 1
    assert np.isclose(ds.sum(), c.diff_sum.sum())
    return Cells(ds, ns)


def crossed_bootstrap(c: Cells, *, level: float = 0.95, reps: int = 2000, seed: int = 0) -> Comparison:
    """Mean ``b - a`` over all clips (points) with a percentile interval from resampling seeds and persons
    independently (each with replacement; a replicate's estimate is the clip mean over the drawn seeds x drawn
    persons, each cell counted as often as its seed and person were drawn). Replicates with no clip (drawn persons
    never scored by the drawn seeds) are redrawn."""
    S, Q = c.n.shape
    rng = np.random.default_rng(seed)
    boots: list[float] = []
    while len(boots) < reps:
        k = reps - len(boots)
        w = rng.multinomial(S, np.full(S, 1.0 / S), size=k).astype(float)  # (k, S) seed counts
        v = rng.multinomial(Q, np.full(Q, 1.0 / Q), size=k).astype(float)  # (k, Q) person counts
        num = np.einsum("ks,sq,kq->k", w, c.diff_sum, v)
        den = np.einsum("ks,sq,kq->k", w, c.n, v)
        boots += (num[den > 0] / den[den > 0]).tolist()
    arr = np.asarray(boots[:reps])
    lo, hi = np.quantile(arr, [(1 - level) / 2, (1 + level) / 2])
    est = float(c.diff_sum.sum() / c.n.sum())
    return Comparison(100 * est, 100 * float(lo), 100 * float(hi), 100 * float(arr.std(ddof=1)), level)


def seed_t_interval(c: Cells, *, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) in points of the per-seed mean differences (each seed's clips pooled), Student t over the
    S seeds (S - 1 degrees of freedom); (mean, nan, nan) with one seed."""
    per_seed = c.diff_sum.sum(axis=1) / np.maximum(c.n.sum(axis=1), 1)
    m = float(per_seed.mean())
    if len(per_seed) < 2:
        return 100 * m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(per_seed) - 1) * per_seed.std(ddof=1) / np.sqrt(len(per_seed)))
    return 100 * m, 100 * (m - half), 100 * (m + half)


def holm_levels(p_values: Sequence[float], level: float = 0.95) -> list[float]:
    """Holm's step-down confidence levels for m comparisons with these two-sided p-values (input order): ranked by
    p, the k-th (k = 0..m-1) gets ``1 - alpha / (m - k)`` while every earlier one was rejected (p below its
    threshold); from the first that is not, the rest keep that step's level."""
    alpha, m = 1 - level, len(p_values)
    out = [level] * m
    lvl, stopped = level, False
    for k, i in enumerate(np.argsort(np.asarray(p_values), kind="stable")):
        if not stopped:
            lvl = 1 - alpha / (m - k)
            stopped = p_values[int(i)] > alpha / (m - k)
        out[int(i)] = lvl
    return out
