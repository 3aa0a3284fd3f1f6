"""Statistics of the person-shift suite: paired differences of two arms with a bootstrap clustered by
person x seed, Holm adjustment of secondary comparisons, and the minimum detectable effect.

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

__all__ = ["Clusters", "Comparison", "clusters", "paired_bootstrap", "holm", "mde"]


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
