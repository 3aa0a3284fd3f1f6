"""Pilot: the mixed positive control with one appearance attribute not shifted (nonoise: sensor noise; notexture:
the grating). Prints one JSON line (seen and unseen-mixed action Top-1 as fractions, the final loss).

usage: python studies/shift_suite/appearance_variants.py nonoise|notexture SEED"""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="the mixed positive control with one appearance attribute not shifted")
    ap.add_argument("which", choices=("nonoise", "notexture"))
    ap.add_argument("seed", type=int)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from piumr.data.synth import shift
    from piumr.shift.train import arm_config, suite_config, train_and_score

    which = args.which
    app = dict(shift.RANGES["appearance"])
    if which == "nonoise":
        app["noise"] = (app["noise"][0], app["noise"][0])
    elif which == "notexture":
        app["texture_contrast"] = (app["texture_contrast"][0], app["texture_contrast"][0])
        app["texture_freq"] = (app["texture_freq"][0], app["texture_freq"][0])
    shift.RANGES["appearance"] = app
    sizes = shift.ShiftSizes()
    seed = args.seed
    data = dict(shift.build_train(sizes, widen="mixed"))
    data["unseen/mixed"] = shift.build_unseen("mixed", sizes, seed % 4)
    cfg = arm_config(suite_config(sizes, epochs=8), "baseline", seed)
    res = train_and_score(cfg, data)
    print(json.dumps({"variant": which, "seed": seed, "seen": float(np.mean(res["seen"]["action"])),
                      "unseen_mixed": float(np.mean(res["unseen/mixed"]["action"])), "final_loss": res["final_loss"]}),
          flush=True)


if __name__ == "__main__":
    main()
