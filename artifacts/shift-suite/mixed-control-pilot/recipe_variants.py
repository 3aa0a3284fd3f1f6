"""Pilot: the mixed positive control under other recipes (lr 1e-3; 16 epochs). Usage: python recipe_variants.py VARIANTS SEEDS."""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from piumr.data.synth.shift import ShiftSizes, build_train, build_unseen
from piumr.reproduce.shift_train import suite_config, arm_config, train_and_score
from piumr.config import with_overrides
sizes = ShiftSizes()
data = dict(build_train(sizes, widen="mixed"))
for variant, seed in [(v, int(s)) for v in sys.argv[1].split(",") for s in sys.argv[2].split(",")]:
    data = {k: v for k, v in data.items() if not k.startswith("unseen")}
    data["unseen/mixed"] = build_unseen("mixed", sizes, seed % 4)
    kw = {"lr1e-3": dict(epochs=8, lr=1e-3), "ep16": dict(epochs=16), "lr5e-4": dict(epochs=8, lr=5e-4),
          "base": dict(epochs=8)}[variant]
    cfg = arm_config(suite_config(sizes, **kw), "baseline", seed)
    t = time.time()
    res = train_and_score(cfg, data)
    out = {"variant": variant, "seed": seed, "seen": float(np.mean(res["seen"]["action"])),
           "unseen_mixed": float(np.mean(res["unseen/mixed"]["action"])), "final_loss": res["final_loss"],
           "wall_s": round(time.time() - t)}
    print(json.dumps(out), flush=True)
