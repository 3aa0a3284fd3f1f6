"""Before / after table of the recipe study (``artifacts/recipe/*.jsonl``, written by ``seeds.py`` and
``reproduce_seeds.py``): per recipe (and demo row) and stem initialisation, the seeds trained, how many did not
train (seen-person action Top-1 below twice chance, the suite report's rule; or the final cross-entropy at chance,
>= 0.97 ln K), and the mean and seed-to-seed SD of unseen-person action Top-1 (points).

    python studies/recipe/summarise.py artifacts/recipe
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

#: file stem prefix -> number of classes K of its task (chance 1 / K)
RECIPES = {"suite_baseline": 21, "suite_mixed": 21, "demo": 21, "smoke": 7}
INITS = ("zero_mean_t", "default")


def main(folder: str) -> None:
    rows: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    classes: dict[str, int] = {}
    for f in sorted(Path(folder).glob("*.jsonl")):
        prefix, init = next(((p, i) for p in RECIPES for i in INITS if f.stem == f"{p}_{i}"), (None, None))
        if prefix is None or init is None:
            continue  # the first screen (another code state) and the probe are described in the folder's README
        for line in f.read_text().splitlines():
            r = json.loads(line)
            name = r["recipe"] + (f" row {r['row']}" if "row" in r else "")
            classes[name] = RECIPES[prefix]
            rows.setdefault((name, init), {})[r["seed"]] = r
    print("| recipe | stem init | seeds | did not train | unseen Top-1 mean | SD over seeds |")
    print("|---|---|---|---|---|---|")
    for (name, init), by_seed in sorted(rows.items()):
        k = classes[name]
        seeds = sorted(by_seed)
        unseen = [100 * next(v for key, v in by_seed[s].items() if key.startswith("unseen")) for s in seeds]
        loss = "final_ce" if "final_ce" in by_seed[seeds[0]] else "final_loss"
        bad = [s for s in seeds if by_seed[s]["seen"] < 2 / k or by_seed[s][loss] >= 0.97 * math.log(k)]
        span = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))
        print(f"| {name} | {init} | {len(seeds)} ({span}) | {len(bad)}" + (f" (seeds {', '.join(map(str, bad))})" if bad else "")
              + f" | {statistics.mean(unseen):.1f} | {statistics.stdev(unseen):.1f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default="artifacts/recipe")
    main(ap.parse_args().folder)
