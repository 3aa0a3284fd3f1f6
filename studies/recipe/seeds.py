"""Which seeds of a recipe learn: trains one recipe's run for each seed with the suite's in-memory trainer and
prints one JSON line per seed (stalled by the stall guard, final loss, seen and unseen action Top-1).

Recipes: ``suite-baseline`` (the person-shift suite's baseline arm), ``suite-mixed`` (its mixed positive control:
the baseline trained on persons whose every factor covers the held-out range). A variant is a JSON object of
config overrides (e.g. ``{"optim.warmup_steps": 42}``); ``--epochs`` shortens the runs for a screen (the stall
guard checks after one epoch).

    python studies/recipe/seeds.py suite-baseline 0-19 --variant '{}' --out artifacts/recipe/before.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", choices=("suite-baseline", "suite-mixed"))
    ap.add_argument("seeds", type=_seeds, help="a range a-b or a comma list")
    ap.add_argument("--variant", default="{}", help="JSON object of config overrides")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True, help="a .jsonl file (appended to)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from piumr.config import with_overrides
    from piumr.data.synth.shift import ShiftSizes, build_train, build_unseen
    from piumr.shift.train import arm_config, suite_config, train_and_score

    sizes = ShiftSizes()
    over: dict[str, Any] = json.loads(args.variant)
    widen = "mixed" if args.recipe == "suite-mixed" else None
    train = build_train(sizes, widen=widen)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        factor = "mixed" if widen else "tempo"
        data = {**train, f"unseen/{factor}": build_unseen(factor, sizes, seed % sizes.folds)}
        cfg = with_overrides(arm_config(suite_config(sizes, epochs=args.epochs), "baseline", seed), over)
        t = time.time()
        res = train_and_score(cfg, data, name=f"{args.recipe} seed {seed}")
        row = {"recipe": args.recipe, "variant": over, "epochs": args.epochs, "seed": seed,
               "stalled": res["stalled"], "final_loss": round(res["final_loss"], 4),
               "seen": round(float(np.mean(res["seen"]["action"])), 4),
               f"unseen_{factor}": round(float(np.mean(res[f"unseen/{factor}"]["action"])), 4),
               "wall_s": round(time.time() - t, 1)}
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
