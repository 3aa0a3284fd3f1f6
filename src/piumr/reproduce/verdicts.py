"""Figure verdicts that need several seeds: Fig. 5 (cosine similarity) and Fig. 6 (loss landscape).

A figure's line compares PIUmr with the baseline on one or more statistics. Each statistic is taken per
seed and differenced per seed (PIUmr - baseline, ``paired.paired_difference``: mean and 95 % Student-t
interval). A verdict ("as the paper claims", "the opposite of the paper's claim", "partly ...") is printed
only when there are at least ``MIN_SEEDS`` seeds and every statistic's interval excludes 0; otherwise the line
gives the measured numbers and "no verdict (...)". One seed's means never decide anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from piumr.reproduce.paired import PairedDiff, paired_difference

__all__ = ["MIN_SEEDS", "Statistic", "verdict_line", "fig5_finding", "landscape_stats", "fig6_finding"]

#: fewest seeds a figure verdict is drawn from
MIN_SEEDS = 2


@dataclass(frozen=True)
class Statistic:
    """One per-seed statistic of a figure: its ``key`` in the per-seed dicts, how the line names it, and the
    sign the paper claims for ``PIUmr - baseline`` (``-1``: PIUmr lower, ``+1``: PIUmr higher)."""

    key: str
    label: str
    claimed_sign: int


def _resolved_sign(d: PairedDiff) -> int:
    """+1 / -1 when the interval lies above / below 0; 0 when it covers 0 or does not exist (one seed)."""
    if d.n < MIN_SEEDS or math.isnan(d.lo) or math.isnan(d.hi) or d.lo <= 0.0 <= d.hi:
        return 0
    return 1 if d.lo > 0 else -1


def verdict_line(per_seed: Mapping[int, Mapping[str, Mapping[str, float]]], statistics: Sequence[Statistic],
                 *, spec: str = ".3f") -> str:
    """The line of a two-model figure from ``{seed: {model: {statistic key: value}}}``.

    The first model of each seed is the baseline, the second PIUmr (the figure's order). Returns "" unless
    there are exactly two models in every seed. The numbers (format ``spec``) come first, then the verdict or
    "no verdict"."""
    seeds = sorted(per_seed)
    if not seeds or any(len(per_seed[s]) != 2 for s in seeds):
        return ""
    base, ours = list(per_seed[seeds[0]])
    n = len(seeds)
    parts, signs = [], []
    for st in statistics:
        a = [float(per_seed[s][base][st.key]) for s in seeds]
        b = [float(per_seed[s][ours][st.key]) for s in seeds]
        d = paired_difference(st.key, a, b)
        signs.append(_resolved_sign(d) * st.claimed_sign)
        if n < MIN_SEEDS:
            parts.append(f"{st.label} {ours} {d.b_mean:{spec}} vs {base} {d.a_mean:{spec}}")
        else:
            parts.append(f"{st.label} {ours} - {base} {d.mean:+{spec}} [{d.lo:+{spec}}, {d.hi:+{spec}}]")
    where = f"measured ({n} seed{'s' if n != 1 else ''}" + ("" if n < MIN_SEEDS else ", mean and 95 % t interval "
                                                              "of the per-seed difference") + "): "
    if n < MIN_SEEDS:
        verdict = f"no verdict (1 seed; a verdict needs >= {MIN_SEEDS} seeds and an interval that excludes 0)"
    elif 0 in signs:
        verdict = f"no verdict ({n} seeds, interval covers 0)"
    elif all(s > 0 for s in signs):
        verdict = "as the paper claims"
    elif all(s < 0 for s in signs):
        verdict = "the opposite of the paper's claim"
    else:
        verdict = "partly as the paper claims"
    return where + ", ".join(parts) + ": " + verdict


#: Fig. 5: the paper claims PIUmr has lower inter-class and a larger intra - inter gap of cosine similarity
FIG5_STATISTICS = (Statistic("inter_mean", "inter-class cosine", -1),
                   Statistic("gap_intra_minus_inter", "intra - inter gap", +1))


def fig5_finding(per_seed: Mapping[int, Mapping[str, Mapping[str, float]]]) -> str:
    """Fig. 5's line from ``{seed: {model: {"inter_mean", "gap_intra_minus_inter", ...}}}`` (baseline first)."""
    return verdict_line(per_seed, FIG5_STATISTICS)


#: Fig. 6: the paper claims PIUmr's surface is flatter, i.e. rises less above its centre (mean and median
#: over the grid: the mean alone is decided by a few corner cells)
FIG6_STATISTICS = (Statistic("mean_rise", "mean rise over centre", -1),
                   Statistic("median_rise", "median rise over centre", -1))


def landscape_stats(loss: npt.ArrayLike) -> dict[str, float]:
    """``centre``, ``mean_rise`` and ``median_rise`` (grid mean / median minus the centre) of a square
    ``(steps, steps)`` loss surface whose centre cell is the unperturbed model."""
    s = np.asarray(loss, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] % 2 != 1:
        raise ValueError(f"need a square loss grid of odd size, got shape {s.shape}")
    c = float(s[s.shape[0] // 2, s.shape[1] // 2])
    return {"centre": c, "mean_rise": float(s.mean()) - c, "median_rise": float(np.median(s)) - c}


def fig6_finding(per_seed: Mapping[int, Mapping[str, Mapping[str, float]]]) -> str:
    """Fig. 6's line from ``{seed: {model: landscape_stats(...)}}`` (baseline first)."""
    return verdict_line(per_seed, FIG6_STATISTICS, spec=".3g")
