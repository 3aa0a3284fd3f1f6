"""The backbone registry (``piumr.backbones``): every registered backbone builds through its family's code and
keeps the forward contract, TFAM gradient included; the registry is the one list of backbones."""

from __future__ import annotations

import importlib.util
from typing import get_args

import pytest
import torch

from piumr import build_model
from piumr.backbones import BACKBONES, REGISTRY, Family, backbone_spec
from piumr.config import TFAMConfig, backbone_overrides
from piumr.model.piumr import FAMILIES

SMALL_TFAM = TFAMConfig(num_dct=4, dct_kernel=3, attn_dim=8, attn_heads=2)
# every backbone at this input keeps >= 4 frames and >= 2 x 2 positions after stage 1, so that every TFAM
# parameter there can receive a gradient
FRAMES, CROP = 8, 64
#: the published (full-size) backbones take seconds each on a CPU: they run with the slow tests
FULL = {n for n, s in REGISTRY.items() if s.gmacs is not None or s.label != n}
_HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


def _cases() -> list[object]:
    out: list[object] = []
    for name, spec in REGISTRY.items():
        marks = [pytest.mark.slow] if name in FULL else []
        if spec.family == "videomae" and not _HAS_TRANSFORMERS:
            marks.append(pytest.mark.skip(reason="the videomae extra (transformers) is not installed"))
        out.append(pytest.param(name, marks=marks))
    return out


@pytest.mark.parametrize("name", _cases())
def test_forward_contract_and_tfam_gradient(name: str) -> None:
    """(B, 3, T, H, W) -> logits (B, classes) and embedding (B, D = embed_dim), finite, at the default TFAM
    stage and at the first; at the first every TFAM parameter gets a gradient from the loss."""
    spec = backbone_spec(name)
    for stage in sorted({spec.default_tfam_stage, spec.tfam_stages[0]}):
        torch.manual_seed(stage)
        m = build_model(preset="tiny", backbone=name, num_classes=5, frames=FRAMES, crop=CROP,
                        tfam=SMALL_TFAM.model_copy(update={"stage": stage})).train()
        out = m(torch.randn(3, 3, FRAMES, CROP, CROP))
        assert out.logits.shape == (3, 5) and out.embedding.shape == (3, m.embed_dim), name
        assert torch.isfinite(out.logits).all() and torch.isfinite(out.embedding).all()
        if stage == spec.tfam_stages[0]:
            ((out.logits * torch.randn_like(out.logits)).sum() + out.embedding.pow(2).mean()).backward()
            assert m.tfam is not None
            missing = [n for n, p in m.tfam.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
            assert not missing, f"{name} stage {stage}: no gradient for {missing}"


def test_registry_is_consistent() -> None:
    """Each spec is keyed by its own name, has a family with code, valid stages, and a classifier that the
    built model has; every family is used."""
    assert BACKBONES == tuple(REGISTRY) and len(set(BACKBONES)) == len(BACKBONES)
    assert set(FAMILIES) == set(get_args(Family)) == {s.family for s in REGISTRY.values()}
    for name, spec in REGISTRY.items():
        assert spec.name == name
        assert spec.tfam_stages and set(spec.tfam_stages) <= {1, 2, 3, 4}
        assert spec.default_tfam_stage == spec.tfam_stages[-1]
        over = backbone_overrides(name, native_input=True)
        assert (over["model.frames"], over["model.crop"]) == spec.native_input
        assert (spec.gmacs is None) or spec.gmacs > 0
        assert len(spec.classifier) == 2


@pytest.mark.parametrize("name", [n for n in BACKBONES if n not in FULL and REGISTRY[n].family != "videomae"]
                         + [pytest.param(n, marks=pytest.mark.skipif(not _HAS_TRANSFORMERS, reason="no transformers"))
                            for n in BACKBONES if n not in FULL and REGISTRY[n].family == "videomae"])
def test_classifier_keys_are_the_models(name: str) -> None:
    tfam = SMALL_TFAM.model_copy(update={"stage": backbone_spec(name).default_tfam_stage})
    m = build_model(preset="tiny", backbone=name, num_classes=5, frames=FRAMES, crop=CROP, tfam=tfam)
    keys = m.backbone.state_dict()
    assert all(k in keys and keys[k].shape[0] == 5 for k in backbone_spec(name).classifier), name


def test_unknown_backbone_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'nope'; choose one of: " + ", ".join(BACKBONES)):
        backbone_spec("nope")
    with pytest.raises(ValueError, match="unknown backbone 'nope'"):
        build_model(preset="tiny", backbone="nope")
