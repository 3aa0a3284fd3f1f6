"""How much does the primary's half-width move with the bootstrap's own random draws? Re-runs the suite's crossed
bootstrap of PIUmr - baseline (the primary, on every seed both arms share) with other bootstrap seeds and prints,
per factor, the half-width of the report's seed (0) beside the smallest, mean and largest over ``--boots`` seeds.
The report's analysis stays the protocol's (seed 0, 2000 replicates); this only sizes its Monte Carlo error.

    python studies/shift_suite/bootstrap_mc.py artifacts/shift-suite --boots 20 \\
        --save artifacts/shift-suite/bootstrap_mc.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from piumr.shift.report import _cells, _common
from piumr.shift.stats import crossed_bootstrap
from piumr.shift.suite import load_runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", type=Path, help="a suite's output folder (runs/ under it)")
    ap.add_argument("--boots", type=int, default=20, help="bootstrap seeds 0 .. boots-1")
    ap.add_argument("--reps", type=int, default=2000, help="replicates per bootstrap (the report's 2000)")
    ap.add_argument("--save", type=Path, help="write the table as JSON here")
    args = ap.parse_args()
    rows = {}
    print("| factor | seeds | half-width (report, seed 0) | min | mean | max | <= 3 |\n|---|---|---|---|---|---|---|")
    for f, arms in load_runs(args.suite).items():
        seeds = _common(arms, "baseline", "piumr")
        c = _cells(arms, "baseline", "piumr", "unseen", "action", seeds)
        hw = [crossed_bootstrap(c, reps=args.reps, seed=k).half_width for k in range(args.boots)]
        rows[f] = {"seeds": len(seeds), "report": round(hw[0], 3), "min": round(min(hw), 3),
                   "mean": round(float(np.mean(hw)), 3), "max": round(max(hw), 3),
                   "at_most_3": sum(h <= 3 for h in hw), "boots": args.boots, "reps": args.reps}
        r = rows[f]
        print(f"| {f} | {r['seeds']} | {r['report']:.3f} | {r['min']:.3f} | {r['mean']:.3f} | {r['max']:.3f} | "
              f"{r['at_most_3']}/{args.boots} |")
    if args.save:
        args.save.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
