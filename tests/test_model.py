"""The PIUmr network: shapes, logits, checkpoints (Kinetics .pyth and safetensors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from piumr import build_model
from piumr.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from piumr.config import PRESETS, TFAMConfig
from piumr.model import PIUmrNet, build_x3d, load_kinetics_checkpoint


@pytest.mark.slow
def test_paper_model_shapes() -> None:
    torch.manual_seed(0)
    m = build_model(preset="paper")
    out = m(torch.randn(2, 3, 16, 224, 224))
    assert out.logits.shape == (2, 52)
    assert out.embedding.shape == (2, 2048)
    assert m.tfam is not None and m.tfam.channels == 192


def test_tiny_shapes_and_logits_in_training() -> None:
    torch.manual_seed(0)
    m = build_model(preset="tiny", num_classes=7).train()
    out = m(torch.randn(3, 3, 4, 32, 32))
    assert out.logits.shape == (3, 7) and out.embedding.shape == (3, 256)
    sums = out.logits.sum(dim=1)
    assert not torch.allclose(sums, torch.ones(3), atol=1e-3), "training outputs must be logits, not probabilities"
    assert (out.logits < 0).any()


def test_input_shape_checked() -> None:
    with pytest.raises(ValueError, match="B, 3, T, H, W"):
        build_model(preset="tiny")(torch.randn(2, 4, 4, 32, 32))


def test_tfam_off_and_stage() -> None:
    off = build_model(preset="tiny", tfam=TFAMConfig(enabled=False))
    assert off.tfam is None
    s2 = build_model(preset="tiny", tfam=TFAMConfig(stage=2, num_dct=4, dct_kernel=3, attn_dim=8, attn_heads=2))
    assert s2.tfam is not None and s2.tfam.channels == 16
    assert s2(torch.randn(1, 3, 4, 32, 32)).logits.shape == (1, 52)


def test_kinetics_checkpoint_loads_and_reinitialises_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    kin = build_x3d("x3d_tiny", num_classes=400, frames=4, crop=32)
    f = tmp_path / "X3D_tiny.pyth"
    torch.save({"model_state": kin.state_dict(), "epoch": 1}, f)
    m = build_model(preset="tiny", pretrained=f)
    own = m.backbone.state_dict()
    ref = kin.state_dict()
    assert torch.equal(own["blocks.1.res_blocks.0.branch2.conv_b.weight"], ref["blocks.1.res_blocks.0.branch2.conv_b.weight"])
    assert own["blocks.5.proj.weight"].shape == (52, 256)


def test_kinetics_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        build_model(preset="tiny", pretrained=tmp_path / "missing.pyth")
    junk = tmp_path / "junk.pyth"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pyth"):
        build_model(preset="tiny", pretrained=junk)
    other = build_x3d("x3d_m", num_classes=400, frames=4, crop=32)  # another width: shape mismatch
    f = tmp_path / "x3d_m.pyth"
    torch.save({"model_state": other.state_dict()}, f)
    with pytest.raises(CheckpointError, match=r"x3d_m\.pyth: not a x3d_tiny state dict \(\d+ unexpected keys"):
        load_kinetics_checkpoint(build_x3d("x3d_tiny", num_classes=52, frames=4, crop=32), f, "x3d_tiny")


def test_safetensors_round_trip_bit_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = PRESETS["tiny"]
    m = PIUmrNet(cfg.model).train()
    x = torch.randn(2, 3, 4, 32, 32)
    m(x)  # move BN statistics and TFAM running fusion weights away from their init
    m.eval()
    path = save_checkpoint(tmp_path / "ck" / "best.safetensors", m, cfg, epoch=3, step=17, metrics={"f1_mean": 1.5})
    m2, ck = load_model(path)
    sd1, sd2 = m.state_dict(), m2.state_dict()
    assert sd1.keys() == sd2.keys()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert torch.equal(m(x).logits, m2(x).logits)
    assert ck.config == cfg and ck.meta["epoch"] == 3 and ck.meta["metrics"]["f1_mean"] == 1.5
    assert "git_commit" in ck.meta["provenance"] and "torch" in ck.meta["provenance"]["packages"]
    assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        read_checkpoint(bad)
    cfg = PRESETS["tiny"]
    path = save_checkpoint(tmp_path / "m.safetensors", PIUmrNet(cfg.model), cfg, epoch=0, step=0)
    with pytest.raises(CheckpointError, match="52 classes"):
        load_model(path, expect_classes=10)


def test_optimizer_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = PRESETS["tiny"]
    m = PIUmrNet(cfg.model)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.randn(2, 3, 4, 32, 32)).logits.sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "last.safetensors", m, cfg, epoch=1, step=1, optimizer=opt, with_rng=True)
    ck = read_checkpoint(path)
    assert ck.optim_state is not None
    opt2 = torch.optim.AdamW(PIUmrNet(cfg.model).parameters(), lr=1e-3)
    opt2.load_state_dict(ck.optim_state)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for i in s1["state"]:
        for k, v in s1["state"][i].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(s2["state"][i][k]))
