"""Train one measurement arm on the smoke recipe and record its result.

usage: python artifacts/mechanisms/arms.py BATCH ARM SPLIT SEED [OVERRIDES_JSON]

Trains ``smoke`` + the arm's dotted config overrides (``seed`` and ``girl.seed`` set to SEED, as the
reproduce commands do) on the synthetic data with ``--split SPLIT`` into $MECH_RUNS/<arm>-<split>-s<seed>,
then writes artifacts/mechanisms/<BATCH>/<arm>_<split>_s<seed>.json: the overrides, the final-epoch
validation metrics (unseen persons on cross-subject; the model reproduce evaluates), the seen-persons
Top-1 when the split has one, the wall time and the load average.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from piumr.config import get_preset, with_overrides
from piumr.train import train

torch.set_num_threads(1)
batch, arm, split, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
over = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
# the seeds go last: an override that sets the whole "girl" block must not reset girl.seed (batch2's "girl" blocks
# did: its GIRL arms ran with girl.seed 0 at every seed)
cfg = with_overrides(get_preset("smoke"), {"data.root": "synth", "data.split": split, **over, "seed": seed,
                                           "girl.seed": seed})
runs = Path(os.environ.get("MECH_RUNS", "/tmp/mech_runs"))
out = runs / f"{arm}-{split}-s{seed}"
t0 = time.time()
res = train(cfg, out, fresh=True, progress=False, device="cpu")
wall = time.time() - t0
summary = json.loads((out / "summary.json").read_text())
dest = Path(__file__).parent / batch / f"{arm}_{split}_s{seed}.json"
dest.parent.mkdir(parents=True, exist_ok=True)
dest.write_text(json.dumps({
    "arm": arm, "split": split, "seed": seed, "overrides": over, "preset": "smoke",
    "final_val": res.final, "best_f1_mean": res.best_metric, "steps": res.steps,
    "wall_s": round(wall, 1), "loadavg_end": os.getloadavg(), "run_dir_name": out.name,
    "log_tail": [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()
                 if '"epoch"' in line and '"type": "epoch"' in line],
}, indent=1))
print(arm, split, seed, res.final.get("action_top1"), f"{wall:.0f}s")
