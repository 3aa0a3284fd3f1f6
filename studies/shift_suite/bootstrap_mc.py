"""How much does the primary's half-width move with the bootstrap's own random draws? Re-runs the suite's crossed
bootstrap of PIUmr - baseline (the primary, on every seed both arms share) with other bootstrap seeds and prints,
per factor, the half-width of the report's seed (0) beside the smallest, mean and largest over ``--boots`` seeds,
and the Holm-adjusted interval across the five factors (the report's ``ci_holm``: levels from each seed's p-values)
with how many bootstrap seeds exclude 0 with it. The report's analysis stays the protocol's (seed 0, 2000
replicates); this only sizes its Monte Carlo error.

    python studies/shift_suite/bootstrap_mc.py artifacts/shift-suite --boots 20 \\
        --save artifacts/shift-suite/bootstrap_mc.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from piumr.shift.report import _cells, _common, _p
from piumr.shift.stats import crossed_bootstrap, holm_levels
from piumr.shift.suite import load_runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", type=Path, help="a suite's output folder (runs/ under it)")
    ap.add_argument("--boots", type=int, default=20, help="bootstrap seeds 0 .. boots-1")
    ap.add_argument("--reps", type=int, default=2000, help="replicates per bootstrap (the report's 2000)")
    ap.add_argument("--save", type=Path, help="write the table as JSON here")
    args = ap.parse_args()
    cells = {}
    for f, arms in load_runs(args.suite).items():
        seeds = _common(arms, "baseline", "piumr")
        cells[f] = (len(seeds), _cells(arms, "baseline", "piumr", "unseen", "action", seeds))
    raw = {f: [crossed_bootstrap(c, reps=args.reps, seed=k) for k in range(args.boots)] for f, (_, c) in cells.items()}
    holm: dict[str, list[tuple[float, float]]] = {f: [] for f in cells}
    for k in range(args.boots):  # Holm across the factors with bootstrap seed k, as the report does with seed 0
        levels = holm_levels([_p(raw[f][k]) for f in cells])
        for f, lvl in zip(cells, levels, strict=True):
            adj = crossed_bootstrap(cells[f][1], level=lvl, reps=args.reps, seed=k)
            holm[f].append((adj.lo, adj.hi))
    rows = {}
    print("| factor | seeds | half-width (report, seed 0) | min | mean | max | <= 3 | Holm (seed 0) | Holm lower bound "
          "min-max | Holm excludes 0 |\n|---|---|---|---|---|---|---|---|---|---|")
    for f, (n, _) in cells.items():
        hw = [c.half_width for c in raw[f]]
        lows = [lo for lo, _ in holm[f]]
        excl = sum(lo > 0 or hi < 0 for lo, hi in holm[f])
        rows[f] = {"seeds": n, "report": round(hw[0], 3), "min": round(min(hw), 3),
                   "mean": round(float(np.mean(hw)), 3), "max": round(max(hw), 3),
                   "at_most_3": sum(h <= 3 for h in hw), "boots": args.boots, "reps": args.reps,
                   "holm_report": [round(v, 2) for v in holm[f][0]], "holm_lo_min": round(min(lows), 2),
                   "holm_lo_max": round(max(lows), 2), "holm_excludes_0": excl}
        r = rows[f]
        print(f"| {f} | {r['seeds']} | {r['report']:.3f} | {r['min']:.3f} | {r['mean']:.3f} | {r['max']:.3f} | "
              f"{r['at_most_3']}/{args.boots} | [{r['holm_report'][0]:+.2f}, {r['holm_report'][1]:+.2f}] | "
              f"{r['holm_lo_min']:+.2f} to {r['holm_lo_max']:+.2f} | {excl}/{args.boots} |")
    if args.save:
        args.save.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
