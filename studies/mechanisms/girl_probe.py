"""GIRL at the smoke recipe's batch statistics: gradient share against CE, anchors with partners, and how
peaked the Gaussian weights are, on real embeddings.

usage: python studies/mechanisms/girl_probe.py OUT_JSON [CHECKPOINT ...]

For the smoke model at initialisation (seed 0) and for each CHECKPOINT, embeds 8 training batches of 12
clips (cross-subject split, eval-mode forward) and reports, per GIRL variant: the ratio of GIRL's gradient
norm to CE's gradient norm with respect to the embedding, the share of anchors with a same-class partner
in their group, and the weight diagnostics (w_eff, w_ratio) for several eta.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "G4 pairs in group, self in (eq. 6 literal)": dict(groups=4, pairs="group"),
    "G4 pairs in group, exclude_self": dict(groups=4, pairs="group", exclude_self=True),
    "G4 pairs in group, tau 0.2": dict(groups=4, pairs="group", tau=0.2),
    "G2 pairs in group (old smoke default)": dict(groups=2, pairs="group"),
    "G4 pairs over the batch (new default)": dict(groups=4, pairs="batch"),
}


def probe(model: Any, ds: Any, batches: list[list[int]]) -> dict[str, object]:
    import torch
    import torch.nn.functional as F

    from piumr.losses import GIRLLoss

    model.eval()
    embs, labels = [], []
    with torch.no_grad():
        for b in batches:
            items = [ds[i] for i in b]
            x = torch.stack([it["video"] for it in items])
            embs.append(model.embed(model.forward_features(x)))
            labels.append(torch.tensor([it["action"] for it in items]))
    res: dict[str, object] = {}
    for name, kw in VARIANTS.items():
        ratios, partnered = [], []
        for e, y in zip(embs, labels):
            e = e.clone().requires_grad_(True)
            ce = F.cross_entropy(model.forward_head(e), y)
            (g_ce,) = torch.autograd.grad(ce, e)
            loss = GIRLLoss(seed=0, **kw)
            parts = loss.parts(e, y)
            (g_girl,) = torch.autograd.grad(parts.total, e)
            ratios.append(float(g_girl.norm() / g_ce.norm().clamp_min(1e-12)))
            partnered.append(float(parts.partnered))
        res[name] = {"grad_norm_girl_over_ce": sum(ratios) / len(ratios), "partnered": sum(partnered) / len(partnered)}
    cos = []
    for e in embs:
        f = F.normalize(e, dim=1)
        c = f @ f.t()
        cos.append(c[~torch.eye(len(c), dtype=torch.bool)])
    allc = torch.cat(cos)
    res["pair_cosine"] = {"min": float(allc.min()), "median": float(allc.median()), "max": float(allc.max())}
    weights = {}
    for eta in (0.5, 0.2, 0.1, 0.05, 0.02):
        eff, rat = [], []
        for e, y in zip(embs, labels):
            p = GIRLLoss(groups=4, eta=eta).parts(e, y)  # default pairs over the batch: every anchor's positives
            eff.append(float(p.w_eff))
            rat.append(float(p.w_ratio))
        weights[str(eta)] = {"w_eff": sum(eff) / len(eff), "w_ratio": sum(rat) / len(rat)}
    res["weights_by_eta"] = weights
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="GIRL's gradient share, partners and weights on the smoke recipe")
    ap.add_argument("out", type=Path, help="the JSON written")
    ap.add_argument("checkpoints", type=Path, nargs="*", help="trained models probed besides the initial one")
    args = ap.parse_args(argv)

    import torch

    from piumr.checkpoint import load_model
    from piumr.config import get_preset, with_overrides
    from piumr.data.loaders import build_dataset
    from piumr.data.splits import load_split
    from piumr.model import build_model

    torch.set_num_threads(1)
    cfg = with_overrides(get_preset("smoke"), {"data.split": "cross-subject"})
    recs = load_split(cfg.data, "train", progress=False)
    ds = build_dataset(cfg, recs, "eval")
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(ds), generator=gen)[: 8 * 12].tolist()
    batches = [order[k:k + 12] for k in range(0, len(order), 12)]
    out: dict[str, object] = {}
    torch.manual_seed(0)
    out["init"] = probe(build_model(config=cfg.model), ds, batches)
    for ck in args.checkpoints:
        model, _ = load_model(ck, map_location="cpu")
        out[ck.parent.name] = probe(model, ds, batches)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
