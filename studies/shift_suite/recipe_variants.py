"""Pilot: the mixed positive control under other recipes (lr 1e-3; 16 epochs). Prints one JSON line per variant
and seed (seen and unseen-mixed action Top-1 as fractions, the final loss, the wall time).

usage: python studies/shift_suite/recipe_variants.py VARIANTS SEEDS   (comma lists; variants of RECIPES)"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

RECIPES: dict[str, dict[str, Any]] = {"lr1e-3": dict(epochs=8, lr=1e-3), "ep16": dict(epochs=16),
                                      "lr5e-4": dict(epochs=8, lr=5e-4), "base": dict(epochs=8)}


def _variants(text: str) -> list[str]:
    names = text.split(",")
    bad = [v for v in names if v not in RECIPES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}: choose from {', '.join(RECIPES)}")
    return names


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="the mixed positive control under other recipes")
    ap.add_argument("variants", type=_variants, help=f"comma list of {', '.join(RECIPES)}")
    ap.add_argument("seeds", type=lambda s: [int(x) for x in s.split(",")], help="comma list of seeds")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from piumr.data.synth.shift import ShiftSizes, build_train, build_unseen
    from piumr.shift.train import arm_config, suite_config, train_and_score

    sizes = ShiftSizes()
    data = dict(build_train(sizes, widen="mixed"))
    for variant, seed in [(v, s) for v in args.variants for s in args.seeds]:
        data = {k: v for k, v in data.items() if not k.startswith("unseen")}
        data["unseen/mixed"] = build_unseen("mixed", sizes, seed % 4)
        cfg = arm_config(suite_config(sizes, **RECIPES[variant]), "baseline", seed)
        t = time.time()
        res = train_and_score(cfg, data)
        out = {"variant": variant, "seed": seed, "seen": float(np.mean(res["seen"]["action"])),
               "unseen_mixed": float(np.mean(res["unseen/mixed"]["action"])), "final_loss": res["final_loss"],
               "wall_s": round(time.time() - t)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
