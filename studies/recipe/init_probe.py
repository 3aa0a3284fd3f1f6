"""A linear probe on the untrained network: how much of the action the stage-1 features of a fresh initialisation
carry, per seed and per way of initialising the early layers (the issue's lead: failing seeds have poor probes).

Features: the suite baseline's network (x3d_tiny) at initialisation, batch statistics in its norms (batches of 64),
stage-1 output pooled to 3 x 3 in space and kept over time (the 21 actions differ in time, per body part),
standardised; a logistic regression fitted on the suite's
training clips and scored on the seen persons' held-back clips. Prints one JSON line per (init, seed).

    python studies/recipe/init_probe.py default,ortho_stem 0-9
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inits")
    ap.add_argument("seeds")
    args = ap.parse_args(argv)
    lo, hi = (int(v) for v in args.seeds.split("-"))

    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    torch.set_num_threads(1)
    from piumr.config import with_overrides
    from piumr.data.synth.shift import ShiftSizes, build_train
    from piumr.model import PIUmrNet
    from piumr.recipe import normalize
    from piumr.shift.train import arm_config, suite_config
    from piumr.runtime import seed_everything

    sizes = ShiftSizes()
    data = build_train(sizes)
    for init in args.inits.split(","):
        for seed in range(lo, hi + 1):
            cfg = with_overrides(arm_config(suite_config(sizes, epochs=8), "baseline", seed),
                                 {"model.early_init": init})
            seed_everything(cfg.seed)
            net = PIUmrNet(cfg.model).train()  # batch statistics in the norms, as in training (no update: no_grad)
            t = time.time()

            def feats(clips: Any) -> Any:
                out = []
                with torch.no_grad():
                    for s in range(0, len(clips), 64):
                        v = torch.from_numpy(clips.video[s:s + 64]).float().div_(255.0).permute(0, 4, 1, 2, 3)
                        x = normalize(v.contiguous(), cfg.model)
                        blocks: Any = net.backbone.blocks
                        h = blocks[1](blocks[0](x))
                        pooled = torch.nn.functional.adaptive_avg_pool3d(h, (h.shape[2], 3, 3))
                        out.append(pooled.flatten(1).numpy())
                return np.concatenate(out)

            tr, te = feats(data["train"]), feats(data["seen"])
            sc = StandardScaler().fit(tr)
            clf = LogisticRegression(max_iter=3000, C=0.1).fit(sc.transform(tr), data["train"].labels)
            acc = float((clf.predict(sc.transform(te)) == data["seen"].labels).mean())
            print(json.dumps({"init": init, "seed": seed, "probe_seen": round(acc, 4),
                              "s": round(time.time() - t, 1)}), flush=True)


if __name__ == "__main__":
    main()
