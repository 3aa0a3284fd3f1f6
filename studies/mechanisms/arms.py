"""Train one measurement arm on the smoke recipe and record its result.

usage: python studies/mechanisms/arms.py BATCH ARM SPLIT SEED [OVERRIDES_JSON] [--results DIR]

Trains ``smoke`` + the arm's dotted config overrides (``seed`` and ``girl.seed`` set to SEED, as the
reproduce commands do) on the synthetic data with ``--split SPLIT`` into $MECH_RUNS/<arm>-<split>-s<seed>,
then writes <results>/<BATCH>/<arm>_<split>_s<seed>.json (default results: artifacts/mechanisms): the
overrides, the final-epoch validation metrics (unseen persons on cross-subject; the model reproduce
evaluates), the seen-persons Top-1 when the split has one, the wall time and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "artifacts" / "mechanisms"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("batch", help="the batch folder under --results (batch1, batch2, ...)")
    ap.add_argument("arm", help="the arm's name (the JSON file's prefix)")
    ap.add_argument("split", help="official or cross-subject")
    ap.add_argument("seed", type=int)
    ap.add_argument("overrides", nargs="?", default="{}", help="the arm's dotted config overrides as JSON")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the batch folders are [artifacts/mechanisms]")
    args = ap.parse_args(argv)

    import torch

    from piumr.config import get_preset, with_overrides
    from piumr.train import train

    torch.set_num_threads(1)
    batch, arm, split, seed = args.batch, args.arm, args.split, args.seed
    over = json.loads(args.overrides)
    # the seeds go last: an override that sets the whole "girl" block must not reset girl.seed (batch2's "girl"
    # blocks did: its GIRL arms ran with girl.seed 0 at every seed)
    cfg = with_overrides(get_preset("smoke"), {"data.root": "synth", "data.split": split, **over, "seed": seed,
                                               "girl.seed": seed})
    runs = Path(os.environ.get("MECH_RUNS", "/tmp/mech_runs"))
    out = runs / f"{arm}-{split}-s{seed}"
    t0 = time.time()
    res = train(cfg, out, fresh=True, progress=False, device="cpu")
    wall = time.time() - t0
    dest = args.results / batch / f"{arm}_{split}_s{seed}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({
        "arm": arm, "split": split, "seed": seed, "overrides": over, "preset": "smoke",
        "final_val": res.final, "best_f1_mean": res.best_metric, "steps": res.steps,
        "wall_s": round(wall, 1), "loadavg_end": os.getloadavg(), "run_dir_name": out.name,
        "log_tail": [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()
                     if '"epoch"' in line and '"type": "epoch"' in line],
    }, indent=1))
    print(arm, split, seed, res.final.get("action_top1"), f"{wall:.0f}s")


if __name__ == "__main__":
    main()
