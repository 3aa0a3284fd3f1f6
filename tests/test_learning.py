"""The method trains: seeded CPU runs on the synthetic data learn above chance (slow: ~1-3 min each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from piumr.config import PRESETS, with_overrides
from piumr.train import train

CHANCE = 100.0 / 7  # the smoke data has 7 classes, balanced


@pytest.mark.slow
def test_paper_girl_settings_learn_above_chance(tmp_path: Path) -> None:
    """The smoke model trained with the `paper` preset's GIRL settings (as-is: G, tau, eta, unit, gradient
    through the weights) plus TFAM learns well above chance on seen persons in ~180 seeded steps."""
    paper_girl = PRESETS["paper"].girl.model_dump()
    cfg = with_overrides(PRESETS["smoke"], {
        "girl": paper_girl, "seed": 0, "optim.epochs": 10, "optim.milestones": (8,), "eval_every": 10})
    assert cfg.girl == PRESETS["paper"].girl and cfg.girl.enabled and cfg.model.tfam.enabled
    res = train(cfg, tmp_path / "run", progress=False)
    assert res.final["action_top1"] > 2 * CHANCE, res.final
