"""Statistics of the person-shift suite: the clustered paired bootstrap covers 0 about 95 % of the time
when two arms do not differ (A/A), recovers a known effect, and Holm widens secondary intervals."""

from __future__ import annotations

import numpy as np
import pytest

from piumr.shift.stats import clusters, holm, mde, paired_bootstrap

Arm = dict[int, tuple[list[int], list[int]]]


def _arms(rng: np.random.Generator, effect: float, seeds: int = 10, persons: int = 10,
          clips: int = 30) -> tuple[Arm, Arm]:
    """Two arms on the same persons and clips: per-person accuracy varies (person effects shared by both
    arms), each seed shifts both arms alike and per arm (seed x arm noise); ``b`` gains ``effect``."""
    a: Arm = {}
    b: Arm = {}
    for s in range(seeds):
        base = rng.uniform(0.3, 0.8, persons)
        pa = np.clip(base + rng.normal(0, 0.03), 0, 1)
        pb = np.clip(base + rng.normal(0, 0.03) + effect, 0, 1)
        who = np.repeat(np.arange(persons) + 100 * s, clips)
        a[s] = ((rng.random(who.size) < pa[who - 100 * s]).astype(int).tolist(), who.tolist())
        b[s] = ((rng.random(who.size) < pb[who - 100 * s]).astype(int).tolist(), who.tolist())
    return a, b


def _intervals(seed: int, effect: float, runs: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(runs):
        c = paired_bootstrap(clusters(*_arms(rng, effect)), reps=400, seed=i)
        out.append((c.lo, c.hi))
    return out


def test_aa_interval_covers_zero_about_95_percent() -> None:
    cover = [lo <= 0.0 <= hi for lo, hi in _intervals(1, 0.0, 200)]
    assert 0.88 <= float(np.mean(cover)) <= 0.99, np.mean(cover)


def test_known_effect_is_recovered_and_resolved() -> None:
    ci = _intervals(2, 0.08, 40)
    assert np.mean([lo <= 8.0 <= hi for lo, hi in ci]) >= 0.85  # the true 8 points lies in the interval
    assert np.mean([lo > 0 for lo, _ in ci]) >= 0.9  # and the interval excludes 0 (power)


def test_holm_widens_intervals_and_mde_scales_with_se() -> None:
    rng = np.random.default_rng(3)
    cs = [clusters(*_arms(rng, e)) for e in (0.0, 0.0, 0.1)]
    plain = [paired_bootstrap(c, reps=400) for c in cs]
    adj = holm(cs, reps=400)
    assert all(x.half_width >= y.half_width - 1e-9 for x, y in zip(adj, plain, strict=True))
    assert adj[2].level == pytest.approx(1 - 0.05 / 3)  # the clear effect has the smallest p: strictest level
    assert adj[2].lo > 0
    assert mde(1.0) == pytest.approx(2.8016, abs=1e-3) and mde(2.0) == pytest.approx(2 * mde(1.0))


def test_arms_on_different_clips_or_seeds_are_refused() -> None:
    with pytest.raises(ValueError, match="share their seeds"):
        clusters({0: ([1], [1])}, {1: ([1], [1])})
    with pytest.raises(ValueError, match="different clips"):
        clusters({0: ([1, 0], [1, 2])}, {0: ([1, 0], [2, 1])})
