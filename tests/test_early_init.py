"""The stem's initialisation (``ModelConfig.early_init``, ``piumr.model.early_init``): "zero_mean_t" (the default)
makes each of X3D's temporal stem filters sum to zero and changes nothing else of the initialisation."""

from __future__ import annotations

import torch

from piumr.config import PRESETS, with_overrides
from piumr.model import PIUmrNet


def _net(init: str) -> PIUmrNet:
    torch.manual_seed(0)
    return PIUmrNet(with_overrides(PRESETS["tiny"], {"model.early_init": init}).model)


def test_zero_mean_temporal_taps_and_nothing_else() -> None:
    assert PRESETS["tiny"].model.early_init == "zero_mean_t"
    a, b = _net("default").state_dict(), _net("zero_mean_t").state_dict()
    key = "backbone.blocks.0.conv.conv_xy.weight"  # the temporal depthwise taps (C0, 1, 5, 1, 1)
    assert b[key].sum(dim=2).abs().max() < 1e-6 < a[key].sum(dim=2).abs().max()
    assert torch.allclose(b[key], a[key] - a[key].mean(dim=2, keepdim=True))
    assert all(torch.equal(a[k], b[k]) for k in a if k != key)


def test_the_other_inits_act_on_the_stem() -> None:
    a = _net("default").state_dict()
    d = _net("dirac_t").state_dict()["backbone.blocks.0.conv.conv_xy.weight"]
    assert torch.equal(d[:, 0, :, 0, 0], torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]).expand(d.shape[0], 5))
    o = _net("ortho_stem").state_dict()["backbone.blocks.0.conv.conv_t.weight"].flatten(1)
    assert torch.allclose(o @ o.t(), torch.eye(o.shape[0]), atol=1e-5)
    assert not torch.equal(o, a["backbone.blocks.0.conv.conv_t.weight"].flatten(1))
