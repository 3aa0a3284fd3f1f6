"""Which seeds of a reproduce recipe learn: trains rows of the demo (``piumr reproduce demo``, preset ``demo``) or
of the smoke preset's Table 2 (person-disjoint split) for each seed through ``piumr train`` exactly as the
reproduce commands do, and appends one JSON line per run (stalled by the stall guard, the last epoch's mean CE,
seen- and unseen-person action Top-1, chance).

Runs are kept under ``--work`` (resumable: a finished run is read back, not retrained). A variant is a JSON object
of config overrides applied to every row (e.g. ``{"model.early_init": "default"}`` for pytorchvideo's stem init).

    python studies/recipe/reproduce_seeds.py demo 0-19 --rows a,d --variant '{}' --work /tmp/demo-seeds \\
        --out artifacts/recipe/demo_zero_mean_t.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

#: recipe -> (preset, experiment whose rows are trained, chance of action Top-1: task v2 has 21 classes, the smoke
#: preset's task v1 one class per body part, 7)
RECIPES = {"demo": ("demo", "demo", 1 / 21), "smoke": ("smoke", "table2", 1 / 7)}


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in text.split(",")]


def _last_epoch_ce(run_dir: Path) -> float:
    ce = math.nan
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("type") == "epoch":
            ce = float(row.get("ce", row.get("total", math.nan)))
    return ce


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", choices=sorted(RECIPES))
    ap.add_argument("seeds", type=_seeds, help="a range a-b or a comma list")
    ap.add_argument("--rows", default="a", help="comma list of the experiment's row keys (a-d)")
    ap.add_argument("--variant", default="{}", help="JSON object of config overrides")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once (one thread each)")
    ap.add_argument("--work", type=Path, required=True, help="folder for the run folders")
    ap.add_argument("--out", type=Path, required=True, help="a .jsonl file (appended to)")
    args = ap.parse_args(argv)

    from piumr.config import with_overrides
    from piumr.reproduce import make_settings
    from piumr.reproduce.runner import experiment_spec
    from piumr.reproduce.runs import jobs_for, run_jobs

    preset, experiment, chance = RECIPES[args.recipe]
    over: dict[str, Any] = json.loads(args.variant)
    split = "cross-subject" if args.recipe == "smoke" else None
    settings = make_settings(data="synth", preset=preset, seeds=args.seeds, out=args.work, split=split,
                             jobs=args.jobs, progress=False)
    settings = dataclasses.replace(settings, base=with_overrides(settings.base, over))
    spec = experiment_spec(settings, experiment)
    keys = args.rows.split(",")
    spec = dataclasses.replace(spec, rows=tuple(r for r in spec.rows if r.key in keys))
    jobs = jobs_for(settings, spec)
    results = run_jobs(settings, jobs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    by_row = {k: iter(v) for k, v in results.items()}
    with args.out.open("a") as f:
        for job in jobs:
            res = next(by_row[job.row.key])
            summary = json.loads((job.run_dir / "summary.json").read_text())
            row = {"recipe": args.recipe, "row": job.row.key, "variant": over, "seed": job.seed,
                   "stalled": summary["stalled"], "final_ce": round(_last_epoch_ce(job.run_dir), 4),
                   "chance": round(chance, 4),
                   "seen": round(res["seen"]["metrics"]["action_top1"] / 100, 4),
                   "unseen": round(res["metrics"]["action_top1"] / 100, 4),
                   "wall_s": round(float(summary["seconds"]), 1)}
            f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
