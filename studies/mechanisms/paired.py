"""Paired differences of batch3's arms against CE (same seed = same initialisation, data order and augmentation
draws), per split: mean over seeds of (arm - ce) in action Top-1 points with a 95 % t interval, and the
seeds. Also the rounding-only pairs: batch2's GIRL arms ran with girl.seed 0 at every seed, batch3's with
girl.seed = seed; with pairs over the batch the group partition changes only the order of a sum (gradients
equal to ~1e-9), so those pairs measure how far rounding alone moves one run. Writes paired.json.

usage: python studies/mechanisms/paired.py [--results DIR]   (default artifacts/mechanisms)"""

from __future__ import annotations

import argparse
import json
import statistics as st
from pathlib import Path

from scipy import stats  # type: ignore[import-untyped]

RESULTS = Path(__file__).resolve().parents[2] / "artifacts" / "mechanisms"


def load(here: Path, batch: str) -> dict[tuple[str, str], dict[int, float]]:
    out: dict[tuple[str, str], dict[int, float]] = {}
    for f in sorted((here / batch).glob("*.json")):
        d = json.loads(f.read_text())
        out.setdefault((d["arm"], d["split"]), {})[int(d["seed"])] = float(d["final_val"]["action_top1"])
    return out


def interval(diffs: list[float]) -> dict[str, object]:
    n = len(diffs)
    m = st.fmean(diffs)
    half = float(stats.t.ppf(0.975, n - 1)) * st.stdev(diffs) / n ** 0.5 if n > 1 else float("nan")
    return {"n": n, "mean": round(m, 2), "ci95": [round(m - half, 2), round(m + half, 2)],
            "sd_of_diff": round(st.stdev(diffs), 2) if n > 1 else None, "diffs": [round(x, 2) for x in diffs]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="GIRL arms minus CE, paired by seed: writes paired.json")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the batch folders [artifacts/mechanisms]")
    here = ap.parse_args(argv).results
    b3 = load(here, "batch3")
    res: dict[str, object] = {}
    for (arm, split), accs in sorted(b3.items()):
        ce = b3.get(("ce", split), {})
        seeds = sorted(set(accs) & set(ce))
        row: dict[str, object] = {"mean": round(st.fmean(accs.values()), 2),
                                  "sd": round(st.stdev(accs.values()), 2) if len(accs) > 1 else None,
                                  "by_seed": {s: round(a, 2) for s, a in sorted(accs.items())}}
        if arm != "ce" and len(seeds) > 1:
            row["minus_ce"] = interval([accs[s] - ce[s] for s in seeds])
        res[f"{arm}/{split}"] = row
    b2 = load(here, "batch2")
    rounding = [(s, b2[("pg", "cross-subject")][s], b3[("pg", "cross-subject")][s])
                for s in sorted(set(b2.get(("pg", "cross-subject"), {})) & set(b3.get(("pg", "cross-subject"), {})))]
    res["rounding_only_pg_cross_subject"] = [{"seed": s, "girl_seed_0": round(a, 2), "girl_seed_s": round(b, 2)}
                                             for s, a, b in rounding]
    (here / "paired.json").write_text(json.dumps(res, indent=1) + "\n")
    for k, v in res.items():
        print(k, v)


if __name__ == "__main__":
    main()
