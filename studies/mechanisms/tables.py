"""Markdown tables for docs/method_fidelity.md from summary.json (summarise.py) and tfam_probe.json.

usage: python studies/mechanisms/tables.py [--results DIR]   (default artifacts/mechanisms)"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "artifacts" / "mechanisms"
LABELS = {
    "ce": "CE only (GIRL off)",
    "g4": "GIRL G = 4, pairs inside groups (eq. 6 as written; the former default)",
    "g4xs": "… + `exclude_self=True`",
    "g4tau": "… + τ = 0.2",
    "pg": "**`paper` preset's GIRL (G = 4, pairs over the batch: new default)**",
    "grp": "paper GIRL with `pairs=\"group\"` (eq. 6 as written)",
    "w03": "paper GIRL with weight 0.3 (paper: plain sum, 1)",
    "eta02": "paper GIRL with η = 0.2",
    "vargrad": "paper GIRL with `var_grad=True`",
    "person": "paper GIRL with `grouping=\"person\"`",
    "litgate": "paper GIRL + literal gate (`kernel_scale=\"none\"`, `tokens=\"rows\"`, Γ₀ = 1)",
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="print the docs' tables from summary.json and tfam_probe.json")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the JSON files are [artifacts/mechanisms]")
    here = ap.parse_args(argv).results
    print("| arm | code | split | seeds | val Top-1 % (mean ± std) | per seed |")
    print("|---|---|---|---|---|---|")
    for r in json.loads((here / "summary.json").read_text()):
        code = "before (pairs in groups, batch-mean λ)" if r["batch"] == "batch1" else "this change"
        seeds = ", ".join(f"{a:.1f}" for a in r["top1_by_seed"].values())
        print(f"| {LABELS.get(r['arm'], r['arm'])} | {code} | {r['split']} | {len(r['top1_by_seed'])} | "
              f"{r['mean']:.1f} ± {r['std']:.1f} | {seeds} |")
    print()
    print("| run | split, clips | λ_t per clip: mean ± std [min, max] | gate std/mean over frames: mean [max] | "
          "λ_t spread in training (last epoch) |")
    print("|---|---|---|---|---|")
    for name, v in json.loads((here / "tfam_probe.json").read_text()).items():
        lam, g = v["lambda_t_eval"], v["gate_std_over_mean_eval"]
        last = v["lambda_t_train_by_epoch"][-1]
        tr = f"{last[2]:.4f}" if last[2] is not None else "not logged (trained before this change)"
        print(f"| {name} | {v['val_clips']} | {lam['mean']:.3f} ± {lam['std']:.3f} [{lam['min']:.3f}, "
              f"{lam['max']:.3f}] | {g['mean']:.3f} [{g['max']:.2f}] | {tr} |")


if __name__ == "__main__":
    main()
