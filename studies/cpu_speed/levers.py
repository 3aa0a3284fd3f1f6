"""Each CPU speed lever alone: one training step (forward, CE + GIRL, backward, AdamW) of a preset's PIUmr model
with torch's own ops and with each lever of ``TrainConfig.speed`` on by itself, then all the defaults ("auto").

Every variant is built from the same initialisation and timed in turns (round r times every variant once), so a
slow spell of a shared machine hits all of them alike; the table gives each variant's median step and its
speed-up over the old path. Writes ``levers.json`` into ``--out``.

    python studies/cpu_speed/levers.py --preset demo --threads 1 --rounds 9 --out artifacts/cpu-speed
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

OLD = {"channels_last": False, "depthwise": "conv3d", "pointwise": "conv3d", "fused_adamw": False}
VARIANTS: dict[str, dict[str, Any]] = {
    "old path (torch's ops)": OLD,
    "channels_last_3d alone": {**OLD, "channels_last": True},
    "numba depthwise alone": {**OLD, "depthwise": "numba"},
    "autograd depthwise alone": {**OLD, "depthwise": "autograd"},
    "matmul pointwise alone": {**OLD, "pointwise": "matmul"},
    "fused AdamW alone": {**OLD, "fused_adamw": True},
    "defaults (auto)": {},
    "defaults + channels_last_3d": {"channels_last": True},
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", type=Path, default=Path("artifacts/cpu-speed"))
    args = ap.parse_args(argv)

    import copy
    import warnings

    import torch

    from piumr.config import get_preset, with_overrides
    from piumr.files import write_json_atomic
    from piumr.losses import build_criterion
    from piumr.model import PIUmrNet
    from piumr.recipe import build_optimizer
    from piumr.speed import prepare_model

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset)
    torch.manual_seed(0)
    base = PIUmrNet(cfg.model).train()
    x = torch.randn(args.batch, 3, cfg.model.frames, cfg.model.crop, cfg.model.crop)
    y = torch.randint(0, cfg.model.num_classes, (args.batch,))
    steps = {}
    for name, over in VARIANTS.items():
        c = with_overrides(cfg, {f"speed.{k}": v for k, v in over.items()})
        net = copy.deepcopy(base)
        prepare_model(net, c.speed, torch.device("cpu"))
        crit = build_criterion(c)
        opt = build_optimizer(net, c.optim, c.speed, torch.device("cpu"))

        def step(net: Any = net, crit: Any = crit, opt: Any = opt) -> None:
            out = net(x)
            loss = crit(out.logits, out.embedding, y).total
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(2):  # warm-up (numba loads its compiled loops)
            step()
        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t = time.perf_counter()
            step()
            times[name].append((time.perf_counter() - t) * 1e3)
    med = {name: sorted(v)[len(v) // 2] for name, v in times.items()}
    old = med["old path (torch's ops)"]
    print(f"{args.preset}, batch {args.batch}, {args.threads} thread(s), {platform.processor() or platform.machine()}")
    for name, ms in med.items():
        print(f"{name:28s} {ms:8.1f} ms  {old / ms:5.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / f"levers_{args.preset}_t{args.threads}.json",
                      {"preset": args.preset, "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
                       "median_ms": med, "all_ms": times})


if __name__ == "__main__":
    main()
