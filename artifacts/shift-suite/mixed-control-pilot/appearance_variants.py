"""Pilot: the mixed positive control with one appearance attribute not shifted (nonoise: sensor noise; notexture: the grating). Usage: python appearance_variants.py nonoise|notexture SEED."""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from piumr.data.synth import shift
from piumr.reproduce.shift_train import suite_config, arm_config, train_and_score
which = sys.argv[1]
app = dict(shift.RANGES["appearance"])
if which == "nonoise":
    app["noise"] = (app["noise"][0], app["noise"][0])
elif which == "notexture":
    app["texture_contrast"] = (app["texture_contrast"][0], app["texture_contrast"][0])
    app["texture_freq"] = (app["texture_freq"][0], app["texture_freq"][0])
shift.RANGES["appearance"] = app
sizes = shift.ShiftSizes()
seed = int(sys.argv[2])
data = dict(shift.build_train(sizes, widen="mixed"))
data["unseen/mixed"] = shift.build_unseen("mixed", sizes, seed % 4)
cfg = arm_config(suite_config(sizes, epochs=8), "baseline", seed)
res = train_and_score(cfg, data)
print(json.dumps({"variant": which, "seed": seed, "seen": float(np.mean(res["seen"]["action"])),
       "unseen_mixed": float(np.mean(res["unseen/mixed"]["action"])), "final_loss": res["final_loss"]}), flush=True)
