"""Calibration pilot of the person-shift suite's held-out ranges (suite v2: on every factor the baseline's
unseen-person action Top-1 must be >= 3x chance and >= 10 points below its seen-person Top-1).

Training persons never depend on the held-out ranges, so the baseline is trained once per seed (``train``, the
suite's recipe, weights kept) and scored again on held-out persons drawn from candidate ranges (``score``).
A candidate moves a factor's held-out interval of each listed attribute from the training interval (severity 0)
to the current held-out one (severity 1): ``(c + s (a - c), d + s (b - d))`` for training (c, d) and held-out
(a, b); attributes not listed stay at their training range (not shifted). Prints one JSON line per seed x candidate.

    python studies/shift_suite/calibrate.py train 0,1,2 --weights /tmp/calib
    python studies/shift_suite/calibrate.py score 0,1,2 --weights /tmp/calib --factor size \\
        --attrs cam_scale,girth --severity 0.5 --out artifacts/shift-suite/calibration/pilot.jsonl
    python studies/shift_suite/calibrate.py score 0,1,2,3 --weights /tmp/calib --factor mixed --current
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def candidate_ranges(factor: str, attrs: list[str], severity: float) -> dict[str, Any]:
    """The factor's RANGES entry for a candidate: listed attributes at ``severity`` (or their own, ``name:s``), the
    rest not shifted."""
    from piumr.data.synth.shift import RANGES

    own = {a.split(":")[0]: float(a.split(":")[1]) if ":" in a else severity for a in attrs if a}
    out: dict[str, Any] = {}
    for name, (train, held) in RANGES[factor].items():
        if name in own and train != held:
            (c, d), (a, b) = train[0], held[0]
            sv = own[name]
            lo, hi = round(c + sv * (a - c), 4), round(d + sv * (b - d), 4)
            # never inside the training interval (a small severity moves only part of the way out of it)
            lo, hi = (max(lo, d), hi) if a >= d else (lo, min(hi, c))
            out[name] = (train, ((lo, hi),))
        else:
            out[name] = (train, train)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("train", "score"))
    ap.add_argument("seeds", type=_ints)
    ap.add_argument("--weights", type=Path, required=True, help="folder of the trained baselines")
    ap.add_argument("--factor", default=None, help="score: the factor whose held-out ranges change")
    ap.add_argument("--attrs", default="", help="score: comma list of the factor's attributes to shift (name or "
                    "name:severity)")
    ap.add_argument("--severity", type=float, default=1.0, help="score: 0 = training range, 1 = current held-out")
    ap.add_argument("--mixed", default=None, help="score mixed: JSON {factor: [attrs, severity]} for every factor")
    ap.add_argument("--current", action="store_true", help="score: the factor's ranges as the code has them")
    ap.add_argument("--out", type=Path, default=None, help="a .jsonl file (appended to)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from piumr.checkpoint import load_model
    from piumr.data.synth import shift
    from piumr.data.synth.shift import FACTORS, ShiftSizes, build_train, build_unseen
    from piumr.shift.train import _score, arm_config, suite_config, train_and_score

    sizes = ShiftSizes()
    rows = []
    if args.what == "train":
        train = build_train(sizes)
        for seed in args.seeds:
            fold = seed % sizes.folds
            data = {**train, **{f"unseen/{f}": build_unseen(f, sizes, fold) for f in FACTORS}}
            cfg = arm_config(suite_config(sizes, epochs=8), "baseline", seed)
            res = train_and_score(cfg, data, save_to=args.weights / f"seed{seed}.safetensors", name=f"calib {seed}")
            row = {"seed": seed, "candidate": "current", "stalled": res["stalled"],
                   "seen": round(100 * float(np.mean(res["seen"]["action"])), 2),
                   **{f: round(100 * float(np.mean(res[f"unseen/{f}"]["action"])), 2) for f in FACTORS},
                   "train_s": res["train_s"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    else:
        if args.current:
            new, factor, label = {}, args.factor, {"ranges": "current"}
        elif args.mixed:
            spec = json.loads(args.mixed)
            new = {f: candidate_ranges(f, a.split(","), float(s)) for f, (a, s) in spec.items()}
            factor, label = "mixed", {"mixed": spec}
        else:
            new = {args.factor: candidate_ranges(args.factor, args.attrs.split(","), args.severity)}
            factor, label = args.factor, {"attrs": args.attrs, "severity": args.severity}
        old: dict[str, Any] = {f: shift.RANGES[f] for f in new}
        shift.RANGES.update(new)
        try:
            seen_cache = build_train(sizes)["seen"]
            for seed in args.seeds:
                t = time.time()
                model, _ = load_model(args.weights / f"seed{seed}.safetensors")
                unseen = build_unseen(factor, sizes, seed % sizes.folds)
                dev = torch.device("cpu")
                u = _score(model, unseen, 64, dev)["action"]
                s = _score(model, seen_cache, 64, dev)["action"]
                row = {"seed": seed, "factor": factor, **label, "seen": round(100 * float(np.mean(s)), 2),
                       "unseen": round(100 * float(np.mean(u)), 2), "wall_s": round(time.time() - t, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            shift.RANGES.update(old)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
