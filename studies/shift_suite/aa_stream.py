"""Probe of suite v2's A/A arm: the baseline trained under another arm-level random stream (``stream`` >= 1, like
the A/A arm's 1), scored on seen persons and on every factor's held-out persons. Stream 0 re-seeds torch with the
initialisation's seed after the model is built (its dropout masks reuse those random numbers); every other stream
does not. If a second decoupled stream falls below the baseline as the A/A did, the coupling is a candidate cause;
if it scatters around it, the A/A's deficit on seeds 0-3 was chance. Prints and appends one JSON line per seed.

    python studies/shift_suite/aa_stream.py 0,1,2,3 --stream 2 --out artifacts/shift-suite/aa-stream/stream2.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("seeds", type=lambda t: [int(x) for x in t.split(",")])
    ap.add_argument("--stream", type=int, default=2, help="the arm-level stream (the A/A arm's is 1)")
    ap.add_argument("--out", type=Path, required=True, help="a .jsonl file (appended to)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from piumr.data.synth.shift import FACTORS, ShiftSizes, build_train, build_unseen
    from piumr.shift.train import arm_config, suite_config, train_and_score

    sizes = ShiftSizes()
    train = build_train(sizes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        data = {**train, **{f"unseen/{f}": build_unseen(f, sizes, seed % sizes.folds) for f in FACTORS}}
        cfg = arm_config(suite_config(sizes, epochs=8), "baseline", seed)
        res = train_and_score(cfg, data, stream=args.stream, name=f"stream {args.stream} seed {seed}")
        row = {"seed": seed, "stream": args.stream, "stalled": res["stalled"],
               "seen": round(100 * float(np.mean(res["seen"]["action"])), 2),
               **{f: round(100 * float(np.mean(res[f"unseen/{f}"]["action"])), 2) for f in FACTORS}}
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
