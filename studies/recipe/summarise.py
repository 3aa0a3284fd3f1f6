"""Before / after table of the recipe study (``artifacts/recipe/*.jsonl``, written by ``seeds.py``): per recipe and
stem initialisation, the seeds trained, how many did not train (seen-person action Top-1 below twice chance, the
suite report's rule; or final loss at chance, >= 0.97 ln 21), and the mean and seed-to-seed SD of unseen-person
action Top-1 (points).

    python studies/recipe/summarise.py artifacts/recipe
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

CHANCE = 1 / 21


def main(folder: str) -> None:
    rows: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    for f in sorted(Path(folder).glob("suite_*_*.jsonl")):
        init = "zero_mean_t" if f.stem.endswith("zero_mean_t") else "default" if f.stem.endswith("default") else None
        if init is None:
            continue  # the first screen (another code state) is described in the folder's README
        for line in f.read_text().splitlines():
            r = json.loads(line)
            rows.setdefault((r["recipe"], init), {})[r["seed"]] = r
    print("| recipe | stem init | seeds | did not train | unseen Top-1 mean | SD over seeds |")
    print("|---|---|---|---|---|---|")
    for (recipe, init), by_seed in sorted(rows.items()):
        seeds = sorted(by_seed)
        unseen = [100 * next(v for k, v in by_seed[s].items() if k.startswith("unseen_")) for s in seeds]
        bad = [s for s in seeds if by_seed[s]["seen"] < 2 * CHANCE or by_seed[s]["final_loss"] >= 0.97 * math.log(21)]
        span = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))
        print(f"| {recipe} | {init} | {len(seeds)} ({span}) | {len(bad)}" + (f" (seeds {', '.join(map(str, bad))})" if bad else "")
              + f" | {statistics.mean(unseen):.1f} | {statistics.stdev(unseen):.1f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default="artifacts/recipe")
    main(ap.parse_args().folder)
