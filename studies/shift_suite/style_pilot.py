"""Style pilot for the person-shift suite: which side of which style attribute is a shift that training on it closes.

Run from the project root with the package installed (about 8 min on 2 idle cores):

    python studies/shift_suite/style_pilot.py baseline 0,1
    python studies/shift_suite/style_pilot.py ctrl:hold_short,ctrl:brisk 0,1

``baseline``: the suite's baseline (seed s, 8 epochs, the shared training persons) scored on the held-out
persons of folds 0 and 1 under each candidate style design; ``ctrl:<c>``: the positive control ``data`` of
candidate c (training persons' style widened to c's held-out range). Candidates hold out one side of one
attribute (the others drawn from the training range) of the first style design (``FIRST`` below), or
``brisk`` (large, sharp, short holds: the current design). Writes ``<kind>_s<seed>.json`` (mean action
Top-1 per set) into ``--results`` (default artifacts/shift-suite/style-pilot).
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parents[2] / "artifacts" / "shift-suite" / "style-pilot"
Ranges = tuple[tuple[float, float], ...]
FIRST: dict[str, tuple[Ranges, Ranges]] = {
    "amplitude": (((0.9, 1.1),), ((0.55, 0.68), (1.5, 1.75))),
    "ease": (((0.85, 1.2),), ((0.4, 0.55), (2.0, 2.6))),
    "tremor": (((0.0, 0.05),), ((0.3, 0.45),)),
    "hold": (((0.85, 1.2),), ((0.15, 0.3), (3.0, 4.0)))}
CANDS: dict[str, dict[str, Ranges] | None] = {
    "old": None,  # the first design, every attribute both sides
    "hold_short": {"hold": ((0.15, 0.3),)},
    "hold_long": {"hold": ((3.0, 4.0),)},
    "amp_low": {"amplitude": ((0.55, 0.68),)},
    "amp_high": {"amplitude": ((1.5, 1.75),)},
    "brisk": {"amplitude": ((1.5, 1.75),), "ease": ((2.0, 2.6),), "hold": ((0.15, 0.3),)},
    "ease_low": {"ease": ((0.4, 0.55),)},
    "tremor": {"tremor": ((0.3, 0.45),)},
}


def set_cand(name: str) -> None:
    from piumr.data.synth import shift

    held = CANDS[name]
    if held is None:
        shift.RANGES["style"] = dict(FIRST)
    else:  # attributes not in the candidate: held-out range = training range (drawn, not shifted)
        shift.RANGES["style"] = {a: (tr, held.get(a, tr)) for a, (tr, _) in FIRST.items()}


def job(kind: str, seed: int, results: Path) -> tuple[str, int, dict[str, Any]]:
    import torch

    torch.set_num_threads(1)
    from piumr.data.synth import shift
    from piumr.shift.train import arm_config, suite_config, train_and_score

    sizes = shift.ShiftSizes()
    if kind == "baseline":
        set_cand("old")  # training persons use the training ranges only: the same under every candidate
        data = dict(shift.build_train(sizes))
        for c in CANDS:
            set_cand(c)
            for fold in (0, 1):
                data[f"unseen/{c}/{fold}"] = shift.build_unseen("style", sizes, fold)
    else:
        c = kind.split(":")[1]
        set_cand(c)
        data = dict(shift.build_train(sizes, widen="style"))
        for fold in (0, 1):
            data[f"unseen/{c}/{fold}"] = shift.build_unseen("style", sizes, fold)
    cfg = arm_config(suite_config(sizes, epochs=8), "baseline", seed)
    res = train_and_score(cfg, data)
    out = {k: (float(np.mean(v["action"])) if isinstance(v, dict) else v) for k, v in res.items()}
    (results / f"{kind.replace(':', '_')}_s{seed}.json").write_text(json.dumps(out, indent=1))
    return kind, seed, out


def _kind(text: str) -> list[str]:
    kinds = text.split(",")
    bad = [k for k in kinds if k != "baseline" and not (k.startswith("ctrl:") and k[5:] in CANDS)]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}: give baseline or ctrl:<candidate> with a "
                                         f"candidate of {', '.join(CANDS)}")
    return kinds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="the shift suite's style pilot (two trainings at a time)")
    ap.add_argument("kinds", type=_kind, help=f"comma list of baseline, ctrl:<{'|'.join(CANDS)}>")
    ap.add_argument("seeds", type=lambda s: [int(x) for x in s.split(",")], help="comma list of seeds")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the JSON go [artifacts/shift-suite/style-pilot]")
    args = ap.parse_args(argv)
    from piumr.runtime import die_with_parent

    with ProcessPoolExecutor(2, initializer=die_with_parent, initargs=(os.getpid(),)) as ex:
        futs = [ex.submit(job, k, s, args.results) for k in args.kinds for s in args.seeds]
        for f in futs:
            k, s, o = f.result()
            print(k, s, json.dumps({a: round(b, 3) for a, b in o.items() if isinstance(b, float)}), flush=True)


if __name__ == "__main__":
    main()
