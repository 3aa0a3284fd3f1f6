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


# ------------------------------------------------------------------------------------------------------------------
# suite v2: the crossed bootstrap (persons recur across seeds), the seed t interval, Holm's levels
def _recurring(rng: np.random.Generator, effect: float, *, seeds: int = 8, persons: int = 8, folds: int = 2,
               clips: int = 20, person_sd: float = 0.15) -> tuple[Arm, Arm]:
    """Two arms whose held-out persons recur across seeds (seed s scores fold s % folds, as the suite does), with
    a person x arm effect that persists across seeds (person p gains ``effect + u_p`` in every seed)."""
    gain = effect + rng.normal(0, person_sd, persons * folds)
    base = rng.uniform(0.3, 0.7, persons * folds)
    a: Arm = {}
    b: Arm = {}
    for s in range(seeds):
        ids = np.arange(persons) + persons * (s % folds)
        who = np.repeat(ids, clips)
        a[s] = ((rng.random(who.size) < base[who]).astype(int).tolist(), (who + 1000).tolist())
        b[s] = ((rng.random(who.size) < np.clip(base[who] + gain[who], 0, 1)).astype(int).tolist(),
                (who + 1000).tolist())
    return a, b


def test_cells_identify_persons_across_seeds_and_keep_the_estimate() -> None:
    from piumr.shift.stats import cells, crossed_bootstrap

    a = {0: ([1, 0, 1], [7, 7, 9]), 1: ([0, 0, 1], [9, 7, 9])}
    b = {0: ([1, 1, 1], [7, 7, 9]), 1: ([1, 0, 1], [9, 7, 9])}
    c = cells(a, b)
    assert c.n.tolist() == [[2, 1], [1, 2]] and c.diff_sum.tolist() == [[1, 0], [0, 1]]
    res = crossed_bootstrap(c, reps=200)
    assert res.diff == pytest.approx(100 * 2 / 6)
    same = crossed_bootstrap(cells(a, a), reps=200)
    assert (same.diff, same.lo, same.hi) == (0.0, 0.0, 0.0)


def test_crossed_bootstrap_is_wider_than_two_stage_when_persons_recur() -> None:
    # the two-stage bootstrap treats each (seed, person) as a new person: with a person effect that persists
    # across the seeds that score the person, it is too narrow; the crossed one resamples the person jointly
    from piumr.shift.stats import cells, crossed_bootstrap

    rng = np.random.default_rng(3)
    ratios = []
    for i in range(20):
        a, b = _recurring(rng, 0.05)
        ratios.append(crossed_bootstrap(cells(a, b), reps=400, seed=i).half_width
                      / paired_bootstrap(clusters(a, b), reps=400, seed=i).half_width)
    assert float(np.median(ratios)) > 1.3, ratios


def test_crossed_bootstrap_covers_the_true_effect() -> None:
    # coverage of the mean gain over the population of persons (not of the persons drawn): about 95 %
    from piumr.shift.stats import cells, crossed_bootstrap

    rng = np.random.default_rng(5)
    cover = []
    for i in range(150):
        a, b = _recurring(rng, 0.05, person_sd=0.08)
        c = crossed_bootstrap(cells(a, b), reps=300, seed=i)
        cover.append(c.lo <= 5.0 <= c.hi)
    assert 0.85 <= float(np.mean(cover)) <= 0.995, np.mean(cover)


def test_seed_t_interval_is_students_over_per_seed_means() -> None:
    from scipy import stats

    from piumr.shift.stats import cells, seed_t_interval

    rng = np.random.default_rng(0)
    a, b = _recurring(rng, 0.1)
    per_seed = [100 * (np.mean(b[s][0]) - np.mean(a[s][0])) for s in sorted(a)]
    lo, hi = stats.t.interval(0.95, len(per_seed) - 1, loc=np.mean(per_seed), scale=stats.sem(per_seed))
    m, tlo, thi = seed_t_interval(cells(a, b))
    assert (m, tlo, thi) == pytest.approx((np.mean(per_seed), lo, hi))


def test_holm_levels_step_down() -> None:
    from piumr.shift.stats import holm_levels

    # alpha 0.05, m 3: the smallest p (0.01 < 0.05/3) is rejected at level 1 - 0.05/3; the next (0.03 > 0.05/2) is
    # not, so it and every later one keep 1 - 0.05/2
    assert holm_levels([0.01, 0.04, 0.03]) == pytest.approx([1 - 0.05 / 3, 0.975, 0.975])
    assert holm_levels([0.001, 0.002, 0.003]) == pytest.approx([1 - 0.05 / 3, 0.975, 0.95])
    assert holm_levels([0.5]) == pytest.approx([0.95])
