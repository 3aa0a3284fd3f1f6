"""TFAM in trained models: the spread of the per-clip fusion weight lambda_t and of the temporal gate over
frames, on the validation clips of each run's own split.

usage: python studies/mechanisms/tfam_probe.py OUT_JSON RUN_DIR [RUN_DIR ...]

For each run folder: loads last.safetensors (the model the tables evaluate), runs its val split in eval
mode (deterministic fusion) and records, per clip, lambda_t (TFAM.last_lam) and the gate's std/mean over
frames (TemporalBranch.attention on TFAM's input). Also lambda_t's per-epoch mean and spread (std over a
batch's clips) logged in training (log.jsonl), when the run logged them.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
from pathlib import Path
from typing import Any


def summary(v: list[float]) -> dict[str, float]:
    return {"n": len(v), "mean": st.fmean(v), "std": st.pstdev(v), "min": min(v), "max": max(v)}


def probe(run: Path) -> dict[str, Any]:
    import torch

    from piumr.checkpoint import load_model
    from piumr.data.loaders import eval_loader
    from piumr.data.splits import load_split

    model, ck = load_model(run / "last.safetensors")
    tfam = model.tfam
    assert tfam is not None and tfam.temp is not None
    seen: list[torch.Tensor] = []
    tfam.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].detach()))
    lam_t: list[float] = []
    gate_cv: list[float] = []
    cfg = ck.config
    loader = eval_loader(cfg, load_split(cfg.data, "val", progress=False), workers=0)
    with torch.no_grad():
        for batch in loader:
            seen.clear()
            model(batch["video"])
            if tfam.last_lam is not None and tfam.fusion == "consistency":
                lam_t += tfam.last_lam[:, 0].tolist()
            gate = tfam.temp.attention(seen[0])
            gate_cv += (gate.std(dim=1, unbiased=False) / gate.mean(dim=1)).tolist()
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"type": "epoch"' in line]
    return {"tfam": {k: v for k, v in cfg.model.tfam.model_dump().items()
                     if k in ("fusion", "stability_on", "fusion_lambda", "kernel_scale", "tokens")},
            "val_clips": len(gate_cv),
            "lambda_t_eval": summary(lam_t) if lam_t else None,
            "gate_std_over_mean_eval": summary(gate_cv),
            "lambda_t_train_by_epoch": [(r["epoch"], r.get("tfam_lam_t"), r.get("tfam_lam_t_std")) for r in logged]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="TFAM's per-clip lambda_t and temporal gate in trained runs")
    ap.add_argument("out", type=Path, help="the JSON written")
    ap.add_argument("runs", type=Path, nargs="+", help="run folders (each with last.safetensors and log.jsonl)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    out = {r.name: probe(r) for r in args.runs}
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
