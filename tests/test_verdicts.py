"""piumr.reproduce.verdicts: a figure verdict only from >= 2 seeds and intervals that exclude 0; the committed
figure findings obey it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from piumr.reproduce.verdicts import MIN_SEEDS, fig5_finding, fig6_finding, landscape_stats

ROOT = Path(__file__).resolve().parents[1]
VERDICTS = ("as the paper claims", "opposite of the paper's claim", "partly as the paper claims")


def _fig5(inter: tuple[float, float], gap: tuple[float, float]) -> dict[str, dict[str, float]]:
    return {"X3D baseline": {"inter_mean": inter[0], "gap_intra_minus_inter": gap[0]},
            "PIUmr": {"inter_mean": inter[1], "gap_intra_minus_inter": gap[1]}}


def test_one_seed_gives_no_verdict_however_large_the_difference() -> None:
    """The committed case: one seed, PIUmr's inter-class cosine higher and its gap smaller (the old line said
    'the OPPOSITE of the paper's claim')."""
    line = fig5_finding({0: _fig5((0.594, 0.724), (0.255, 0.155))})
    assert "no verdict (1 seed" in line and not any(v in line.lower() for v in VERDICTS)
    assert "0.724 vs X3D baseline 0.594" in line and "0.155 vs X3D baseline 0.255" in line


def test_an_interval_that_covers_zero_gives_no_verdict() -> None:
    per_seed = {0: _fig5((0.5, 0.6), (0.2, 0.1)), 1: _fig5((0.5, 0.4), (0.2, 0.3)), 2: _fig5((0.5, 0.55), (0.2, 0.2))}
    line = fig5_finding(per_seed)
    assert "no verdict (3 seeds, interval covers 0)" in line and not any(v in line.lower() for v in VERDICTS)
    assert "[" in line  # the interval is printed


def test_resolved_differences_give_the_verdict_in_both_directions() -> None:
    claimed = {s: _fig5((0.6, 0.5 + 0.01 * s), (0.2, 0.3 + 0.01 * s)) for s in range(3)}
    assert fig5_finding(claimed).endswith(": as the paper claims")
    opposite = {s: _fig5((0.5, 0.6 + 0.01 * s), (0.3, 0.2 - 0.01 * s)) for s in range(3)}
    assert fig5_finding(opposite).endswith(": the opposite of the paper's claim")
    mixed = {s: _fig5((0.6, 0.5 + 0.01 * s), (0.3, 0.2 - 0.01 * s)) for s in range(3)}
    assert fig5_finding(mixed).endswith(": partly as the paper claims")
    assert MIN_SEEDS == 2


def test_fig6_needs_mean_and_median_rise_to_agree() -> None:
    """A surface whose mean rise is decided by one corner cell: the mean says 'flatter', the median does not."""
    def surf(corner: float, ring: float) -> list[list[float]]:
        s = np.full((3, 3), ring)
        s[1, 1], s[0, 0] = 1.0, corner
        return s.tolist()

    stats = landscape_stats(surf(100.0, 2.0))
    assert stats == {"centre": 1.0, "mean_rise": pytest.approx((100 + 7 * 2 + 1) / 9 - 1), "median_rise": 1.0}
    per_seed = {s: {"X3D baseline": landscape_stats(surf(1000.0, 2.0 - 0.01 * s)),
                    "PIUmr": landscape_stats(surf(10.0, 3.0 + 0.01 * s))} for s in range(3)}
    line = fig6_finding(per_seed)
    assert "partly as the paper claims" in line  # both resolved, opposite signs: never a plain "flatter"
    one = fig6_finding({0: per_seed[0]})
    assert "no verdict (1 seed" in one
    with pytest.raises(ValueError, match="square"):
        landscape_stats([[1.0, 2.0]])


@pytest.mark.parametrize("name", ["fig5", "fig6"])
def test_committed_figure_findings_give_no_verdict_from_one_seed(name: str) -> None:
    """Every committed Fig. 5 / Fig. 6 JSON carries a finding, and a verdict only with >= 2 seeds."""
    paths = sorted((ROOT / "artifacts").glob(f"**/{name}/{name}.json"))
    assert paths
    for p in paths:
        data = json.loads(p.read_text())
        seeds = data.get("seeds") or [data["seed"]]
        finding = data.get("finding", "")
        assert finding.startswith("measured"), p
        if len(seeds) < MIN_SEEDS:
            assert "no verdict" in finding and not any(v in finding.lower() for v in VERDICTS), p
