"""``piumr.checkpoint``: a checkpoint file alone rebuilds its model, resumes its optimiser, and refuses what is
not one in one line naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from piumr.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from piumr.config import get_preset, with_overrides
from piumr.model import PIUmrNet


@pytest.fixture
def tiny() -> tuple[PIUmrNet, torch.optim.Optimizer]:
    torch.manual_seed(0)
    m = get_preset("tiny").model
    net = PIUmrNet(m)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.randn(2, 3, m.frames, m.crop, m.crop)).logits.sum().backward()
    opt.step()
    return net, opt


def test_a_saved_model_is_rebuilt_from_the_file_alone(tmp_path: Path,
                                                       tiny: tuple[PIUmrNet, torch.optim.Optimizer]) -> None:
    net, opt = tiny
    cfg = with_overrides(get_preset("tiny"), {"seed": 7})
    path = save_checkpoint(tmp_path / "c.safetensors", net, cfg, epoch=3, step=42, metrics={"f1_mean": 12.5},
                           optimizer=opt, extra={"note": "x"}, with_rng=True)
    model, ckpt = load_model(path)
    assert ckpt.config == cfg and not model.training
    assert (ckpt.meta["epoch"], ckpt.meta["step"], ckpt.meta["metrics"], ckpt.meta["extra"]) == (
        3, 42, {"f1_mean": 12.5}, {"note": "x"})
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in model.state_dict().items())
    restored = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert ckpt.optim_state is not None
    restored.load_state_dict(ckpt.optim_state)
    before, after = opt.state_dict()["state"], restored.state_dict()["state"]
    assert before.keys() == after.keys() and all(
        torch.equal(before[i]["exp_avg"], after[i]["exp_avg"]) for i in before)
    assert ckpt.rng["tensors"], "with_rng keeps the generators' states"


def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    for path, says in ((junk, "junk.safetensors"), (tmp_path / "none.safetensors", "no such checkpoint")):
        with pytest.raises(CheckpointError) as e:
            read_checkpoint(path)
        assert str(path) in str(e.value) and says in str(e.value) and "\n" not in str(e.value)


def test_a_checkpoint_for_other_classes_is_refused(tmp_path: Path,
                                                    tiny: tuple[PIUmrNet, torch.optim.Optimizer]) -> None:
    path = save_checkpoint(tmp_path / "c.safetensors", tiny[0], get_preset("tiny"), epoch=0, step=0)
    classes = get_preset("tiny").model.num_classes
    load_model(path, expect_classes=classes)
    with pytest.raises(CheckpointError, match=f"has {classes} classes, this data has {classes + 1}"):
        load_model(path, expect_classes=classes + 1)
