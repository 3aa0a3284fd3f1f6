"""Collect the arm results under artifacts/mechanisms/batch*/ into summary.json and print a markdown table
(final-epoch val action Top-1 %, per arm and split: mean ± population std over seeds, and each seed).

usage: python studies/mechanisms/summarise.py [--results DIR]   (default artifacts/mechanisms)"""

from __future__ import annotations

import argparse
import json
import statistics as st
from collections import defaultdict
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "artifacts" / "mechanisms"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="the arms' results -> summary.json and a markdown table")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the batch folders [artifacts/mechanisms]")
    here = ap.parse_args(argv).results
    rows: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for f in sorted(here.glob("batch*/*.json")):
        d = json.loads(f.read_text())
        rows[(f.parent.name, d["arm"], d["split"])][d["seed"]] = d
    out = []
    print("| batch | arm | split | overrides | seeds | val Top-1 (mean ± std) | per seed | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for (batch, arm, split), by_seed in sorted(rows.items()):
        accs = {s: float(d["final_val"]["action_top1"]) for s, d in sorted(by_seed.items())}
        walls = [float(d["wall_s"]) for d in by_seed.values()]
        over = next(iter(by_seed.values()))["overrides"]
        v = list(accs.values())
        mean, sd = st.fmean(v), (st.pstdev(v) if len(v) > 1 else 0.0)
        out.append({"batch": batch, "arm": arm, "split": split, "overrides": over, "top1_by_seed": accs,
                    "mean": mean, "std": sd, "wall_s": walls})
        print(f"| {batch} | {arm} | {split} | `{json.dumps(over)[:60]}` | {len(v)} | {mean:.1f} ± {sd:.1f} | "
              + ", ".join(f"s{s} {a:.1f}" for s, a in accs.items()) + f" | {min(walls):.0f}–{max(walls):.0f} |")
    (here / "summary.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
